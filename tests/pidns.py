"""Whether this process is in the machine's initial PID namespace.

The kernel's process connector (CN_PROC) sends its events only to listeners there, so the exec
event tests skip inside any other (CI's clean-root stages 1 and 2 run in one of their own; its
stage 3 runs with the machine's PIDs and runs them: .ci/run)."""

from __future__ import annotations

import os

from detoxd.service.execwatch import PROC_PID_INIT_INO, PROC_USER_INIT_INO

NOT_INITIAL_REASON = ("the kernel sends process events only to the initial PID namespace, and this "
                      "run is in another (CI runs these tests in its stage with the machine's PIDs)")


def in_initial_pid_namespace() -> bool:
    """By the kernel's fixed inode numbers of the initial namespaces (NSpid cannot tell once
    /proc is the namespace's own, as in CI's clean root)."""
    try:
        return (os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
                and os.stat("/proc/self/ns/user").st_ino == PROC_USER_INIT_INO)
    except OSError:
        return False
