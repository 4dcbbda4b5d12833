"""Reminders and hot-seat handovers: which jobs exist at a given moment (pure), and firing them
with APScheduler's real BackgroundScheduler on plans a fraction of a second long."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.client import ControlClient
from detoxd.clock import FakeClock
from detoxd.core import plan
from detoxd.core.sessions import Person, SessionSettings
from detoxd.service.control import ControlServer
from detoxd.service.scheduler import (
    EVENT_BREAK,
    EVENT_HOT_SEAT,
    EVENT_REMINDER,
    EVENT_SESSION_ENDED,
    SessionScheduler,
    jobs_to_schedule,
    planned_jobs,
    reminder_grace,
    system_timezone,
)

LONDON = ZoneInfo("Europe/London")
ME = Person("Robert Craven", "robert@example.com")
PEERS = tuple(Person(name) for name in ("Ada", "Grace", "Alan", "Katherine", "Tim"))


def issue_plan(**changes: Any) -> plan.Plan:
    settings = SessionSettings(first=datetime(2026, 12, 3, 9, 0), timezone="Europe/London",
                               reminders=(timedelta(days=1), timedelta(hours=1)), **changes)
    return plan.build(ME, PEERS, settings, "UTC")


def london(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=LONDON)


# ---- pure: which jobs exist ----

def test_every_job_of_the_plan_with_stable_ids() -> None:
    jobs = planned_jobs(issue_plan())
    ids = [job.id for job in jobs]
    per_session = ["reminder-1d", "reminder-1h", *(f"seat{n}" for n in range(1, 7)), "end"]
    assert ids == [f"session1-{i}" for i in per_session] + [f"session2-{i}" for i in per_session]
    assert ids == [job.id for job in planned_jobs(issue_plan())]  # same config, same ids
    by_id = {job.id: job for job in jobs}
    assert by_id["session1-reminder-1d"].at == london(2, 9)
    assert by_id["session2-seat1"].at == london(10, 9)
    assert by_id["session2-seat1"].details["name"] == "Tim"  # reversed order
    assert by_id["session1-seat3"].details == {
        "session": 1, "seat": 3, "of": 6, "name": "Grace", "starts_at": "2026-12-03T10:00:00+00:00",
        "ends_at": "2026-12-03T10:30:00+00:00", "next_name": "Alan"}
    assert by_id["session1-end"].details == {"session": 1, "next_session": "2026-12-10T09:00:00+00:00"}
    assert by_id["session2-end"].details["next_session"] is None
    assert [job.event for job in jobs[:3]] == [EVENT_REMINDER, EVENT_REMINDER, EVENT_HOT_SEAT]


def test_breaks_get_their_own_event() -> None:
    jobs = {job.id: job for job in planned_jobs(issue_plan(break_length=timedelta(minutes=5)))}
    assert jobs["session1-break1"].event == EVENT_BREAK
    assert jobs["session1-break1"].at == london(3, 9, 30)
    assert jobs["session1-break1"].details["until"] == "2026-12-03T09:35:00+00:00"
    assert "session1-break6" not in jobs  # no break after the last hot seat


def test_reminder_grace_is_a_quarter_of_its_lead_time() -> None:
    assert reminder_grace(timedelta(hours=1)) == timedelta(minutes=15)
    assert reminder_grace(timedelta(days=1)) == timedelta(hours=6)
    assert reminder_grace(timedelta(minutes=2)) == timedelta(minutes=1)


def ids_at(now: datetime, fired: tuple[str, ...] = ()) -> list[str]:
    return [job.id for job in jobs_to_schedule(issue_plan(), FakeClock(now).now(), fired)]


def test_before_everything_all_jobs_are_scheduled() -> None:
    assert len(ids_at(london(1, 0))) == 18


def test_a_reminder_missed_by_more_than_its_grace_is_dropped() -> None:
    # The 1h reminder of session 1 is due at 08:00 with 15 minutes of grace.
    assert "session1-reminder-1h" in ids_at(london(3, 8, 14, 59))
    assert "session1-reminder-1h" not in ids_at(london(3, 8, 15, 1))
    # The 1d reminder (due 2 Dec 09:00) is still sent 5 hours late, not 7.
    assert "session1-reminder-1d" in ids_at(london(2, 14))
    assert "session1-reminder-1d" not in ids_at(london(2, 16))


def test_a_session_in_progress_is_picked_up_at_the_right_hot_seat() -> None:
    ids = ids_at(london(3, 10, 10))  # seat 3 runs 10:00-10:30
    session1 = [i for i in ids if i.startswith("session1")]
    assert session1 == ["session1-seat3", "session1-seat4", "session1-seat5", "session1-seat6",
                        "session1-end"]
    assert len([i for i in ids if i.startswith("session2")]) == 9


def test_nothing_is_left_after_both_sessions() -> None:
    assert ids_at(london(10, 12, 10)) == []
    assert jobs_to_schedule(None, london(1, 0)) == []


def test_jobs_already_fired_are_not_scheduled_again() -> None:
    current = next(job for job in planned_jobs(issue_plan()) if job.id == "session1-seat3")
    assert "session1-seat3" not in ids_at(london(3, 10, 10), fired=(current.key,))


# ---- the system's zone ----

def test_system_timezone_from_the_localtime_link(tmp_path: Path) -> None:
    (tmp_path / "localtime").symlink_to("/usr/share/zoneinfo/America/New_York")
    (tmp_path / "timezone").write_text("Europe/London\n")
    assert system_timezone(tmp_path) == "America/New_York"


def test_system_timezone_from_etc_timezone_then_utc(tmp_path: Path) -> None:
    (tmp_path / "timezone").write_text("Europe/London\n")
    assert system_timezone(tmp_path) == "Europe/London"
    (tmp_path / "timezone").write_text("Not/AZone\n")
    assert system_timezone(tmp_path) == "UTC"
    (tmp_path / "localtime").symlink_to("/nowhere/useful")
    assert system_timezone(tmp_path / "missing") == "UTC"


# ---- firing, with the real BackgroundScheduler ----

SLOT = timedelta(seconds=0.3)
PEOPLE = (Person("Ada"), Person("Alan"))


class Recorder:
    """publish() target: remembers each event and the real time it arrived."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any], datetime]] = queue.Queue()

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        self.events.put((event, details, datetime.now(UTC)))

    def take(self, count: int, timeout: float = 3.0) -> list[tuple[str, dict[str, Any], datetime]]:
        deadline = time.monotonic() + timeout
        return [self.events.get(timeout=max(0.01, deadline - time.monotonic())) for _ in range(count)]

    def none_within(self, seconds: float) -> bool:
        try:
            self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def fast_plan(start_in: float, reminder_before: float = 0.2) -> plan.Plan:
    """Three hot seats of 0.3 s starting ``start_in`` seconds from now (session 2: tomorrow)."""
    first = (datetime.now(UTC) + timedelta(seconds=start_in)).replace(tzinfo=None)
    settings = SessionSettings(first=first, timezone="UTC", repeat_after_days=1, slot_length=SLOT,
                               reminders=(timedelta(seconds=reminder_before),))
    return plan.build(ME, PEOPLE, settings, "UTC")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def scheduler(recorder: Recorder) -> Iterator[SessionScheduler]:
    running = SessionScheduler(FakeClock(datetime.now(UTC)), recorder)
    running.start()
    yield running
    running.stop()


