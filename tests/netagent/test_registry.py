"""The DNS engines' registry: every kind the config accepts has its class, any other is refused."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest

from detoxd.core import dnsengines
from detoxd.core.config import parse_main
from detoxd.core.network import DnsEngineConfig, engine_from_json, engine_to_json
from detoxd.netagent.agent import DnsEngineRun, NetAgent, describe_engines
from detoxd.netagent.engines import DnsEngine, UnknownDnsEngine, engine_class, make_engine


def entry(kind: str) -> str:
    """The smallest ``network:`` entry of a kind: its required keys, with values it accepts."""
    values = {"url": "https://dns.example", "password_file": "engine.secret"}
    spec = dnsengines.BY_KIND[kind]
    return f"  - engine: {kind}\n" + "".join(f"    {key}: {values[key]}\n" for key in spec.required)


@pytest.mark.parametrize("kind", dnsengines.KINDS)
def test_every_kind_the_config_accepts_has_its_own_class(kind: str) -> None:
    main, source = parse_main("network:\n" + entry(kind))
    assert not source.errors, source.errors
    assert main is not None
    (config,) = main.network
    cls = engine_class(config.engine)
    assert issubclass(cls, DnsEngine) and not inspect.isabstract(cls)
    assert cls.spec is dnsengines.BY_KIND[kind]
    assert cls.__module__ == f"detoxd.netagent.{kind}"
    assert cls.spec.remote == (cls.spec.kind in dnsengines.REMOTE_KINDS)
    # What the daemon sends the agent names the same engine (the line of the secret stays behind).
    assert engine_from_json(engine_to_json(config)) == replace(config, password_file_line=0)


def test_no_two_kinds_share_a_class_and_each_key_is_a_known_one() -> None:
    classes = {engine_class(kind) for kind in dnsengines.KINDS}
    assert len(classes) == len(dnsengines.KINDS)
    fields = set(DnsEngineConfig.__dataclass_fields__)
    for spec in dnsengines.DNS_ENGINES:
        assert set(spec.keys) <= fields, spec
        assert set(spec.required) <= set(spec.keys) and set(spec.defaults) <= set(spec.keys), spec


def test_an_unknown_kind_is_refused_by_the_config_and_the_registry() -> None:
    _, source = parse_main("network:\n  - engine: bind9\n")
    assert any("unknown engine 'bind9'" in str(issue) for issue in source.errors)
    with pytest.raises(UnknownDnsEngine, match=r"unknown DNS engine 'bind9' \(detoxd drives: pihole, "):
        engine_class("bind9")
    with pytest.raises(UnknownDnsEngine):
        make_engine(DnsEngineConfig("bind9", 0, 1, conf_dir="/nonexistent"), None)


def test_the_agent_reports_an_unknown_kind_as_an_error_and_drives_nothing(tmp_path: Path) -> None:
    """Once treated as Unbound; now the engine's state is an error naming the kind."""
    agent = NetAgent(client=None, config_dir=tmp_path)  # type: ignore[arg-type]
    agent.active, agent.names = True, ("example.com",)
    run = DnsEngineRun(DnsEngineConfig("bind9", 0, 1, conf_dir=str(tmp_path)))
    agent.step(run, now=0.0)
    assert run.state == "error" and run.target is None
    assert run.error is not None and "unknown DNS engine 'bind9'" in run.error
    assert list(tmp_path.iterdir()) == []  # no detoxd.conf written as if it were Unbound's


def test_check_names_the_problem_and_its_fix_for_a_local_engine(tmp_path: Path) -> None:
    missing = tmp_path / "dnsmasq.d"
    config = DnsEngineConfig("dnsmasq", 0, 1, conf_dir=str(missing), service="dnsmasq.service")
    ((ok, line),) = describe_engines((config,), tmp_path)
    assert not ok
    assert f"{missing} does not exist" in line and "fix: apt-get install dnsmasq" in line
    missing.mkdir()
    ((ok, line),) = describe_engines((config,), tmp_path)
    assert ok, line


def test_the_agent_kinds_follow_the_engine_list() -> None:
    # `detoxd netagent --engines` and the units (debian/detoxd.detoxd-network*.service) name these
    assert dnsengines.AGENT_KINDS == ("remote", "local", "dnsmasq", "unbound", "all")
    for spec in dnsengines.DNS_ENGINES:
        assert dnsengines.serves("all", spec.kind)
        assert dnsengines.serves("remote" if spec.remote else "local", spec.kind)
        assert not dnsengines.serves("local" if spec.remote else "remote", spec.kind)
        assert dnsengines.agent_unit(spec.kind) == ("detoxd-network" if spec.remote
                                                     else f"detoxd-network-{spec.kind}")


def test_the_cli_offers_the_agent_kinds_of_the_table() -> None:
    """The parser keeps its own copy (`detoxd status` starts without importing detoxd.core):
    this holds the two together."""
    from detoxd.cli import build_parser

    parser = build_parser()
    netagent = next(action for action in parser._subparsers._group_actions[0].choices["netagent"]._actions
                    if "--engines" in action.option_strings)
    assert tuple(netagent.choices or ()) == dnsengines.AGENT_KINDS
    assert netagent.help == dnsengines.agent_kinds_help()


def test_check_names_unbound_config_it_cannot_read(tmp_path: Path) -> None:
    config = DnsEngineConfig("unbound", 0, 1, conf_dir=str(tmp_path),
                             control_config=str(tmp_path / "missing.conf"))
    ((ok, line),) = describe_engines((config,), tmp_path)
    assert not ok
    assert f"{tmp_path / 'missing.conf'} cannot be read" in line and "fix: set control_config:" in line
