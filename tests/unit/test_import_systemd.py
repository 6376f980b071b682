"""`roost import systemd`: unit syntax and command lines as systemd reads them, the mapping,
the refusals, and a corpus of real units from Debian packages.

The syntax rules are systemd.syntax(7) and the command-line rules systemd.service(5)'s
"Command lines"; each test names the rule it holds the importer to. The corpus is the
units shipped by CORPUS's packages, unpacked by tests/debs.py (never installed): every
unit either imports to a file roost's own check accepts, or is refused with a reason.
"""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path

import pytest

from roost.config.load import read
from roost.importers import systemd
from roost.importers.cmdline import split
from roost.importers.systemd import convert, seconds
from roost.importers.unitfile import Refused, parse
from tests import debs

SPEC = {"n": "web.service", "N": "web", "p": "web", "i": "", "%": "%", "t": "/run"}


@pytest.mark.parametrize(("line", "words"), [
    ("/bin/echo a  b", ["/bin/echo", "a", "b"]),                      # words on whitespace
    ("/bin/echo 'a b' \"c d\"", ["/bin/echo", "a b", "c d"]),        # both quotes
    ("/bin/echo a\\tb \\x41", ["/bin/echo", "a\tb", "A"]),            # C escapes
    ("/bin/echo x\"y z\"w", ["/bin/echo", "xy zw"]),                  # quotes inside a word
    # "$VAR" as a word of its own: split on white space into zero or more words;
    # "${VAR}": replaced inside its word, which stays exactly one.
    ("/bin/echo $A ${B}x $NOPE", ["/bin/echo", "1", "2x"]),
    ("/bin/echo $C ${C} ${NOPE}", ["/bin/echo", "a", "b", "a  b", ""]),
    ("/bin/echo %n %N %% %t/x", ["/bin/echo", "web.service", "web", "%", "/run/x"]),
])
def test_command_lines_split_as_systemd_splits_them(line: str, words: list[str]) -> None:
    assert split(line, {"A": "1", "B": "2", "C": "a  b"}, SPEC, "u") == words


def test_a_command_around_the_main_one_keeps_what_only_its_start_knows() -> None:
    # $MAINPID is known when the command starts, not at import: left for roost to expand,
    # and a dollar that is the unit's own is kept as "$$" so that it stays one.
    env = {"OPTS": "-a $b"}
    assert split("/bin/kill -HUP $MAINPID ${MAINPID}x $$ $OPTS", env, SPEC, "u",
                 runtime=True) == ["/bin/kill", "-HUP", "$MAINPID", "${MAINPID}x", "$$", "-a",
                                   "$$b"]


def test_commands_around_the_main_one_map_to_their_keys(tmp_path: Path) -> None:
    unit = _unit(tmp_path, "d.service", """[Service]
Environment=CONF=/etc/d.conf
ExecCondition=/usr/bin/test -f $CONF
ExecStartPre=-/bin/rm -f /run/d.sock
ExecStartPre=+/usr/bin/d --check ${CONF}
ExecStart=/usr/bin/d
ExecStartPost=/bin/echo started
ExecReload=/usr/bin/d --check
ExecReload=/bin/kill -USR1 $MAINPID
ExecStop=:/usr/bin/d --stop $NOT_EXPANDED
ExecStopPost=!!/bin/rm -f /run/d.sock
""")
    text = convert(str(unit)).text()
    assert 'exec_condition = [["/usr/bin/test", "-f", "/etc/d.conf"]]' in text
    assert ('exec_start_pre = [["-/bin/rm", "-f", "/run/d.sock"], ["+/usr/bin/d", "--check", '
            '"/etc/d.conf"]]') in text
    assert 'exec_start_post = [["/bin/echo", "started"]]' in text
    assert 'exec_reload = [["/usr/bin/d", "--check"], ["/bin/kill", "-USR1", "$MAINPID"]]' in text
    assert 'exec_stop = [[":/usr/bin/d", "--stop", "$NOT_EXPANDED"]]' in text
    assert 'exec_stop_post = [["!/bin/rm", "-f", "/run/d.sock"]]' in text
    out = tmp_path / "out"
    out.mkdir()
    (out / "d.toml").write_text(text.replace("/usr/bin/d", "/bin/true").replace(
        "/usr/bin/test", "/bin/true"))
    config, errors = read(str(out))
    assert errors == []
    assert config.services["d"].exec_stop == [[":", ["/bin/true", "--stop", "$NOT_EXPANDED"]]]


def test_a_reload_that_only_signals_is_reload_signal(tmp_path: Path) -> None:
    for line in ("/bin/kill -HUP $MAINPID", "kill -s HUP ${MAINPID}",
                 "/usr/bin/kill -SIGUSR2 $MAINPID"):
        unit = _unit(tmp_path, "r.service", f"[Service]\nExecStart=/bin/r\nExecReload={line}\n")
        text = convert(str(unit)).text()
        assert "reload_signal = " in text and "exec_reload" not in text, text


