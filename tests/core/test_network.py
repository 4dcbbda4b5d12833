from __future__ import annotations

from dataclasses import replace

import pytest

from detoxd.core import network
from detoxd.core.config import parse_main
from detoxd.core.network import (
    ADGUARD_BEGIN,
    ADGUARD_END,
    CANARY,
    MARKER_COMMENT,
    PiholeEntry,
    adguard_block,
    adguard_merged,
    adguard_rules,
    adguard_without_block,
    engine_from_json,
    engine_names,
    engine_to_json,
    exceptions,
    parse_unbound_local_zones,
    pihole_plan,
    render_dnsmasq,
    render_unbound,
    unbound_include_zones,
    unbound_zones,
    zone_changes,
)

ISSUE_EXAMPLE = """\
network:
  - engine: pihole                 # pihole | adguardhome | dnsmasq | unbound
    url: https://pi.hole           # pihole, adguardhome: the web/API address
    password_file: pihole.secret   # relative to the config dir; root-owned, mode 0600 or refused
    tls_fingerprint: "sha256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:\
AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
    clients: [192.168.1.23, "aa:bb:cc:dd:ee:ff"]
  - engine: dnsmasq                # a dnsmasq on this machine
    conf_dir: /etc/dnsmasq.d       # where detoxd writes its one file
  - engine: unbound                # an Unbound on this machine, via unbound-control
"""


def errors(source: object) -> list[str]:
    return [str(issue) for issue in source.errors]  # type: ignore[attr-defined]


def has(found: list[str], prefix: str) -> bool:
    return any(e.startswith(prefix) for e in found)


def test_the_issue_example_parses() -> None:
    main, source = parse_main(ISSUE_EXAMPLE)
    assert errors(source) == []
    assert main is not None
    pihole, dnsmasq, unbound = main.network
    assert pihole.engine == "pihole" and pihole.url == "https://pi.hole"
    assert pihole.password_file == "pihole.secret" and pihole.password_file_line == 4
    assert pihole.tls_fingerprint is not None and pihole.tls_fingerprint[:2] == b"\xab\xcd"
    assert pihole.clients == ("192.168.1.23", "aa:bb:cc:dd:ee:ff")
    assert dnsmasq.conf_dir == "/etc/dnsmasq.d" and dnsmasq.service == "dnsmasq.service"
    assert unbound.conf_dir == "/etc/unbound/unbound.conf.d"
    assert unbound.control_config == "/etc/unbound/unbound.conf"


def test_no_network_section_means_no_engines() -> None:
    main, _ = parse_main("detox: {days: 14}\n")
    assert main is not None and main.network == ()


def test_every_error_named_by_line_and_key() -> None:
    text = (
        "network:\n"
        "  - engine: pihole\n"                                # 2: missing password_file
        "    url: ftp://pi.hole\n"                            # 3
        "  - engine: adguardhome\n"
        "    url: https://admin:hunter2@agh.lan\n"            # 5: credentials in the URL
        "    password_file: /etc/shadow\n"                    # 6
        "    clients: [10.0.0.300, 'aa:bb:cc:dd:ee:ff']\n"    # 7
        "  - engine: dnsmasq\n"
        "    url: http://x\n"                                 # 9: not a dnsmasq key
        "    service: 'dnsmasq; rm -rf /'\n"                  # 10
        "  - engine: bind\n"                                  # 11
        "  - engine: unbound\n"
        "    conf_dir: relative/dir\n"                        # 13
        "    tls_fingerprint: sha256:00\n"                    # 14
    )
    _, source = parse_main(text)
    found = errors(source)
    assert "detoxd.yaml:2: network[0]: engine pihole needs password_file" in found
    assert has(found, "detoxd.yaml:3: network[0].url: expected an http:// or https://")
    assert "detoxd.yaml:5: network[1].url: must not contain a user or password (use password_file)" in found
    assert all("hunter2" not in e for e in found)
    assert has(found, "detoxd.yaml:6: network[1].password_file: expected a file name relative")
    assert has(found, "detoxd.yaml:7: network[1].clients[0]: '10.0.0.300' is not an IP")
    assert has(found, "detoxd.yaml:7: network[1].clients[1]: AdGuard Home rules match IP")
    assert has(found, "detoxd.yaml:9: network[2].url: not used by engine dnsmasq")
    assert has(found, "detoxd.yaml:10: network[2].service: expected a systemd service")
    assert has(found, "detoxd.yaml:11: network[3].engine: unknown engine 'bind'")
    assert has(found, "detoxd.yaml:13: network[4].conf_dir: expected an absolute path")
    assert has(found, "detoxd.yaml:14: network[4].tls_fingerprint: not used by engine unbound")


