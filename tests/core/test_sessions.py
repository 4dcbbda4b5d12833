"""The `me`, `peers` and `sessions` sections of detoxd.yaml."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from detoxd.core.config import parse_main
from detoxd.core.sessions import Person, SessionSettings, check_people
from detoxd.core.yamlsource import Source

ISSUE_EXAMPLE = """\
me:
  name: Robert Craven
  email: robert@example.com          # optional; becomes the calendar ORGANIZER
peers:                               # the five people you 100% trust and respect
  - {name: Ada Lovelace, email: ada@example.com}
  - {name: Grace Hopper, email: grace@example.com}
  - {name: Alan Turing}
  - {name: Katherine Johnson, email: kj@example.com}
  - {name: Tim Berners-Lee, email: tim@example.com}
sessions:
  first: 2026-12-03 09:00            # local time in `timezone`
  timezone: Europe/London            # IANA name; default: the system's zone
  repeat_after_days: 7
  minutes_per_business: 30
  break_minutes: 0                   # optional pause between hot seats
  location: "Ada's office"           # or a video link
  reminders: [1d, 1h]                # before each session
"""

# `me` and five peers: no warnings about the people in tests of the `sessions` section.
FIVE_PEERS = "me: Robert\npeers: [A, B, C, D, E]\n"


def issues(source: Source) -> list[str]:
    return [str(issue) for issue in source.issues]


def test_example_from_the_issue_parses_without_issues() -> None:
    main, source = parse_main(ISSUE_EXAMPLE)
    assert issues(source) == []
    assert main is not None
    assert main.me == Person("Robert Craven", "robert@example.com")
    assert [peer.name for peer in main.peers] == [
        "Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Tim Berners-Lee"]
    assert main.peers[2].email is None
    assert main.sessions == SessionSettings(
        first=datetime(2026, 12, 3, 9, 0), timezone="Europe/London", repeat_after_days=7,
        slot_length=timedelta(minutes=30), break_length=timedelta(0), location="Ada's office",
        reminders=(timedelta(days=1), timedelta(hours=1)))
    assert main.sessions.line == 11


def test_empty_file_plans_no_sessions() -> None:
    main, source = parse_main("")
    assert main is not None and source.issues == []
    assert main.me is None and main.peers == () and main.sessions is None


@pytest.mark.parametrize("first", [
    "2026-12-03 09:00", "'2026-12-03 09:00'", "2026-12-03T09:00", "2026-12-03 09:00:00",
])
def test_first_accepts_text_and_yaml_timestamps(first: str) -> None:
    main, source = parse_main(f"{FIVE_PEERS}sessions: {{first: {first}}}\n")
    assert source.errors == []
    assert main is not None and main.sessions is not None
    assert main.sessions.first == datetime(2026, 12, 3, 9, 0)


def test_defaults_of_optional_session_keys() -> None:
    main, _ = parse_main(f"{FIVE_PEERS}sessions: {{first: 2026-12-03 09:00}}\n")
    assert main is not None and main.sessions is not None
    settings = main.sessions
    assert settings.timezone is None  # the system's zone, resolved by the shell
    assert settings.repeat_after_days == 7
    assert settings.slot_length == timedelta(minutes=30)
    assert settings.break_length == timedelta(0)
    assert settings.location is None and settings.reminders == ()


@pytest.mark.parametrize(("first", "message"), [
    ("2026-12-03", "needs a time of day too"),
    ("2026-12-03 09:00:00+01:00", "without a UTC offset"),
    ("next thursday", "'next thursday' is not a date and time"),
    ("2026-02-30 09:00", "is not a date and time"),
    ("[1, 2]", "expected text, got a list"),
])
def test_bad_first(first: str, message: str) -> None:
    main, source = parse_main(f"sessions:\n  first: {first}\n")
    assert main is not None and main.sessions is None
    [error] = [str(issue) for issue in source.errors]
    assert error.startswith("detoxd.yaml:2: sessions.first: ")
    assert message in error


def test_every_session_error_is_reported_at_once() -> None:
    text = (
        "sessions:\n"                       # 1
        "  timezone: Mars/Olympus\n"        # 2
        "  repeat_after_days: 0\n"          # 3
        "  minutes_per_business: 0\n"       # 4
        "  break_minutes: 1 hour\n"         # 5
        "  reminders: [1d, soon, 0m]\n"     # 6
        "  colour: blue\n"                  # 7
    )
    _, source = parse_main(text)
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:2: sessions.first: required: when the first session starts (YYYY-MM-DD HH:MM, "
        "local time)",
        "detoxd.yaml:2: sessions.timezone: unknown time zone 'Mars/Olympus' "
        "(an IANA name such as Europe/London)",
        "detoxd.yaml:3: sessions.repeat_after_days: must be between 1 and 60, got 0",
        "detoxd.yaml:4: sessions.minutes_per_business: must be between 1 and 480 minutes",
        "detoxd.yaml:5: sessions.break_minutes: '1 hour' is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:6: sessions.reminders[1]: 'soon' is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:6: sessions.reminders[2]: must be between 1m and 30d before the session",
        "detoxd.yaml:7: sessions.colour: unknown key (expected one of: break_minutes, first, location, "
        "minutes_per_business, reminders, repeat, repeat_after_days, timezone)",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1)),
    ("1h30m", timedelta(minutes=90)), ("2D", timedelta(days=2)), ("45", timedelta(minutes=45)),
])
def test_durations(text: str, expected: timedelta) -> None:
    main, source = parse_main(f"{FIVE_PEERS}sessions: {{first: 2026-12-03 09:00, reminders: [{text}]}}\n")
    assert source.issues == []
    assert main is not None and main.sessions is not None
    assert main.sessions.reminders == (expected,)


def test_lengths_accept_minutes_or_durations_and_reminders_are_deduplicated() -> None:
    text = (f"{FIVE_PEERS}sessions:\n  first: 2026-12-03 09:00\n  minutes_per_business: 1h\n"
            "  break_minutes: 5\n  reminders: [1h, 1d, 60m]\n")
    main, source = parse_main(text)
    assert main is not None and main.sessions is not None
    assert main.sessions.slot_length == timedelta(hours=1)
    assert main.sessions.break_length == timedelta(minutes=5)
    assert main.sessions.reminders == (timedelta(days=1), timedelta(hours=1))  # longest first
    assert issues(source) == [
        "detoxd.yaml:7: sessions.reminders[2]: warning: the same reminder twice; it is sent once"]


@pytest.mark.parametrize("count", [1, 4, 6])
def test_other_than_five_peers_is_allowed_with_a_warning(count: int) -> None:
    names = ", ".join(f"P{index}" for index in range(count))
    main, source = parse_main(f"peers: [{names}]\n")
    assert source.errors == []
    assert main is not None and len(main.peers) == count
    assert issues(source) == [
        f"detoxd.yaml:1: peers: warning: the challenge is you and 5 peers; {count} listed "
        f"(sessions will have {count + 1} hot seats)"]


def test_peer_names_unique_and_emails_checked() -> None:
    text = (
        "peers:\n"
        "  - {name: Ada Lovelace, email: ada@example.com}\n"   # 2
        "  - {name: ada  lovelace}\n"                          # 3
        "  - {name: Grace, email: grace.example.com}\n"        # 4
        '  - {name: Alan, email: "alan@example.com\\nBCC: x"}\n'  # 5
        "  - {email: kj@example.com}\n"                        # 6
        "  - {name: '  '}\n"                                   # 7
        "  - 42\n"                                             # 8
    )
    _, source = parse_main(text)
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:3: peers[1].name: 'ada lovelace' is already a peer (line 2); names must be unique",
        "detoxd.yaml:4: peers[2].email: 'grace.example.com' does not look like an email address "
        "(name@example.com)",
        "detoxd.yaml:5: peers[3].email: 'alan@example.com\\nBCC: x' does not look like an email "
        "address (name@example.com)",
        "detoxd.yaml:6: peers[4].name: required",
        "detoxd.yaml:7: peers[5].name: must not be empty",
        "detoxd.yaml:8: peers[6]: expected a mapping, got int",
    ]


def test_names_are_tidied_and_a_blank_email_means_none() -> None:
    main, source = parse_main("me: {name: ' Robert   Craven ', email: }\n")
    assert source.issues == []
    assert main is not None and main.me == Person("Robert Craven", None)


def test_control_characters_refused_in_names_and_location() -> None:
    _, source = parse_main('me: {name: "Bob\\u0007"}\nsessions: {first: 2026-12-03 09:00, '
                           'location: "a\\u0000b"}\n')
    assert [issue.path for issue in source.errors] == ["me.name", "sessions.location"]


def test_check_people_across_sections() -> None:
    main, _ = parse_main("me: {name: Robert}\npeers: [Ada, robert, Alan, Grace, Tim]\n")
    assert main is not None
    source = Source("detoxd.yaml")
    check_people(source, main.me, main.peers, main.sessions)
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:2: peers: 'robert' is also `me.name`; names must be unique"]


def test_check_people_warns_when_sessions_lack_me_or_peers() -> None:
    main, _ = parse_main("sessions: {first: 2026-12-03 09:00}\n")
    assert main is not None
    source = Source("detoxd.yaml")
    check_people(source, main.me, main.peers, main.sessions)
    assert [issue.severity for issue in source.issues] == ["warning", "warning"]
    assert [issue.path for issue in source.issues] == ["me", "peers"]
    assert [issue.line for issue in source.issues] == [1, 1]  # where `sessions.first` is
    quiet = Source("detoxd.yaml")
    check_people(quiet, main.me, main.peers, None)  # no sessions: nothing to say
    assert quiet.issues == []


def test_a_duration_that_is_not_text_is_described_not_dumped() -> None:
    text = ("sessions:\n  first: 2026-03-02 18:00\n"
            "  reminders: [[1h], {a: 1}, '', -5, 1.5]\n")
    _, source = parse_main(text)
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:3: sessions.reminders[0]: a list is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:3: sessions.reminders[1]: a mapping is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:3: sessions.reminders[2]: '' is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:3: sessions.reminders[3]: -5 is not a duration (such as 30m, 1h, 1d)",
        "detoxd.yaml:3: sessions.reminders[4]: 1.5 is not a duration (such as 30m, 1h, 1d)",
    ]
    _, source = parse_main("sessions:\n  first: 2026-03-02 18:00\n  break_minutes:\n")
    assert [str(issue) for issue in source.errors] == [
        "detoxd.yaml:3: sessions.break_minutes: empty is not a duration (such as 30m, 1h, 1d)"]


def said(text: str) -> list[str]:
    """Every issue of ``text`` but the cross-section reminders about `me:` and `peers:`."""
    _, source = parse_main(text)
    return [str(issue) for issue in source.issues if issue.path not in ("me", "peers")]


def test_names_locations_and_reminders_at_their_limits() -> None:
    longest, too_long = "A" * 100, "A" * 101
    assert said(f"me: {{name: '{longest}'}}\n") == []
    assert said(f"me: {{name: '{too_long}'}}\n") == ["detoxd.yaml:1: me.name: longer than 100 characters"]
    assert said("me: {name: '   '}\n") == ["detoxd.yaml:1: me.name: must not be empty"]
    assert said("me: {name: \"Ada\\u200bL\"}\n") == [
        "detoxd.yaml:1: me.name: must not contain control characters"]
    assert said("me: {email: a@b.example}\n") == ["detoxd.yaml:1: me.name: required"]
    assert said("me: {name: Ada, email: not-an-address}\n") == [
        "detoxd.yaml:1: me.email: 'not-an-address' does not look like an email address (name@example.com)"]
    main, _ = parse_main("me: {name: '  Ada   King ', email: ' ada@example.com '}\n")
    assert main is not None and main.me == Person("Ada King", "ada@example.com")
    first = "sessions:\n  first: 2026-03-02 18:00\n"
    assert said(first + f"  location: '{'x' * 500}'\n") == []
    assert said(first + f"  location: '{'x' * 501}'\n") == [
        "detoxd.yaml:3: sessions.location: longer than 500 characters"]
    assert said(first + "  location: \"a\\tb\"\n") == [
        "detoxd.yaml:3: sessions.location: must not contain control characters"]
    main, _ = parse_main(first + "  location: '   '\n")
    assert main is not None and main.sessions is not None and main.sessions.location is None
    ten = ", ".join(f"{n}h" for n in range(1, 11))
    main, _ = parse_main(first + f"  reminders: [{ten}]\n")
    assert main is not None and main.sessions is not None and len(main.sessions.reminders) == 10
    assert main.sessions.reminders[0] == timedelta(hours=10)  # longest first
    assert said(first + f"  reminders: [{ten}, 11h]\n") == [
        "detoxd.yaml:3: sessions.reminders: at most 10 reminders"]
    assert said(first + "  reminders: [30d, 1m, 1h, 60m]\n") == [
        "detoxd.yaml:3: sessions.reminders[3]: warning: the same reminder twice; it is sent once"]
    assert said(first + "  reminders: [30d1m]\n") == [
        "detoxd.yaml:3: sessions.reminders[0]: must be between 1m and 30d before the session"]


def test_a_first_session_must_be_a_local_date_and_time() -> None:
    for value, error in [
        ("2026-03-02", "needs a time of day too: YYYY-MM-DD HH:MM"),
        ("2026-03-02 18:00:00+01:00",
         "give the local time without a UTC offset; the zone is sessions.timezone"),
        ("'next monday'", "'next monday' is not a date and time (YYYY-MM-DD HH:MM, or day N HH:MM: "
         "the detox's N-th day)"),
    ]:
        assert said(f"sessions:\n  first: {value}\n") == [f"detoxd.yaml:2: sessions.first: {error}"]
    for value in ("2026-03-02 18:00", "2026-03-02T18:00", "'2026-03-02 18:00:30'", "2026-03-02 18:00:00"):
        main, _ = parse_main(f"sessions:\n  first: {value}\n")
        assert main is not None and main.sessions is not None, value
        assert main.sessions.first.replace(second=0) == datetime(2026, 3, 2, 18, 0)
        assert main.sessions.line == 2 and main.sessions.repeat_after_days == 7


def test_repeat_days_and_lengths_at_their_limits() -> None:
    first = "sessions:\n  first: 2026-03-02 18:00\n"
    main, _ = parse_main(first + "  repeat_after_days: 60\n  minutes_per_business: 480\n"
                         "  break_minutes: 2h\n")
    assert main is not None and main.sessions is not None
    assert (main.sessions.repeat_after_days, main.sessions.slot_length, main.sessions.break_length) == (
        60, timedelta(hours=8), timedelta(hours=2))
    assert said(first + "  repeat_after_days: 61\n  minutes_per_business: 481\n  break_minutes: 121\n") == [
        "detoxd.yaml:3: sessions.repeat_after_days: must be between 1 and 60, got 61",
        "detoxd.yaml:4: sessions.minutes_per_business: must be between 1 and 480 minutes",
        "detoxd.yaml:5: sessions.break_minutes: must be between 0 and 120 minutes"]
    main, _ = parse_main(first + "  break_minutes: 0\n  minutes_per_business: 1\n")
    assert main is not None and main.sessions is not None
    assert (main.sessions.break_length, main.sessions.slot_length) == (timedelta(0), timedelta(minutes=1))