def test_a_oneshots_several_lines_run_in_order(tmp_path: Path) -> None:
    unit = _unit(tmp_path, "o.service", "[Service]\nType=oneshot\nExecStart=/bin/a\n"
                 "ExecStart=/bin/b x\nExecStartPost=/bin/c\n")
    text = convert(str(unit)).text()
    assert 'command = ["/bin/a"]' in text
    assert 'exec_start_post = [["/bin/b", "x"], ["/bin/c"]]' in text


def test_unbalanced_quotes_and_unknown_specifiers_are_refused() -> None:
    with pytest.raises(Refused, match="unbalanced quotes"):
        split("/bin/echo 'a", {}, SPEC, "u")
    with pytest.raises(Refused, match="the specifier %Z has no value"):
        split("/bin/echo %Z", {}, SPEC, "u")


def test_syntax_comments_continuations_and_sections() -> None:
    text = ("# comment\n; another\n[Service]\nExecStart=/bin/echo a \\\n  b\n"
            "Environment=X=1\n\n[Install]\nWantedBy=multi-user.target\n")
    assert parse(text, "u") == [
        ("Service", "ExecStart", "/bin/echo a  b", 4),
        ("Service", "Environment", "X=1", 6),
        ("Install", "WantedBy", "multi-user.target", 9),
    ]
    with pytest.raises(Refused, match=r"u:2: not an assignment"):
        parse("[Service]\nnonsense\n", "u")


@pytest.mark.parametrize(("span", "value"), [("90", 90), ("1min 30s", 90), ("500ms", 0.5),
                                             ("2h", 7200), ("infinity", 0)])
def test_time_spans(span: str, value: float) -> None:
    assert seconds(span, "u") == value