def test_fingerprint_pin_needs_https_and_32_bytes() -> None:
    _, source = parse_main("network:\n  - engine: pihole\n    url: http://pi.hole\n"
                           "    password_file: s\n    tls_fingerprint: 'sha256:AB:CD'\n")
    assert any("network[0].tls_fingerprint: expected a SHA-256 fingerprint" in e for e in errors(source))
    pin = ":".join(["ab"] * 32)
    _, source = parse_main(f"network:\n  - engine: pihole\n    url: http://pi.hole\n"
                           f"    password_file: s\n    tls_fingerprint: '{pin}'\n")
    assert any("a certificate pin needs an https:// url" in e for e in errors(source))


def test_the_same_engine_twice_is_an_error() -> None:
    _, source = parse_main("network:\n  - engine: dnsmasq\n"
                           "  - engine: dnsmasq\n    conf_dir: /etc/dnsmasq.d/\n")
    assert errors(source) == ["detoxd.yaml:3: network[1]: the same engine is already listed as network[0]"]


def test_clients_normalised() -> None:
    main, source = parse_main("network:\n  - engine: pihole\n    url: https://pi.hole/\n"
                              "    password_file: s\n"
                              "    clients: ['AA-BB-CC-DD-EE-FF', 192.168.1.7/24, '2001:DB8::1']\n")
    assert errors(source) == []
    assert main is not None
    assert main.network[0].clients == ("aa:bb:cc:dd:ee:ff", "192.168.1.0/24", "2001:db8::1")
    assert main.network[0].url == "https://pi.hole"


def test_engine_json_round_trip() -> None:
    main, _ = parse_main(ISSUE_EXAMPLE)
    assert main is not None
    for engine in main.network:
        back = engine_from_json(engine_to_json(engine))
        assert back.key == engine.key and back.clients == engine.clients
        assert back.tls_fingerprint == engine.tls_fingerprint


def test_engine_names_add_the_canary() -> None:
    assert engine_names(["b.com", "a.com"]) == ("a.com", "b.com", CANARY)


def test_exceptions_only_under_blocked_names() -> None:
    allowed = exceptions(["facebook.com"], ["business.facebook.com", "example.org"])
    assert allowed == ("business.facebook.com",)
    assert exceptions(["a.b.c.com"], ["b.c.com"]) == ()


def test_dnsmasq_file() -> None:
    text = render_dnsmasq(["x.com", CANARY], ["ok.x.com"])
    lines = text.splitlines()
    assert "address=/x.com/#" in lines
    assert f"address=/{CANARY}/" in lines  # NXDOMAIN for the canary
    assert "server=/ok.x.com/#" in lines
    assert lines[0].startswith("# detoxd")


def test_unbound_zones_and_include() -> None:
    zones = unbound_zones(["x.com", CANARY], ["ok.x.com"])
    assert zones == {"x.com": "always_null", CANARY: "always_nxdomain", "ok.x.com": "transparent"}
    include = render_unbound(zones)
    assert 'local-zone: "x.com." always_null' in include and "server:" in include
    listed = parse_unbound_local_zones('x.com. always_null\nlocalhost. redirect\n"junk"\n')
    assert listed == {"x.com": "always_null", "localhost": "redirect"}
    add, remove = zone_changes({"x.com": "always_null"}, {"old.com": "always_null", "mine.com": "static"},
                               ["old.com"])
    assert add == {"x.com": "always_null"} and remove == ("old.com",)


def test_adguard_rules_are_bracketed_and_client_scoped() -> None:
    rules = adguard_rules(["x.com", CANARY], ["ok.x.com"], ["192.168.1.23", "10.0.0.0/24"])
    assert rules[0] == ADGUARD_BEGIN and rules[-1] == ADGUARD_END
    assert "||x.com^$client=192.168.1.23|10.0.0.0/24" in rules
    assert f"||{CANARY}^$client=192.168.1.23|10.0.0.0/24,dnsrewrite=NXDOMAIN" in rules
    assert "@@||ok.x.com^$client=192.168.1.23|10.0.0.0/24" in rules
    assert adguard_rules(["x.com"], [], [])[1] == "||x.com^"


