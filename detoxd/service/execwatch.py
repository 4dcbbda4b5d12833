"""The exec watcher (``detoxd execwatch``, the ``detoxd-execwatch`` unit): the kernel says
"pid N exec'd", the daemon looks at pid N at once and closes it if it is a blocked app.

Polling /proc every second (:mod:`detoxd.service.appwatch`) closes an app 0.6 s after it starts
on average. The kernel's process-event connector (netlink ``NETLINK_CONNECTOR``, ``CN_IDX_PROC``)
sends a ``PROC_EVENT_EXEC`` the moment a process calls exec(). Subscribing needs CAP_NET_ADMIN
and works only from the initial PID and user namespaces, so it does not belong in the daemon
(whose sandbox has neither the capability nor any netlink socket): this small process holds the
one capability, reads only the events, and passes PIDs on with the root-only ``exec_events``
command of the control socket. It decides nothing: the daemon describes the PID from its own
/proc against its own rules, exactly as a scan would, so a wrong PID can close nothing that a
scan would not close too.

**Scope.** The connector reports every exec on the machine. Only processes the daemon can see
are passed on: those in the daemon's PID namespace or one below it (learnt from the daemon's PID
in SO_PEERCRED and ``/proc/PID/ns/pid``), each translated to its PID there (``NSpid`` in
/proc/PID/status). For the system's daemon that is every process; for a daemon a test starts in
its own PID namespace it is only what the test started there, so the test can close nothing else.

**Lease.** Each message renews a lease (``lease_seconds``); a quiet watcher renews it every
:data:`KEEPALIVE_SECONDS`. When the lease runs out (the watcher died), or the kernel dropped
events (``ENOBUFS``: ``lost``), the daemon scans /proc again and polls until events return.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from detoxd.client import ControlClient, DaemonUnreachable
from detoxd.core import apps

log = logging.getLogger("detoxd.execwatch")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_EXEC = 0x00000002
NLMSG_DONE = 3
NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2)

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EXEC = struct.Struct("=II")  # process_pid, process_tgid
_EVENT_OFFSET = _NLMSGHDR.size + _CN_MSG.size

# A quiet watcher's one message every two minutes: each is a connection the daemon accepts (three
# of its wake-ups), so once a minute kept an idle daemon above issue 26's six a minute. While a
# watcher is gone the daemon's 30 s safety net still lists /proc; the lease only bounds how long
# it goes on trusting a watcher that died without its goodbye (kill -9, a hang).
KEEPALIVE_SECONDS = 120.0
RETRY_SECONDS = 2.0  # the daemon did not answer (not started yet, restarting): asked again this soon
LEASE_SECONDS = 300.0  # the daemon trusts events this long after the last message
MAX_PIDS_PER_MESSAGE = 256
PROC = "/proc"
EVENTS_UNAVAILABLE = 3  # the exit status when the kernel offers no events here (the unit does not restart)


class EventsUnavailable(OSError):
    """The kernel offers no process events here (no connector, no CAP_NET_ADMIN, a namespace)."""


PROC_PID_INIT_INO = 0xEFFFFFFC  # the kernel's inode numbers of the initial PID and user namespaces
PROC_USER_INIT_INO = 0xEFFFFFFD


def in_initial_namespaces(proc: str = PROC) -> bool:
    """Whether this process is in the initial PID and user namespaces: the only ones the kernel
    sends process events to (a container, for one, is not)."""
    try:
        return (os.stat(f"{proc}/self/ns/pid").st_ino == PROC_PID_INIT_INO
                and os.stat(f"{proc}/self/ns/user").st_ino == PROC_USER_INIT_INO)
    except OSError:
        return False


def open_connector(proc: str = PROC) -> socket.socket:
    """A netlink socket subscribed to process events; EventsUnavailable when the kernel says no."""
    if not in_initial_namespaces(proc):
        # The kernel ignores the subscription there without an error: it would be silence.
        raise EventsUnavailable(errno.EPERM, "not in the initial PID and user namespaces, where the "
                                "kernel's process events are sent")
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
    except OSError as error:
        raise EventsUnavailable(error.errno, f"no netlink process connector: {error.strerror}") from error
    try:
        sock.bind((0, CN_IDX_PROC))
        with_margin = 4 << 20  # a fork storm must not overflow the queue at once
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, with_margin)  # SO_RCVBUFFORCE (CAP_NET_ADMIN)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, with_margin)
        attach_exec_filter(sock)
        sock.send(_control_message(PROC_CN_MCAST_LISTEN))
    except OSError as error:
        sock.close()
        raise EventsUnavailable(error.errno, f"cannot listen to process events: {error.strerror}") from error
    return sock


# A classic BPF program the kernel runs on each event before it reaches the socket: only exec
# events pass. The connector sends every fork, exit, uid change and comm change on the machine
# too; without it each of them woke the watcher (issue 26: idle means no wake-ups).
_BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = the 32-bit word at k, read big-endian
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: keep k bytes (0: drop)
_SOCK_FILTER = struct.Struct("=HBBI")  # code, jt, jf, k
SO_ATTACH_FILTER = 26


def exec_filter_program() -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) of the filter: the event's ``what`` is PROC_EVENT_EXEC, or drop it."""
    # BPF reads words in network order; the event is in host order: compare with htonl().
    return [
        (_BPF_LD_W_ABS, 0, 0, _EVENT_OFFSET),
        (_BPF_JEQ_K, 0, 1, socket.htonl(PROC_EVENT_EXEC)),
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
        (_BPF_RET_K, 0, 0, 0),
    ]


