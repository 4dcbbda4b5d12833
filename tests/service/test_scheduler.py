"""Reminders and hot-seat handovers: which jobs exist at a given moment (pure), and firing them
with APScheduler's real BackgroundScheduler on a FakeClock the tests move."""

from __future__ import annotations

import ast
import importlib
import inspect
import queue
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detoxd.client import ControlClient
from detoxd.clock import FakeClock
from detoxd.core import plan
from detoxd.core.plan import PlannedSession
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


# ---- firing, with the real BackgroundScheduler on a FakeClock ----
#
# APScheduler 3 has no pluggable clock. Its scheduler and executor modules read the time only
# through ``datetime.now`` (checked below, so that an APScheduler that reads it otherwise fails
# here instead of silently running on the real clock); the tests point that name at a FakeClock
# and move it by hand, waking the scheduler as a changed clock would. A job fires when the test
# moves the clock to its time, whatever the load on the machine.

START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
SLOT = timedelta(seconds=20)
PEOPLE = (Person("Ada"), Person("Alan"))
TIME_READERS = ("apscheduler.schedulers.base", "apscheduler.executors.base", "apscheduler.executors.base_py3")


def reads_datetime_only_for_now(source: str) -> bool:
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "datetime"]
    return all(isinstance(parent := parents[use], ast.Attribute) and parent.attr == "now" for use in uses)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(START - timedelta(hours=1))
    stand_in = SimpleNamespace(now=lambda tz=None: fake.now().astimezone(tz))
    for name in TIME_READERS:
        try:
            module = importlib.import_module(name)
        except ImportError:  # base_py3 exists in APScheduler 3.9 (Debian 12) only
            continue
        assert reads_datetime_only_for_now(inspect.getsource(module)), f"{name} reads the time otherwise"
        monkeypatch.setattr(module, "datetime", stand_in)
    return fake


class Recorder:
    """publish() target: remembers each event and the (fake) time it arrived."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: queue.Queue[tuple[str, dict[str, Any], datetime]] = queue.Queue()

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        self.events.put((event, details, self.clock.now()))

    def take(self, count: int) -> list[tuple[str, dict[str, Any], datetime]]:
        return [self.events.get(timeout=30) for _ in range(count)]


def short_plan(reminder_before: timedelta = timedelta(seconds=5)) -> plan.Plan:
    """Three hot seats of 20 s from START (session 2: a day later), one reminder."""
    settings = SessionSettings(first=START.replace(tzinfo=None), timezone="UTC", repeat_after_days=1,
                               slot_length=SLOT, reminders=(reminder_before,))
    return plan.build(ME, PEOPLE, settings, "UTC")


def due_times(session: PlannedSession) -> list[datetime]:
    """When the session's jobs are due, in order: reminder, hot seats, end."""
    return [*(at for _, at in session.reminders), *(seat.start for seat in session.hot_seats), session.end]


def move_to(clock: FakeClock, when: datetime, *schedulers: SessionScheduler) -> None:
    clock.advance((when - clock.now()).total_seconds())
    for running in schedulers:
        running.wakeup()


