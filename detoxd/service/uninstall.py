"""`detoxd uninstall` while the daemon is down: the state file and the hosts file, handled on the
service's side (the command line asks the daemon first, and only comes here when none answers).
"""

from __future__ import annotations

from detoxd.core import detox, hosts, planned
from detoxd.core.statustext import days_left
from detoxd.paths import Paths
from detoxd.service import state_store
from detoxd.service.targets.hosts.hostsfile import HostsFile


def end_detox_offline(paths: Paths) -> str | None:
    """With no daemon running, the state file decides (the daemon would end a finished detox on
    start): None when no detox runs any more (an unlocked one is ended in the file, so that a
    reinstall does not resume it); the reason when a locked one runs or the file cannot tell."""
    try:
        state = state_store.load(paths.state_file)
    except state_store.StateFileError as exc:
        return f"cannot tell whether a detox is running: {exc}"
    if state.active and state.locked and detox.remaining(state).total_seconds() > 0:
        return f"a locked detox is running ({days_left(detox.days_left(state))})"
    if state.active:
        ended = detox.request_end(state)
        if isinstance(ended, detox.Refusal):
            return ended.reason
        state_store.save(paths.state_file, ended)  # a reinstall must not resume it
    elif state.planned is not None:  # `start --at`: as `detoxd cancel` (the wait as last counted)
        cancelled = planned.cancel(state)
        if isinstance(cancelled, detox.Refusal):
            return cancelled.reason
        state_store.save(paths.state_file, cancelled)
    return None


def remove_hosts_block(paths: Paths) -> str:
    """detoxd's block out of the hosts file (a write interrupted earlier is recovered first)."""
    state = state_store.load(paths.state_file) if paths.state_file.exists() else None
    managed = state.ratchet if state is not None else frozenset()
    hosts_file = HostsFile(paths.hosts_file, paths.state_dir)
    hosts_file.recover()
    if hosts_file.write(hosts.strip(hosts_file.read(), managed)):
        return f"removed detoxd's block from {paths.hosts_file}"
    return f"{paths.hosts_file} holds no detoxd block"
