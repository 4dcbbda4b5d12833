#!/usr/bin/python3
"""The booted-systemd checks, run inside a Debian 12 guest booted with systemd-nspawn --boot.

tests/booted/run starts the guest; the unit detoxd-ci.service runs this file after every boot.
It installs detoxd as the README says and checks the real service under the real systemd,
one line per check on /ci-out/results. Phases (the phase file survives reboots):

1. the Debian package: install, READY, exposure, start, tamper (in place and by rename),
   kill -9, watchdog, reload and a YAML edit, the connection cutter (detoxd-cutter.path and
   .service), the household agents (a real dnsmasq; LoadCredential= for the Pi-hole agent),
   `systemctl stop` and removal during a locked detox; then the guest reboots;
2. after the reboot: the detox resumed, ends by itself, /etc/hosts is byte-identical, dnsmasq
   holds nothing of detoxd's, purge;
   then the source install (scripts/install-system) and a user's editable clone, refused;
   then the guest powers off.

Figures are printed; a check fails on a wrong result, never on a slow one (targets are shown).
Only the Python standard library: the guest has Debian's python3 and detoxd's dependencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path("/ci-out")
RESULTS = OUT / "results"
WORK = Path("/var/lib/detoxd-ci")
PHASE = WORK / "phase"
HOSTS = Path("/etc/hosts")
ORIGINAL_HOSTS = WORK / "hosts.orig"
DEB = Path("/root/detoxd.deb")
SOURCE = Path("/usr/src/detoxd")
BLOCKLIST = Path("/etc/detoxd/blocklist.yaml")
BEGIN_MARKER = b"# BEGIN detoxd block"
END_MARKER = b"# END detoxd block"
DETOX_DAYS = "0.0025"  # 216 s: long enough for phase 1 and the reboot, short enough to wait for
EXPOSURE_TARGET = 1.5
RESTORE_P95_TARGET_MS = 100.0
POLICY_DIRS = ("/etc/firefox", "/etc/opt/chrome", "/etc/chromium")
DETOXD_YAML = Path("/etc/detoxd/detoxd.yaml")
# tests/booted/run makes the guest's dnsmasq answer this name with this address.
CUT_NAME = "ci-cut.example"
CUT_ADDRESS = "192.0.2.80"
DNSMASQ_FILE = Path("/etc/dnsmasq.d/detoxd.conf")
PIHOLE_URL = "http://127.0.0.1:9"  # nothing listens there: the agent must say unreachable
PIHOLE_SECRET = "ci-secret-" + os.urandom(6).hex()
NETWORK_UNITS = ("detoxd-network.service", "detoxd-network-dnsmasq.service",
                 "detoxd-network-unbound.service")
# README "The whole household" and "Install as a service" (systemd-analyze security).
UNIT_EXPOSURE = {"detoxd-network.service": 1.1, "detoxd-network-dnsmasq.service": 0.7,
                 "detoxd-network-unbound.service": 0.7, "detoxd-cutter.service": 2.0,
                 "detoxd-execwatch.service": 1.7}


EXECWATCH = "detoxd-execwatch.service"


def run(*command: str, timeout: float = 120, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)  # type: ignore[call-overload]


def report(ok: bool, name: str, detail: str) -> bool:
    line = f"[{'  ok' if ok else 'FAIL'}] {name}: {detail}"
    with RESULTS.open("a") as file:
        file.write(line + "\n")
    print(line, flush=True)
    return ok


def check(name: str, function: Callable[[], tuple[bool, str]]) -> bool:
    """One line per check; an exception is a failed check, not a crashed run."""
    try:
        ok, detail = function()
    except Exception as error:  # reported, and the next check still runs
        ok, detail = False, f"{type(error).__name__}: {error}"
    return report(ok, name, detail)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.001) -> float | None:
    """Seconds until ``predicate`` is true, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def unit(name: str = "detoxd.service") -> dict[str, str]:
    fields = "ActiveState,SubState,MainPID,NRestarts,Result,StatusText"
    output = run("systemctl", "show", name, "-p", fields).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def status() -> dict[str, object]:
    result = run("detoxd", "status", "--json", timeout=20)
    if result.returncode != 0:
        raise RuntimeError(f"detoxd status exit {result.returncode}: {result.stderr.strip()}")
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def blocked() -> bool:
    """The whole block is in the file: both markers and a blocked name between them."""
    try:
        text = HOSTS.read_bytes()
    except OSError:
        return False
    begin, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    return 0 <= begin < end and b"\n0.0.0.0 facebook.com\n" in text[begin:end]


def hosts_has(name: str) -> bool:
    try:
        return any(line.split()[1:2] == [name] for line in HOSTS.read_text().splitlines()
                   if line.startswith(("0.0.0.0", "::")))
    except OSError:
        return False


def active() -> bool:
    return unit()["ActiveState"] == "active"


def exposure(name: str) -> float:
    output = run("systemd-analyze", "security", "--no-pager", name).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    if not match:
        raise RuntimeError(f"no exposure in: {output[-300:]}")
    return float(match.group(1))


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


def warnings_since(mark: int) -> list[str]:
    """The unit's journal lines at priority warning or above (what `journalctl -p warning -u
    detoxd` shows) logged after ``mark``, read as JSON: each entry's PRIORITY as journald stored it."""
    return [message for priority, message in journal_since(mark) if priority <= 4]


def journal_since(mark: int) -> list[tuple[int, str]]:
    return unit_journal()[mark:]


def unit_journal() -> list[tuple[int, str]]:
    """This boot's entries for detoxd.service, oldest first: (priority, message)."""
    output = run("journalctl", "-b", "-u", "detoxd", "--no-pager", "-o", "json").stdout
    entries = []
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, str):
            entries.append((int(entry.get("PRIORITY", 6)), message))
    return entries


