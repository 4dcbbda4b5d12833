"""The daemon's status in words: the one renderer behind `detoxd status`, the tray's menu and
doctor, so that they say the same thing the same way, singular or plural as the count is.

Pure, and cheap to import (`detoxd status` starts in a few tens of milliseconds): datetime
(for an allowance's times) and the engines' labels (:mod:`detoxd.core.dnsengines`) are imported
only when there is one to show.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from datetime import datetime

    from detoxd.protocol import AllowanceStatus, EngineRow, ScheduleEntryStatus, Status

SECONDS_PER_DAY = 86400

# How status, the tray and doctor describe an engine's state (EngineRow.state).
ENGINE_STATE_TEXT = {
    "in_sync": "holds the detox",
    "idle": "holds nothing of detoxd's",
    "pending": "being set up",
    "no_agent": "no network agent reports (is detoxd-network running?)",
    "unreachable": "unreachable, retrying",
    "auth_failed": "refuses the credentials",
    "tls_error": "certificate problem",
    "refused": "refused the request, retrying",
    "error": "error, retrying",
}


# ---- counting words ----

def count(number: float | None, noun: str, plural: str | None = None) -> str:
    """"1 name", "2 names", "0 names"; "? names" when the number is unknown."""
    if number is None:
        return f"? {plural or noun + 's'}"
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def times(number: int) -> str:
    """"once", "2 times"."""
    return "once" if number == 1 else f"{number} times"


def names_blocked(number: int | None) -> str:
    return f"{count(number, 'name')} blocked"


def tampering_undone(number: int) -> str:
    return f"Tampering undone: {times(number)}"


def days_left(days: int | None) -> str:
    """"1 day left", "12 days left"; "detox active" when the daemon did not say."""
    return "detox active" if days is None else f"{count(days, 'day')} left"


def time_left(status: Status) -> str:
    """"14 days", then under a day "2 h 5 min", "3 min"."""
    seconds = status.seconds_left or 0
    if seconds >= SECONDS_PER_DAY and status.days_left is not None:
        return count(status.days_left, "day")
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def clock_time(text: str) -> str:
    """"Tue 12:50" in this machine's time zone, from an ISO 8601 time of the status."""
    from datetime import datetime

    return datetime.fromisoformat(text).astimezone().strftime("%a %H:%M")


# ---- one line per record ----

def engine_label(row: EngineRow) -> str:
    """"Pi-hole (pi.hole)", "Unbound (/etc/unbound/unbound.conf.d)"."""
    from urllib.parse import urlsplit

    from detoxd.core import dnsengines

    name = dnsengines.label(row.engine)
    host = urlsplit(row.url).hostname if row.url else row.conf_dir
    return f"{name} ({host})" if host else name


def engine_line(row: EngineRow, *, details: bool = True) -> str:
    """"Pi-hole (pi.hole): holds the detox, 146 names (last ok …)": ``details`` adds the
    names, the last success and the error (what `detoxd status` and doctor show)."""
    text = f"{engine_label(row)}: {ENGINE_STATE_TEXT.get(row.state, row.state)}"
    if not details:
        return text
    text += f", {count(row.names, 'name')}"
    if row.last_ok:
        text += f" (last ok {row.last_ok})"
    return text + (f": {row.error}" if row.error else "")


def allowance_line(allowance: AllowanceStatus) -> str:
    """"Allowance twitter: open until Tue 12:50, 14 min left today, 1 open left"."""
    parts = [f"open until {clock_time(allowance.open_until)}"] if allowance.open and allowance.open_until \
        else []
    parts.append(f"{allowance.minutes_left_today} min left today")
    if allowance.opens_left_today is not None:
        parts.append(f"{count(allowance.opens_left_today, 'open')} left")
    if allowance.next_window:
        parts.append(f"next window {clock_time(allowance.next_window)}")
    return f"Allowance {allowance.name}: " + ", ".join(parts)


def schedule_text(entry: ScheduleEntryStatus, now: datetime | None = None) -> str | None:
    """"Blocked until 17:30" (the window is in force) or "Next block 09:00" ("Mon 09:00" when not
    today, always without ``now``), in the time zone of ``now`` (this machine's without it); None
    when it never changes."""
    from datetime import datetime

    if not entry.next_change:
        return "Blocked" if entry.active else None
    moment = datetime.fromisoformat(entry.next_change)
    local = moment.astimezone(now.tzinfo if now is not None else None)
    same_day = now is not None and local.date() == now.date()
    when = local.strftime("%H:%M" if same_day else "%a %H:%M")
    return f"Blocked until {when}" if entry.active else f"Next block {when}"