def test_adguard_merge_keeps_the_users_rules() -> None:
    ours = adguard_rules(["x.com"], [], [])
    users = ["||ads.example^", "# my comment", "@@||bank.example^"]
    merged = adguard_merged(users, ours)
    assert merged == users + ours
    assert adguard_merged(merged, ours) == merged  # idempotent
    assert adguard_block(merged) == ours
    assert adguard_without_block(merged) == users
    half_deleted = [*users[:1], ADGUARD_BEGIN, "||x.com^", *users[1:]]  # end marker deleted
    assert adguard_without_block(half_deleted) == users[:1]


def test_pihole_plan_touches_only_its_own_entries() -> None:
    present = [
        PiholeEntry("a.com", MARKER_COMMENT, (5,), True),        # ours, fine
        PiholeEntry("b.com", MARKER_COMMENT, (5,), False),       # ours, disabled by someone
        PiholeEntry("c.com", "my own", (0,), True),              # the user's
        PiholeEntry("old.com", MARKER_COMMENT, (5,), True),      # ours, no longer wanted
        PiholeEntry("user-old.com", "mine", (0,), True),         # the user's, never touched
    ]
    plan = pihole_plan(present, ["a.com", "b.com", "c.com", "d.com"], group=5)
    assert plan.add == ("d.com",)
    assert plan.repair == ("b.com",)
    assert plan.delete == ("old.com",)
    assert plan.foreign == ("c.com",)
    regrouped = pihole_plan([PiholeEntry("a.com", MARKER_COMMENT, (0,), True)], ["a.com"], group=5)
    assert regrouped.repair == ("a.com",)


def test_core_stays_pure() -> None:
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(network))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert not imported & {"os", "socket", "subprocess", "threading", "time", "select"}


def engines(text: str) -> tuple[tuple[network.DnsEngineConfig, ...], list[str]]:
    main, source = parse_main(text)
    return (main.network if main is not None else ()), errors(source)


def test_every_error_says_exactly_what_is_wrong() -> None:
    text = (
        "network:\n"
        "  - url: https://pi.hole\n"                          # 2: no engine
        "  - engine: bind\n"                                  # 3
        "  - engine: pihole\n"                                # 4
        "    url: 'https://pi.hole:99999'\n"                  # 5: no such port
        "    password_file: a//b\n"                           # 6
        "    conf_dir: /etc/x\n"                              # 7
        "  - engine: adguardhome\n"                           # 8
        "    url: https://agh.lan/?q=1\n"                     # 9
        "    password_file: ../secret\n"                      # 10
        "  - engine: dnsmasq\n"                               # 11
        "    conf_dir: /etc/../dnsmasq.d\n"                   # 12
        "    service: -dnsmasq.service\n"                     # 13
        "  - engine: unbound\n"                               # 14
        "    control_config: 'relative.conf'\n"               # 15
        "  - engine: adguardhome\n"                           # 16
        "    url: https://\n"                                 # 17: no host
        "    password_file: ''\n"                             # 18
    )
    _, listed = engines(text)
    assert listed == [
        "detoxd.yaml:2: network[0]: needs engine: one of pihole, adguardhome, dnsmasq, unbound",
        "detoxd.yaml:3: network[1].engine: unknown engine 'bind' "
        "(expected one of: pihole, adguardhome, dnsmasq, unbound)",
        "detoxd.yaml:5: network[2].url: not a valid URL",
        "detoxd.yaml:6: network[2].password_file: expected a file name relative to the config directory",
        "detoxd.yaml:7: network[2].conf_dir: not used by engine pihole "
        "(it takes: clients, password_file, tls_fingerprint, url)",
        "detoxd.yaml:9: network[3].url: must not have a query or fragment",
        "detoxd.yaml:10: network[3].password_file: expected a file name relative to the config directory",
        "detoxd.yaml:12: network[4].conf_dir: expected an absolute path",
        "detoxd.yaml:13: network[4].service: expected a systemd service name such as dnsmasq.service, "
        "got '-dnsmasq.service'",
        "detoxd.yaml:15: network[5].control_config: expected an absolute path",
        "detoxd.yaml:17: network[6].url: expected an http:// or https:// address, got 'https://'",
        "detoxd.yaml:18: network[6].password_file: expected a file name relative to the config directory",
    ]