def attach_exec_filter(sock: socket.socket) -> None:
    """Let only exec events through to ``sock`` (SO_ATTACH_FILTER)."""
    program = b"".join(_SOCK_FILTER.pack(*step) for step in exec_filter_program())
    code = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: native alignment.
    fprog = struct.pack("@HP", len(program) // _SOCK_FILTER.size, ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def _control_message(op: int) -> bytes:
    body = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(body), 0) + body
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def exec_pids(datagram: bytes) -> list[int]:
    """The PIDs (thread-group ids) of the exec events in one netlink datagram (pure)."""
    found = []
    offset = 0
    while offset + _EVENT_OFFSET + _EVENT_HEAD.size <= len(datagram):
        length = _NLMSGHDR.unpack_from(datagram, offset)[0]
        if length < _EVENT_OFFSET + _EVENT_HEAD.size or offset + length > len(datagram):
            break
        what = _EVENT_HEAD.unpack_from(datagram, offset + _EVENT_OFFSET)[0]
        if what == PROC_EVENT_EXEC and length >= _EVENT_OFFSET + _EVENT_HEAD.size + _EXEC.size:
            found.append(_EXEC.unpack_from(datagram, offset + _EVENT_OFFSET + _EVENT_HEAD.size)[1])
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return found


# ---- scope: the daemon's PID namespace and the ones below it ----


def namespace_pids(pid: int, proc: str = PROC) -> tuple[int, ...]:
    """``pid``'s PID in each PID namespace it is in, outermost first (``NSpid:``); () if gone or
    if it runs as a system user (real or effective uid), whom the daemon never closes anyway."""
    text = _status(pid, proc)
    real_uid, effective_uid = apps.parse_uids(text)
    if real_uid is None or effective_uid is None or min(real_uid, effective_uid) < apps.FIRST_USER_UID:
        return ()
    return _nspid(text)


def _status(pid: int, proc: str) -> str:
    try:
        with open(f"{proc}/{pid}/status", "rb", buffering=0) as handle:
            return handle.read(8192).decode("utf-8", "replace")
    except OSError:
        return ""


def _nspid(status_text: str) -> tuple[int, ...]:
    line = next((line for line in status_text.splitlines() if line.startswith("NSpid:")), "")
    return tuple(int(part) for part in line.split()[1:] if part.isdigit())


