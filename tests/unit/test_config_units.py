"""A configuration directory's systemd units, drop-ins and the files roost does not read.

The drop-in rules are systemd.unit(5)'s: `NAME.service.d/*.conf`, and `service.d`,
`a-.service.d` for `a-b.service`, `t@.service.d` for `t@i.service`; every file applied in
the lexical order of its name whatever its directory; of two with the same name, the one in
the more specific directory; an empty assignment resetting a list.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from roost.config.load import read
from roost.importers.unitfile import assignments, dropins
from tests.support import ROOST


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def test_dropins_apply_in_lexical_order_of_their_names_across_directories(tmp_path: Path) -> None:
    write(tmp_path, {
        "a-b-c.service": "[Service]\nExecStart=/bin/true\n",
        "service.d/10-all.conf": "[Service]\nUser=all\n",
        "a-.service.d/30-a.conf": "[Service]\nUser=a\n",
        "a-b-.service.d/20-ab.conf": "[Service]\nUser=ab\n",
        "a-b-c.service.d/40-abc.conf": "[Service]\nUser=abc\n",
        "a-b-c.service.d/README": "not a drop-in\n",
        "x.service.d/05-other.conf": "[Service]\nUser=x\n",
    })
    got = [Path(p).relative_to(tmp_path).as_posix()
           for p in dropins(str(tmp_path / "a-b-c.service"))]
    assert got == ["service.d/10-all.conf", "a-b-.service.d/20-ab.conf",
                   "a-.service.d/30-a.conf", "a-b-c.service.d/40-abc.conf"]


def test_a_dropin_of_the_same_name_in_a_more_specific_directory_wins(tmp_path: Path) -> None:
    write(tmp_path, {
        "t@i.service": "[Service]\nExecStart=/bin/true\n",
        "service.d/50-x.conf": "[Service]\nUser=everyone\n",
        "t@.service.d/50-x.conf": "[Service]\nUser=template\n",
        "t@i.service.d/50-x.conf": "[Service]\nUser=instance\n",
        "t@.service.d/60-y.conf": "[Service]\nGroup=template\n",
    })
    got = [Path(p).relative_to(tmp_path).as_posix()
           for p in dropins(str(tmp_path / "t@i.service"))]
    assert got == ["t@i.service.d/50-x.conf", "t@.service.d/60-y.conf"]


def test_assignments_say_their_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"u.service": "[Service]\n\nExecStart=/bin/a\n",
                     "u.service.d/o.conf": "# why\n[Service]\nExecStart=\nExecStart=/bin/b\n"})
    got = assignments(str(tmp_path / "u.service"))
    assert [(key, value, where.rsplit("/", 1)[-1]) for _, key, value, where in got] == [
        ("ExecStart", "/bin/a", "u.service:3"), ("ExecStart", "", "o.conf:3"),
        ("ExecStart", "/bin/b", "o.conf:4")]


def test_a_dropin_replaces_execstart_and_the_unit_runs_it(tmp_path: Path) -> None:
    write(tmp_path, {"web.service": "[Unit]\nAfter=network.target\n[Service]\n"
                     "ExecStart=/bin/false\nRestart=always\n",
                     "web.service.d/override.conf": "[Service]\nExecStart=\n"
                     "ExecStart=/bin/sleep 5\nUser=root\n"})
    config, errors = read(str(tmp_path))
    assert errors == []
    web = config.services["web"]
    assert (web.argv, web.restart, web.user, web.path) == (
        ["/bin/sleep", "5"], "always", "root", str(tmp_path / "web.service"))
    assert any("web.service: ignored: After=" in w for w in config.warnings), config.warnings


def test_a_unit_roost_refuses_names_file_line_and_directive(tmp_path: Path) -> None:
    write(tmp_path, {"ok.toml": 'command = ["/bin/true"]\n',
                     "two.service": "[Service]\nExecStart=/bin/true\nExecStart=/bin/true\n",
                     "pre.service": "[Service]\nExecStartPre=/no/such/check\n"
                                    "ExecStart=/bin/true\n",
                     "sect.service": "[Service]\nExecStart=/bin/true\n[Socket]\nListenStream=80\n",
                     "syntax.service": "[Service]\nExecStart=/bin/true\nthis is not one\n",
                     "drop.service": "[Service]\nExecStart=/bin/true\n",
                     "drop.service.d/x.conf": "[Service]\nType=dbus\n",
                     "user.service": "[Service]\nExecStart=/bin/true\nUser=no-such-user-here\n"})
    config, errors = read(str(tmp_path))
    shown = sorted(str(e).replace(str(tmp_path) + "/", "") for e in errors)
    assert shown == [
        "drop.service.d/x.conf:2: Type: Type=dbus: roost cannot supervise it",
        "pre.service:2: ExecStartPre: exec_start_pre command not found: /no/such/check",
        "sect.service:4: [Socket]: not a section of a service unit",
        "syntax.service:3: not an assignment in a section: 'this is not one'",
        "two.service:3: ExecStart: several ExecStart= lines: only a oneshot may have them",
        "user.service:3: User: no such user: no-such-user-here",
    ], shown
    assert list(config.services) == ["ok"]


def test_a_toml_and_a_unit_of_one_name_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"x.toml": 'command = ["/bin/true"]\n',
                     "x.service": "[Service]\nExecStart=/bin/true\n"})
    config, errors = read(str(tmp_path))
    assert [str(e) for e in errors] == [
        f"{tmp_path}/x.toml: x.service names the same service: keep one of the two"]
    assert config.services == {}


def test_files_roost_does_not_read_are_named_litter_is_not(tmp_path: Path) -> None:
    write(tmp_path, {"ok.toml": 'command = ["/bin/true"]\n', "web.conf": "x\n",
                     "UP.TOML": 'command = ["/bin/true"]\n', "README": "hi\n",
                     "x.socket": "[Socket]\n", "sv.ini": "[program:web]\ncommand=/bin/true\n",
                     "unit.txt": "[Service]\nExecStart=/bin/true\n",
                     "orphan.service.d/a.conf": "[Service]\n",
                     ".hidden": "x\n", "ok.toml~": "x\n", "roost.toml": ""})
    config, errors = read(str(tmp_path))
    assert errors == []
    shown = [w.replace(str(tmp_path) + "/", "") for w in config.warnings]
    assert shown == [
        "README: not read: roost reads NAME.toml and NAME.service",
        "UP.TOML: not read: roost reads lower-case suffixes: name it UP.toml",
        "orphan.service.d: not read: a drop-in directory of no unit here",
        "sv.ini: not read: this looks like a supervisord configuration: use `roost import "
        "supervisord`",
        "unit.txt: not read: this looks like a systemd unit: name it unit.service or use "
        "`roost import systemd`",
        "web.conf: not read: roost reads NAME.toml and NAME.service",
        "x.socket: not read: roost reads .service units only",
    ], shown


def test_a_toml_file_in_another_format_gets_a_hint(tmp_path: Path) -> None:
    write(tmp_path, {"u.toml": "[Service]\nExecStart = '/bin/true'\n",
                     "s.toml": "[program:web]\ncommand=/bin/true\n"})
    _, errors = read(str(tmp_path))
    shown = sorted(str(e).replace(str(tmp_path) + "/", "") for e in errors)
    assert any(e.startswith("s.toml:1: TOML syntax:") and "use `roost import supervisord`" in e
               for e in shown), shown
    assert ("u.toml:1: Service: unknown key (this looks like a systemd unit: name it "
            "u.service or use `roost import systemd`)") in shown, shown


def test_a_scripts_missing_interpreter_is_named(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_text("#!/nonexistent/sh -e\necho hi\n")
    script.chmod(0o755)
    write(tmp_path, {"bad.toml": 'command = ["./bad.sh"]\n',
                     "good.toml": 'command = ["/bin/sh", "-c", "true"]\n'})
    _, errors = read(str(tmp_path))
    assert [str(e) for e in errors] == [
        f"{tmp_path}/bad.toml:1: command: command ./bad.sh: its #! interpreter "
        "/nonexistent/sh does not exist"]


def test_roost_check_of_one_file(tmp_path: Path) -> None:
    write(tmp_path, {"good.service": "[Service]\nExecStart=/bin/true\n",
                     "bad.toml": 'command = ["/no/such"]\n', "README": "x\n"})

    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ROOST, "check", str(tmp_path / name)], capture_output=True,
                              text=True, timeout=60, check=False)

    good = check("good.service")
    assert (good.returncode, good.stdout) == (0, f"{tmp_path}/good.service: valid\n"), good
    bad = check("bad.toml")
    assert bad.returncode == 1 and "command not found: /no/such" in bad.stdout, bad
    readme = check("README")
    assert readme.returncode == 1 and "not a service file" in readme.stderr, readme
    whole = subprocess.run([*ROOST, "check", str(tmp_path)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert whole.returncode == 1 and f"warning: {tmp_path}/README: not read" in whole.stdout
