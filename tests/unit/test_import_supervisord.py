"""`roost import supervisord`, held to supervisord's own parser (the `supervisor` package).

For each configuration below, supervisord's ServerOptions reads it and lists its
processes; the importer must make one roost service per process, with the same name,
the same argv (supervisord splits its command with shlex), the same environment,
directory, user and stop signal, and a restart policy that means what autorestart
does. Every file it writes must pass roost's own configuration check.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from roost.config.load import read
from roost.importers import supervisord
from roost.importers.supervisord import NotImportable, convert

options = pytest.importorskip("supervisor.options", reason="SKIPPED: the supervisor package "
                              "(a test extra) is the ground truth for this parser")
datatypes = pytest.importorskip("supervisor.datatypes")

CASES = {
    "numprocs": """
[program:web]
command=/usr/bin/python3 -m http.server %(ENV_PORT)s ; the port from the environment
numprocs=3
numprocs_start=1
process_name=%(program_name)s-%(process_num)02d
environment=GREETING="hello, world",NUM=%(process_num)d,PATHISH=/a/b:c
autorestart=unexpected
exitcodes=0,2
stopsignal=INT
stopwaitsecs=30
""",
    "include and here": """
[program:main]
command = /bin/sleep 100
autorestart = true
directory = %(here)s
user = nobody
redirect_stderr = true

[include]
files = conf.d/*.conf
""",
    "quoting and comments": """
[program:quoted]
command=/bin/sh -c "echo 'a b'; echo c" # a ';' after a space starts a comment; this one does not
autorestart=false
autostart=false
stopsignal=HUP
environment=A='x y',B="1,2"
""",
}
INCLUDED = """
[program:worker]
command=/bin/echo %(program_name)s %(group_name)s in %(here)s
numprocs=2
process_name=w%(process_num)d
stopasgroup=true

[group:pool]
programs=worker
"""


def _write(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "supervisord.conf"
    # supervisord insists on its own section; the importer ignores it.
    conf.write_text(f"[supervisord]\nlogfile={tmp_path}/supervisord.log\n{text}")
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    (tmp_path / "conf.d" / "worker.conf").write_text(INCLUDED)
    return conf


def _truth(conf: Path) -> dict[str, Any]:
    """supervisord's view: process name -> its ProcessConfig."""
    opts = options.ServerOptions()
    opts.configfile = str(conf)
    opts.process_config(do_usage=False)
    return {p.name: p for g in opts.process_group_configs for p in g.process_configs}


RESTART = {datatypes.RestartUnconditionally: "always", False: "never",
           datatypes.RestartWhenExitUnexpected: "on-failure"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_process_as_supervisord_reads_it(case: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    conf = _write(tmp_path, CASES[case])
    truth = _truth(conf)
    services, _ = convert(str(conf), {"PORT": "8080"})
    assert sorted(s.name for s in services) == sorted(truth), case
    out = tmp_path / "roost"
    out.mkdir()
    for service in services:
        (out / f"{service.name}.toml").write_text(service.text())
    config, errors = read(str(out))
    assert errors == [], [str(e) for e in errors]
    for name, proc in truth.items():
        mine = config.services[name]
        assert mine.argv == shlex.split(proc.command), name
        assert mine.environment == (proc.environment or {}), name
        assert mine.restart == RESTART[proc.autorestart], name
        assert mine.stop_signal == proc.stopsignal, name
        if proc.directory is not None:  # unset, roost runs it in the config directory
            assert mine.working_directory == proc.directory, name
        assert mine.autostart == proc.autostart, name
        if proc.uid is not None:
            assert mine.user == "nobody"
        if "stopwaitsecs" in CASES[case]:
            assert mine.stop_timeout == proc.stopwaitsecs
        # supervisord's redirect_stderr: one stream; else each its own, as roost's default.
        assert mine.stderr == ("stdout" if proc.redirect_stderr else "log"), name


def test_approximations_are_commented_and_ignored_keys_named(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("[program:x]\ncommand=/bin/true\nexitcodes=0,3\nstartsecs=5\npriority=10\n"
                    "stdout_logfile=/var/log/x.log\nstartretries=7\nnot_a_key=1\n")
    (service,), notes = convert(str(conf), {})
    text = service.text()
    assert 'restart = "on-failure"  # supervisord: exit codes 0,3 are expected' in text
    assert "restart_limit = 8  # startretries = 7" in text
    warnings = " | ".join(service.warnings)
    for key in ("startsecs = 5", "priority = 10", "stdout_logfile", "not_a_key"):
        assert key in warnings, (key, warnings)
    assert notes == []


def test_what_roost_cannot_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("[eventlistener:mem]\ncommand=memmon\n\n[fcgi-program:php]\ncommand=php\n"
                    "[program:ok]\ncommand=/bin/true\n")
    services, notes = convert(str(conf), {})
    assert [s.name for s in services] == ["ok"]
    assert "[eventlistener:mem] refused: roost has no event listener protocol" in notes
    assert "[fcgi-program:php] refused: roost does not open FastCGI sockets for a program" in notes


@pytest.mark.parametrize(("text", "message"), [
    ("[program:x]\nautostart=true\n", "[program:x] has no command"),
    ("[program:x]\ncommand=a\nnumprocs=2\n", "needs %(process_num) in process_name"),
    ("[program:x]\ncommand=%(ENV_NOPE)s\n", "cannot expand"),
    ("[program:x]\ncommand=a\nautorestart=sometimes\n", "autorestart: 'sometimes'"),
    ("[program:x\ncommand=a\n", "s.conf"),
])
def test_bad_input_names_file_and_section(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text(text)
    with pytest.raises(NotImportable, match=re.escape(message)):
        convert(str(conf), {})


def test_main_writes_one_file_per_service_and_never_overwrites(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text("[program:a]\ncommand=/bin/true\n[program:b]\ncommand=/bin/false\n")
    out = tmp_path / "out"
    assert supervisord.main([str(conf), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.toml", "b.toml"]
    assert supervisord.main([str(conf), "-o", str(out)]) == 1
    assert "exists; nothing overwritten" in capfd.readouterr().err
    assert supervisord.main([]) == 2
