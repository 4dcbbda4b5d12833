"""The local engines' one file, written through detoxd.durable (real files; the restart of
dnsmasq is recorded: tests/integration/test_network_local.py runs the real engines)."""

from __future__ import annotations

from pathlib import Path

from detoxd.core.network import OWN_FILE, DnsEngineConfig, render_dnsmasq
from detoxd.durable import TEMP_SUFFIX
from detoxd.netagent.dnsmasq import DnsmasqEngine


def test_dnsmasq_file_is_replaced_whole_with_its_mode_and_a_crash_leftover_goes(tmp_path: Path) -> None:
    leftover = tmp_path / f".{OWN_FILE}.k3j2{TEMP_SUFFIX}"  # a crash between write and rename
    leftover.write_text("address=/half/#\n")
    someone_elses = tmp_path / ".other.conf.x1.tmp"
    someone_elses.write_text("")
    restarts: list[str] = []
    config = DnsEngineConfig("dnsmasq", 0, 1, conf_dir=str(tmp_path), service="dnsmasq.service")
    engine = DnsmasqEngine(config, restart=lambda: restarts.append("restart"))
    engine.apply(("example.com", "use-application-dns.net"), ())
    path = tmp_path / OWN_FILE
    assert path.read_text() == render_dnsmasq(("example.com", "use-application-dns.net"), ())
    assert path.stat().st_mode & 0o777 == 0o644
    assert not leftover.exists() and someone_elses.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.conf.x1.tmp", OWN_FILE]
    assert restarts == ["restart"]
    engine.apply(("example.com", "use-application-dns.net"), ())  # unchanged: no write, no restart
    assert restarts == ["restart"]
    path.write_text("# edited\n")
    assert engine.check() == [f"{path} edited: rewritten, dnsmasq restarted"]
    engine.remove()
    assert not path.exists() and restarts == ["restart"] * 3