def _namespace_inode(pid: int, proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/{pid}/ns/pid").st_ino
    except OSError:
        return None


@dataclass
class Scope:
    """The PID namespace of the daemon: which PIDs are passed on, and as which PID."""

    inode: int  # the daemon's PID namespace
    level: int  # its depth: 0 for the initial namespace
    proc: str = PROC

    @classmethod
    def of(cls, daemon_pid: int, proc: str = PROC) -> Scope:
        levels = _nspid(_status(daemon_pid, proc))
        if len(levels) == 1:  # the initial namespace: every process (its inode needs no reading,
            return cls(PROC_PID_INIT_INO, 0, proc)  # which the unit's one capability could not)
        inode = _namespace_inode(daemon_pid, proc)
        if inode is None or not levels:
            raise LookupError(f"cannot read the PID namespace of the daemon (pid {daemon_pid})")
        return cls(inode, len(levels) - 1, proc)

    def translate(self, pid: int) -> int | None:
        """``pid`` (as this process sees it) as the daemon sees it; None when the daemon cannot."""
        levels = namespace_pids(pid, self.proc)
        if len(levels) <= self.level:
            return None  # in a namespace beside or above the daemon's
        if self.level == 0:
            return levels[0]  # the initial namespace holds every process
        if not self._inside(pid, len(levels) - 1):
            return None
        return levels[self.level]

    def _inside(self, pid: int, depth: int) -> bool:
        inode = _namespace_inode(pid, self.proc)
        if inode is None:
            return False
        if inode == self.inode:
            return True
        # Walked each time, not cached by inode: a namespace's inode number is reused after it ends.
        return self._ancestor_is_scope(pid, depth)

    def _ancestor_is_scope(self, pid: int, depth: int) -> bool:
        try:
            fd = os.open(f"{self.proc}/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            for _ in range(depth - self.level):
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
                os.close(fd)
                fd = parent
            return os.fstat(fd).st_ino == self.inode
        except OSError:
            return False
        finally:
            os.close(fd)


# ---- the watcher ----


class ExecWatcher:
    """Reads exec events and passes the daemon's PIDs to it; runs until :meth:`stop`."""

    def __init__(self, client: ControlClient, *, proc: str = PROC,
                 keepalive_seconds: float = KEEPALIVE_SECONDS, lease_seconds: float = LEASE_SECONDS) -> None:
        self.client = client
        self.proc = proc
        self.keepalive_seconds = keepalive_seconds
        self.lease_seconds = lease_seconds
        self.scope: Scope | None = None
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.lost = False

    def stop(self) -> None:
        os.write(self._stop_write, b"x")

    def run(self) -> int:
        try:
            sock = open_connector(self.proc)
        except EventsUnavailable as error:
            log.error("%s: the daemon keeps polling for blocked apps", error.strerror)
            return EVENTS_UNAVAILABLE
        log.info("listening to the kernel's exec events (netlink process connector)")
        try:
            self._loop(sock)
        finally:
            sock.close()
            self._tell([], watching=False)
        return 0

    def _loop(self, sock: socket.socket) -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._stop_read, select.POLLIN)
        told = self._tell([], watching=True)
        next_keepalive = time.monotonic() + (self.keepalive_seconds if told else RETRY_SECONDS)
        while True:
            timeout_ms = max(0, int((next_keepalive - time.monotonic()) * 1000))
            ready = {fd for fd, _ in poller.poll(timeout_ms)}
            if self._stop_read in ready:
                return
            pids: list[int] = []
            if sock.fileno() in ready:
                pids = self._drain(sock)
            if pids or self.lost or time.monotonic() >= next_keepalive:
                told = self._tell(pids, watching=True, renew=time.monotonic() >= next_keepalive)
                if told is not None:  # (None: nothing was sent, the lease was not renewed)
                    next_keepalive = time.monotonic() + (self.keepalive_seconds if told else RETRY_SECONDS)

    def _drain(self, sock: socket.socket) -> list[int]:
        found: list[int] = []
        while len(found) < MAX_PIDS_PER_MESSAGE:
            try:
                datagram = sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the kernel dropped events: the daemon rescans
                    log.warning("exec events were lost (queue overflow): asking for a full scan")
                    self.lost = True
                    continue
                raise
            found.extend(exec_pids(datagram))
        return found

    def _tell(self, pids: Iterable[int], *, watching: bool, renew: bool = True) -> bool | None:
        """Pass ``pids`` on (those the daemon can see); False when the daemon did not take them,
        None when none of them is the daemon's and the lease needs no ``renew``al yet: nothing sent.

        Only a message the daemon received renews its lease. Execs it cannot see (other
        namespaces, system users: on a laptop, most of them) must not put the keepalive off, or
        the lease ran out on a busy machine and the daemon fell back to polling."""
        try:
            if self.scope is None:
                self.scope = Scope.of(server_pid_of(self.client.path), self.proc)
                log.info("passing on exec events of PID namespace %d (level %d)", self.scope.inode,
                         self.scope.level)
            translated = [p for pid in pids if (p := self.scope.translate(pid)) is not None]
            if not translated and pids and not self.lost and not renew:
                return None  # nothing the daemon can see
            reply = self.client.request("exec_events", pids=translated[:MAX_PIDS_PER_MESSAGE],
                                        watching=watching, lost=self.lost, lease_seconds=self.lease_seconds)
        except (DaemonUnreachable, LookupError, OSError) as error:
            log.warning("cannot reach the daemon: %s", error)
            self.scope = None  # a restarted daemon may live elsewhere
            return False
        if not reply.get("ok"):
            log.error("the daemon refused exec events: %s", reply.get("error"))
            return False
        self.lost = False
        return True


def server_pid_of(path: str | os.PathLike[str]) -> int:
    """The PID of the process listening on the control socket ``path`` (SO_PEERCRED)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(5.0)
        sock.connect(os.fspath(path))
        pid = struct.unpack("=iII", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    if pid <= 0:
        raise LookupError(f"the daemon on {path} runs where its PID cannot be seen")
    return int(pid)