def journal_cursor() -> int:
    """A mark in the unit's journal of this boot. (Not journalctl's --after-cursor: with a cursor
    from `journalctl -n 0 --show-cursor`, systemd 252 in the guest skipped entries the service
    logged later, which `journalctl -b -u detoxd` shows.)"""
    return len(unit_journal())


# ---- phase 1: the Debian package ------------------------------------------------------------

def phase_package() -> None:
    ORIGINAL_HOSTS.write_bytes(HOSTS.read_bytes())
    cursor = journal_cursor()
    started = time.monotonic()
    check("deb: apt install ./detoxd.deb", lambda: _apt_install())
    check("deb: units enabled by the package", _units_enabled)

    def ready() -> tuple[bool, str]:
        waited = wait_for(active, 30, 0.05)
        state = unit()
        detail = (f"ActiveState={state['ActiveState']} SubState={state['SubState']} "
                  f"NRestarts={state['NRestarts']}, active (READY=1, Type=notify) "
                  f"{time.monotonic() - started:.1f} s after apt started")
        ok = waited is not None and state["NRestarts"] == "0" and "state" in status()
        if not ok:  # why it did not come up, from the unit's own journal
            said = run("journalctl", "-b", "-u", "detoxd", "--no-pager", "-o", "cat").stdout.splitlines()
            detail += "; the unit's journal ends: " + " | ".join(said[-12:])
        return ok, detail
    check("deb: active and READY", ready)

    def sandbox() -> tuple[bool, str]:
        level = exposure("detoxd.service")
        return level <= EXPOSURE_TARGET, f"systemd-analyze security: {level} (target <= {EXPOSURE_TARGET})"
    check("deb: exposure", sandbox)

    def install_from_package() -> tuple[bool, str]:
        result = run("detoxd", "install", "--now")
        lines = result.stdout.strip().splitlines()
        packaged = any("come with the Debian package" in line for line in lines)
        copied = Path("/etc/systemd/system/detoxd.service").exists()
        return result.returncode == 0 and packaged and not copied and active(), (
            f"exit {result.returncode}; said: {'; '.join(lines)}; unit copied to /etc: {copied}")
    check("deb: detoxd install --now (code check passes, packaged units kept)", install_from_package)

    def quiet_start() -> tuple[bool, str]:
        lines = warnings_since(cursor)
        return not lines, f"{len(lines)} lines at priority warning or above" + (
            f": {lines[0][:150]}" if lines else "")
    check("deb: no warning at start", quiet_start)

    def start() -> tuple[bool, str]:
        begun = time.monotonic()
        result = run("detoxd", "start", "--days", DETOX_DAYS)
        waited = wait_for(blocked, 10)
        resolved = run("getent", "hosts", "facebook.com").stdout.split()
        detail = (f"exit {result.returncode}, block in /etc/hosts after "
                  f"{(time.monotonic() - begun) * 1000:.0f} ms, getent facebook.com -> {resolved[:1]}")
        return result.returncode == 0 and waited is not None and resolved[:1] in (["0.0.0.0"], ["::"]), detail
    check("start -> block in /etc/hosts", start)
    check("exec watcher: kept off in a container, the daemon polls, doctor says why", _execwatch_in_container)
    check("tamper in place (truncate + write), 20 trials", lambda: _tamper(20, rename=False))
    check("tamper by rename (as sed -i), 10 trials", lambda: _tamper(10, rename=True))
    check("systemctl kill -s KILL", _kill)
    check("watchdog (kill -STOP)", _watchdog)
    check("YAML edit -> new name blocked", _yaml_edit)
    check("reload: broken YAML refused, block kept", _broken_reload)
    check("cutter: a YAML edit blocks a name -> detoxd-cutter.path starts detoxd-cutter.service, "
          "the open connection is cut", _cutter)
    check("household units: packaged, not enabled, their user, exposure", _household_units)
    check("household: detoxd-network-dnsmasq.service -> a real dnsmasq blocks", _dnsmasq_engine)
    check("household: detoxd-network.service, LoadCredential= and an unreachable Pi-hole", _pihole_credential)
    check("mail: detoxd-mail.service delivers sessions --send to an SMTP server in the guest", _mail_unit)
    check("systemctl stop during a locked detox", _stop_during_lock)
    check("uninstall refused while locked", _uninstall_refused)
    check("apt remove refused while locked, nothing half-removed", _apt_remove_refused)
    state = status()
    (WORK / "ends_at").write_text(str(state["ends_at"]))
    PHASE.write_text("2")
    report(True, "reboot", f"rebooting the guest during the detox, which ends {state['ends_at']}")
    run("systemctl", "reboot", "--no-block")


def _apt_install() -> tuple[bool, str]:
    # The guest has no network: the Recommends (tray back-end, report charts) cannot be fetched.
    result = run("apt-get", "install", "-y", "-q", "--no-install-recommends", str(DEB), timeout=300,
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return result.returncode == 0, f"exit {result.returncode}" + (
        f": {result.stderr.strip()[-300:]}" if result.returncode else "")


def _units_enabled() -> tuple[bool, str]:
    service = run("systemctl", "is-enabled", "detoxd.service").stdout.strip()
    tray = run("systemctl", "--global", "is-enabled", "detoxd-tray.service").stdout.strip()
    cutter = run("systemctl", "is-enabled", "detoxd-cutter.path").stdout.strip()
    # Enabled; in this container its ConditionVirtualization= skips it (no process events here).
    execwatch = run("systemctl", "is-enabled", "detoxd-execwatch.service").stdout.strip()
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "detoxd").stdout.split()
    ok = service == tray == cutter == execwatch == "enabled" and "/etc/detoxd/blocklist.yaml" in conffiles
    return ok, (f"detoxd.service {service}, detoxd-tray.service (global) {tray}, detoxd-cutter.path "
                f"{cutter}, detoxd-execwatch.service {execwatch}; "
                f"conffiles: {', '.join(c for c in conffiles if c.startswith('/'))}")


