"""The one renderer of the status: every sentence, singular or plural as the count is."""

from __future__ import annotations

from typing import Any

import pytest

from detoxd.core import statustext
from detoxd.core.statustext import format_status, status_lines
from detoxd.protocol import AllowanceStatus, EngineRow, Status

BASE: dict[str, Any] = {"state": "active", "locked": True, "ends_at": "2026-12-09T08:00:00+00:00",
                        "domains_blocked": 4, "hosts_file": "/etc/hosts", "hosts_in_sync": True,
                        "days_left": 3, "seconds_left": 3 * 86_400}


def status(**fields: Any) -> Status:
    return Status.from_json({**BASE, **fields})


@pytest.mark.parametrize(("number", "expected"), [(0, "0 names"), (1, "1 name"), (2, "2 names"),
                                                  (None, "? names")])
def test_count_says_one_or_many(number: int | None, expected: str) -> None:
    assert statustext.count(number, "name") == expected


def test_every_counted_sentence_of_status_is_singular_for_one() -> None:
    one = format_status(status(domains_blocked=1, tamper_events=1, allowances=[
        {"name": "twitter", "open": False, "minutes_left_today": 14, "opens_left_today": 1}]))
    assert "1 name blocked in /etc/hosts (in sync)" in one
    assert "Tampering undone: once" in one
    assert "Allowance twitter: 14 min left today, 1 open left" in one
    assert "(s)" not in one and "1 names" not in one and "1 times" not in one
    many = format_status(status(domains_blocked=2, tamper_events=2, allowances=[
        {"name": "twitter", "open": False, "minutes_left_today": 14, "opens_left_today": 2}]))
    assert "2 names blocked" in many and "Tampering undone: 2 times" in many and "2 opens left" in many


def test_time_left_in_days_then_hours_and_minutes() -> None:
    assert "14 days left" in format_status(status(days_left=14, seconds_left=14 * 86_400 - 5))
    assert "1 day left" in format_status(status(days_left=1, seconds_left=86_400))
    assert "2 h 5 min left" in format_status(status(days_left=1, seconds_left=7500))
    assert "3 min left" in format_status(status(days_left=1, seconds_left=180))


def test_a_config_warning_says_warning_once() -> None:
    text = format_status(status(warnings=[
        "/etc/detoxd/blocklist.yaml:7: allowances[1]: warning: new allowance 'x' refused",
        "warning: sessions: no peers", "the disk is full"]))
    assert "Warning: /etc/detoxd/blocklist.yaml:7: allowances[1]: new allowance 'x' refused" in text
    assert "Warning: sessions: no peers" in text and "Warning: the disk is full" in text
    assert text.lower().count("warning") == 3


def test_one_engine_row_in_the_same_words_everywhere() -> None:
    row = EngineRow(engine="pihole", url="https://pi.hole:8443/admin", state="unreachable", names=146,
                    last_ok="2026-12-01T09:00:00+00:00", error="connection refused")
    assert statustext.engine_line(row) == ("Pi-hole (pi.hole): unreachable, retrying, 146 names "
                                           "(last ok 2026-12-01T09:00:00+00:00): connection refused")
    assert statustext.engine_line(row, details=False) == "Pi-hole (pi.hole): unreachable, retrying"
    assert statustext.engine_line(EngineRow(engine="unbound", state="in_sync", names=1)) == (
        "Unbound: holds the detox, 1 name")
    assert f"Engine {statustext.engine_line(row)}" in status_lines(status(network=[row.to_json()]))


def test_engine_labels_name_the_host_or_the_directory() -> None:
    pihole = EngineRow(engine="pihole", url="https://pi.hole:8443/x")
    assert statustext.engine_label(pihole) == "Pi-hole (pi.hole)"
    assert statustext.engine_label(EngineRow(engine="dnsmasq", conf_dir="/etc/dnsmasq.d")) == (
        "dnsmasq (/etc/dnsmasq.d)")
    assert statustext.engine_label(EngineRow(engine="bind9")) == "bind9"


