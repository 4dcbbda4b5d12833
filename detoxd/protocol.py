"""The control socket's protocol: JSON lines between the root daemon and its clients.

- request ``{"cmd": "status", ...args}`` → response ``{"ok": true, ...}`` or
  ``{"ok": false, "error": "<message>", "code": "<code>"}``; a connection may carry
  several requests, one after another.
- request ``{"cmd": "subscribe"}`` → ``{"ok": true, "subscribed": true}``, then the
  current state and every event the daemon publishes, one ``{"event": "...", ...}`` per line,
  until either side closes.

Anyone who can reach the socket may read (it is 0666); who may call each command (root, a
person at the seat, the network agent, anyone) is one table, :data:`COMMANDS`, checked against
the peer's uid from ``SO_PEERCRED`` (:mod:`detoxd.service.commands` binds each name to its
handler). Every refusal and error is built by :func:`error_response`.

Shared by the client (:mod:`detoxd.client`) and the server (:mod:`detoxd.service.control`);
standard library only, so that ``detoxd status`` starts quickly.
"""

from __future__ import annotations

import json
import time
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable, Mapping
    from typing import Any, ClassVar, NamedTuple, Self, TypeVar, dataclass_transform

    T = TypeVar("T")

DEFAULT_SOCKET_PATH = "/run/detoxd/control.sock"  # a string: pathlib is a tenth of `detoxd status`
SUBSCRIBE_COMMAND = "subscribe"

# Who may call a command.
ROOT = "root"  # uid 0 (or the daemon's own euid): what changes the detox
SEAT = "seat"  # a person at this machine's seat, as logind says (or root): allowances
AGENT = "agent"  # the network agent's user (or root): the names may come from root-only lists
MAILER = "mailer"  # the mail agent's user (or root): the messages to the peers
ANYONE = "anyone"  # whoever reaches the socket; a reply shows them only what they may see
CALLERS = (ROOT, SEAT, AGENT, MAILER, ANYONE)

COMMANDS: dict[str, str] = {  # the wire's commands and who may call each
    "status": ANYONE,
    "subscribe": ANYONE,  # answered by the control server itself: status events until closed
    "report": ANYONE,  # the report as the asking user may see it
    "calendar": ANYONE,
    "peer_lock": ANYONE,  # public values only
    "activity_targets": ANYONE,
    "activity_report": ANYONE,  # for the caller's own uid only
    "agent_report": ANYONE,  # for the caller's own uid only; it informs, never enforces
    "open": SEAT,
    "close": SEAT,
    # The browser extension, through `detoxd browser-host` as the browser's user (issue 23):
    "browser_check": ANYONE,  # {"url"}: blocked now, by which rule, which allowance opens it
    "browser_attempt": SEAT,  # {"url"}: a blocked navigation, counted per rule per day
    "browser_time": SEAT,  # {"day", "seconds": {rule or allowance: s}}: the day's totals so far
    "network_sync": AGENT,
    "mail_sync": MAILER,  # detoxd-mail: the queued messages out, which the server accepted in
    "start": ROOT,  # with "at": plans the detox to begin then
    "cancel": ROOT,  # a planned start (refused once it is locked by schedule)
    "end": ROOT,
    "reload": ROOT,
    "exec_events": ROOT,  # detoxd-execwatch: "these PIDs just exec()d"; the daemon looks itself
}
# What changes the detox (exec_events only makes the daemon look at processes sooner).
MUTATING_COMMANDS: frozenset[str] = frozenset(name for name, who in COMMANDS.items()
                                              if who == ROOT and name != "exec_events")

MAX_REQUEST_BYTES = 64 * 1024
# Responses and events come from the (trusted) daemon and may carry a whole status.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024

SOCKET_DIR_MODE = 0o755
# World-writable on purpose: authorisation is per request, by SO_PEERCRED.
SOCKET_MODE = 0o666

# Error codes sent in ``{"ok": false, "code": ...}``.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
TIMEOUT = "timeout"
NOT_AUTHORIZED = "not_authorized"
BUSY = "busy"
INTERNAL_ERROR = "internal_error"
REFUSED = "refused"