def _tamper(trials: int, *, rename: bool) -> tuple[bool, str]:
    if not blocked():
        raise RuntimeError("no block in /etc/hosts to tamper with")
    before = status()
    restarts_before = int(unit()["NRestarts"])
    cursor = journal_cursor()
    original = ORIGINAL_HOSTS.read_bytes()
    latencies: list[float] = []
    missed = 0
    for trial in range(trials):
        if rename:
            temporary = HOSTS.with_name(f".hosts.ci{trial}")
            temporary.write_bytes(original)
            temporary.chmod(0o644)
            begun = time.monotonic()
            os.rename(temporary, HOSTS)
        else:
            begun = time.monotonic()
            with HOSTS.open("r+b") as file:
                file.truncate(0)
                file.write(original)
        waited = wait_for(blocked, 15)
        if waited is None:
            missed += 1
        else:
            latencies.append((time.monotonic() - begun) * 1000)
        time.sleep(0.05 if not rename else 0.2)
    wait_for(lambda: active() and _answers(), 15, 0.05)
    after = status()
    counted = int(after["tamper_events"]) - int(before["tamper_events"])  # type: ignore[call-overload]
    restarts = int(unit()["NRestarts"]) - restarts_before
    logged = [line for line in warnings_since(cursor) if "tamper" in line.lower()]
    figures = percentiles(latencies) if latencies else "none restored"
    meets = bool(latencies) and sorted(latencies)[round(0.95 * (len(latencies) - 1))] <= RESTORE_P95_TARGET_MS
    detail = (f"restored {len(latencies)}/{trials}: {figures} (p95 target <= {RESTORE_P95_TARGET_MS:.0f} ms: "
              f"{'met' if meets else 'NOT met'}); tamper_events +{counted}, warning lines +{len(logged)}, "
              f"service restarts +{restarts}")
    return missed == 0 and counted >= trials and len(logged) >= 1, detail


def _answers() -> bool:
    return run("detoxd", "status", "--json", timeout=20).returncode == 0


def _kill() -> tuple[bool, str]:
    old = unit()["MainPID"]
    begun = time.monotonic()
    run("systemctl", "kill", "-s", "KILL", "detoxd.service")
    waited = wait_for(lambda: unit()["MainPID"] not in ("0", old) and active(), 30, 0.01)
    back = time.monotonic() - begun
    still = blocked()
    return waited is not None and still, (f"active again with a new PID after {back:.2f} s; "
                                          f"block {'kept' if still else 'LOST'}")


def _watchdog() -> tuple[bool, str]:
    old = unit()["MainPID"]
    if int(old) <= 1:  # kill(0) would stop this script's own process group, kill(1) the guest's init
        return False, f"no daemon to stop: MainPID={old}"
    cursor = journal_cursor()
    begun = time.monotonic()
    os.kill(int(old), signal.SIGSTOP)
    waited = wait_for(lambda: unit()["MainPID"] not in ("0", old) and active(), 60, 0.1)
    back = time.monotonic() - begun
    journal = "\n".join(message for _, message in journal_since(cursor))
    timed_out = "Watchdog timeout" in journal or "watchdog" in journal.lower()
    gone = not Path(f"/proc/{old}").exists()
    return waited is not None and timed_out and gone, (
        f"restarted after {back:.1f} s (WatchdogSec=30); journal names the watchdog: {timed_out}; "
        f"stopped process gone: {gone}")


def _yaml_edit() -> tuple[bool, str]:
    original = BLOCKLIST.read_text()
    (WORK / "blocklist.orig").write_text(original)
    name = "ci-added.example"
    edited = original.replace("\ndomains:\n", f"\ndomains:\n  - {name}\n", 1)
    if name not in edited:
        raise RuntimeError("cannot find the domains: list in the default blocklist")
    temporary = BLOCKLIST.with_name(".blocklist.yaml.ci")
    temporary.write_text(edited)
    begun = time.monotonic()
    os.rename(temporary, BLOCKLIST)  # as editors save
    waited = wait_for(lambda: hosts_has(name), 10)
    return waited is not None, (f"{name} in /etc/hosts after {(time.monotonic() - begun) * 1000:.0f} ms "
                                "(editor-style rename of blocklist.yaml)" if waited is not None
                                else f"{name} not in /etc/hosts after 10 s")


def _broken_reload() -> tuple[bool, str]:
    good = BLOCKLIST.read_text()
    BLOCKLIST.write_text(good + "\nalow: []\n")
    result = run("detoxd", "reload")
    kept = hosts_has("ci-added.example") and blocked()
    error = status().get("config_error") or ""
    BLOCKLIST.write_text((WORK / "blocklist.orig").read_text())  # the ratchet keeps ci-added.example
    fixed = run("detoxd", "reload")
    return result.returncode == 1 and kept and "alow" in str(error) and fixed.returncode == 0, (
        f"broken: exit {result.returncode} ({result.stderr.strip().splitlines()[:1]}), block kept: {kept}; "
        f"fixed: exit {fixed.returncode}")