def schedule_line(entry: ScheduleEntryStatus, now: datetime | None = None) -> str:
    """`detoxd status`'s line: "Schedule workdays (mon,tue 09:00-17:30): Blocked until Mon 17:30"."""
    text = schedule_text(entry, now) or "never in force"
    if entry.waiting_for_detox_end:
        text = "begins when a detox ends"
    line = f"Schedule {entry.name} ({','.join(entry.days)} {entry.window}): {text}"
    if isinstance(entry.pending, dict):
        line += f"; held edit ({entry.pending.get('edit')}) takes effect {entry.pending.get('takes_effect')}"
    return line


def warning_line(text: str) -> str:
    """"Warning: …", saying "warning" once: a config issue's text carries its own
    ("blocklist.yaml:3: allowances[0]: warning: …", as `detoxd check` prints it)."""
    return "Warning: " + text.removeprefix("warning: ").replace(": warning: ", ": ", 1)


# ---- `detoxd status` ----

def status_lines(status: Status, start_command: str = "sudo detoxd start") -> list[str]:
    """What `detoxd status` prints."""
    lines: list[str] = []
    if status.active:
        lock = " (locked)" if status.locked else ""
        if status.lock == "peers":
            lock = f" (lock: peers, {status.peers_needed} peers' cards end it early)"
        lines.append(f"Detox active{lock}: {time_left(status)} left, ends {status.ends_at}")
    elif status.state == "scheduled":
        lines += planned_lines(status)
    else:
        lines.append(f"No detox running. Start one with `{start_command}`.")
    sync = "in sync" if status.hosts_in_sync else "OUT OF SYNC"
    if status.stale:  # served from an old snapshot: nothing confirms the file
        age = "?" if status.snapshot_age_seconds is None else f"{status.snapshot_age_seconds:g}"
        sync = f"NOT CONFIRMED: this status is {age} s old"
    lines.append(f"{names_blocked(status.domains_blocked)} in {status.hosts_file} ({sync})")
    if status.paths_blocked:
        lines.append(f"Paths blocked in the browsers: {', '.join(status.paths_blocked)}")
    if status.apps_closed:
        closed = ", ".join(f"{app} ({number})" for app, number in status.apps_closed.items())
        how = ("at exec" if status.apps_watch == "exec_events"
               else "by polling /proc: no exec events from detoxd-execwatch")
        lines.append(f"Apps closed: {closed} ({how})")
    if status.tamper_events:
        lines.append(tampering_undone(status.tamper_events))
    if status.active:  # outside a detox allowances do nothing
        lines += [allowance_line(allowance) for allowance in status.allowances]
    lines += [schedule_line(entry) for entry in status.schedule]
    lines += [f"Engine {engine_line(row)}" for row in status.network]
    lines += mail_lines(status)
    lines += [warning_line(warning) for warning in status.warnings]
    if status.config_error:
        lines.append("Config error (the last good blocklist stays in force):")
        lines += ["  " + line for line in status.config_error.splitlines()]
    return lines


MAIL_PROBLEM = "mail: "  # a problem of the mail to the peers (detoxd.service.mail): the block is whole


def enforcement_problems(status: Status) -> list[str]:
    """The problems that put the block at risk (a failing mail server does not)."""
    return [problem for problem in status.problems if not problem.startswith(MAIL_PROBLEM)]


def mail_lines(status: Status, shown: int = 3) -> list[str]:
    """The messages to the peers: what waits, the last sent (to whom, what, when)."""
    mail = status.mail
    if mail is None:
        return []
    via = f" via {mail.server}" if mail.server else ""
    lines = []
    if mail.pending_count:
        lines.append(f"Mail to peers{via}: {count(mail.pending_count, 'message')} waiting"
                     + (f" (last try {clock_time(mail.last_try)})" if mail.last_try else ""))
    for row in list(mail.sent)[-shown:][::-1]:
        at = row.get("sent_at")
        when = clock_time(at) if isinstance(at, str) and at else "?"
        lines.append(f"Mail sent: {row.get('kind', '?')} to {row.get('to', '?')} at {when}")
    return lines


def planned_lines(status: Status) -> list[str]:
    """A planned detox (`detoxd start --at`): when it begins, and whether it can still be cancelled."""
    days = "" if status.days_total is None else f" of {count(_whole(status.days_total), 'day')}"
    lines = [f"Detox planned{days}: begins {status.starts_at}"]
    if not status.cancellable:
        lines.append("It is locked: it cannot be cancelled any more; it begins by itself.")
    elif status.cancellable_until is None:
        lines.append("It can be cancelled until it begins (`detoxd cancel`).")
    else:
        lines.append(f"It can be cancelled until {status.cancellable_until} (`detoxd cancel`), "
                     "then it is locked.")
    return lines


def _whole(days: float) -> float | int:
    return int(days) if float(days).is_integer() else days


def format_status(status: Status, start_command: str = "sudo detoxd start") -> str:
    return "\n".join(status_lines(status, start_command))
