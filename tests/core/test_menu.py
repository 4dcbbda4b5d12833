"""Status → title and menu lines: pure, so every wording and rule is checked here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from detoxd.core.menu import (
    SEPARATOR,
    SILENCE_SECONDS,
    Action,
    MenuEntry,
    Notice,
    TrayView,
    day_of,
    entries,
    format_duration,
    format_moment,
    status_lines,
    title,
    unheard,
)
from detoxd.protocol import Status

NOW = datetime(2025, 11, 27, 10, 0, tzinfo=UTC)
ACTIVE: dict[str, Any] = {
    "state": "active", "locked": True,
    "started_at": "2025-11-25T08:00:00+00:00", "ends_at": "2025-12-09T08:00:00+00:00",
    "days_left": 12, "seconds_left": 12 * 86400, "domains_blocked": 57,
    "hosts_file": "/etc/hosts", "hosts_in_sync": True, "tamper_events": 0, "clock_jumps": 0,
    "config_error": None, "warnings": [],
}
IDLE: dict[str, Any] = {**ACTIVE, "state": "idle", "locked": False, "started_at": None,
                        "days_left": None, "seconds_left": None, "domains_blocked": 0}


def typed(status: dict[str, Any]) -> Status:
    return Status.from_json(status)


def view(status: dict[str, Any] | None, **kwargs: Any) -> TrayView:
    return TrayView(None if status is None else typed(status), NOW, **kwargs)


def test_active_detox_lines_match_the_issue_wording() -> None:
    lines = status_lines(view(ACTIVE, dnd_label="GNOME"))
    assert lines[0] == "Day 3 of 14 — ends Tue 9 Dec 08:00"
    assert lines[1] == "57 names blocked"
    assert "Locked: it cannot be ended early" in lines
    assert "Notifications silenced (GNOME)" in lines


def test_plan_lines_for_hot_seat_and_next_session() -> None:
    status = {**ACTIVE,
              "current_hot_seat": {"name": "Grace", "ends_at": "2025-11-27T10:12:00+00:00"},
              "next_session": {"start": "2025-12-04T09:00:00+00:00", "end": "2025-12-04T10:00:00+00:00",
                               "number": 2}}
    lines = status_lines(view(status))
    assert "Hot seat: Grace — 12 min left" in lines
    assert "Next peer session: Thu 4 Dec 09:00" in lines
    status["next_session"] = {**status["next_session"], "hot_seat": "Ada"}
    assert "Next peer session: Thu 4 Dec 09:00 — Ada in the hot seat first" in status_lines(view(status))


def test_times_are_shown_in_the_viewers_time_zone() -> None:
    paris = timezone(timedelta(hours=1))
    lines = status_lines(TrayView(typed(ACTIVE), NOW.astimezone(paris)))
    assert lines[0] == "Day 3 of 14 — ends Tue 9 Dec 09:00"


def test_idle_says_how_to_start_and_never_mentions_silencing() -> None:
    lines = status_lines(view(IDLE, dnd_label="dunst"))
    assert lines[:2] == ["No detox running", "Start one with: sudo detoxd start"]
    assert not any("silenced" in line for line in lines)
    assert title(view(IDLE)) == "detoxd: no detox running"


def test_unreachable_daemon() -> None:
    assert title(view(None)) == "detoxd: daemon not reachable, retrying"
    assert status_lines(view(None))[0] == "The detoxd daemon is not reachable"


def test_an_unreachable_daemon_keeps_the_last_known_days_and_says_nothing_undoes_tampering() -> None:
    later = NOW + timedelta(days=1, hours=2)  # the daemon said 12 days a day ago: 11 now
    gone = TrayView(None, later, last_known=typed(ACTIVE))
    assert title(gone) == ("detoxd: daemon not reachable, retrying; tampering is not undone "
                           "(11 days left, last known)")
    assert status_lines(gone) == ["The detoxd daemon is not reachable",
                                  "Last known: Day 4 of 14, 11 days left — ends Tue 9 Dec 08:00",
                                  "Tampering is not undone until the daemon is back",
                                  "Retrying; the block in /etc/hosts stays as it was"]
    idle = TrayView(None, later, last_known=typed(IDLE))
    assert title(idle) == "detoxd: daemon not reachable, retrying"
    assert not any("Tampering" in line for line in status_lines(idle))


def test_the_answer_to_the_users_own_request_shows_also_while_the_daemon_is_unreachable() -> None:
    answer = Notice("twitter: the daemon is not reachable", NOW + timedelta(minutes=10))
    assert status_lines(view(None, notices=(answer,)))[-1] == "twitter: the daemon is not reachable"
    assert status_lines(view(ACTIVE, notices=(answer,)))[-1] == "twitter: the daemon is not reachable"


def test_titles_for_trouble_take_priority_over_the_countdown() -> None:
    assert title(view(ACTIVE)) == "detoxd: Day 3 of 14, 12 days left"
    assert "config error" in title(view({**ACTIVE, "config_error": "blocklist.yaml:2: bad"}))
    assert "out of sync" in title(view({**ACTIVE, "hosts_in_sync": False}))
    assert "tampered" in title(view(ACTIVE, tampered=True))


def test_health_lines() -> None:
    status = {**ACTIVE, "hosts_in_sync": False, "tamper_events": 2,
              "config_error": "blocklist.yaml:3: domains[0]: not a host name\nsecond\nthird\nfourth"}
    lines = status_lines(view(status))
    assert "Config error: the last good blocklist stays in force" in lines
    assert "  blocklist.yaml:3: domains[0]: not a host name" in lines
    assert "  fourth" not in lines, "long errors are cut to three lines"
    assert "/etc/hosts is out of sync: restoring" in lines
    assert "Tampering undone: 2 times" in lines


def test_problems_and_a_lost_state_are_shown_and_lead_the_title() -> None:
    status = {**ACTIVE, "problems": ["cannot save the state in /var/lib/detoxd: No space left"],
              "state_error": "the detox state was lost (no state file)"}
    assert title(view(status)) == "detoxd: cannot save the state in /var/lib/detoxd: No space left"
    lines = status_lines(view(status))
    assert "Problem: cannot save the state in /var/lib/detoxd: No space left" in lines
    assert "Detox state: the detox state was lost (no state file)" in lines


def test_a_stale_status_never_looks_in_sync() -> None:
    stale = {**ACTIVE, "stale": True, "hosts_in_sync": False, "snapshot_age_seconds": 42.0,
             "problems": ["the daemon's main loop has not gone round for 42 s: ..."]}
    assert title(view(stale)) == "detoxd: the daemon is not responding (status 42 s old)"
    lines = status_lines(view(stale))
    assert any(line.startswith("This status is 42 s old: the daemon is stuck or frozen") for line in lines)
    assert not any(line.startswith("Problem: the daemon's main loop") for line in lines)


def test_a_status_not_heard_again_for_long_goes_stale_in_the_tray() -> None:
    assert unheard(typed(ACTIVE), 3.0) == typed(ACTIVE)
    old = unheard(typed({**ACTIVE, "snapshot_age_seconds": 1.0}), 95.0)
    assert old.stale is True and old.hosts_in_sync is False
    assert old.snapshot_age_seconds == 96.0
    assert "not responding (status 96 s old)" in title(TrayView(old, NOW))


def test_a_hosts_file_that_cannot_be_enforced_shows_why_and_the_fix() -> None:
    reason = "cannot enforce the block in the hosts file: /etc/hosts is a FIFO, not a regular file"
    problem = {"reason": "/etc/hosts is a FIFO, not a regular file", "fix": "make it a regular file"}
    status = {**ACTIVE, "hosts_in_sync": False, "problems": [reason], "hosts_file_problem": problem}
    assert title(view(status)) == f"detoxd: {reason}"
    lines = status_lines(view(status))
    assert f"Problem: {reason}" in lines
    assert "  Fix: make it a regular file" in lines


def test_reasserted_notifications_are_counted() -> None:
    lines = status_lines(view(ACTIVE, dnd_label="dunst", dnd_reasserted=1))
    assert "Notifications switched back on once, silenced again" in lines


def test_notices_show_until_they_expire() -> None:
    current = Notice("Reminder: peer session tomorrow", NOW + timedelta(minutes=5))
    expired = Notice("Reminder: old", NOW - timedelta(seconds=1))
    lines = status_lines(view(ACTIVE, notices=(current, expired)))
    assert "Reminder: peer session tomorrow" in lines
    assert "Reminder: old" not in lines


def test_menu_has_status_lines_then_actions_and_no_way_to_end_the_detox() -> None:
    items = entries(view(ACTIVE), has_menu=True)
    separator = items.index(SEPARATOR)
    assert all(item.action is None for item in items[:separator])
    actions = [item.action for item in items[separator + 1:]]
    assert actions == [Action.OPEN_BLOCKLIST, Action.OPEN_REPORT, Action.ABOUT], \
        "no Quit: quitting would lift the silence"
    assert not any(word in item.label.lower() for item in items for word in ("end detox", "stop detox"))
    assert not any(item.default for item in items)


def test_quit_only_when_the_daemon_says_no_detox_runs() -> None:
    def actions(status: dict[str, Any] | None) -> list[Action | None]:
        return [item.action for item in entries(view(status), has_menu=True)]

    assert Action.QUIT in actions(IDLE)
    assert Action.QUIT not in actions(ACTIVE)
    assert Action.QUIT not in actions(None), "unreachable daemon: it may still be a detox"


def test_a_silence_that_did_not_take_shows_its_reason_and_fix() -> None:
    problem = ("mako's do-not-disturb mode does not hide notifications",
               "add '[mode=do-not-disturb]' and 'invisible=1' to ~/.config/mako/config")
    lines = status_lines(view(ACTIVE, dnd_label=None, dnd_problem=problem))
    assert f"Notifications NOT silenced: {problem[0]}" in lines
    assert f"  Fix: {problem[1]}" in lines
    assert not any(line.startswith("Notifications silenced") for line in lines)


def test_calendar_export_appears_with_planned_sessions() -> None:
    status = {**ACTIVE, "next_session": {"start": "2025-12-04T09:00:00+00:00"}}
    actions = [item.action for item in entries(view(status), has_menu=True)]
    assert Action.EXPORT_CALENDAR in actions


def test_without_a_menu_a_click_shows_the_status() -> None:
    items = entries(view(ACTIVE), has_menu=False)
    defaults = [item for item in items if item.default]
    assert defaults == [MenuEntry("Show status", Action.SHOW_STATUS, default=True)]


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2025, 11, 25, 8, 0, tzinfo=UTC), "Day 1 of 14"),
    (datetime(2025, 11, 26, 7, 59, tzinfo=UTC), "Day 1 of 14"),
    (datetime(2025, 11, 26, 8, 0, tzinfo=UTC), "Day 2 of 14"),
    (datetime(2025, 12, 9, 7, 0, tzinfo=UTC), "Day 14 of 14"),
    (datetime(2025, 12, 20, 7, 0, tzinfo=UTC), "Day 14 of 14"),
    (datetime(2025, 11, 20, 7, 0, tzinfo=UTC), "Day 1 of 14"),  # clock set back
])
def test_day_of(now: datetime, expected: str) -> None:
    assert day_of(typed(ACTIVE), now) == expected


def test_day_of_counts_the_length_in_whole_days_after_a_restart_moved_the_end() -> None:
    status = {**ACTIVE, "ends_at": "2025-12-09T08:00:01.500000+00:00"}
    assert day_of(typed(status), NOW) == "Day 3 of 14"


def test_day_of_without_dates() -> None:
    assert day_of(typed({"state": "active"}), NOW) == "Detox active"


def test_formatting_helpers() -> None:
    assert format_moment(datetime(2025, 12, 9, 8, 0, tzinfo=UTC), NOW) == "Tue 9 Dec 08:00"
    assert format_duration(timedelta(minutes=11, seconds=1)) == "12 min"
    assert format_duration(timedelta(minutes=90)) == "1 h 30 min"
    assert format_duration(timedelta(seconds=-5)) == "0 min"


def test_a_peer_lock_shows_how_many_peers_are_needed() -> None:
    status = {**ACTIVE, "lock": "peers", "peers_needed": 3,
              "peer_lock": {"holders": ["A", "B", "C", "D", "E"], "share_set": "taxi describe"}}
    lines = status_lines(view(status))
    assert "Lock: peers — ending early needs 3 of 5 peers' cards" in lines
    assert "Locked: it cannot be ended early" not in lines


def allowance(**fields: Any) -> dict[str, Any]:
    return {"name": "twitter", "open": False, "open_until": None, "minutes_left_today": 14,
            "opens_left_today": 1, "next_window": None, **fields}


def test_the_tray_offers_ten_minutes_of_an_allowance_within_its_budget() -> None:
    status = {**ACTIVE, "allowances": [allowance(), allowance(name="reddit", minutes_left_today=4,
                                                               opens_left_today=None)]}
    offered = [entry for entry in entries(view(status), has_menu=True)
               if entry.action is Action.OPEN_ALLOWANCE]
    assert offered == [
        MenuEntry("Open twitter for 10 minutes (14 left today)", Action.OPEN_ALLOWANCE,
                  allowance="twitter", minutes=10),
        MenuEntry("Open reddit for 4 minutes (4 left today)", Action.OPEN_ALLOWANCE,
                  allowance="reddit", minutes=4),
    ]


@pytest.mark.parametrize("fields", [
    {"minutes_left_today": 0},
    {"opens_left_today": 0},
    {"open": True, "open_until": "2025-11-27T10:09:00+00:00"},
])
def test_no_offer_when_it_cannot_open(fields: dict[str, Any]) -> None:
    status = {**ACTIVE, "allowances": [allowance(**fields)]}
    assert not any(entry.action is Action.OPEN_ALLOWANCE for entry in entries(view(status), has_menu=True))


def test_no_offer_outside_a_detox() -> None:
    status = {**IDLE, "allowances": [allowance()]}
    assert not any(entry.action is Action.OPEN_ALLOWANCE for entry in entries(view(status), has_menu=True))


def test_an_offer_outside_a_detox_while_a_block_window_is_in_force() -> None:
    window = {"name": "workdays", "days": ["mon"], "window": "09:00-17:30", "active": True}
    status = {**IDLE, "allowances": [allowance()], "schedule": [window]}
    assert [entry.allowance for entry in entries(view(status), has_menu=True)
            if entry.action is Action.OPEN_ALLOWANCE] == ["twitter"]
    status = {**status, "schedule": [{**window, "active": False}]}
    assert not any(entry.action is Action.OPEN_ALLOWANCE for entry in entries(view(status), has_menu=True))


def test_an_open_allowance_counts_down_in_the_title_and_the_menu() -> None:
    status = {**ACTIVE, "allowances": [allowance(open=True, open_until="2025-11-27T10:09:00+00:00")]}
    assert title(view(status)) == "detoxd: Day 3 of 14, twitter open, 9 min left"
    assert "twitter open — 9 min left" in status_lines(view(status))
    later = TrayView(typed(status), NOW + timedelta(minutes=8, seconds=30))
    assert title(later) == "detoxd: Day 3 of 14, twitter open, 1 min left"


def test_a_spent_window_only_allowance_says_when_it_opens_next() -> None:
    spent = allowance(minutes_left_today=0, next_window="2025-11-29T10:00:00+00:00")
    status = {**ACTIVE, "allowances": [spent]}
    assert "twitter: next window Sat 29 Nov 10:00" in status_lines(view(status))


def test_one_line_per_household_engine() -> None:
    network = [{"engine": "pihole", "url": "https://pi.hole", "state": "in_sync"},
               {"engine": "unbound", "url": None, "conf_dir": "/etc/unbound/unbound.conf.d",
                "state": "unreachable"}]
    lines = status_lines(view({**ACTIVE, "network": network}))
    assert "Pi-hole (pi.hole): holds the detox" in lines
    assert "Unbound (/etc/unbound/unbound.conf.d): unreachable, retrying" in lines


def test_the_report_is_offered_only_while_the_daemon_answers() -> None:
    assert Action.OPEN_REPORT in [item.action for item in entries(view(ACTIVE), has_menu=True)]
    assert Action.OPEN_REPORT not in [item.action for item in entries(view(None), has_menu=True)]


def test_held_time_is_shown() -> None:
    held = {"seconds": 15 * 86400, "since": "2025-11-20T08:00:00+00:00", "reason": "unconfirmed"}
    assert "15.0 days held: the clock is not confirmed (NTP); credited once it is" in status_lines(
        view({**ACTIVE, "time_held": held}))


def test_every_health_line_in_its_order() -> None:
    status = {**ACTIVE, "hosts_in_sync": False, "tamper_events": 1, "config_error": "a\nb\nc\nd",
              "config_missing": ["/etc/detoxd/blocklist.yaml", "/etc/detoxd/detoxd.yaml"],
              "time_held": {"seconds": 36 * 3600}, "state_error": "lost", "problems": ["disk full"],
              "network": []}
    assert status_lines(view(status))[3:] == [
        "Problem: disk full",
        "Detox state: lost",
        "1.5 days held: the clock is not confirmed (NTP); credited once it is",
        "Config error: the last good blocklist stays in force", "  a", "  b", "  c",
        "Config missing: /etc/detoxd/blocklist.yaml, /etc/detoxd/detoxd.yaml (a detox cannot start)",
        "/etc/hosts is out of sync: restoring",
        "Tampering undone: once",
    ]
    # Idle: time held belongs to a running detox only; nothing missing is no line; the agent's own
    # sighting of a tamper shows when the daemon counted none; the hosts file by its own name.
    idle = {**IDLE, "time_held": {"seconds": 36 * 3600}, "config_missing": [], "hosts_in_sync": False,
            "hosts_file": "/srv/hosts"}
    assert status_lines(view(idle, tampered=True)) == [
        "No detox running", "Start one with: sudo detoxd start",
        "/srv/hosts is out of sync: restoring", "The hosts file was tampered with: block restored"]
    in_sync = {**IDLE, "hosts_in_sync": True, "tamper_events": 0}
    assert status_lines(view(in_sync)) == ["No detox running", "Start one with: sudo detoxd start"]


def test_the_title_counts_down_in_days() -> None:
    assert title(view({**ACTIVE, "days_left": 1})) == "detoxd: Day 3 of 14, 1 day left"
    assert title(view({**ACTIVE, "days_left": 2})) == "detoxd: Day 3 of 14, 2 days left"
    assert title(view({**ACTIVE, "days_left": None})) == "detoxd: Day 3 of 14, detox active"
    assert title(view(ACTIVE, tampered=True)) == "detoxd: hosts file was tampered with, block restored"
    assert title(view({**ACTIVE, "config_error": "x"})) == (
        "detoxd: config error, the last good blocklist stays in force")
    assert title(view({**ACTIVE, "hosts_in_sync": False})) == (
        "detoxd: hosts file out of sync, restoring the block")
    assert title(view(IDLE)) == "detoxd: no detox running"
    assert title(view(None)) == "detoxd: daemon not reachable, retrying"


def labels(items: list[MenuEntry]) -> list[tuple[str, Action | None]]:
    return [(item.label, item.action) for item in items]


def test_the_whole_menu_of_an_idle_tray_and_of_one_without_a_daemon() -> None:
    idle = {**IDLE, "next_session": {"number": 1}}
    assert labels(entries(view(idle), has_menu=True)) == [
        ("No detox running", None), ("Start one with: sudo detoxd start", None), ("", None),
        ("Open blocklist (read-only; edit with sudoedit)", Action.OPEN_BLOCKLIST),
        ("Open the detox report", Action.OPEN_REPORT),
        ("Export sessions calendar", Action.EXPORT_CALENDAR),
        ("About detoxd", Action.ABOUT), ("Quit tray", Action.QUIT)]
    assert labels(entries(view(None), has_menu=False)) == [
        ("The detoxd daemon is not reachable", None),
        ("Retrying; the block in /etc/hosts stays as it was", None), ("", None),
        ("Show status", Action.SHOW_STATUS),
        ("Open blocklist (read-only; edit with sudoedit)", Action.OPEN_BLOCKLIST),
        ("About detoxd", Action.ABOUT)]


def test_an_allowance_with_one_minute_left_offers_that_minute() -> None:
    def allowance(**fields: Any) -> dict[str, Any]:
        return {"name": "twitter", "open": False, "minutes_left_today": 1, "opens_left_today": 2, **fields}

    status = {**ACTIVE, "allowances": [allowance(), allowance(name="reddit", minutes_left_today=0),
                                       allowance(name="x", minutes_left_today=2)]}
    menu = entries(view(status), has_menu=True)
    offers = [entry for entry in menu if entry.action is Action.OPEN_ALLOWANCE]
    assert [(entry.label, entry.allowance, entry.minutes) for entry in offers] == [
        ("Open twitter for 1 minute (1 left today)", "twitter", 1),
        ("Open x for 2 minutes (2 left today)", "x", 2)]


def test_an_open_allowance_and_the_next_window_in_the_status_lines() -> None:
    until = (NOW + timedelta(minutes=7)).isoformat()
    window = (NOW + timedelta(hours=3)).isoformat()
    status = {**ACTIVE, "allowances": [
        {"name": "twitter", "open": True, "open_until": until},
        {"open": True},  # no name, no end: still shown
        {"name": "reddit", "open": False, "next_window": window, "minutes_left_today": 0},
        {"name": "x", "open": False, "next_window": window, "minutes_left_today": 5},  # can open now
        {"name": "y", "open": False, "minutes_left_today": 0},  # no window to wait for
    ]}
    lines = status_lines(view(status))
    assert lines[-3:] == ["twitter open — 7 min left", "? open", "reddit: next window Thu 27 Nov 13:00"]
    assert title(view(status)) == "detoxd: Day 3 of 14, twitter open, 7 min left, ? open"


def test_the_tray_goes_stale_after_90_silent_seconds_and_counts_the_age_to_a_tenth() -> None:
    # 90 s: the daemon's keepalive comes once a minute (issue 26), plus slack for a loaded machine.
    assert SILENCE_SECONDS == 90.0
    assert unheard(typed(ACTIVE), 90.0) == typed(ACTIVE)
    stale = unheard(typed(ACTIVE), 90.04)
    assert stale.stale is True and stale.snapshot_age_seconds == 90.0
    assert unheard(typed({**ACTIVE, "snapshot_age_seconds": 2.26}), 91.0).snapshot_age_seconds == 93.3
    assert "not responding (status some time old)" in title(view({**ACTIVE, "stale": True}))


def test_a_notice_goes_at_its_moment() -> None:
    notices = (Notice("Hot seat: Ada", NOW), Notice("Session soon", NOW + timedelta(seconds=1)))
    assert view(ACTIVE, notices=notices).current_notices() == [notices[1]]


def test_a_silence_that_did_not_take_is_shown_after_the_other_lines_unless_not_wanted() -> None:
    problem = ("dunst is not running", "start dunst")
    lines = status_lines(view(ACTIVE, dnd_problem=problem))
    assert lines[:2] == status_lines(view(ACTIVE))[:2]
    assert lines[-2:] == ["Notifications NOT silenced: dunst is not running", "  Fix: start dunst"]
    unwanted = {**ACTIVE, "notifications_suppress": False}
    assert not any("NOT silenced" in line for line in status_lines(view(unwanted, dnd_problem=problem)))


def test_a_detox_shorter_than_half_a_day_is_day_1_of_1() -> None:
    short = {**ACTIVE, "started_at": "2025-11-27T09:00:00+00:00", "ends_at": "2025-11-27T10:00:00+00:00"}
    assert day_of(typed(short), NOW) == "Day 1 of 1"


def test_a_planned_detox_shows_when_it_begins_and_if_it_can_be_cancelled() -> None:
    scheduled = {**IDLE, "state": "scheduled", "starts_at": "2025-12-01T09:00:00+00:00",
                 "cancellable": True, "cancellable_until": "2025-11-30T09:00:00+00:00"}
    assert title(view(scheduled)) == "detoxd: Detox begins Mon 1 Dec 09:00"
    assert status_lines(view(scheduled))[:2] == ["Detox begins Mon 1 Dec 09:00",
                                                  "Can be cancelled until Sun 30 Nov 09:00"]
    locked = {**scheduled, "cancellable": False}
    assert status_lines(view(locked))[1] == "Locked: it can no longer be cancelled"


def test_a_planned_detox_whose_wait_is_held_says_so() -> None:
    scheduled = {**IDLE, "state": "scheduled", "starts_at": "2025-12-01T09:00:00+00:00",
                 "time_held": {"seconds": 2 * 86400, "since": "2025-11-25T08:00:00+00:00", "reason": "r"}}
    assert "2.0 days held: the planned start waits for the clock to be confirmed (NTP)" in \
        status_lines(view(scheduled))


def window(name: str, *, active: bool, next_change: str | None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "days": ["mon", "tue", "wed", "thu", "fri"], "window": "09:00-17:30",
            "blocks": "blocklist", "lock": False, "active": active, "next_change": next_change,
            "after_detox": False, "waiting_for_detox_end": False, "pending": None, **fields}


def test_the_tray_says_until_when_a_window_blocks_and_when_the_next_begins() -> None:
    blocking = {**IDLE, "schedule": [
        window("evening", active=False, next_change="2025-11-27T18:00:00+00:00"),
        window("workdays", active=True, next_change="2025-11-27T17:30:00+00:00")]}
    assert title(view(blocking)) == "detoxd: Blocked until 17:30 (workdays)"
    assert status_lines(view(blocking))[-2:] == ["Blocked until 17:30 (workdays)",
                                                 "Next block 18:00 (evening)"]
    monday = "2025-12-01T09:00:00+00:00"
    waiting = {**IDLE, "schedule": [window("workdays", active=False, next_change=monday)]}
    assert title(view(waiting)) == "detoxd: Next block Mon 09:00 (workdays)"
    after = {**IDLE, "schedule": [window("workdays", active=False, next_change="2025-12-01T09:00:00+00:00",
                                         waiting_for_detox_end=True)]}
    assert title(view(after)) == "detoxd: no detox running"


def test_the_closing_notice_says_what_continues() -> None:
    from detoxd.core.menu import closing_text

    assert closing_text(["workdays (mon,tue 09:00-17:30: social)"]) == \
        "The detox is over. Continuing: workdays (mon,tue 09:00-17:30: social)"
    assert closing_text([]) == closing_text(None) == "The detox is over: nothing is blocked any more"


def test_the_tray_shows_what_was_mailed_to_the_peers() -> None:
    sent = {"to": "ada@example.com", "kind": "informed", "sent_at": "2025-11-27T09:30:00+00:00"}
    lines = status_lines(view({**ACTIVE, "mail": {"server": "smtp.example.com:587", "pending_count": 0,
                                                   "pending": [], "sent": [sent], "last_try": None,
                                                   "error": None, "fix": None}}))
    assert any(line.startswith("Mail sent: informed to ada@example.com at ") for line in lines)
    assert not any(line.startswith("Mail") for line in status_lines(view(ACTIVE)))
