"""Where detoxd's files live: from options, then DETOXD_* environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULTS = {
    "config_dir": "/etc/detoxd",
    "state_dir": "/var/lib/detoxd",
    "hosts_file": "/etc/hosts",
    "socket": "/run/detoxd/control.sock",
}
ENVIRONMENT = {
    "config_dir": "DETOXD_CONFIG_DIR",
    "state_dir": "DETOXD_STATE_DIR",
    "hosts_file": "DETOXD_HOSTS_FILE",
    "socket": "DETOXD_SOCKET",
}


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    hosts_file: Path
    socket: Path

    @classmethod
    def resolve(
        cls, options: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
    ) -> Paths:
        def pick(key: str) -> Path:
            value = options.get(key) or environ.get(ENVIRONMENT[key]) or DEFAULTS[key]
            return Path(value).absolute()

        return cls(pick("config_dir"), pick("state_dir"), pick("hosts_file"), pick("socket"))

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def apps_ratchet_file(self) -> Path:
        """App rules a locked detox keeps after they left the blocklist."""
        return self.state_dir / "apps-kept.json"

    @property
    def applied_file(self) -> Path:
        """The last blocklist that loaded cleanly: enforced while the YAML is broken."""
        return self.state_dir / "applied.json"

    @property
    def sessions_announced_file(self) -> Path:
        """Reminders and hot-seat handovers already announced: a restart does not repeat them."""
        return self.state_dir / "sessions-announced.json"