def test_addresses_and_paths_are_kept_in_one_canonical_form() -> None:
    found, listed = engines(
        "network:\n"
        "  - engine: pihole\n    url: ' HTTPS://Pi.Hole:8443/admin/ '\n    password_file: dir/pihole.secret\n"
        "  - engine: adguardhome\n    url: 'http://[FD00::1]/'\n    password_file: agh\n"
        "    clients: [10.0.0.1, 10.0.0.1, 10.0.0.0/8]\n"
        "  - engine: dnsmasq\n    conf_dir: /etc/dnsmasq.d///\n    service: dnsmasq@lan.service\n"
        "  - engine: unbound\n    conf_dir: /\n    control_config: /etc/unbound/other.conf\n")
    assert listed == []
    pihole, adguard, dnsmasq, unbound = found
    assert (pihole.url, pihole.password_file, pihole.password_file_line) == (
        "https://pi.hole:8443/admin", "dir/pihole.secret", 4)
    assert (pihole.index, pihole.line, pihole.clients, pihole.key) == (
        0, 2, (), "pihole https://pi.hole:8443/admin")
    assert adguard.url == "http://[fd00::1]" and adguard.clients == ("10.0.0.1", "10.0.0.0/8")
    assert (adguard.index, adguard.line, adguard.location) == (1, 5, "network[1]")
    assert (dnsmasq.conf_dir, dnsmasq.service, dnsmasq.control_config) == (
        "/etc/dnsmasq.d", "dnsmasq@lan.service", None)
    assert (unbound.conf_dir, unbound.control_config, unbound.service) == (
        "/", "/etc/unbound/other.conf", None)
    assert (dnsmasq.password_file_line, dnsmasq.url, dnsmasq.key) == (0, None, "dnsmasq /etc/dnsmasq.d")


def test_at_most_the_allowed_number_of_clients() -> None:
    many = ", ".join(f"10.0.{n // 256}.{n % 256}" for n in range(network.MAX_CLIENTS + 1))
    found, listed = engines(f"network:\n  - engine: pihole\n    url: http://pi.hole\n    password_file: s\n"
                            f"    clients: [{many}]\n")
    assert listed == [f"detoxd.yaml:5: network[0].clients: at most {network.MAX_CLIENTS} clients"]
    most = ", ".join(f"10.0.{n // 256}.{n % 256}" for n in range(network.MAX_CLIENTS))
    found, listed = engines(f"network:\n  - engine: pihole\n    url: http://pi.hole\n    password_file: s\n"
                            f"    clients: [{most}]\n")
    assert listed == [] and len(found[0].clients) == network.MAX_CLIENTS


def test_the_json_the_agent_gets_is_the_engine_exactly() -> None:
    main, _ = parse_main(ISSUE_EXAMPLE)
    assert main is not None
    pihole = main.network[0]
    data = engine_to_json(pihole)
    assert data == {
        "engine": "pihole", "index": 0, "line": 2, "url": "https://pi.hole", "password_file": "pihole.secret",
        "tls_fingerprint": "abcdef0123456789" * 4, "clients": ["192.168.1.23", "aa:bb:cc:dd:ee:ff"],
        "conf_dir": None, "service": None, "control_config": None}
    # Everything but the line of password_file (the agent reads the file, it never reports it).
    assert engine_from_json(data) == replace(pihole, password_file_line=0)
    for engine in main.network[1:]:
        assert engine_from_json(engine_to_json(engine)) == engine
    assert engine_from_json({"engine": "dnsmasq"}) == network.DnsEngineConfig("dnsmasq", 0, 0)


def test_json_that_is_not_an_engine_is_refused() -> None:
    for data, error, message in [
        ({"engine": "bind"}, ValueError, "unknown engine 'bind'"),
        ({"engine": "pihole", "url": 5}, TypeError, "url must be text"),
        ({"engine": "pihole", "clients": "10.0.0.1"}, TypeError, "clients must be a list of text"),
        ({"engine": "pihole", "clients": ["10.0.0.1", 7]}, TypeError, "clients must be a list of text"),
        ({"engine": "pihole", "index": "0"}, TypeError, "index and line must be numbers"),
        ({"engine": "pihole", "line": None}, TypeError, "index and line must be numbers"),
    ]:
        with pytest.raises(error) as raised:
            engine_from_json(data)
        assert str(raised.value) == message
    with pytest.raises(KeyError):
        engine_from_json({})


def test_the_unbound_include_file_reads_back_as_the_zones_it_was_rendered_from() -> None:
    zones = unbound_zones(("a.example", CANARY), ("ok.a.example",))
    assert unbound_include_zones(render_unbound(zones)) == zones
    assert unbound_include_zones(None) == {}
    assert unbound_include_zones('server:\n    local-zone: "x.example." static\n') == {"x.example": "static"}
