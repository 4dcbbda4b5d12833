"""Where detoxd's files live: from options, then DETOXD_* environment variables, then defaults."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: `detoxd status` starts faster
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

DEFAULTS = {
    "config_dir": "/etc/detoxd",
    "state_dir": "/var/lib/detoxd",
    "hosts_file": "/etc/hosts",
    "socket": "/run/detoxd/control.sock",
}
# Evidence of a detox kept outside the state directory (LogsDirectory=detoxd in the unit): a copy
# of the state and a ledger of detoxes started and ended, so that `rm -rf /var/lib/detoxd` while
# detoxd is stopped does not end a detox silently. Beside a state directory given by hand (tests,
# scripts/try), "<state>-evidence" next to it instead.
DEFAULT_EVIDENCE_DIR = "/var/log/detoxd"
# Every file the daemon keeps in its state directory (the ratchet's side files are named after
# the state file: ``state.ratchet-<sha256>.json``).
STATE_FILE = "state.json"
STATE_BACKUP_FILE = "state.backup.json"  # a second copy of what fixes the end time
RUNTIME_STATE_FILE = "detox-state.json"  # a third, in the runtime directory (survives the state dir)
APPLIED_FILE = "applied.json"
HOSTS_BLOCK_FILE = "hosts-block.json"  # the digest of detoxd's block in the hosts file (a restart's shortcut)
APPS_RATCHET_FILE = "apps-kept.json"
SESSIONS_ANNOUNCED_FILE = "sessions-announced.json"
HOSTS_JOURNAL_FILE = "hosts-write.journal"
HOSTS_RESERVE_FILE = "hosts-write.reserve"  # room kept free for that journal on a full disk
BROWSER_POLICIES_FILE = "browser-policies.json"
ALLOWANCES_FILE = "allowances.json"
SCHEDULE_FILE = "schedule.json"
EVIDENCE_STATE_FILE = "detox-state.json"  # a fourth copy of the state, in the evidence directory
LEDGER_FILE = "ledger.jsonl"  # detoxes started and ended, in the evidence directory
ENVIRONMENT = {
    "config_dir": "DETOXD_CONFIG_DIR",
    "state_dir": "DETOXD_STATE_DIR",
    "hosts_file": "DETOXD_HOSTS_FILE",
    "socket": "DETOXD_SOCKET",
    "evidence_dir": "DETOXD_EVIDENCE_DIR",
}


class Paths:
    """Where one daemon's files are. A plain class, not a dataclass or NamedTuple: ``detoxd
    status`` must not pay for importing ``dataclasses`` or ``typing``."""

    __slots__ = ("config_dir", "evidence_dir", "hosts_file", "socket", "state_dir")

    def __init__(self, config_dir: Path, state_dir: Path, hosts_file: Path, socket: Path,
                 evidence_dir: Path | None = None) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.hosts_file = hosts_file
        self.socket = socket
        if evidence_dir is None:
            from pathlib import Path

            default_state = state_dir == Path(DEFAULTS["state_dir"])
            evidence_dir = (Path(DEFAULT_EVIDENCE_DIR) if default_state
                            else state_dir.with_name(state_dir.name + "-evidence"))
        self.evidence_dir = evidence_dir

    def _fields(self) -> tuple[Path, Path, Path, Path, Path]:
        return (self.config_dir, self.state_dir, self.hosts_file, self.socket, self.evidence_dir)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return ("Paths(config_dir={!r}, state_dir={!r}, hosts_file={!r}, socket={!r}, evidence_dir={!r})"
                .format(*self._fields()))

    @classmethod
    def resolve(
        cls, options: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
    ) -> Paths:
        from pathlib import Path

        def pick(key: str) -> Path:
            value = options.get(key) or environ.get(ENVIRONMENT[key]) or DEFAULTS[key]
            return Path(value).absolute()

        evidence = options.get("evidence_dir") or environ.get(ENVIRONMENT["evidence_dir"])
        return cls(pick("config_dir"), pick("state_dir"), pick("hosts_file"), pick("socket"),
                   Path(evidence).absolute() if evidence else None)

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def state_backup_file(self) -> Path:
        return self.state_dir / STATE_BACKUP_FILE

    @property
    def runtime_state_file(self) -> Path:
        """Beside the socket (/run/detoxd, kept across restarts by RuntimeDirectoryPreserve=):
        the end time survives a removed state directory until the next reboot."""
        return self.socket.parent / RUNTIME_STATE_FILE

    @property
    def evidence_state_file(self) -> Path:
        return self.evidence_dir / EVIDENCE_STATE_FILE

    @property
    def ledger_file(self) -> Path:
        return self.evidence_dir / LEDGER_FILE

    @property
    def apps_ratchet_file(self) -> Path:
        """App rules a locked detox keeps after they left the blocklist."""
        return self.state_dir / APPS_RATCHET_FILE

    @property
    def applied_file(self) -> Path:
        """The last blocklist that loaded cleanly: enforced while the YAML is broken."""
        return self.state_dir / APPLIED_FILE

    @property
    def hosts_block_file(self) -> Path:
        """What detoxd's block in the hosts file held when last in sync: its digest and the names
        beyond the ratchet (see :class:`detoxd.service.state_store.BlockRecord`)."""
        return self.state_dir / HOSTS_BLOCK_FILE

    @property
    def sessions_announced_file(self) -> Path:
        """Reminders and hot-seat handovers already announced: a restart does not repeat them."""
        return self.state_dir / SESSIONS_ANNOUNCED_FILE

    @property
    def hosts_journal_file(self) -> Path:
        """The write-ahead copy of an in-place hosts-file write (old and new content)."""
        return self.state_dir / HOSTS_JOURNAL_FILE

    @property
    def browser_policies_file(self) -> Path:
        """What detoxd changed in each browser's policy file, to take out exactly that."""
        return self.state_dir / BROWSER_POLICIES_FILE

    @property
    def allowances_file(self) -> Path:
        """Allowance time spent today, open allowances, the lock's ceiling and the trusted clock."""
        return self.state_dir / ALLOWANCES_FILE

    @property
    def schedule_file(self) -> Path:
        """The schedule's entries as last in force and its held edits (the windows' ratchet)."""
        return self.state_dir / SCHEDULE_FILE

    @property
    def cutter_dir(self) -> Path:
        """Requests to the connection cutter (detoxd-cutter.path watches its requests/)."""
        return self.socket.parent / "cutter"


def socket_path(option: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The control socket as :meth:`Paths.resolve` finds it, as a string: `detoxd status` needs
    nothing else, and pathlib is a tenth of its start."""
    return os.path.join(os.getcwd(), option or environ.get(ENVIRONMENT["socket"]) or DEFAULTS["socket"])