def _unit(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_unit_maps_to_roost_keys(tmp_path: Path) -> None:
    env = _unit(tmp_path, "web.env", "# defaults\nPORT=8080\nOPTS='-v -x'\n")
    unit = _unit(tmp_path, "web.service", f"""[Unit]
Requires=db.service network.target
Wants=cache.service
[Service]
Type=notify
NotifyAccess=all
EnvironmentFile={env}
EnvironmentFile=-/nonexistent/optional
Environment="GREETING=hello world" LANG=C
ExecStart=/usr/bin/web --port $PORT $OPTS
Restart=on-abnormal
RestartSec=2
TimeoutStartSec=1min
KillSignal=SIGINT
User=www-data
ProtectSystem=strict
""")
    service = convert(str(unit), {"web", "db", "cache"})
    text = service.text()
    assert 'command = ["/usr/bin/web", "--port", "8080", "-v", "-x"]' in text
    assert 'type = "notify"' in text and 'notify_access = "all"' in text
    assert 'restart = "on-abnormal"\n' in text  # systemd's own policy, exactly
    assert "restart_delay = 2.0" in text and "start_timeout = 60.0" in text
    assert 'stop_signal = "INT"' in text and 'user = "www-data"' in text
    assert 'requires = ["db"]' in text and 'wants = ["cache"]' in text
    assert "GREETING" in text and "hello world" in text
    warnings = " | ".join(service.warnings)
    assert "ProtectSystem=" in warnings and "network.target" in warnings


@pytest.mark.parametrize(("body", "reason"), [
    ("Type=dbus\nExecStart=/bin/x\n", "Type=dbus: roost cannot supervise it"),
    ("ExecStart=/bin/a\nExecStart=/bin/b\n", "several ExecStart= lines: only a oneshot"),
    ("User=nobody\nExecStart=!/bin/x\n", "no equivalent of '!'"),
    ("ExecStart=@/bin/x x\n", "no equivalent of '@'"),
    ("Restart=sometimes\nExecStart=/bin/x\n", "Restart=sometimes: not a policy"),
    ("EnvironmentFile=/nonexistent\nExecStart=/bin/x\n", "EnvironmentFile /nonexistent"),
    ("User=x\n", "no ExecStart="),
])
def test_what_roost_cannot_do_is_refused_with_the_reason(tmp_path: Path, body: str,
                                                        reason: str) -> None:
    unit = _unit(tmp_path, "x.service", "[Service]\n" + body)
    with pytest.raises(Refused, match=reason.replace("(", r"\(")):
        convert(str(unit))


def test_an_empty_assignment_resets_the_list(tmp_path: Path) -> None:
    unit = _unit(tmp_path, "x.service", "[Service]\nExecStart=/bin/a\nExecStart=\n"
                 "ExecStart=/bin/b\n")
    assert 'command = ["/bin/b"]' in convert(str(unit)).text()


def test_templates_take_their_instance(tmp_path: Path) -> None:
    unit = _unit(tmp_path, "getty@.service", "[Service]\nExecStart=/bin/echo %i %I %n %p 5%%\n")
    template = convert(str(unit))
    assert template.name == "getty@"
    assert 'command = ["/bin/echo", "%i", "%I", "%N.service", "getty", "5%%"]' in template.text()
    # The template written runs as systemd would run the unit's instance.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "getty@.toml").write_text(template.text() + 'instances = ["tty-1"]\n')
    config, errors = read(str(tmp_path / "out"))
    assert errors == [], errors
    assert config.services["getty@tty-1"].argv == [
        "/bin/echo", "tty-1", "tty/1", "getty@tty-1.service", "getty", "5%"]
    unit = _unit(tmp_path, "getty@tty1.service", "[Service]\nExecStart=/sbin/agetty %I\n")
    assert 'command = ["/sbin/agetty", "tty1"]' in convert(str(unit)).text()


def test_main_counts_and_writes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    good = _unit(tmp_path, "a.service", "[Service]\nExecStart=/bin/sleep 1\n")
    bad = _unit(tmp_path, "b.service", "[Service]\nType=dbus\nExecStart=/bin/x\n")
    out = tmp_path / "out"
    assert systemd.main([str(good), str(bad), "-o", str(out)]) == 1
    err = capfd.readouterr().err
    assert "refused" in err and "1 of 2 units imported" in err
    config, errors = read(str(out))
    assert errors == [] and list(config.services) == ["a"]


# Packages whose units the corpus holds: daemons people run, from Debian.
CORPUS = ["openssh-server", "nginx-common", "apache2", "redis-server", "memcached", "cron",
          "rsyslog", "chrony", "haproxy", "dnsmasq", "bind9", "exim4-base", "postfix",
          "rpcbind", "avahi-daemon", "cups-daemon", "fail2ban", "squid", "lighttpd",
          "vsftpd", "dovecot-core", "openvpn", "php8.2-fpm", "smartmontools", "irqbalance",
          "at", "anacron", "unbound", "tor", "privoxy", "mosquitto", "snmpd", "keepalived",
          "radvd", "tftpd-hpa", "nut-server", "minidlna", "nfs-kernel-server", "knot",
          "postgresql-common", "mariadb-server", "unattended-upgrades"]


@pytest.mark.timeout(900)
def test_a_corpus_of_real_units(tmp_path: Path) -> None:
    try:
        units = debs.unit_files(CORPUS)
    except subprocess.CalledProcessError as exc:  # no mirror: say so loudly
        pytest.skip(f"SKIPPED: cannot fetch the corpus from a Debian mirror: {exc}")
    assert len(units) >= 40, f"only {len(units)} units in the corpus"
    imported, refused = [], collections.Counter[str]()
    out = tmp_path / "out"
    out.mkdir()
    for unit in units:
        try:
            service = convert(str(unit))
        except Refused as exc:
            reason = str(exc).split(": ", 2)[-1] if ": " in str(exc) else str(exc)
            assert reason, unit
            refused[reason.split("(")[0].strip()[:60]] += 1
            continue
        imported.append(service)
        (out / f"{service.name}.toml").write_text(service.text())
    _, errors = read(str(out))
    # What this host lacks (a daemon's program, user or directory, a requirement imported
    # without its unit: the packages are unpacked, not installed; the CAP_SYS_RESOURCE a
    # LimitNOFILE= above roost's own needs) is the host's; anything else roost's check
    # finds is the importer's fault.
    host = ("command not found", "no such service", "no such user", "no such group",
            "which is invalid",
            "no such directory", "which it may not raise (no CAP_SYS_RESOURCE)")
    theirs = [e for e in errors if not any(h in e.message for h in host)]
    print(f"\ncorpus: {len(units)} units from {len(CORPUS)} packages: {len(imported)} imported "
          f"({sum(1 for s in imported if s.warnings)} with warnings), "
          f"{sum(refused.values())} refused")
    for reason, count in refused.most_common():
        print(f"  refused {count:3d}: {reason}")
    assert theirs == [], [str(e) for e in theirs]


def test_how_a_unit_stops(tmp_path: Path) -> None:
    unit = _unit(tmp_path, "k.service", "[Service]\nExecStart=/bin/k\nKillMode=mixed\n"
                 "FinalKillSignal=SIGQUIT\nSendSIGKILL=no\n")
    text = convert(str(unit)).text()
    assert 'kill_mode = "mixed"' in text and 'final_kill_signal = "QUIT"' in text
    assert "send_sigkill = false" in text
    none = convert(str(_unit(tmp_path, "n.service", "[Service]\nExecStart=/bin/n\n"
                                                  "KillMode=none\n")))
    assert "kill_mode" not in none.text()
    assert any(w.startswith("KillMode=none") for w in none.warnings), none.warnings
    oneshot = _unit(tmp_path, "o.service", "[Service]\nType=oneshot\nExecStart=/bin/o\n"
                    "RemainAfterExit=yes\n")
    assert "remain_after_exit = true" in convert(str(oneshot)).text()