def _stop_during_lock() -> tuple[bool, str]:
    cursor = journal_cursor()
    before = run("systemctl", "show", "detoxd", "-p",
                 "NRestarts,ExecMainStartTimestampMonotonic,MainPID").stdout.split()
    begun = time.monotonic()
    result = run("systemctl", "stop", "detoxd.service")
    took = time.monotonic() - begun
    how = run("systemctl", "show", "detoxd", "-p", "ExecMainCode,ExecMainStatus").stdout.split()
    state = unit()
    still = blocked()
    shown = run("detoxd", "status")
    # journald reads the service's stream asynchronously (and slowly on a loaded machine):
    # wait for the line itself, for up to 15 s (a slow line is not a wrong result).
    waited = wait_for(lambda: any("locked detox" in line for line in warnings_since(cursor)), 15, 0.2)
    warned = [line for line in warnings_since(cursor) if "locked detox" in line]
    # As docs/cannot-be-undone.md says to look (this boot; the message is only ever logged by a stop).
    plain = run("journalctl", "-b", "-u", "detoxd", "-p", "warning", "--no-pager", "-o", "cat"
                ).stdout.count("stopping during a locked detox")
    run("systemctl", "start", "detoxd.service")
    wait_for(active, 20, 0.05)
    delay = f"{waited:.1f} s" if waited is not None else "more than 15 s"
    refused = result.returncode != 0 and state["ActiveState"] == "active"
    loud = bool(warned) and plain >= 1 and shown.returncode == 4 and "nothing restores it" in shown.stderr
    if not loud:  # what the journal did get, to see why
        warned = [f"(before: {' '.join(before)}; main process after stop: {' '.join(how)})", *warned]
        logged = [f"<{priority}>{message[:80]}" for priority, message in journal_since(cursor)]
        warned = warned or [f"(none; the unit's journal: {' | '.join(logged[:6])})"]
    return (refused or loud) and still, (
        f"systemctl stop exit {result.returncode} in {took:.2f} s, then {state['ActiveState']}; block "
        f"{'kept' if still else 'LOST'}; journal warning after {delay}: {warned[:1] or 'none'} "
        f"(`journalctl -p warning "
        f"-u detoxd` lists it {plain} times); detoxd status exit "
        f"{shown.returncode}: {(shown.stderr or shown.stdout).strip().splitlines()[-1:]}")


def _uninstall_refused() -> tuple[bool, str]:
    result = run("detoxd", "uninstall")
    intact = Path("/lib/systemd/system/detoxd.service").exists() and active() and blocked()
    return result.returncode == 3 and intact, (f"exit {result.returncode}: {result.stderr.strip()}; "
                                               f"units, service and block intact: {intact}")