def test_allowance_line_with_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    line = statustext.allowance_line(AllowanceStatus(
        name="twitter", open=True, open_until="2026-12-01T12:50:00+00:00", minutes_left_today=14,
        opens_left_today=0, next_window="2026-12-05T10:00:00+00:00"))
    assert line == ("Allowance twitter: open until Tue 12:50, 14 min left today, 0 opens left, "
                    "next window Sat 10:00")


def test_the_apps_line_says_how_apps_are_found() -> None:
    closed = {"state": "active", "apps_closed": {"slack": 2}}
    assert "Apps closed: slack (2) (at exec)" in status_lines(status(**closed, apps_watch="exec_events"))
    polling = status_lines(status(**closed, apps_watch="polling"))
    assert "Apps closed: slack (2) (by polling /proc: no exec events from detoxd-execwatch)" in polling


def test_a_planned_detox_says_when_it_begins_and_whether_it_can_be_cancelled() -> None:
    from detoxd.core.statustext import planned_lines, status_lines

    status = Status(state="scheduled", starts_at="2026-12-14T09:00:00+00:00", days_total=14.0,
                    cancellable=True, cancellable_until="2026-12-13T09:00:00+00:00")
    assert status_lines(status)[:2] == [
        "Detox planned of 14 days: begins 2026-12-14T09:00:00+00:00",
        "It can be cancelled until 2026-12-13T09:00:00+00:00 (`detoxd cancel`), then it is locked."]
    assert planned_lines(status.replace(cancellable=False))[1].startswith("It is locked")
    assert "until it begins" in planned_lines(status.replace(cancellable_until=None))[1]


def test_status_prints_each_window_and_what_is_held() -> None:
    entry = {"name": "workdays", "days": ["mon", "fri"], "window": "09:00-17:30", "blocks": "blocklist",
             "lock": True, "active": True, "next_change": "2026-06-01T15:30:00+00:00",
             "after_detox": False, "waiting_for_detox_end": False,
             "pending": {"edit": "shorter", "takes_effect": "2026-06-02T15:30:00+00:00"}}
    lines = status_lines(Status.from_json({"schedule": [entry]}))
    [line] = [text for text in lines if text.startswith("Schedule ")]
    assert line.startswith("Schedule workdays (mon,fri 09:00-17:30): Blocked until ")
    assert line.endswith("; held edit (shorter) takes effect 2026-06-02T15:30:00+00:00")


def test_mail_lines_say_what_waits_and_what_was_sent_to_whom() -> None:
    status = Status.from_json({"hosts_file": "/etc/hosts", "mail": {
        "server": "smtp.example.com:587", "pending_count": 1,
        "pending": [{"to": "grace@example.com", "kind": "informed",
                     "queued_at": "2026-03-02T10:00:00+00:00"}],
        "sent": [{"to": "ada@example.com", "kind": "invitation", "sent_at": "2026-03-02T09:00:00+00:00"}],
        "last_try": "2026-03-02T10:01:00+00:00", "error": None, "fix": None}})
    sent_at = statustext.clock_time("2026-03-02T09:00:00+00:00")
    lines = statustext.mail_lines(status)
    assert lines == [
        f"Mail to peers via smtp.example.com:587: 1 message waiting "
        f"(last try {statustext.clock_time('2026-03-02T10:01:00+00:00')})",
        f"Mail sent: invitation to ada@example.com at {sent_at}"]
    assert set(lines) <= set(status_lines(status))
    assert statustext.mail_lines(Status.from_json({})) == []


def test_a_mail_problem_does_not_count_as_a_risk_to_the_block() -> None:
    status = Status.from_json({"problems": ["mail: smtp.example.com:587: connection refused; fix: …",
                                            "/: no space left on device"]})
    assert statustext.enforcement_problems(status) == ["/: no space left on device"]


def test_status_lists_the_blocked_paths_and_says_nothing_without_them() -> None:
    status = Status(state="active", paths_blocked=("linkedin.com/feed", "youtube.com/shorts"))
    assert "Paths blocked in the browsers: linkedin.com/feed, youtube.com/shorts" in status_lines(status)
    assert not any("Paths" in line for line in status_lines(Status(state="active")))
