"""The AdGuard Home target against the stand-in API (see standins.py: written from AdGuard Home's
openapi/openapi.yaml, API version 0.107 / v0.107.79, since AdGuard Home cannot be installed here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detoxd.core.network import ADGUARD_BEGIN, ADGUARD_END, CANARY, DnsEngineConfig, engine_names, exceptions
from detoxd.netagent.adguardhome import QUERY_PAGE, AdGuardHomeEngine
from detoxd.netagent.engines import DnsEngineError

from .standins import StandIn, adguard_standin, der_fingerprint, self_signed_certificate

SECRET = "admin:s3cret"
BLOCK = ("facebook.com", "twitter.com")
USER_RULES = ["||ads.example^", "! my own comment", "@@||bank.example^"]


@pytest.fixture
def agh() -> Iterator[StandIn]:
    with adguard_standin() as standin:
        standin.state.user_rules = list(USER_RULES)
        yield standin


def config(url: str, clients: tuple[str, ...] = (), pin: bytes | None = None) -> DnsEngineConfig:
    return DnsEngineConfig("adguardhome", 1, 5, url=url, password_file="agh.secret", tls_fingerprint=pin,
                        clients=clients)


def apply(target: AdGuardHomeEngine) -> None:
    target.apply(engine_names(BLOCK), exceptions(BLOCK, ["business.facebook.com"]))


def test_rules_between_markers_keep_the_users_rules(agh: StandIn) -> None:
    target = AdGuardHomeEngine(config(agh.url, clients=("192.168.1.23",)), SECRET)
    apply(target)
    rules = agh.state.user_rules
    assert rules[:3] == USER_RULES
    assert rules[3] == ADGUARD_BEGIN and rules[-1] == ADGUARD_END
    assert "||twitter.com^$client=192.168.1.23" in rules
    assert f"||{CANARY}^$client=192.168.1.23,dnsrewrite=NXDOMAIN" in rules
    assert "@@||business.facebook.com^$client=192.168.1.23" in rules
    calls = agh.state.set_rules_calls
    apply(AdGuardHomeEngine(config(agh.url, clients=("192.168.1.23",)), SECRET))  # after a restart
    assert agh.state.set_rules_calls == calls  # already right: not written again
    assert agh.state.user_rules == rules


def test_tampering_is_undone_and_the_users_edits_survive(agh: StandIn) -> None:
    target = AdGuardHomeEngine(config(agh.url), SECRET)
    apply(target)
    state = agh.state
    state.user_rules = [r for r in state.user_rules if r != "||twitter.com^"] + ["||new-user-rule.example^"]
    state.protection_enabled = False
    state.filtering_enabled = False
    drift = target.check()
    assert len(drift) == 3, drift
    assert "||twitter.com^" in state.user_rules and "||new-user-rule.example^" in state.user_rules
    assert state.protection_enabled and state.filtering_enabled
    assert target.check() == []


def test_end_removes_only_detoxds_rules(agh: StandIn) -> None:
    apply(AdGuardHomeEngine(config(agh.url), SECRET))
    agh.state.user_rules.append("||added-during-detox.example^")
    AdGuardHomeEngine(config(agh.url), SECRET).remove()  # a fresh agent: the markers say what is ours
    assert agh.state.user_rules == [*USER_RULES, "||added-during-detox.example^"]


def test_wrong_credentials_and_a_bad_secret_file(agh: StandIn) -> None:
    with pytest.raises(DnsEngineError) as caught:
        apply(AdGuardHomeEngine(config(agh.url), "admin:wrong"))
    assert caught.value.state == "auth_failed" and "wrong" not in str(caught.value)
    with pytest.raises(DnsEngineError) as caught:
        AdGuardHomeEngine(config(agh.url), "just-a-password")
    assert "name:password" in str(caught.value) and "just-a-password" not in str(caught.value)
    assert agh.state.user_rules == USER_RULES


def test_self_signed_certificate_with_and_without_pin(tmp_path: Path) -> None:
    key, cert = self_signed_certificate(tmp_path, "agh.lan")
    with adguard_standin((key, cert)) as agh:
        with pytest.raises(DnsEngineError) as caught:
            apply(AdGuardHomeEngine(config(agh.url), SECRET))
        assert caught.value.state == "tls_error" and agh.requests == []
        apply(AdGuardHomeEngine(config(agh.url, pin=der_fingerprint(cert)), SECRET))
        assert "||twitter.com^" in agh.state.user_rules


def test_the_query_log_is_read_back_to_the_window_blocked_lookups_only(agh: StandIn) -> None:
    """openapi.yaml /querylog: response_status=blocked, pages of ``limit`` ``older_than`` the last
    ``oldest``, newest first; only user-rule blocks (FilteredBlackList) are kept."""
    target = AdGuardHomeEngine(config(agh.url), SECRET)
    since = datetime(2026, 3, 2, tzinfo=UTC)
    agh.state.log_query(since - timedelta(minutes=1), "192.168.1.23", "twitter.com", "FilteredBlackList")
    for i in range(QUERY_PAGE + 5):
        agh.state.log_query(since + timedelta(seconds=i), "192.168.1.23", "m.twitter.com",
                            "FilteredBlackList")
    agh.state.log_query(since + timedelta(hours=2), "192.168.1.40", "bad.example", "FilteredSafeBrowsing")
    agh.state.log_query(since + timedelta(hours=2), "192.168.1.40", "news.example")
    found = target.read_query_log(since, since + timedelta(hours=3))
    assert found is not None and len(found) == QUERY_PAGE + 5
    assert {(f.device, f.name) for f in found} == {("192.168.1.23", "m.twitter.com")}
    assert min(f.at for f in found) == since
    log_calls = [path for _, path, _, _ in agh.requests if path.startswith("/control/querylog?")]
    assert len(log_calls) == 2 and "older_than=" in log_calls[1]
    agh.state.querylog_enabled = False
    assert target.read_query_log(since, since + timedelta(hours=3)) is None
    agh.state.querylog_endpoint = False
    assert target.read_query_log(since, since + timedelta(hours=3)) is None


def test_the_query_log_is_not_read_past_the_window(agh: StandIn) -> None:
    target = AdGuardHomeEngine(config(agh.url), SECRET)
    since = datetime(2026, 3, 2, tzinfo=UTC)
    for i in range(QUERY_PAGE + 500):  # yesterday's, already counted
        agh.state.log_query(since - timedelta(seconds=5000 - i), "192.168.1.23", "twitter.com",
                            "FilteredBlackList")
    for i in range(10):
        agh.state.log_query(since + timedelta(seconds=i), "192.168.1.23", "twitter.com", "FilteredBlackList")
    found = target.read_query_log(since, since + timedelta(hours=1))
    assert found is not None and len(found) == 10
    assert len([path for _, path, _, _ in agh.requests if path.startswith("/control/querylog?")]) == 1