def names(events: list[tuple[str, dict[str, Any], datetime]]) -> list[str]:
    return [f"{event}:{details.get('name', details.get('session'))}" for event, details, _ in events]


def test_reminder_and_handovers_fire_on_time(scheduler: SessionScheduler, recorder: Recorder) -> None:
    session_plan = fast_plan(start_in=0.4)
    scheduler.update(session_plan, datetime.now(UTC))
    events = recorder.take(5)
    assert names(events) == ["session_reminder:1", "hot_seat:Robert Craven", "hot_seat:Ada",
                             "hot_seat:Alan", "session_ended:1"]
    due = [session_plan.sessions[0].reminders[0][1], *(s.start for s in session_plan.sessions[0].hot_seats),
           session_plan.sessions[0].end]
    for (_, _, arrived), at in zip(events, due, strict=True):
        assert at - timedelta(milliseconds=20) <= arrived <= at + timedelta(milliseconds=400)
    assert events[2][1]["next_name"] == "Alan"
    assert set(scheduler.scheduled()) == {"session2-reminder-0m", "session2-seat1", "session2-seat2",
                                          "session2-seat3", "session2-end"}


def test_status_follows_the_hot_seat(scheduler: SessionScheduler, recorder: Recorder) -> None:
    session_plan = fast_plan(start_in=0.2)
    scheduler.update(session_plan, datetime.now(UTC))
    assert scheduler.status_fields(datetime.now(UTC))["current_hot_seat"] is None
    recorder.take(3)  # reminder, Robert, Ada
    fields = scheduler.status_fields(datetime.now(UTC))
    assert fields["current_hot_seat"]["name"] == "Ada"
    assert fields["next_session"]["number"] == 1 and fields["next_session"]["in_progress"] is True


def test_a_reload_does_not_double_or_lose_jobs(scheduler: SessionScheduler, recorder: Recorder) -> None:
    session_plan = fast_plan(start_in=0.3)
    scheduler.update(session_plan, datetime.now(UTC))
    scheduler.update(session_plan, datetime.now(UTC))  # the same config loaded again
    first = recorder.take(2)
    assert names(first) == ["session_reminder:1", "hot_seat:Robert Craven"]
    scheduler.update(session_plan, datetime.now(UTC))  # a reload during the session
    rest = recorder.take(3)
    assert names(rest) == ["hot_seat:Ada", "hot_seat:Alan", "session_ended:1"]
    assert recorder.none_within(0.3)


