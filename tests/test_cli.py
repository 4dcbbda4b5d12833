from detoxd.cli import format_status

BASE = {"state": "active", "locked": True, "ends_at": "2026-12-09T08:00:00+00:00", "domains_blocked": 4,
        "hosts_file": "/etc/hosts", "hosts_in_sync": True, "tamper_events": 0, "config_error": None}


def test_time_left_in_days_then_hours_and_minutes() -> None:
    assert "14 days left" in format_status({**BASE, "days_left": 14, "seconds_left": 14 * 86_400 - 5})
    assert "1 day left" in format_status({**BASE, "days_left": 1, "seconds_left": 86_400})
    assert "2 h 5 min left" in format_status({**BASE, "days_left": 1, "seconds_left": 7500})
    assert "3 min left" in format_status({**BASE, "days_left": 1, "seconds_left": 180})


def test_config_error_and_tampering_are_shown() -> None:
    text = format_status({**BASE, "days_left": 3, "seconds_left": 3 * 86_400, "tamper_events": 2,
                          "config_error": "blocklist.yaml:3: domains[1]: bad"})
    assert "Tampering undone: 2 times" in text
    assert "  blocklist.yaml:3: domains[1]: bad" in text


def test_warnings_are_shown() -> None:
    text = format_status({**BASE, "days_left": 3, "seconds_left": 3 * 86_400,
                          "warnings": ["blocklist.yaml: 150000 names blocked: past 100000 ..."]})
    assert "Warning: blocklist.yaml: 150000 names blocked" in text