def _apt_remove_refused() -> tuple[bool, str]:
    result = run("apt-get", "remove", "-y", "-q", "detoxd", timeout=300,
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    package = run("dpkg-query", "-W", "-f=${Status}", "detoxd").stdout
    intact = package == "install ok installed" and active() and blocked() and Path("/usr/bin/detoxd").exists()
    said = [line for line in (result.stdout + result.stderr).splitlines() if "locked detox" in line]
    return result.returncode != 0 and intact and bool(said), (
        f"apt-get remove exit {result.returncode}; package: {package!r}; service active, block and files "
        f"intact: {intact}; message: {said[:1]}")


# ---- phase 2: after the reboot --------------------------------------------------------------

def phase_after_reboot() -> None:
    PHASE.write_text("3")

    def resumed() -> tuple[bool, str]:
        wait_for(active, 60, 0.1)
        state = status()
        # ends_at is recomputed from the time credited so far: it may move by a second or two.
        moved = _timestamp(str(state["ends_at"])) - _timestamp((WORK / "ends_at").read_text())
        return active() and state["state"] != "idle" and blocked() and abs(moved) <= 5, (
            f"after the reboot: {unit()['ActiveState']}, state {state['state']}, block kept: {blocked()}, "
            f"ends_at moved by {moved:+.0f} s")
    check("guest reboot: detox resumed", resumed)

    def ends() -> tuple[bool, str]:
        ends_at = (WORK / "ends_at").read_text()
        waited = wait_for(lambda: _state() == "idle", 400, 0.5)
        lag = time.time() - _timestamp(ends_at)
        return waited is not None, (f"idle {lag:+.1f} s after ends_at" if waited is not None
                                    else "still active 400 s later")
    check("detox ends by itself", ends)

    def identical() -> tuple[bool, str]:
        wait_for(lambda: HOSTS.read_bytes() == ORIGINAL_HOSTS.read_bytes(), 10, 0.05)
        same = HOSTS.read_bytes() == ORIGINAL_HOSTS.read_bytes()
        verdict = "byte-identical to" if same else "DIFFERS from"
        return same, f"/etc/hosts {verdict} the file before the detox ({len(HOSTS.read_bytes())} bytes)"
    check("hosts file byte-identical after the end", identical)
    check("household: dnsmasq holds nothing of detoxd's after the end", _dnsmasq_after_end)
    check("apt purge removes what uninstall --purge removes", _purge)
    phase_source()


def _state() -> object:
    """The detox state, or None while the daemon does not answer (it restarts on its own)."""
    try:
        return status()["state"]
    except (RuntimeError, ValueError, subprocess.TimeoutExpired):
        return None


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _purge() -> tuple[bool, str]:
    result = run("apt-get", "purge", "-y", "-q", "detoxd", timeout=300,
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    left = [path for path in ("/etc/detoxd", "/var/lib/detoxd", "/lib/systemd/system/detoxd.service",
                              *(f"/lib/systemd/system/{name}" for name in NETWORK_UNITS),
                              "/usr/bin/detoxd", "/run/detoxd", *POLICY_DIRS) if os.path.lexists(path)]
    same = HOSTS.read_bytes() == ORIGINAL_HOSTS.read_bytes()
    # The agents enabled in phase 1 are stopped by the package's prerm, not left running.
    running = [name for name in NETWORK_UNITS
               if run("systemctl", "is-active", name).stdout.strip() in ("active", "activating")]
    return result.returncode == 0 and not left and same and not running, (
        f"exit {result.returncode}; left behind: {left or 'nothing'}; /etc/hosts unchanged: {same}; "
        f"household agents still running: {running or 'none'}")


# ---- phase 3: from source -------------------------------------------------------------------

def phase_source() -> None:
    # apt purge keeps the package's system user (as Debian does): remove it, so the check below
    # shows that the source install makes it.
    run("userdel", "detoxd-network")

    def install() -> tuple[bool, str]:
        begun = time.monotonic()
        result = run(str(SOURCE / "scripts/install-system"), "--offline", "--now", timeout=600)
        waited = wait_for(active, 30, 0.05)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        return result.returncode == 0 and waited is not None, (
            f"exit {result.returncode} in {time.monotonic() - begun:.1f} s, then {unit()['ActiveState']}; "
            f"said: {'; '.join(lines[-4:]) or result.stderr.strip()[-300:]}")
    check("source: scripts/install-system --offline --now", install)

    def root_owned() -> tuple[bool, str]:
        unit_text = Path("/etc/systemd/system/detoxd.service").read_text()
        execs = re.findall(r"^ExecStart=(\S+)", unit_text, re.M)
        writable = run("find", "/opt/detoxd", "(", "-perm", "/022", "-o", "!", "-user", "root", ")",
                       "!", "-type", "l").stdout.split()
        return execs == ["/opt/detoxd/bin/detoxd"] and not writable and \
            os.readlink("/usr/local/bin/detoxd") == "/opt/detoxd/bin/detoxd", (
                f"ExecStart={execs}; /usr/local/bin/detoxd -> {os.readlink('/usr/local/bin/detoxd')}; "
                f"files in /opt/detoxd writable by non-root: {len(writable)}")
    check("source: root-owned venv, not editable", root_owned)

    def source_exposure() -> tuple[bool, str]:
        level = exposure("detoxd.service")
        started = status()
        return level <= EXPOSURE_TARGET and "state" in started, f"exposure {level}, status answers"
    check("source: exposure and status", source_exposure)
    check("source: a user's editable clone is refused", _user_clone_refused)

    check("source: household units installed, not enabled, their user", _source_household_units)

    def uninstall() -> tuple[bool, str]:
        result = run("detoxd", "uninstall", "--purge")
        left = [path for path in ("/etc/systemd/system/detoxd.service", "/etc/detoxd", "/var/lib/detoxd",
                                  *(f"/etc/systemd/system/{name}" for name in NETWORK_UNITS),
                                  "/etc/sysusers.d/detoxd.conf", *POLICY_DIRS) if os.path.lexists(path)]
        return result.returncode == 0 and not left and not active(), (
            f"exit {result.returncode}; left behind: {left or 'nothing'}; said: "
            f"{'; '.join(result.stdout.splitlines()[:8])}")
    check("source: uninstall --purge", uninstall)
    finish()


def _user_clone_refused() -> tuple[bool, str]:
    if run("id", "alice").returncode != 0:
        run("useradd", "--create-home", "alice")
    clone = Path("/home/alice/detoxd")
    if clone.exists():
        shutil.rmtree(clone)
    shutil.copytree(SOURCE, clone, symlinks=True)
    run("chown", "-R", "alice:alice", str(clone))
    as_alice = ["runuser", "-u", "alice", "--"]
    made = run(*as_alice, "/usr/bin/python3", "-m", "venv", "--system-site-packages", f"{clone}/.venv")
    # As a user would (scripts/setup does the same online): Debian's packages are in the venv.
    pip = run(*as_alice, f"{clone}/.venv/bin/pip", "install", "-q", "--no-index", "--no-build-isolation",
              "--no-deps", "-e", str(clone), cwd=str(clone), timeout=300)
    if made.returncode or pip.returncode:
        raise RuntimeError(f"editable install as alice failed: {made.stderr[-200:]} {pip.stderr[-300:]}")
    before = Path("/etc/systemd/system/detoxd.service").read_text()
    result = run(f"{clone}/.venv/bin/detoxd", "install", "--now")
    unchanged = Path("/etc/systemd/system/detoxd.service").read_text() == before
    message = result.stderr.strip().splitlines()
    return result.returncode == 3 and unchanged and any("/home/alice/detoxd" in line for line in message), (
        f"exit {result.returncode}; unit unchanged: {unchanged}; message: {' / '.join(message[:3])}")


# ---- the connection cutter and the household agents (phase 1, during the detox) ----------

def _show(unit_name: str, *fields: str) -> dict[str, str]:
    output = run("systemctl", "show", unit_name, "-p", ",".join(fields)).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _unit_messages(unit_name: str) -> list[str]:
    output = run("journalctl", "-b", "-u", unit_name, "--no-pager", "-o", "cat").stdout
    return output.splitlines()


def _cutter() -> tuple[bool, str]:
    """A TCP connection from the guest to a listener in the guest, at an address only DNS (the
    guest's dnsmasq) gives for CUT_NAME; then blocklist.yaml gains CUT_NAME the way an editor
    saves. No `detoxd reload`: the CLI would close it itself. The daemon's sandbox cannot
    (no network, no CAP_NET_ADMIN), so only detoxd-cutter.service can cut it."""
    run("ip", "address", "add", f"{CUT_ADDRESS}/32", "dev", "lo")
    resolved = sorted({info[4][0] for info in socket.getaddrinfo(CUT_NAME, 80, socket.AF_INET)})
    if resolved != [CUT_ADDRESS]:
        raise RuntimeError(f"{CUT_NAME} resolves to {resolved}, not {CUT_ADDRESS} (the guest's dnsmasq)")
    path_unit = _show("detoxd-cutter.path", "ActiveState")["ActiveState"]
    fields = ("NRestarts", "ExecMainStatus", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestamp",
              "InactiveExitTimestamp", "InvocationID", "TriggeredBy", "Result")
    before = _show("detoxd-cutter.service", *fields)
    journal_mark = len(_unit_messages("detoxd-cutter.service"))
    with socket.create_server((CUT_ADDRESS, 8080)) as server:
        client = socket.create_connection((CUT_NAME, 8080), timeout=5)
        accepted, _ = server.accept()
        with client, accepted:
            client.sendall(b"GET / HTTP/1.0\r\n")  # an open, used connection
            accepted.recv(64)
            original = BLOCKLIST.read_text()
            edited = original.replace("\ndomains:\n", f"\ndomains:\n  - {CUT_NAME}\n", 1)
            temporary = BLOCKLIST.with_name(".blocklist.yaml.cut")
            temporary.write_text(edited)
            begun = time.monotonic()
            os.rename(temporary, BLOCKLIST)
            client.settimeout(0.1)
            cut_after: float | None = None
            how = "still open after 30 s"
            while time.monotonic() - begun < 30:
                try:
                    data = client.recv(1)
                except TimeoutError:
                    continue
                except OSError as error:  # ss -K: ECONNABORTED here, or the peer's reset
                    cut_after, how = time.monotonic() - begun, os.strerror(error.errno or 0)
                    break
                if not data:
                    cut_after, how = time.monotonic() - begun, "closed (EOF)"
                    break
    in_hosts = wait_for(lambda: hosts_has(CUT_NAME), 5) is not None
    wait_for(lambda: _show("detoxd-cutter.service", "ActiveState")["ActiveState"] == "inactive", 20, 0.1)
    after = _show("detoxd-cutter.service", *fields)
    ran_again = after["InvocationID"] != before["InvocationID"] and int(
        after["ExecMainStartTimestampMonotonic"] or 0) > int(before["ExecMainStartTimestampMonotonic"] or 0)
    lines = [line for line in _unit_messages("detoxd-cutter.service")[journal_mark:] if "request" in line]
    said_closed = any(re.search(r"closed [1-9]\d* open connection", line) for line in lines)
    pending = list(Path("/run/detoxd/cutter/requests").glob("*.json"))
    ok = (cut_after is not None and in_hosts and ran_again and after["ExecMainStatus"] == "0"
          and after["Result"] == "success" and "detoxd-cutter.path" in after["TriggeredBy"]
          and said_closed and not pending)
    figure = f"{cut_after * 1000:.0f} ms after the edit" if cut_after is not None else "NOT cut"
    return ok, (f"connection to {CUT_NAME} ({CUT_ADDRESS}) {how} {figure}; {CUT_NAME} in /etc/hosts: "
                f"{in_hosts}; detoxd-cutter.path {path_unit}; detoxd-cutter.service ran again: {ran_again} "
                f"(NRestarts={after['NRestarts']} ExecMainStatus={after['ExecMainStatus']} "
                f"Result={after['Result']} ActiveEnterTimestamp={after['ActiveEnterTimestamp'] or '-'} "
                f"InactiveExitTimestamp={after['InactiveExitTimestamp']} "
                f"TriggeredBy={after['TriggeredBy']}); "
                f"journal: {lines[-1:] or 'nothing'}; requests left: {len(pending)}")


def _exposures(names: tuple[str, ...]) -> tuple[bool, str]:
    levels = {name: exposure(name) for name in names}
    ok = all(level <= UNIT_EXPOSURE[name] for name, level in levels.items())
    return ok, ", ".join(f"{name} {level} (README {UNIT_EXPOSURE[name]})" for name, level in levels.items())


def _execwatch_in_container() -> tuple[bool, str]:
    """The guest is a container: the kernel sends process events only to the host's initial
    namespaces, so the unit's ConditionVirtualization=!container keeps it from starting (no
    restart loop), the daemon polls for apps, and doctor names the reason instead of sending the
    user to `systemctl enable`."""
    condition = run("systemctl", "show", "-p", "ConditionResult", "--value", EXECWATCH).stdout.strip()
    state = run("systemctl", "is-active", EXECWATCH).stdout.strip()
    apps_watch = json.loads(run("detoxd", "status", "--json", timeout=20).stdout or "{}").get("apps_watch")
    doctor = run("detoxd", "doctor", timeout=60).stdout
    line = next((line for line in doctor.splitlines() if "polling /proc" in line), "no apps line")
    ok = condition == "no" and state == "inactive" and apps_watch == "polling" and "in a container" in line
    return ok, f"ConditionResult={condition}, {state}, apps_watch {apps_watch}; doctor: {line.strip()}"


def _household_units() -> tuple[bool, str]:
    states = {name: run("systemctl", "is-enabled", name).stdout.strip() for name in NETWORK_UNITS}
    user = run("getent", "passwd", "detoxd-network").stdout.strip()
    exposed_ok, exposed = _exposures((*NETWORK_UNITS, "detoxd-cutter.service", "detoxd-execwatch.service"))
    ok = all(state == "disabled" for state in states.values()) and user.endswith(":/usr/sbin/nologin")
    enabled = ", ".join(f"{name} {state}" for name, state in states.items())
    return ok and exposed_ok, f"{enabled}; user: {user or 'MISSING'}; exposure: {exposed}"


def _dig(name: str, kind: str = "A") -> tuple[str, list[str]]:
    """(status, answers) from the guest's dnsmasq, asked over DNS as a phone would."""
    output = run("dig", "@127.0.0.1", "+time=2", "+tries=1", "+noall", "+comments", "+answer",
                 name, kind, timeout=10).stdout
    match = re.search(r"status: (\w+)", output)
    answers = [line.split()[-1] for line in output.splitlines()
               if line and not line.startswith(";") and len(line.split()) >= 5]
    return (match.group(1) if match else "no answer"), answers


def _network_entries() -> list[dict[str, object]]:
    entries = status().get("network") or []
    return [entry for entry in entries if isinstance(entry, dict)]  # type: ignore[union-attr]


def _network_entry(engine: str) -> dict[str, object]:
    return next((entry for entry in _network_entries() if entry.get("engine") == engine), {})


def _dnsmasq_engine() -> tuple[bool, str]:
    before = _dig("facebook.com")
    (WORK / "dig.before").write_text(json.dumps(before))
    Path("/etc/detoxd/pihole.secret").write_text(PIHOLE_SECRET + "\n")
    os.chmod("/etc/detoxd/pihole.secret", 0o600)
    (WORK / "detoxd.yaml.orig").write_text(DETOXD_YAML.read_text())
    DETOXD_YAML.write_text(DETOXD_YAML.read_text() + (
        "\nnetwork:\n  - engine: dnsmasq\n    conf_dir: /etc/dnsmasq.d\n"
        f"  - engine: pihole\n    url: {PIHOLE_URL}\n    password_file: pihole.secret\n"))
    reload = run("detoxd", "reload")
    dnsmasq_pid = _show("dnsmasq.service", "MainPID")["MainPID"]
    begun = time.monotonic()
    enabled = run("systemctl", "enable", "--now", "detoxd-network-dnsmasq.service")

    def blocking() -> bool:
        return DNSMASQ_FILE.exists() and _dig("facebook.com") == ("NOERROR", ["0.0.0.0"])
    waited = wait_for(blocking, 30, 0.2)
    took = time.monotonic() - begun
    sub = _dig("ci-probe.facebook.com")  # a name no hosts file lists: only address=/facebook.com/#
    aaaa = _dig("facebook.com", "AAAA")
    canary = _dig("use-application-dns.net")
    after_pid = _show("dnsmasq.service", "MainPID", "ActiveState")
    restarted = after_pid["MainPID"] not in ("0", dnsmasq_pid) and after_pid["ActiveState"] == "active"
    wait_for(lambda: _network_entry("dnsmasq").get("state") == "in_sync", 15, 0.2)
    entry = _network_entry("dnsmasq")
    agent = _show("detoxd-network-dnsmasq.service", "ActiveState", "NRestarts")
    lines = DNSMASQ_FILE.read_text().splitlines() if DNSMASQ_FILE.exists() else []
    ok = (reload.returncode == 0 and enabled.returncode == 0 and waited is not None
          and sub == ("NOERROR", ["0.0.0.0"]) and aaaa == ("NOERROR", ["::"]) and canary[0] == "NXDOMAIN"
          and restarted and entry.get("state") == "in_sync" and agent["ActiveState"] == "active")
    return ok, (f"reload exit {reload.returncode}; enable --now exit {enabled.returncode}; before: "
                f"facebook.com {before[0]} {before[1]}; {DNSMASQ_FILE} with {len(lines)} lines and "
                f"dig @127.0.0.1 facebook.com "
                f"-> 0.0.0.0 after {took:.1f} s; ci-probe.facebook.com {sub[0]} {sub[1]}, AAAA {aaaa[1]}, "
                f"use-application-dns.net {canary[0]}; dnsmasq.service restarted (PID {dnsmasq_pid} -> "
                f"{after_pid['MainPID']}): {restarted}; status network dnsmasq: state {entry.get('state')}, "
                f"names {entry.get('names')}; agent {agent['ActiveState']} NRestarts={agent['NRestarts']}")


def _pihole_credential() -> tuple[bool, str]:
    enabled = run("systemctl", "enable", "--now", "detoxd-network.service")
    wait_for(lambda: _network_entry("pihole").get("state") not in (None, "pending", "no_agent"), 30, 0.2)
    entry = _network_entry("pihole")
    shown = _show("detoxd-network.service", "ActiveState", "MainPID", "NRestarts", "User")
    credential = Path("/run/credentials/detoxd-network.service/detoxd_pihole.secret")
    copied = credential.is_file() and credential.read_text().strip() == PIHOLE_SECRET
    environment = Path(f"/proc/{shown['MainPID']}/environ").read_bytes().split(b"\0")
    uid = next((line.split()[1] for line in Path(f"/proc/{shown['MainPID']}/status").read_text().splitlines()
                if line.startswith("Uid:")), "?")
    has_directory = b"CREDENTIALS_DIRECTORY=/run/credentials/detoxd-network.service" in environment
    raw_status = (run("detoxd", "status", "--json", timeout=20).stdout
                  + run("detoxd", "status", timeout=20).stdout)
    journal = run("journalctl", "-b", "--no-pager", "-o", "cat").stdout
    leaked = [where for where, text in (("status", raw_status), ("journal", journal))
              if PIHOLE_SECRET in text]
    ok = (enabled.returncode == 0 and entry.get("state") == "unreachable"
          and shown["ActiveState"] == "active" and copied and has_directory and uid != "0" and not leaked)
    return ok, (f"enable --now exit {enabled.returncode}; {shown['ActiveState']} as {shown['User']} "
                f"(uid {uid}); "
                f"credential {credential.name} in the unit's credentials directory: {copied}; "
                f"$CREDENTIALS_DIRECTORY set: {has_directory}; status network pihole {PIHOLE_URL}: state "
                f"{entry.get('state')}, error {str(entry.get('error'))[:80]!r}; "
                f"the secret in: {leaked or 'nowhere'}")


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


MAIL_PEERS = ("ada@guest.test", "grace@guest.test", "kj@guest.test", "tim@guest.test")


def _mail_unit() -> tuple[bool, str]:
    """Issue 25 under the real systemd: a real SMTP server (aiosmtpd, Maildir) on the guest's
    loopback, the peers and `mail:` in detoxd.yaml, `detoxd sessions --send` queues the
    invitations in the root daemon's outbox, and detoxd-mail.service (its own user, network only,
    the password file through LoadCredential=) delivers them: one iMIP REQUEST per peer with an email."""
    import email
    from email import policy

    maildir = Path("/var/tmp/detoxd-ci-maildir")
    server = subprocess.Popen(["python3", "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:2525", "-c",
                               "aiosmtpd.handlers.Mailbox", str(maildir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listening = wait_for(lambda: _accepts("127.0.0.1", 2525), 30, 0.1)
        before = DETOXD_YAML.read_text()
        DETOXD_YAML.write_text(before + (
            "\nme: {name: Robert, email: robert@guest.test}\npeers:\n"
            + "".join(f"  - {{name: Peer{i}, email: {address}}}\n" for i, address in enumerate(MAIL_PEERS))
            + "  - {name: Alan}\nsessions:\n  first: \"day 2 18:00\"\n"
            "mail:\n  server: 127.0.0.1\n  port: 2525\n  security: none\n  from: robert@guest.test\n"))
        checked = run("detoxd", "check")
        enabled = run("systemctl", "enable", "--now", "detoxd-mail.service")
        sent = run("detoxd", "sessions", "--send", timeout=60)

        def delivered() -> list[Path]:
            files = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
            return files if len(files) >= len(MAIL_PEERS) else []
        wait_for(delivered, 60, 0.2)
        files = delivered()
        messages = [email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in files]
        recipients = sorted(str(message["To"]) for message in messages)
        methods = sorted({part.get_param("method") or "" for message in messages for part in message.walk()
                          if part.get_content_type() == "text/calendar"})
        shown = _show("detoxd-mail.service", "ActiveState", "User")
        # 4: valid files; the household check's unreachable Pi-hole is still in detoxd.yaml.
        ok = (listening is not None and checked.returncode in (0, 4) and enabled.returncode == 0
              and sent.returncode == 0 and len(messages) == len(MAIL_PEERS)
              and all(any(address in to for to in recipients) for address in MAIL_PEERS)
              and methods == ["REQUEST"] and shown["ActiveState"] == "active"
              and shown["User"] == "detoxd-mail")
        said = (sent.stdout or sent.stderr).strip()[-160:]
        return ok, (f"check exit {checked.returncode}; enable --now exit {enabled.returncode}; "
                    f"sessions --send exit {sent.returncode}: {said!r}; {len(messages)} messages in the "
                    f"guest's Maildir, to {recipients}; text/calendar method {methods}; unit "
                    f"{shown['ActiveState']} as {shown['User']}")
    finally:
        run("systemctl", "disable", "--now", "detoxd-mail.service")
        server.terminate()
        server.wait(timeout=30)


def _dnsmasq_after_end() -> tuple[bool, str]:
    before = tuple(json.loads((WORK / "dig.before").read_text()))
    begun = time.monotonic()
    gone = wait_for(lambda: not DNSMASQ_FILE.exists() and _dig("facebook.com")[0] == before[0], 45, 0.5)
    now = _dig("facebook.com")
    others = sorted(path.name for path in Path("/etc/dnsmasq.d").iterdir())
    return gone is not None and "detoxd-ci.conf" in others, (
        f"{DNSMASQ_FILE} removed and facebook.com {now[0]} {now[1]} as before the detox "
        f"({before[0]}) {time.monotonic() - begun:.1f} s after the check began; /etc/dnsmasq.d now: {others}")


def _source_household_units() -> tuple[bool, str]:
    present = {name: Path(f"/etc/systemd/system/{name}").read_text() for name in NETWORK_UNITS
               if Path(f"/etc/systemd/system/{name}").is_file()}
    execs = sorted({match for text in present.values()
                    for match in re.findall(r"^ExecStart=(\S+)", text, re.M)})
    states = {name: run("systemctl", "is-enabled", name).stdout.strip() for name in NETWORK_UNITS}
    sysusers = Path("/etc/sysusers.d/detoxd.conf").is_file()
    user = run("getent", "passwd", "detoxd-network").stdout.strip()  # removed before the install
    ok = (len(present) == len(NETWORK_UNITS) and execs == ["/opt/detoxd/bin/detoxd"]
          and all(state == "disabled" for state in states.values()) and sysusers and bool(user))
    enabled = ", ".join(f"{name} {state}" for name, state in states.items())
    return ok, (f"{len(present)}/{len(NETWORK_UNITS)} units in /etc/systemd/system, ExecStart={execs}; "
                f"{enabled}; /etc/sysusers.d/detoxd.conf: {sysusers}; user: {user or 'MISSING'}")


def finish() -> None:
    PHASE.write_text("done")
    (OUT / "done").write_text("done\n")
    run("systemctl", "poweroff", "--no-block")


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    phase = PHASE.read_text().strip() if PHASE.exists() else "1"
    try:
        if phase == "1":
            phase_package()
        elif phase == "2":
            phase_after_reboot()
        else:  # a reboot we did not ask for (or a crash): stop rather than loop
            report(False, "unexpected boot", f"phase {phase!r}: the guest booted again unasked")
            finish()
    except Exception as error:  # the host must learn about it, and the guest stop
        report(False, f"phase {phase}", f"crashed: {type(error).__name__}: {error}")
        finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