def test_a_reload_that_moves_the_session_moves_its_jobs(
    scheduler: SessionScheduler, recorder: Recorder
) -> None:
    scheduler.update(fast_plan(start_in=0.3, reminder_before=0.1), datetime.now(UTC))
    moved = fast_plan(start_in=0.8, reminder_before=0.1)
    scheduler.update(moved, datetime.now(UTC))
    event, _, arrived = recorder.take(1)[0]
    assert event == EVENT_REMINDER
    assert arrived >= moved.sessions[0].reminders[0][1] - timedelta(milliseconds=20)
    scheduler.update(None, datetime.now(UTC))  # sessions removed from the config
    assert scheduler.scheduled() == {}
    assert recorder.none_within(0.6)


def test_a_restart_mid_session_announces_the_current_hot_seat(recorder: Recorder) -> None:
    session_plan = fast_plan(start_in=0.1, reminder_before=0.05)
    before = SessionScheduler(FakeClock(datetime.now(UTC)), recorder)
    before.start()
    before.update(session_plan)  # now from the injected clock
    assert names(recorder.take(2)) == ["session_reminder:1", "hot_seat:Robert Craven"]
    before.stop()  # the daemon goes down during Robert's hot seat...
    time.sleep(0.35)  # ...and is back during Ada's (0.4-0.7 s)
    after = SessionScheduler(FakeClock(datetime.now(UTC)), recorder)
    after.start()
    try:
        after.update(session_plan)
        # The reminder is within its grace (1 minute) and the new process cannot know it was sent.
        assert names(recorder.take(1, timeout=0.2)) == ["session_reminder:1"]
        event, details, arrived = recorder.take(1, timeout=0.2)[0]
        assert (event, details["name"]) == (EVENT_HOT_SEAT, "Ada")  # at once, not at the next handover
        assert arrived < session_plan.sessions[0].hot_seats[1].end
        assert names(recorder.take(2)) == ["hot_seat:Alan", "session_ended:1"]
    finally:
        after.stop()


def test_a_job_missed_while_down_is_not_sent(scheduler: SessionScheduler, recorder: Recorder) -> None:
    # The reminder was due 2 minutes ago; its grace is 1 minute.
    reminder_late = fast_plan(start_in=60, reminder_before=180)
    jobs = scheduler.update(reminder_late, datetime.now(UTC))
    assert "session1-reminder-3m" not in {job.id for job in jobs}
    assert "session1-reminder-3m" not in scheduler.scheduled()
    assert recorder.none_within(0.2)


def test_a_failing_publisher_does_not_stop_later_handovers() -> None:
    received: list[str] = []

    def flaky(event: str, details: dict[str, Any]) -> None:
        received.append(event)
        if len(received) == 1:
            raise OSError("subscriber gone")

    running = SessionScheduler(FakeClock(datetime.now(UTC)), flaky)
    running.start()
    try:
        running.update(fast_plan(start_in=0.1, reminder_before=0.05))
        deadline = time.monotonic() + 3
        while len(received) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received == [EVENT_REMINDER, EVENT_HOT_SEAT, EVENT_HOT_SEAT, EVENT_HOT_SEAT,
                            EVENT_SESSION_ENDED]
    finally:
        running.stop()


def test_handovers_arrive_on_a_subscribed_socket(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock", lambda request, peer: {"ok": True})
    server.start()
    running = SessionScheduler(FakeClock(datetime.now(UTC)),
                               lambda event, details: server.publish({"event": event, **details}))
    running.start()
    try:
        with ControlClient(server.path).subscribe(timeout=3) as subscription:
            running.update(fast_plan(start_in=0.2, reminder_before=0.1))
            received = [next(subscription) for _ in range(3)]
        assert [message["event"] for message in received] == [
            EVENT_REMINDER, EVENT_HOT_SEAT, EVENT_HOT_SEAT]
        assert [message.get("name") for message in received[1:]] == ["Robert Craven", "Ada"]
        assert received[1]["ends_at"].endswith("+00:00")
    finally:
        running.stop()
        server.close()


def test_a_restart_does_not_repeat_what_was_announced(recorder: Recorder, tmp_path: Path) -> None:
    """With the daemon's file of announced jobs, the reminder is not sent twice."""
    announced = tmp_path / "announced.json"
    session_plan = fast_plan(start_in=0.1, reminder_before=0.05)
    before = SessionScheduler(FakeClock(datetime.now(UTC)), recorder, fired_file=announced)
    before.start()
    before.update(session_plan)
    assert names(recorder.take(2)) == ["session_reminder:1", "hot_seat:Robert Craven"]
    before.stop()
    after = SessionScheduler(FakeClock(datetime.now(UTC)), recorder, fired_file=announced)
    after.start()
    try:
        after.update(session_plan)
        assert names(recorder.take(3)) == ["hot_seat:Ada", "hot_seat:Alan", "session_ended:1"]
    finally:
        after.stop()
