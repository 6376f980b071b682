"""`roost run --user` and `--no-new-privileges`, as PID 1 of a PID namespace.

The accounts are the test's own: PID 1 first bind-mounts a passwd and a group file of
the test's over /etc (in the namespace's private mount table, so the host never sees
them), then execs roost, still PID 1. The child reports its ids, groups and login
environment; whether it can regain root is tried, not assumed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOST, run_ns

pytestmark = pytest.mark.usefixtures("unshare_required")

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
roosty:x:4242:4243:roost test:/home/roosty:/bin/sh
"""
GROUP = """\
root:x:0:
nogroup:x:65534:
roostg:x:4243:
extra1:x:5001:roosty
extra2:x:5002:nobody,roosty
"""

# What the child reports, one item a line.
REPORT = ('id -u; id -g; id -G; echo "HOME=$HOME USER=${USER-unset} LOGNAME=${LOGNAME-unset}"; '
          "grep NoNewPrivs /proc/self/status")


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    return tmp_path


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="roost-account-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def with_accounts(etc: Path, *roost_args: str) -> list[str]:
    """argv of PID 1: bind the test's accounts over /etc, then exec `roost run ARGS`."""
    script = ('mount --bind "$1/passwd" /etc/passwd && mount --bind "$1/group" /etc/group '
              '&& shift && exec "$@"')
    return ["sh", "-c", script, "sh", str(etc), *ROOST, "run", *roost_args]


def report(etc: Path, *roost_args: str) -> list[str]:
    ran = run_ns(with_accounts(etc, *roost_args, "--", "sh", "-c", REPORT))
    assert ran.rc == 0, ran
    return ran.out.splitlines()


def test_named_user_gets_its_groups_and_login_environment(etc: Path) -> None:
    uid, gid, groups, env, nnp = report(etc, "--user", "roosty")
    assert (uid, gid) == ("4242", "4243")
    assert sorted(groups.split()) == ["4243", "5001", "5002"]  # initgroups, from /etc/group
    assert env == "HOME=/home/roosty USER=roosty LOGNAME=roosty"
    assert nnp.split() == ["NoNewPrivs:", "0"]


def test_user_with_a_group_by_name(etc: Path) -> None:
    uid, gid, groups, env, _ = report(etc, "--user", "roosty:extra2")
    assert (uid, gid) == ("4242", "5002")
    assert sorted(groups.split()) == ["4243", "5001", "5002"]
    assert env.startswith("HOME=/home/roosty ")


def test_numbers_with_no_entry(etc: Path) -> None:
    uid, gid, groups, env, _ = report(etc, "--user", "7000:7001")
    assert (uid, gid, groups) == ("7000", "7001", "7001")  # no supplementary group left
    # root's HOME and names are not passed on to a uid that has none of its own.
    assert env == "HOME=/ USER=unset LOGNAME=unset"


def test_number_with_an_entry_is_that_user(etc: Path) -> None:
    uid, gid, groups, env, _ = report(etc, "--user", "4242")
    assert (uid, gid) == ("4242", "4243")
    assert sorted(groups.split()) == ["4243", "5001", "5002"]
    assert env == "HOME=/home/roosty USER=roosty LOGNAME=roosty"


def test_unknown_user_exits_2_with_one_line_and_starts_nothing(etc: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    for spec, what in (("nosuchuser", "no such user: nosuchuser"),
                       ("roosty:nosuchgroup", "no such group: nosuchgroup")):
        ran = run_ns(with_accounts(etc, "--user", spec, "--", "touch", str(marker)))
        assert ran.rc == 2, ran
        assert ran.err == f"roost run: --user: {what} (roost run --help for usage)\n", ran
        assert not marker.exists()


def test_dropped_user_cannot_become_root_again(etc: Path) -> None:
    ran = run_ns(with_accounts(etc, "--user", "roosty", "--", "sh", "-c",
                               "setpriv --reuid 0 --regid 0 --clear-groups id -u; echo rc=$?"))
    assert ran.rc == 0, ran
    assert ran.out.splitlines()[-1] != "rc=0", ran
    assert "0" not in ran.out.splitlines()[:-1], ran


def test_no_new_privileges_keeps_a_setuid_binary_from_elevating(etc: Path,
                                                                public_dir: Path) -> None:
    # A setuid-root copy of id(1): it reports euid=0 when the bit takes effect.
    setuid_id = public_dir / "id"
    shutil.copy2(shutil.which("id") or "/usr/bin/id", setuid_id)
    os.chown(setuid_id, 0, 0)
    setuid_id.chmod(0o4755)
    command = ["--", "sh", "-c", f"grep NoNewPrivs /proc/self/status; {setuid_id}"]

    plain = run_ns(with_accounts(etc, "--user", "roosty", *command))
    assert plain.rc == 0, plain
    # The check can see an elevation: without the flag, the bit works.
    assert "NoNewPrivs:\t0" in plain.out and "euid=0" in plain.out, plain

    guarded = run_ns(with_accounts(etc, "--user", "roosty", "--no-new-privileges", *command))
    assert guarded.rc == 0, guarded
    assert "NoNewPrivs:\t1" in guarded.out, guarded
    assert "euid=0" not in guarded.out and "uid=4242" in guarded.out, guarded


def test_no_new_privileges_alone_keeps_the_account(etc: Path) -> None:
    uid, _, _, _, nnp = report(etc, "--no-new-privileges")
    assert uid == "0"
    assert nnp.split() == ["NoNewPrivs:", "1"]


def test_roost_itself_keeps_root(etc: Path) -> None:
    # Only the child drops: roost must still signal and reap whatever the child leaves.
    ran = run_ns(with_accounts(etc, "--user", "roosty", "--", "sh", "-c",
                               "grep -E '^(Uid|NoNewPrivs)' /proc/1/status"))
    assert ran.rc == 0, ran
    assert ran.out.splitlines()[0].split()[1:] == ["0", "0", "0", "0"], ran
