"""``detoxd doctor``: is the detox effective on this machine? Each failed check says what to do.

Two layers: :func:`gather` (here, the shell) reads the machine (daemon status, hosts file,
nsswitch.conf, systemd-resolved's config, browser policies, the service's enablement, lookups
through getaddrinfo) into :class:`~detoxd.core.doctorchecks.Facts`;
:func:`detoxd.core.doctorchecks.evaluate` turns facts into checks and is pure, so every failure
mode is tested without breaking a machine.

What it concludes from what it read as glibc would (the last ``hosts:`` line, lines overriding
blocked names, what counts as an escape) is in :mod:`detoxd.core.diagnosis`.

Every blocked name is looked up through getaddrinfo, as applications resolve. glibc reads the whole
hosts file for each lookup, so the cost grows with the square of the block (measured under load 4
on 2 cores: 0.3 s for 1 000 names, 33 s for 10 000, about 35 min for 100 000): names are looked up
in a fresh random order each run for :data:`LOOKUP_BUDGET_SECONDS`, and at least
:data:`MIN_SAMPLE` of them whatever that takes (200 of 100 000: 4-6 s); the report says whether all
names or a random sample were checked.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import re
import socket
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from detoxd.core import browserext, dnswire, firefoxext, hosts, policies, statustext
from detoxd.core.doctorchecks import (
    CUTTER_PATH_UNIT,
    EXECWATCH_UNIT,
    FIREFOX_CHANNELS,
    MAIL_UNIT,
    SAMPLE_SIZE,
    SERVICE,
    Facts,
    MailTry,
    Report,
    dns_server,
    evaluate,
    sample,
)
from detoxd.paths import Paths
from detoxd.protocol import Status
from detoxd.service.targets.browser.policyfiles import installed_browsers

MIN_SAMPLE = 200  # blocked names looked up at least, even past the budget
LOOKUP_BUDGET_SECONDS = 10.0
LOOKUP_LIMIT_SECONDS = 60.0  # beyond this even the minimum sample stops (a hung resolver)
LOOKUP_WORKERS = 8
MAX_HOSTS_BYTES = 512 << 20
CUTTER_STUCK_SECONDS = 60.0  # a request older than this was not picked up by the cutter
RESOLVED_CONFIGS = ("etc/systemd/resolved.conf",)
RESOLVED_DROP_IN_DIRS = ("usr/lib/systemd/resolved.conf.d", "run/systemd/resolved.conf.d",
                         "etc/systemd/resolved.conf.d")


# ---- asking the household's engines over DNS ----

def ask_engines(status: Status | None, block_names: Collection[str],
                size: int = SAMPLE_SIZE, timeout: float = 1.0) -> dict[str, dict[str, dnswire.Answer | None]]:
    names = sample(block_names, size)
    results: dict[str, dict[str, dnswire.Answer | None]] = {}
    for row in status.network if status is not None else ():
        if row.state == "in_sync" and not row.clients:
            server = dns_server(row)
            results[statustext.engine_label(row)] = {name: ask(server, name, timeout) for name in names}
    return results


def ask(server: str, name: str, timeout: float = 1.0, port: int = 53) -> dnswire.Answer | None:
    """One UDP question to ``server``; None when nothing (valid) came back in time."""
    ident = int.from_bytes(os.urandom(2), "big")
    try:
        infos = socket.getaddrinfo(server, port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(dnswire.query(name, ident), address)
            data, _ = sock.recvfrom(4096)
        return dnswire.parse(data, ident)
    except (OSError, ValueError, IndexError):
        return None


# ---- gathering (the shell) ----

def run(paths: Paths, root: Path = Path("/")) -> Report:
    return evaluate(gather(paths, root))


def gather(paths: Paths, root: Path = Path("/")) -> Facts:
    status, daemon_error = _daemon_status(paths)
    hosts_file = Path(status.hosts_file) if status and status.hosts_file else paths.hosts_file
    hosts_bytes = _read_hosts_file(hosts_file)
    hosts_text = hosts_bytes.decode(errors="replace")
    block_names = hosts.split(hosts_bytes).names
    active = status is not None and status.active
    return Facts(
        status=status,
        daemon_error=daemon_error,
        hosts_file=str(hosts_file),
        block_names=block_names,
        hosts_text=hosts_text,
        lookups=look_up(block_names) if active else {},
        nsswitch=_read(root / "etc/nsswitch.conf"),
        resolved_running=(root / "run/systemd/resolve").is_dir(),
        resolved_configs=_resolved_configs(root),
        browsers=installed_browsers(root),
        policy_documents=_policy_documents(root),
        policy_conflicts=_policy_conflicts(root),
        browser_policies_enabled=_browser_policies_enabled(paths),
        extension_files=_extension_files(root),
        service_enabled=_service_enabled(root),
        cutter_enabled=_service_enabled(root, CUTTER_PATH_UNIT),
        cutter_stuck=_cutter_stuck(paths),
        execwatch_enabled=_service_enabled(root, EXECWATCH_UNIT),
        exec_events_possible=_exec_events_possible(root),
        engine_answers=ask_engines(status, block_names) if active else {},
        mail=try_mail(paths, root),
    )


def _exec_events_possible(root: Path) -> bool | None:
    """Whether the kernel sends process events where detoxd runs (None: a --root, cannot tell)."""
    if root != Path("/"):
        return None
    from detoxd.service.execwatch import in_initial_namespaces

    return in_initial_namespaces()


def look_up(names: Collection[str], budget: float = LOOKUP_BUDGET_SECONDS, minimum: int = MIN_SAMPLE,
            limit: float = LOOKUP_LIMIT_SECONDS) -> dict[str, tuple[str, ...] | None]:
    """Each name's addresses through getaddrinfo (the system resolver); None: no answer.

    In a fresh random order: all names when they fit in ``budget`` seconds, else a random sample
    of at least ``minimum`` (unless ``limit`` passes first: a resolver that hangs). Names left are
    not in the result; lookups still running at the end are abandoned, not awaited."""
    order = list(names)
    random.SystemRandom().shuffle(order)
    started = time.monotonic()
    results: dict[str, tuple[str, ...] | None] = {}
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=LOOKUP_WORKERS)
    running: dict[concurrent.futures.Future[tuple[str, ...] | None], str] = {}
    try:
        while order or running:
            elapsed = time.monotonic() - started
            enough = elapsed >= limit or (elapsed >= budget and len(results) >= minimum)
            while order and not enough and len(running) < 2 * LOOKUP_WORKERS:
                name = order.pop()
                running[executor.submit(_addresses, name)] = name
            if enough or not running:
                break
            done, _ = concurrent.futures.wait(running, timeout=0.1,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)] = future.result()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)  # a hung lookup is abandoned
    return results


def _addresses(name: str) -> tuple[str, ...] | None:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return tuple(sorted({str(info[4][0]) for info in infos}))


def _daemon_status(paths: Paths) -> tuple[Status | None, str]:
    from detoxd.client import ControlClient, DaemonUnreachable

    try:
        response = ControlClient(paths.socket).request("status")
    except DaemonUnreachable as error:
        return None, str(error)
    status = response.get("status")
    return (Status.from_json(status), "") if isinstance(status, dict) else (None, str(response.get("error")))


def _read_hosts_file(path: Path) -> bytes:
    """Bounded, regular files only: a FIFO or a device at the path must not hang the doctor
    (what is wrong with the file is the daemon's to report; the block check then fails)."""
    from detoxd.service.state_store import StateFileError, read_bounded

    try:
        return read_bounded(path, MAX_HOSTS_BYTES)
    except (OSError, StateFileError):
        return b""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _resolved_configs(root: Path) -> tuple[str, ...]:
    texts = [_read(root / name) for name in RESOLVED_CONFIGS]
    # Drop-ins apply in file-name order across the directories; /etc overrides same-named ones.
    drop_ins: dict[str, Path] = {}
    for directory in RESOLVED_DROP_IN_DIRS:
        for path in sorted((root / directory).glob("*.conf")):
            drop_ins[path.name] = path
    texts += [_read(drop_ins[name]) for name in sorted(drop_ins)]
    return tuple(text for text in texts if text is not None)


def _policy_documents(root: Path) -> dict[str, Any]:
    documents: dict[str, Any] = {}
    for spec in policies.SPECS:
        try:
            documents[spec.file] = policies.parse(_read(root / spec.file), f"/{spec.file}")
        except policies.PolicyError as error:
            documents[spec.file] = str(error)
    return documents


def _policy_conflicts(root: Path) -> dict[str, tuple[str, ...]]:
    """Other files in a managed directory that set DnsOverHttpsMode to something else."""
    conflicts: dict[str, tuple[str, ...]] = {}
    for spec in policies.SPECS:
        if spec.browser == policies.FIREFOX:
            continue
        ours = root / spec.file
        found = []
        for path in sorted(ours.parent.glob("*.json")):
            if path.name == ours.name:
                continue
            try:
                document = policies.parse(_read(path), str(path))
            except policies.PolicyError:
                continue
            if document and spec.key_path[0] in document and document[spec.key_path[0]] != spec.value:
                found.append(f"/{path.relative_to(root)}")
        if found:
            conflicts[spec.browser] = tuple(found)
    return conflicts


def _extension_files(root: Path) -> dict[str, Any]:
    """detoxd's Chromium extension on disk: the host manifests read, the other files' existence."""
    found: dict[str, Any] = {}
    for browser, _ in browserext.CHROMIUM_HOST_DIRS:
        file = browserext.host_manifest_file(browser)
        assert file is not None
        try:
            found[file] = policies.parse(_read(root / file), f"/{file}")
        except policies.PolicyError as error:
            found[file] = str(error)
    for file in (f"{browserext.CHROMIUM_DIR}/{browserext.UPDATE_NAME}",
                 f"{browserext.CHROMIUM_DIR}/{browserext.CRX_NAME}",
                 f"{browserext.BROWSER_DIR}/{browserext.LAUNCHER_NAME}"):
        found[file] = (root / file).is_file()
    return {**found, **_firefox_extension_files(root)}


def _firefox_extension_files(root: Path) -> dict[str, Any]:
    """detoxd's Firefox extension on disk (its host manifest read, the XPI's existence) and each
    Firefox install's update channel (ESR honours the unsigned extension, release and beta do not)."""
    found: dict[str, Any] = {}
    try:
        found[firefoxext.HOST_FILE] = policies.parse(_read(root / firefoxext.HOST_FILE),
                                                     f"/{firefoxext.HOST_FILE}")
    except policies.PolicyError as error:
        found[firefoxext.HOST_FILE] = str(error)
    xpi = f"{firefoxext.FIREFOX_DIR}/{firefoxext.XPI_NAME}"
    found[xpi] = (root / xpi).is_file()
    channels: dict[str, str] = {}
    for install in ("usr/lib/firefox*", "opt/firefox*"):
        for path in sorted(root.glob(f"{install}/defaults/pref/channel-prefs.js")):
            match = re.search(r'pref\("app\.update\.channel",\s*"([^"]+)"', _read(path) or "")
            if match:
                channels[f"/{path.parents[2].relative_to(root)}"] = match.group(1)
    found[FIREFOX_CHANNELS] = channels
    return found


def _browser_policies_enabled(paths: Paths) -> bool:
    """bypass.browser_policies of the config (the status does not say)."""
    from detoxd.core.yamlsource import ConfigError
    from detoxd.service.loader import load_config

    try:
        return load_config(paths.config_dir).main.bypass.browser_policies
    except (ConfigError, OSError):
        return True  # the default; the daemon keeps its last good config anyway


def try_mail(paths: Paths, root: Path = Path("/"), *, cafile: str | None = None) -> MailTry | None:
    """`mail:`'s server tried as detoxd-mail would (connect, STARTTLS, AUTH; no message). Without
    root the password file cannot be read: the server is tried without AUTH and doctor says so."""
    from detoxd.core.yamlsource import ConfigError
    from detoxd.mailsend import MailError, try_server
    from detoxd.netagent.agent import SecretError, read_secret_file
    from detoxd.service.loader import load_config

    try:
        settings = load_config(paths.config_dir).main.mail
    except (ConfigError, OSError):
        return None  # check_config says what is wrong with the config
    if settings is None:
        return None
    enabled = _service_enabled(root, MAIL_UNIT)
    note = ""
    try:
        password = read_secret_file(settings.password_file, "mail", paths.config_dir, environ={})
    except SecretError as error:
        password = None
        note = f" (AUTH not tried: {error}; run doctor as root)"
    try:
        reached = try_server(settings, password if settings.username else None, cafile=cafile, timeout=10.0)
    except MailError as error:
        return MailTry(False, error.reason, error.fix, enabled)
    return MailTry(True, reached + note, "", enabled)


def _cutter_stuck(paths: Paths) -> int:
    import time

    from detoxd.service.cutter import requests_dir

    try:
        requests = list(requests_dir(paths.cutter_dir).iterdir())
        cutoff = time.time() - CUTTER_STUCK_SECONDS
        return sum(1 for request in requests if request.stat().st_mtime < cutoff)
    except OSError:  # none queued, or not readable without root
        return 0


def _service_enabled(root: Path, unit: str = SERVICE) -> str | None:
    """`systemctl is-enabled`'s answer, from the unit files: a normal user's systemctl needs the
    system D-Bus, and without it would make an installed unit look missing."""
    from detoxd.unitfiles import unit_state

    return unit_state(root, unit)
