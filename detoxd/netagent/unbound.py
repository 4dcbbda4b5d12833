"""An Unbound on this machine: local zones at run time through unbound-control, plus an include
file so that a restart of Unbound keeps them.

unbound-control(8): "local_zones, local_zones_remove [...]: Add or remove local zones read from
stdin of unbound-control. Input is read per line, with name space type on a line" and
"list_local_zones: List the local zones in use." Run-time changes need no restart and are lost on
one, hence ``<conf_dir>/detoxd.conf`` (Debian's unbound.conf has
``include-toplevel: "/etc/unbound/unbound.conf.d/*.conf"``). Zone types: ``always_null`` (0.0.0.0
and ::), ``always_nxdomain`` for the canary, ``transparent`` for an allowed name under a blocked
one (unbound.conf(5), local-zone). The include file is also the record of which zones are
detoxd's: only those are ever removed, never a local zone of the user's.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from detoxd.core import dnsengines
from detoxd.core.network import (
    OWN_FILE,
    DnsEngineConfig,
    parse_unbound_local_zones,
    render_unbound,
    unbound_include_zones,
    unbound_zones,
    zone_changes,
)
from detoxd.durable import remove_file
from detoxd.netagent.engines import (
    FIXES,
    DnsEngine,
    DnsEngineError,
    Problem,
    directory_problem,
    read_text,
    write_config_file,
)

log = logging.getLogger("detoxd.network")

CONTROL_TIMEOUT = 60.0
class UnboundEngine(DnsEngine):
    spec = dnsengines.BY_KIND["unbound"]
    fixes: ClassVar[dict[str, str]] = {
        **FIXES, "unreachable": "let unbound-control in: remote-control: control-enable: yes in unbound.conf,"
        " then unbound-control-setup and a restart of unbound"}

    @classmethod
    def from_config(cls, config: DnsEngineConfig, secret: str | None) -> UnboundEngine:
        del secret  # unbound-control authenticates with its own keys
        return cls(config)

    def __init__(self, config: DnsEngineConfig, control: str = "unbound-control") -> None:
        assert config.conf_dir is not None and config.control_config is not None
        self.config = config
        self.path = Path(config.conf_dir) / OWN_FILE
        self._control = control
        self._wanted: dict[str, str] | None = None
        self._include = ""  # the include file as it must read (rendered once per change)
        self._wanted_lines: frozenset[str] = frozenset()  # as list_local_zones prints them

    def apply(self, names: Sequence[str], allowed: Sequence[str]) -> None:
        wanted = unbound_zones(names, allowed)
        before = unbound_include_zones(read_text(self.path))
        include = render_unbound(wanted)
        # The include file first: after a crash it still lists every zone detoxd may have added.
        if read_text(self.path) != include:
            self._write(render_unbound({**before, **wanted}))
        present = self._list_zones()
        missing, stale = zone_changes(wanted, present, before)
        if stale:
            self._run("local_zones_remove", "".join(f"{name}\n" for name in stale))
        if missing:
            self._add(missing)
        if read_text(self.path) != include:
            self._write(include)
        self._wanted, self._include = wanted, include
        self._wanted_lines = frozenset(f"{name}. {kind}" for name, kind in wanted.items())

    def check(self) -> list[str]:
        if self._wanted is None:
            return []
        drift = []
        if read_text(self.path) != self._include:
            self._write(self._include)
            drift.append(f"{self.path} edited: rewritten")
        # Set arithmetic on the listing's lines: a check of 100k zones every 15 s stays cheap.
        absent = self._wanted_lines - set(self._run("list_local_zones", "").splitlines())
        if absent:
            missing = {name: self._wanted[name] for name in (line.split(". ")[0] for line in absent)}
            self._add(missing)
            drift.append(f"{len(missing)} local zone(s) removed or changed (e.g. {min(missing)}): re-added")
        return drift

    def remove(self) -> None:
        ours = {**unbound_include_zones(read_text(self.path)), **(self._wanted or {})}
        if ours:
            present = self._list_zones()
            mine = sorted(name for name, kind in ours.items() if present.get(name) == kind)
            if mine:
                self._run("local_zones_remove", "".join(f"{name}\n" for name in mine))
                log.info("unbound: removed %d local zones", len(mine))
        remove_file(self.path)
        self._wanted = None

    def problem(self) -> Problem | None:
        if shutil.which(self._control) is None:
            return Problem(f"{self._control} not found", "apt-get install unbound")
        assert self.config.control_config is not None
        if not os.access(self.config.control_config, os.R_OK):
            return Problem(f"{self.config.control_config} cannot be read (unbound-control's config)",
                           "set control_config: in detoxd.yaml to the unbound.conf that has remote-control:")
        return directory_problem(self.path.parent, self, "unbound")

    def describe(self) -> str:
        status = self._run("status", "")
        version = next((line for line in status.splitlines() if line.startswith("version")), "version ?")
        ours = unbound_include_zones(read_text(self.path))
        return f"unbound: {version.strip()}, {len(ours)} zones of detoxd's"

    def _add(self, zones: dict[str, str]) -> None:
        self._run("local_zones", "".join(f"{name} {kind}\n" for name, kind in sorted(zones.items())))

    def _list_zones(self) -> dict[str, str]:
        return parse_unbound_local_zones(self._run("list_local_zones", ""))

    def _write(self, text: str) -> None:
        try:
            write_config_file(self.path, text)
        except OSError as exc:
            raise DnsEngineError("error", f"cannot write {self.path}: {exc.strerror}") from exc

    def _run(self, command: str, stdin: str) -> str:
        assert self.config.control_config is not None
        argv = [self._control, "-c", self.config.control_config, command]
        try:
            result = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                    timeout=CONTROL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsEngineError("unreachable", f"unbound-control {command}: {exc}") from exc
        if result.returncode != 0 or result.stdout.startswith("error"):
            detail = (result.stderr or result.stdout).strip().splitlines()
            state = "unreachable" if "connect" in " ".join(detail) else "error"
            last = detail[-1][:200] if detail else "failed"
            raise DnsEngineError(state, f"unbound-control {command}: {last}")
        return result.stdout
