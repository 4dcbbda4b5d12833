"""A dnsmasq on this machine: one file in its conf-dir, and a restart so that it reads it.

The file is ``<conf_dir>/detoxd.conf`` with ``address=/name/#`` lines (dnsmasq(8), --address:
NULL addresses 0.0.0.0 and :: for the name and all its subdomains; the canary gets
``address=/name/`` = NXDOMAIN; ``server=/allowed/#`` exempts an allowed name under a blocked one).

**Why a restart and not SIGHUP.** dnsmasq(8), NOTES: "When it receives a SIGHUP, dnsmasq clears
its cache and then re-loads /etc/hosts and /etc/ethers and any file given by --dhcp-hostsfile,
--dhcp-hostsdir, --dhcp-optsfile, --dhcp-optsdir, --addn-hosts or --hostsdir. [...] SIGHUP does
NOT re-read the configuration file." Files in --conf-dir are configuration files, so the only
way to make dnsmasq apply a changed ``detoxd.conf`` is to restart it; on Debian that is
``systemctl restart dnsmasq.service`` (the packaged unit), which is what ``service:`` names.
(A hosts-format file via --addn-hosts would be re-read on SIGHUP, but it blocks exact names
only, and dnsmasq must be told about it in its config first: a restart either way.) The file is
rewritten, and dnsmasq restarted, only when its content changes, so polling costs a read.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from detoxd.core import dnsengines
from detoxd.core.network import MARKER, OWN_FILE, DnsEngineConfig, render_dnsmasq
from detoxd.durable import remove_file
from detoxd.netagent.engines import (
    DnsEngine,
    DnsEngineError,
    Problem,
    directory_problem,
    read_text,
    write_config_file,
)

log = logging.getLogger("detoxd.network")

Restart = Callable[[], None]
RESTART_TIMEOUT = 60.0


def systemctl_restart(service: str) -> Restart:
    def restart() -> None:
        try:
            subprocess.run(["systemctl", "restart", "--", service], check=True, capture_output=True,
                           timeout=RESTART_TIMEOUT)
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace").strip()[:200]
            raise DnsEngineError("error", f"systemctl restart {service} failed: {detail}") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsEngineError("error", f"cannot restart {service}: {exc}") from exc
    return restart


class DnsmasqEngine(DnsEngine):
    spec = dnsengines.BY_KIND["dnsmasq"]

    @classmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> DnsmasqEngine:
        del secret  # a file on this machine: no credentials
        return cls(config)

    def __init__(self, config: DnsEngineConfig, restart: Restart | None = None) -> None:
        assert config.conf_dir is not None and config.service is not None
        self.config = config
        self.path = Path(config.conf_dir) / OWN_FILE
        self._restart = restart or systemctl_restart(config.service)
        self._wanted: str | None = None

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        self._wanted = render_dnsmasq(names, allowed)
        if read_text(self.path) != self._wanted:
            self._write(self._wanted)

    def check(self) -> list[str]:
        if self._wanted is None:
            return []
        present = read_text(self.path)
        if present == self._wanted:
            return []
        self._write(self._wanted)
        return [f"{self.path} {'deleted' if present is None else 'edited'}: rewritten, dnsmasq restarted"]

    def remove(self) -> None:
        self._wanted = None
        if remove_file(self.path):
            self._restart()
            log.info("dnsmasq: removed %s and restarted %s", self.path, self.config.service)

    def problem(self) -> Problem | None:
        if shutil.which("systemctl") is None:
            return Problem("systemctl not found: detoxd restarts dnsmasq through systemd to make it read "
                           f"{OWN_FILE}", None)
        return directory_problem(self.path.parent, self, "dnsmasq")

    def describe(self) -> str:
        present = read_text(self.path)
        if present is None:
            return f"dnsmasq: {self.path.parent} {'exists' if self.path.parent.is_dir() else 'is missing'}"
        ours = present.startswith(f"# {MARKER}")
        entries = present.count("\n") - 2
        return f"dnsmasq: {self.path} holds {entries} entries" + ("" if ours else " (not written by detoxd?)")

    def _write(self, text: str) -> None:
        try:
            write_config_file(self.path, text)
        except OSError as exc:
            raise DnsEngineError("error", f"cannot write {self.path}: {exc.strerror}") from exc
        self._restart()