@pytest.fixture
def recorder(clock: FakeClock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
def scheduler(clock: FakeClock, recorder: Recorder) -> Iterator[SessionScheduler]:
    running = SessionScheduler(clock, recorder)
    running.start()
    yield running
    running.stop()


def names(events: list[tuple[str, dict[str, Any], datetime]]) -> list[str]:
    return [f"{event}:{details.get('name', details.get('session'))}" for event, details, _ in events]


def step(clock: FakeClock, scheduler: SessionScheduler, recorder: Recorder,
         when: datetime) -> tuple[str, dict[str, Any], datetime]:
    """Moves the clock to ``when`` and returns the one event that fires there."""
    move_to(clock, when, scheduler)
    return recorder.take(1)[0]


SESSION_2 = {"session2-reminder-0m", "session2-seat1", "session2-seat2", "session2-seat3", "session2-end"}


def test_reminder_and_handovers_fire_when_due_in_order(scheduler: SessionScheduler, recorder: Recorder,
                                                       clock: FakeClock) -> None:
    session_plan = short_plan()
    scheduler.update(session_plan)
    first, second = session_plan.sessions
    events = [step(clock, scheduler, recorder, at) for at in due_times(first)]
    assert names(events) == ["session_reminder:1", "hot_seat:Robert Craven", "hot_seat:Ada",
                             "hot_seat:Alan", "session_ended:1"]
    # Each fired when the clock reached its time, not before (the clock stood at the one before).
    assert [arrived for _, _, arrived in events] == due_times(first)
    assert events[2][1]["next_name"] == "Alan"
    assert set(scheduler.scheduled()) == SESSION_2
    assert scheduler.scheduled()["session2-seat1"] == second.hot_seats[0].start


def test_status_follows_the_hot_seat(scheduler: SessionScheduler, recorder: Recorder,
                                     clock: FakeClock) -> None:
    session_plan = short_plan()
    scheduler.update(session_plan)
    assert scheduler.status_fields()["current_hot_seat"] is None
    reminder, robert, ada, *_ = due_times(session_plan.sessions[0])
    for at in (reminder, robert, ada):
        step(clock, scheduler, recorder, at)
    fields = scheduler.status_fields()
    assert fields["current_hot_seat"]["name"] == "Ada"
    assert fields["next_session"]["number"] == 1 and fields["next_session"]["in_progress"] is True


def test_a_reload_does_not_double_or_lose_jobs(scheduler: SessionScheduler, recorder: Recorder,
                                               clock: FakeClock) -> None:
    session_plan = short_plan()
    scheduler.update(session_plan)
    scheduler.update(session_plan)  # the same config loaded again
    reminder, robert, *rest = due_times(session_plan.sessions[0])
    first = [step(clock, scheduler, recorder, at) for at in (reminder, robert)]
    assert names(first) == ["session_reminder:1", "hot_seat:Robert Craven"]
    scheduler.update(session_plan)  # a reload during the session
    later = [step(clock, scheduler, recorder, at) for at in rest]
    assert names(later) == ["hot_seat:Ada", "hot_seat:Alan", "session_ended:1"]
    # A doubled job of session 1 would be due before session 2's reminder, so it would come first.
    session_2_reminder = due_times(session_plan.sessions[1])[0]
    assert names([step(clock, scheduler, recorder, session_2_reminder)]) == ["session_reminder:2"]


def test_a_reload_that_moves_the_session_moves_its_jobs(scheduler: SessionScheduler, recorder: Recorder,
                                                        clock: FakeClock) -> None:
    scheduler.update(short_plan())
    moved = SessionSettings(first=(START + timedelta(minutes=10)).replace(tzinfo=None), timezone="UTC",
                            repeat_after_days=1, slot_length=SLOT, reminders=(timedelta(seconds=5),))
    moved_plan = plan.build(ME, PEOPLE, moved, "UTC")
    scheduler.update(moved_plan)
    assert scheduler.scheduled()["session1-seat1"] == START + timedelta(minutes=10)
    assert len(scheduler.scheduled()) == 10  # replaced, not added: the ids are the same
    move_to(clock, START, scheduler)  # the old time passes: nothing was left there
    event, _, arrived = step(clock, scheduler, recorder, due_times(moved_plan.sessions[0])[0])
    assert (event, arrived) == (EVENT_REMINDER, START + timedelta(minutes=10) - timedelta(seconds=5))
    scheduler.update(None)  # sessions removed from the config
    assert scheduler.scheduled() == {}


def test_a_restart_mid_session_announces_the_current_hot_seat(recorder: Recorder, clock: FakeClock) -> None:
    session_plan = short_plan()
    reminder, robert, ada, alan, end = due_times(session_plan.sessions[0])
    before = SessionScheduler(clock, recorder)
    before.start()
    before.update(session_plan)  # now from the injected clock
    assert names([step(clock, before, recorder, at) for at in (reminder, robert)]) == [
        "session_reminder:1", "hot_seat:Robert Craven"]
    before.stop()  # the daemon goes down during Robert's hot seat...
    move_to(clock, ada + SLOT / 2)  # ...and is back during Ada's
    after = SessionScheduler(clock, recorder)
    after.start()
    try:
        after.update(session_plan)
        # The reminder is within its grace (1 minute) and the new process cannot know it was sent;
        # Ada at once, not at the next handover (the clock stands still in her slot).
        assert names(recorder.take(2)) == ["session_reminder:1", "hot_seat:Ada"]
        assert names([step(clock, after, recorder, at) for at in (alan, end)]) == [
            "hot_seat:Alan", "session_ended:1"]
    finally:
        after.stop()


def test_a_job_missed_while_down_is_not_sent(scheduler: SessionScheduler, clock: FakeClock) -> None:
    # The reminder was due 2 minutes ago; its grace is 1 minute.
    reminder_late = short_plan(reminder_before=timedelta(minutes=3))
    move_to(clock, START - timedelta(minutes=1), scheduler)
    jobs = scheduler.update(reminder_late)
    assert "session1-reminder-3m" not in {job.id for job in jobs}
    assert "session1-reminder-3m" not in scheduler.scheduled()
    assert "session1-seat1" in scheduler.scheduled()


def test_a_failing_publisher_does_not_stop_later_handovers(clock: FakeClock) -> None:
    received: queue.Queue[str] = queue.Queue()

    def flaky(event: str, details: dict[str, Any]) -> None:
        received.put(event)
        if received.qsize() == 1:
            raise OSError("subscriber gone")

    running = SessionScheduler(clock, flaky)
    running.start()
    try:
        session_plan = short_plan()
        running.update(session_plan)
        events = []
        for at in due_times(session_plan.sessions[0]):
            move_to(clock, at, running)
            events.append(received.get(timeout=30))
        assert events == [EVENT_REMINDER, EVENT_HOT_SEAT, EVENT_HOT_SEAT, EVENT_HOT_SEAT, EVENT_SESSION_ENDED]
    finally:
        running.stop()


def test_handovers_arrive_on_a_subscribed_socket(tmp_path: Path, clock: FakeClock) -> None:
    server = ControlServer(tmp_path / "control.sock", lambda request, peer: {"ok": True})
    server.start()
    running = SessionScheduler(clock, lambda event, details: server.publish({"event": event, **details}))
    running.start()
    try:
        with ControlClient(server.path).subscribe(timeout=30) as subscription:
            session_plan = short_plan()
            running.update(session_plan)
            received = []
            for at in due_times(session_plan.sessions[0])[:3]:
                move_to(clock, at, running)
                received.append(next(subscription))
        assert [message["event"] for message in received] == [
            EVENT_REMINDER, EVENT_HOT_SEAT, EVENT_HOT_SEAT]
        assert [message.get("name") for message in received[1:]] == ["Robert Craven", "Ada"]
        assert received[1]["ends_at"].endswith("+00:00")
    finally:
        running.stop()
        server.close()


def test_a_restart_does_not_repeat_what_was_announced(recorder: Recorder, clock: FakeClock,
                                                      tmp_path: Path) -> None:
    """With the daemon's file of announced jobs, the reminder is not sent twice."""
    announced = tmp_path / "announced.json"
    session_plan = short_plan()
    reminder, robert, *rest = due_times(session_plan.sessions[0])
    before = SessionScheduler(clock, recorder, fired_file=announced)
    before.start()
    before.update(session_plan)
    assert names([step(clock, before, recorder, at) for at in (reminder, robert)]) == [
        "session_reminder:1", "hot_seat:Robert Craven"]
    before.stop()
    after = SessionScheduler(clock, recorder, fired_file=announced)
    after.start()
    try:
        after.update(session_plan)  # both still within their grace: only the file stops them
        assert names([step(clock, after, recorder, at) for at in rest]) == [
            "hot_seat:Ada", "hot_seat:Alan", "session_ended:1"]
    finally:
        after.stop()