def error_response(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one shape of a refusal or an error: ``{"ok": false, "error": ..., "code": ...}``,
    with the ``details`` some carry (a config's ``errors``, a peer lock's ``retry_in_seconds``)."""
    return {"ok": False, "error": message, "code": code, **details}


class ErrorReply(Exception):
    """Raised by a command's handler (or what it calls) to answer with :func:`error_response`:
    the command table turns it into the reply."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def reply(self) -> dict[str, Any]:
        return error_response(self.code, self.message, **self.details)


def bad_request(message: str) -> ErrorReply:
    return ErrorReply(BAD_REQUEST, message)


def refused(message: str, **details: Any) -> ErrorReply:
    return ErrorReply(REFUSED, message, **details)


class ControlError(Exception):
    """Base of the errors this module raises."""


class DaemonUnreachable(ControlError):
    """No daemon answers: no socket, connection refused, timeout, or connection lost."""


class ProtocolError(ControlError):
    """The daemon answered something that is not a JSON-lines reply."""


class RequestRefused(ControlError):
    """The daemon answered ``{"ok": false, ...}`` where the client needs success."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(f"{response.get('code', 'error')}: {response.get('error', '')}")
        self.response = response


class AlreadyRunning(ControlError):
    """Another live server answers on the socket path."""


if TYPE_CHECKING:
    class Peer(NamedTuple):
        """Who is at the other end of a connection, from SO_PEERCRED."""

        pid: int
        uid: int
        gid: int
else:  # the same tuple, without importing typing at run time
    Peer = namedtuple("Peer", "pid uid gid")


class LineTooLong(Exception):
    """A line longer than the size limit."""


class IncompleteLine(Exception):
    """The peer closed its sending side in the middle of a line."""


class LineReader:
    """Reads newline-terminated lines from a socket with a size cap and a deadline."""

    def __init__(self, sock: _socket.socket, max_line: int) -> None:
        self._sock = sock
        self._max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes already known to hold no newline

    @property
    def has_partial_line(self) -> bool:
        return bool(self._buffer)

    def read_line(self, deadline: float | None) -> bytes | None:
        """One line without its newline, or None at a clean end of stream.

        The deadline is for the whole line (``time.monotonic()``), so a peer trickling a
        byte at a time cannot hold the connection longer than one byte would.
        Raises TimeoutError, LineTooLong, IncompleteLine or OSError.
        """
        while True:
            newline = self._buffer.find(b"\n", self._scanned, self._max_line + 1)
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                self._scanned = 0
                return line
            if len(self._buffer) > self._max_line:
                raise LineTooLong
            self._scanned = len(self._buffer)
            self._sock.settimeout(remaining(deadline))
            chunk = self._sock.recv(65536)
            if not chunk:
                if self._buffer:
                    raise IncompleteLine
                return None
            self._buffer += chunk


def remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_object(line: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity) that must be an object. Raises ValueError."""
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except RecursionError as nested_too_deep:
        raise ValueError("JSON nested too deeply") from nested_too_deep
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode()




# ---- the status: what `status` answers (and `status --json` prints), typed ----
#
# Each record below is one JSON object of the status; every field is the key of the same name
# (detoxd/data/status.schema.json is the schema, tests/integration/test_status_schema.py checks a
# real daemon's answers against it). ``from_json`` takes what a daemon sent: keys this version
# does not know are kept in ``extra`` and given back by ``to_json``, missing ones take the
# default (an older daemon); the values are not checked (the daemon is trusted, the schema is).
#
# The records are frozen dataclasses to the type checker (PEP 681's dataclass_transform: typed
# constructor, fields, frozen), made at run time by _Record.__init_subclass__ rather than by
# dataclasses.dataclass: the dataclasses module (it imports inspect) and the code it generates
# for each class cost `detoxd status` 12 ms at every start, 1.5x `python -c pass` (measured on a
# plain pip install: 4.4x instead of 3.0x).

if not TYPE_CHECKING:
    def dataclass_transform(**_options: object) -> Callable[[T], T]:
        return lambda decorated: decorated


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A record field's default made anew for each record (dataclasses.field's default_factory)."""
    return _Factory(default_factory)  # type: ignore[return-value]


_NO_DEFAULT = object()


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class _Record:
    """A status record: a frozen dataclass (fields in order, each with its default; equality,
    ``replace``) with ``to_json`` / ``from_json`` and an ``extra`` field.

    ``_NESTED``: field -> record class of its value (or of each item of a list);
    ``_OMITTED_WHEN_NONE``: keys the daemon leaves out rather than send as null."""

    _FIELDS: ClassVar[tuple[str, ...]] = ()
    _DEFAULTS: ClassVar[dict[str, object]] = {}
    _NESTED: ClassVar[dict[str, type[_Record]]] = {}
    _OMITTED_WHEN_NONE: ClassVar[frozenset[str]] = frozenset()
    extra: dict[str, Any]

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__(**options)
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (inspect: what this avoids)
        names = [name for name in annotations if not name.startswith("_")]
        defaults = {name: cls.__dict__.get(name, _NO_DEFAULT) for name in names}
        for name, default in defaults.items():
            if isinstance(default, _Factory):
                delattr(cls, name)  # as dataclasses does: no shared mutable default on the class
        cls._FIELDS = tuple(names)
        cls._DEFAULTS = {name: default for name, default in defaults.items() if default is not _NO_DEFAULT}

    def __init__(self, *args: Any, **values: Any) -> None:
        names = self._FIELDS
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} fields, {len(args)} were given")
        for name, value in zip(names, args, strict=False):
            if name in values:
                raise TypeError(f"{type(self).__name__}() got {name!r} twice")
            values[name] = value
        unknown = set(values) - set(names)
        if unknown:
            raise TypeError(f"{type(self).__name__}() has no field {sorted(unknown)[0]!r}")
        for name in names:
            if name in values:
                value = values[name]
            elif name in self._DEFAULTS:
                default = self._DEFAULTS[name]
                value = default.make() if isinstance(default, _Factory) else default
            else:
                raise TypeError(f"{type(self).__name__}() needs {name!r}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())  # as a frozen dataclass's: fails on a dict field

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_json({self.to_json()!r})"

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (dataclasses.replace)."""
        return type(self)(**{**{name: getattr(self, name) for name in self._FIELDS}, **changes})

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name in self._FIELDS:
            value = getattr(self, name)
            if name == "extra" or (value is None and name in self._OMITTED_WHEN_NONE):
                continue
            document[name] = _plain(value)
        document.update(self.extra)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Self:
        known = set(cls._FIELDS) - {"extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in document.items():
            if key not in known:
                extra[key] = value
                continue
            record = cls._NESTED.get(key)
            if record is not None and isinstance(value, list):
                value = tuple(record.from_json(item) if isinstance(item, dict) else item for item in value)
            elif record is not None and isinstance(value, dict):
                value = record.from_json(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[key] = value
        return cls(**values, extra=extra)


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class HostsFileProblem(_Record):
    """What keeps the daemon from writing the hosts file, and what to do."""

    reason: str = ""
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class HostsOverride(_Record):
    """A line of the hosts file giving blocked names another address."""

    line: str = ""
    names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class EngineRow(_Record):
    """One household DNS engine, as its network agent last reported it."""

    engine: str = "?"
    url: str | None = None
    conf_dir: str | None = None
    state: str = "pending"  # in_sync, idle, pending, no_agent, unreachable, auth_failed, ...
    last_ok: str | None = None
    names: int = 0
    error: str | None = None
    tamper_events: int = 0
    clients: int = 0
    query_log: str | None = None  # available | not_available; None: not read yet
    extra: dict[str, Any] = field(default_factory=dict)


class AgentReport(_Record):
    """A tray agent's word on its user's notifications."""

    uid: int = -1
    notifications_silenced: bool = False
    backend: str = ""
    reason: str | None = None  # why silencing did not take (left out when it did)
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _OMITTED_WHEN_NONE = frozenset({"reason", "fix"})


class TimeHeld(_Record):
    """Downtime not credited to the detox until the clock is confirmed."""

    seconds: int = 0
    since: str | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class PeerLockStatus(_Record):
    """``lock: peers``: who holds the shares, and the early-end attempts."""

    holders: tuple[str, ...] = ()
    share_set: str = ""
    failed_attempts: int = 0
    retry_in_seconds: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class AllowanceStatus(_Record):
    """One allowance of the blocklist: open or not, and what is left of today's budget."""

    name: str = "?"
    open: bool = False
    open_until: str | None = None
    minutes_left_today: int = 0
    opens_left_today: int | None = None  # None: no limit on opens
    next_window: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ScheduleEntryStatus(_Record):
    """One weekly block window (`schedule:` in detoxd.yaml): in force now or not, and when that changes."""

    name: str = "?"
    days: tuple[str, ...] = ()
    window: str = ""  # "09:00-17:30" (local time)
    blocks: str | tuple[str, ...] = "blocklist"
    lock: bool = False
    active: bool = False
    next_change: str | None = None
    after_detox: bool = False
    waiting_for_detox_end: bool = False
    pending: dict[str, Any] | None = None  # {"edit", "takes_effect"}: a loosening edit held
    extra: dict[str, Any] = field(default_factory=dict)


class SessionSeat(_Record):
    """One hot seat of a session: its place in the rotation, who, and when."""

    seat: int = 0
    name: str = "?"
    start: str = ""
    end: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class NextSession(_Record):
    number: int = 0
    start: str = ""
    end: str = ""
    in_progress: bool = False
    location: str | None = None
    hot_seat: str | None = None  # in the hot seat now (in progress), else who takes it first
    hot_seats: tuple[SessionSeat, ...] = ()  # the session's rotation
    extra: dict[str, Any] = field(default_factory=dict)


class HotSeat(_Record):
    name: str = "?"
    ends_at: str | None = None
    seconds_left: int = 0
    session: int = 0
    seat: int = 0
    of: int = 0
    next_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MailStatus(_Record):
    """The messages to the peers (`mail:`): the server, what waits, what was sent to whom and when."""

    server: str | None = None  # host:port; None: `mail:` was removed, messages may still wait
    pending_count: int = 0
    pending: tuple[dict[str, Any], ...] = ()  # {to, kind, queued_at}, oldest first (at most 10)
    sent: tuple[dict[str, Any], ...] = ()  # {to, kind, sent_at}, the last 10 delivered
    last_try: str | None = None  # the mail agent's last round
    error: str | None = None  # why its last round failed (a problem in status too)
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Status(_Record):
    """The daemon's status: the detox, the block and everything that keeps it from being whole."""

    state: str = "idle"  # active | scheduled (a detox planned: `start --at`) | idle
    locked: bool = False
    lock: bool | str | None = None  # detox.lock of the running detox: true, false or "peers"
    peers_needed: int | None = None
    peer_lock: PeerLockStatus | None = None  # only with lock "peers"
    started_at: str | None = None
    ends_at: str | None = None
    days_left: int | None = None
    seconds_left: int | None = None
    days_total: float | None = None
    domains_blocked: int = 0
    domains_configured: int = 0
    paths_blocked: tuple[str, ...] = ()  # `paths:` entries the browsers' policies block now
    hosts_file: str = ""
    hosts_in_sync: bool = False
    hosts_file_problem: HostsFileProblem | None = None
    hosts_overrides: tuple[HostsOverride, ...] = ()
    network: tuple[EngineRow, ...] = ()
    notifications_suppress: bool = True  # read by each user's tray agent
    agents: tuple[AgentReport, ...] = ()
    tamper_events: int = 0
    apps_closed: dict[str, int] = field(default_factory=dict)  # app name -> times closed
    # How blocked apps are found: "exec_events" (the kernel's, via detoxd-execwatch) or "polling".
    apps_watch: str = "polling"
    clock_jumps: int = 0
    time_held: TimeHeld | None = None
    stale: bool = False  # served from an old snapshot: nothing confirms the block
    snapshot_age_seconds: float | None = None  # only in a status served from a snapshot
    config_error: str | None = None
    config_missing: tuple[str, ...] = ()
    state_error: str | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    allowances: tuple[AllowanceStatus, ...] = ()
    schedule: tuple[ScheduleEntryStatus, ...] = ()  # weekly block windows (schedule: in detoxd.yaml)
    next_session: NextSession | None = None
    current_hot_seat: HotSeat | None = None
    starts_at: str | None = None  # state "scheduled": when the planned detox begins
    cancellable_until: str | None = None  # scheduled and locked: `detoxd cancel` until then
    cancellable: bool = False  # scheduled: `detoxd cancel` would be taken now
    version: str = "?"
    mail: MailStatus | None = None  # only with `mail:` (or an outbox left from it)
    extra: dict[str, Any] = field(default_factory=dict)
    _OMITTED_WHEN_NONE = frozenset({"peer_lock", "snapshot_age_seconds", "mail"})

    @property
    def active(self) -> bool:
        return self.state == "active"


NextSession._NESTED = {"hot_seats": SessionSeat}
Status._NESTED = {"peer_lock": PeerLockStatus, "hosts_file_problem": HostsFileProblem,
                  "hosts_overrides": HostsOverride, "network": EngineRow, "agents": AgentReport,
                  "time_held": TimeHeld, "allowances": AllowanceStatus,
                  "schedule": ScheduleEntryStatus, "next_session": NextSession,
                  "current_hot_seat": HotSeat, "mail": MailStatus}
