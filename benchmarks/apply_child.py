"""One apply in a fresh process, run by apply.py: ``detoxd`` (the daemon's code path) or ``floor``.

Prints one JSON line with the phase timings measured inside the process; the parent measures
the whole process (wall time from spawn to exit, peak RSS).

    apply_child.py detoxd CONFIG_DIR HOSTS STATE_DIR [PROFILE_OUT]
    apply_child.py floor LIST HOSTS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()


def apply_detoxd(config_dir: Path, hosts: Path, state_dir: Path) -> dict[str, float]:
    """What Daemon does on start for an active detox: load the config, put the names in the file."""
    from detoxd.service.loader import load_config
    from detoxd.service.targets.hosts.guard import HostsGuard
    from detoxd.service.targets.hosts.hostsfile import HostsFile

    imported = time.perf_counter()
    loaded = load_config(config_dir)
    configured = time.perf_counter()
    guard = HostsGuard(HostsFile(hosts, state_dir), time.monotonic)
    outcome = guard.set_names(loaded.names, loaded.order)  # as the daemon does
    guard.close()
    written = time.perf_counter()
    if not outcome.written:
        raise SystemExit("detoxd wrote nothing")
    return {"names": len(loaded.names), "import_s": imported - STARTED,
            "load_config_s": configured - imported, "set_names_s": written - configured}


def apply_floor(list_path: Path, hosts: Path) -> dict[str, float]:
    """The least any Python tool must do: read, lower-case, de-duplicate, write the lines."""
    with open(list_path, encoding="utf-8") as handle:
        words = handle.read().lower().split("\n")
    names = {word for word in words if word and not word.startswith("#")}
    lines = [f"0.0.0.0 {name}\n" for name in names] + [f":: {name}\n" for name in names]
    user_text = hosts.read_text()
    hosts.write_text(user_text + "".join(lines))
    return {"names": len(names), "total_s": time.perf_counter() - STARTED}


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "floor":
        result = apply_floor(Path(args[0]), Path(args[1]))
    elif len(args) == 4:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(apply_detoxd, Path(args[0]), Path(args[1]), Path(args[2]))
        profiler.dump_stats(args[3])
    else:
        result = apply_detoxd(Path(args[0]), Path(args[1]), Path(args[2]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
