"""Who may open an allowance: a person at this machine, never a system or a remote user.

The rule (documented in docs/allowances.md):

- root may (``sudo detoxd open twitter``);
- a system user (uid below 1000, and nobody, 65534) may not: services and sandboxed processes
  must not be able to lift the block;
- any other user may when logind says they are at the seat: the connecting process belongs to a
  local session on a seat, or — when it belongs to no session at all, as apps that a desktop starts
  in their own scopes do — the user has an *active* session on a seat. A process of a remote
  session (ssh) is refused even while the same user sits at the machine.

The uid and pid come from SO_PEERCRED (the control server's ``peer``), which the client cannot
forge. logind's view is read through libsystemd's sd-login API (``libsystemd.so.0``, present on
every systemd system) with ctypes; without logind nobody but root may open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
from dataclasses import dataclass
from functools import cache
from typing import Protocol

FIRST_PERSON_UID = 1000  # Debian's UID_MIN: the first uid adduser gives a person
NOBODY_UID = 65534


@dataclass(frozen=True)
class SessionFacts:
    """What logind knows about the connecting process and its user."""

    session: str | None  # the logind session the process belongs to, if any
    session_remote: bool = False
    session_seat: str | None = None
    active_seats: tuple[str, ...] = ()  # seats where the user has an active session


class Logind(Protocol):
    def facts(self, uid: int, pid: int) -> SessionFacts: ...


def may_open(uid: int, facts: SessionFacts | None) -> str | None:
    """None when ``uid`` may open allowances; otherwise the reason, for the user."""
    if uid == 0:
        return None
    if uid < FIRST_PERSON_UID or uid == NOBODY_UID:
        return f"uid {uid} is a system user: only people at this machine may open allowances"
    if facts is None:
        return "logind is not available: only root may open allowances here"
    if facts.session is not None:
        if facts.session_remote:
            return f"session {facts.session} is remote: allowances open only from this machine's seat"
        if facts.session_seat:
            return None
    if facts.active_seats:
        return None
    return f"uid {uid} has no active session at this machine's seat"


class SdLogin:
    """logind through libsystemd's sd-login functions."""

    def __init__(self, library: str | None = None) -> None:
        self._lib = _load(library or ctypes.util.find_library("systemd") or "libsystemd.so.0")

    def available(self) -> bool:
        return self._lib is not None

    def facts(self, uid: int, pid: int) -> SessionFacts:
        lib = self._lib
        if lib is None:
            raise OSError(errno.ENOSYS, "libsystemd is not installed")
        session = self._string(lambda out: lib.sd_pid_get_session(pid, out))
        remote = False
        seat = None
        if session is not None:
            remote = lib.sd_session_is_remote(session.encode()) > 0
            seat = self._string(lambda out: lib.sd_session_get_seat(session.encode(), out))
        return SessionFacts(session, remote, seat, self._seats(uid))

    def _string(self, call: object) -> str | None:
        out = ctypes.c_void_p()
        result = call(ctypes.byref(out))  # type: ignore[operator]
        if result < 0 or not out.value:
            return None
        try:
            return ctypes.string_at(out.value).decode(errors="replace")
        finally:
            _free(out.value)

    def _seats(self, uid: int) -> tuple[str, ...]:
        assert self._lib is not None
        array = ctypes.POINTER(ctypes.c_void_p)()  # a NULL-terminated char** the caller frees
        count = self._lib.sd_uid_get_seats(uid, 1, ctypes.byref(array))
        if count < 0 or not array:
            return ()
        seats = []
        for index in range(count):
            pointer = array[index]
            if pointer:
                seats.append(ctypes.string_at(pointer).decode(errors="replace"))
                _free(pointer)
        _free(ctypes.cast(array, ctypes.c_void_p).value)
        return tuple(seats)


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def _free(pointer: int | None) -> None:
    if pointer:
        _libc().free(ctypes.c_void_p(pointer))


def _load(name: str) -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    char_out = ctypes.POINTER(ctypes.c_void_p)
    lib.sd_pid_get_session.argtypes = [ctypes.c_int, char_out]
    lib.sd_session_is_remote.argtypes = [ctypes.c_char_p]
    lib.sd_session_get_seat.argtypes = [ctypes.c_char_p, char_out]
    lib.sd_uid_get_seats.argtypes = [ctypes.c_uint, ctypes.c_int,
                                     ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p))]
    return lib


def check_peer(uid: int, pid: int, logind: Logind | None) -> str | None:
    """:func:`may_open` for a connected peer; logind errors count as "not at the seat"."""
    if uid == 0 or uid < FIRST_PERSON_UID or uid == NOBODY_UID or logind is None:
        return may_open(uid, None)
    try:
        facts = logind.facts(uid, pid)
    except OSError:
        return may_open(uid, None)
    return may_open(uid, facts)
