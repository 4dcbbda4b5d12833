"""`detoxd doctor`'s checks: facts read from the machine (by :mod:`detoxd.doctor`) in, a
:class:`Report` of checks out, each failure with what to do. Pure, so every failure mode is
tested without breaking a machine.

What it concludes from what it read as glibc would (the last ``hosts:`` line, lines overriding
blocked names, what counts as an escape) is in :mod:`detoxd.core.diagnosis`; how the status is
said, in :mod:`detoxd.core.statustext`.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from detoxd.core import browserext, diagnosis, dnsengines, dnswire, firefoxext, policies, statustext
from detoxd.core.policies import InstalledBrowsers

if TYPE_CHECKING:
    from detoxd.protocol import EngineRow, Status

SAMPLE_SIZE = 5  # names asked of each household DNS engine
SERVICE = "detoxd.service"
CUTTER_PATH_UNIT = "detoxd-cutter.path"
EXECWATCH_UNIT = "detoxd-execwatch.service"
MAIL_UNIT = "detoxd-mail.service"


class Level(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Facts:
    status: Status | None  # None: the daemon did not answer
    daemon_error: str = ""
    hosts_file: str = "/etc/hosts"
    block_names: frozenset[str] = frozenset()  # the names in the hosts file's detoxd block
    hosts_text: str = ""  # the whole hosts file, read line by line as glibc does
    lookups: dict[str, tuple[str, ...] | None] = field(default_factory=dict)  # None: no answer
    nsswitch: str | None = None  # the file's text; None: missing
    resolved_running: bool = False
    resolved_configs: tuple[str, ...] = ()  # in the order systemd-resolved applies them
    browsers: InstalledBrowsers = field(default_factory=lambda: InstalledBrowsers((), ()))
    policy_documents: dict[str, Any] = field(default_factory=dict)  # spec file -> document | error
    policy_conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # browser -> files
    browser_policies_enabled: bool = True
    # detoxd's extension for the Chromium family: each file of it (relative to the root) -> its
    # JSON document (host manifests; None: missing; a string: why it cannot be read) or whether
    # it exists (update.xml, the package, the launcher).
    extension_files: dict[str, Any] = field(default_factory=dict)
    service_enabled: str | None = None  # `systemctl is-enabled` output; None: cannot tell
    cutter_enabled: str | None = None  # the same for detoxd-cutter.path
    cutter_stuck: int = 0  # requests to the connection cutter waiting for over a minute
    execwatch_enabled: str | None = None  # the same for detoxd-execwatch.service
    # Whether the kernel can send process events here (the initial PID and user namespaces; not
    # in a container); None: cannot tell.
    exec_events_possible: bool | None = None
    # The household's engines asked over DNS, as a client of the detox would: engine label ->
    # name -> answer (None: no answer in time).
    engine_answers: dict[str, dict[str, dnswire.Answer | None]] = field(default_factory=dict)
    mail: MailTry | None = None  # `mail:` configured: its server tried (no message sent)


@dataclass(frozen=True)
class MailTry:
    """`mail:`'s server, tried by doctor: connect, STARTTLS, AUTH, no message."""

    reached: bool
    message: str  # what was reached, or what failed
    fix: str = ""
    unit_enabled: str | None = None  # `systemctl is-enabled detoxd-mail.service`; None: cannot tell


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def effective(self) -> bool:
        return all(check.level is not Level.FAIL for check in self.checks)


# ---- evaluation ----

def evaluate(facts: Facts) -> Report:
    active = facts.status is not None and facts.status.active
    return Report((
        check_daemon(facts),
        check_service(facts.service_enabled),
        check_cutter(facts.cutter_enabled, facts.cutter_stuck),
        check_apps_watch(facts.status, facts.execwatch_enabled, facts.exec_events_possible),
        check_detox(facts.status),
        check_config(facts.status),
        check_detox_clock(facts.status),
        check_hosts_block(facts),
        check_overrides(facts, active),
        check_lookups(facts.lookups, len(facts.block_names), active),
        check_nsswitch(facts.nsswitch),
        check_resolved(facts.resolved_running, facts.resolved_configs),
        *check_browser_policies(facts, active),
        *check_chromium_extension(facts, active),
        *check_firefox_extension(facts, active),
        check_notifications(facts.status),
        *check_network(facts.status, facts.engine_answers, active),
        *check_mail(facts.mail),
    ))


def check_mail(tried: MailTry | None) -> list[Check]:
    """The server the messages to the peers go through, and the unit that sends them."""
    if tried is None:
        return []
    checks = [Check("mail server", Level.OK if tried.reached else Level.FAIL, tried.message, tried.fix)]
    if tried.unit_enabled is not None and tried.unit_enabled not in ("enabled", "enabled-runtime"):
        state = tried.unit_enabled or "not installed"
        checks.append(Check("mail agent", Level.FAIL, f"{MAIL_UNIT} is {state}: the messages to the peers "
                            "wait in the outbox", f"sudo systemctl enable --now {MAIL_UNIT}"))
    return checks


def check_daemon(facts: Facts) -> Check:
    if facts.status is None:
        return Check("daemon", Level.FAIL, f"the daemon does not answer: {facts.daemon_error}",
                     "start it: sudo systemctl start detoxd (or sudo detoxd run)")
    if facts.status.stale:
        age = facts.status.snapshot_age_seconds
        return Check("daemon", Level.FAIL, f"running, but its main loop is stuck: the status is "
                     f"{'?' if age is None else f'{age:g}'} s old and nothing confirms the "
                     "block", "sudo systemctl restart detoxd; see why in `journalctl -u detoxd`")
    return Check("daemon", Level.OK, f"running (detoxd {facts.status.version})")


def check_service(enabled: str | None) -> Check:
    if enabled is None:
        return Check("service", Level.SKIP, "no systemd unit directory: cannot tell")
    if enabled in ("enabled", "enabled-runtime", "static", "alias"):
        return Check("service", Level.OK, f"{SERVICE} is {enabled}: it starts at boot")
    state = enabled or "not installed"
    return Check("service", Level.FAIL, f"{SERVICE} is {state}: the block would not come back after "
                 "a reboot", "sudo detoxd install (or sudo systemctl enable detoxd)")


def check_cutter(enabled: str | None, stuck: int) -> Check:
    """The connection cutter closes open connections when sites are blocked again (allowances,
    config edits): without it new connections are still blocked, open tabs keep working."""
    if enabled is None:
        return Check("connection cutter", Level.SKIP, "no systemd unit directory: cannot tell")
    if enabled not in ("enabled", "enabled-runtime", "static", "alias"):
        return Check("connection cutter", Level.WARN,
                     f"{CUTTER_PATH_UNIT} is {enabled or 'not installed'}: open connections to sites "
                     "that are blocked again (an allowance ended) are not closed",
                     f"sudo systemctl enable --now {CUTTER_PATH_UNIT}")
    if stuck:
        return Check("connection cutter", Level.WARN,
                     f"{statustext.count(stuck, 'request')} to the connection cutter "
                     f"{'waits' if stuck == 1 else 'wait'} for over a minute",
                     "systemctl status detoxd-cutter.path detoxd-cutter.service")
    return Check("connection cutter", Level.OK, f"{CUTTER_PATH_UNIT} is {enabled}")


def check_apps_watch(status: Status | None, enabled: str | None, possible: bool | None = None) -> Check:
    """How blocked apps are found: at exec from the kernel's events (detoxd-execwatch), or by
    polling /proc every second (up to a second late) where the events do not reach the daemon."""
    if status is None:
        return Check("apps", Level.SKIP, "the daemon does not answer: cannot tell")
    if status.apps_watch == "exec_events":
        return Check("apps", Level.OK, "blocked apps are closed at exec: the kernel's exec events reach "
                     f"the daemon through {EXECWATCH_UNIT}")
    polling = "blocked apps are found by polling /proc every second (closed up to a second after they start)"
    if possible is False:  # the unit's ConditionVirtualization=!container keeps it from starting
        return Check("apps", Level.WARN, f"{polling}: in a container (or another PID or user namespace) "
                     "the kernel sends no process events", "nothing to fix here: detoxd on the host "
                     f"itself closes apps at exec ({EXECWATCH_UNIT})")
    why = (f"{EXECWATCH_UNIT} is {enabled or 'not installed'}" if enabled is not None
           and enabled not in ("enabled", "enabled-runtime", "static", "alias")
           else f"no exec events from {EXECWATCH_UNIT}")
    return Check("apps", Level.WARN, f"{polling}: {why}",
                 f"sudo systemctl enable --now {EXECWATCH_UNIT}; why it stopped: "
                 "journalctl -u detoxd-execwatch")


def check_detox(status: Status | None) -> Check:
    if status is None:
        return Check("detox", Level.SKIP, "unknown: the daemon does not answer")
    problems = statustext.enforcement_problems(status)  # the mail server has its own check
    if status.state == "scheduled":  # `start --at`: nothing is blocked until it begins
        return Check("detox", Level.FAIL, f"not yet: a detox is planned to begin {status.starts_at}; "
                     "nothing is blocked until then", "nothing to do: it begins by itself (to begin now: "
                     "sudo detoxd cancel, then sudo detoxd start)")
    if not status.active:
        if status.state_error:  # e.g. every trace of a detox gone while detoxd was stopped
            return Check("detox", Level.FAIL, f"no detox is running: {status.state_error}",
                         "if a detox was running, start it again: sudo detoxd start; see "
                         "`journalctl -u detoxd` for what happened to /var/lib/detoxd")
        return Check("detox", Level.FAIL, "no detox is running", "start one: sudo detoxd start")
    left, ends = statustext.days_left(status.days_left), status.ends_at
    if problems:  # a full disk or a hosts file that cannot be written: enforcement is at risk
        return Check("detox", Level.FAIL, f"active, but: {'; '.join(problems)}",
                     "free space in the file system named (df -h), then check `journalctl -u detoxd`")
    if status.state_error:
        return Check("detox", Level.WARN, f"active, {left}, ends {ends}; {status.state_error}",
                     "the state files in /var/lib/detoxd were damaged; see `journalctl -u detoxd`")
    return Check("detox", Level.OK, f"active, {left}, ends {ends}")


def check_detox_clock(status: Status | None) -> Check:
    """Downtime across a reboot is credited only once the clock is confirmed (docs/time.md)."""
    held = status.time_held if status is not None else None
    if held is None:
        return Check("detox clock", Level.OK if status else Level.SKIP,
                     "every second of the detox is credited" if status else "unknown")
    days = held.seconds / 86400
    return Check("detox clock", Level.WARN, f"{days:.1f} days since {held.since} held, not credited: "
                 f"{held.reason}", "let the clock synchronise over NTP (timedatectl set-ntp true; "
                 "timedatectl timesync-status): the held time is credited as soon as it is, as far as it "
                 "really passed")


def check_config(status: Status | None) -> Check:
    """A config in error keeps the last good blocklist in force, and refuses `detoxd start`."""
    if status is None:
        return Check("config", Level.SKIP, "unknown: the daemon does not answer")
    error = status.config_error
    if error:
        first = error.splitlines()[0]
        return Check("config", Level.FAIL, f"in error, the last good blocklist stays in force and "
                     f"`detoxd start` is refused: {first}", "sudo detoxd check lists every error; fix "
                     "them, then sudo detoxd reload")
    missing = status.config_missing
    if missing:
        return Check("config", Level.WARN, f"{', '.join(missing)} missing: read as built-in defaults, "
                     "and `detoxd start` is refused",
                     "sudo detoxd install puts the commented default config in /etc/detoxd")
    return Check("config", Level.OK, "valid")


def check_hosts_block(facts: Facts) -> Check:
    status = facts.status
    if status is None:
        return Check("hosts block", Level.SKIP, "unknown: the daemon does not answer")
    expected = status.domains_blocked
    found = len(facts.block_names)
    problem = status.hosts_file_problem
    if problem is not None and problem.reason:  # the daemon says what is in the way
        return Check("hosts block", Level.FAIL, f"the daemon cannot enforce the block: {problem.reason}",
                     problem.fix or "see `journalctl -u detoxd`")
    if not status.hosts_in_sync or found != expected:
        return Check("hosts block", Level.FAIL,
                     f"{facts.hosts_file} holds {found} of the {statustext.count(expected, 'name')} the "
                     "daemon blocks", "see `journalctl -u detoxd` for why it cannot write the file")
    return Check("hosts block", Level.OK, f"{facts.hosts_file} blocks {statustext.count(found, 'name')}, "
                 "in sync")


def check_overrides(facts: Facts, active: bool) -> Check:
    """Lines that give a blocked name a real address: glibc takes the first match, so one above
    the block (or an alias anywhere) lets the name through whatever the block says."""
    if not active or not facts.block_names:
        return Check("hosts overrides", Level.SKIP, "no blocked names")
    found = diagnosis.overrides(facts.hosts_text, facts.block_names)
    if not found:
        return Check("hosts overrides", Level.OK, f"no line in {facts.hosts_file} gives a blocked name "
                     "another address")
    shown = "; ".join(str(override) for override in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    lines = statustext.count(len(found), "line")
    return Check("hosts overrides", Level.FAIL, f"{lines} of {facts.hosts_file} "
                 f"{'gives' if len(found) == 1 else 'give'} blocked names another address, and glibc "
                 f"takes the first match: {shown}{more}",
                 f"remove those lines from {facts.hosts_file} (sudoedit {facts.hosts_file}); detoxd "
                 "comments them out itself while it runs")


def check_lookups(lookups: dict[str, tuple[str, ...] | None], total: int, active: bool) -> Check:
    if not active or not lookups:
        return Check("resolution", Level.SKIP, "no blocked names to look up")
    found = diagnosis.sort_lookups(lookups)
    scope = (f"all {total} blocked names" if len(lookups) == total
             else f"a random sample of {len(lookups)} of {total} blocked names")
    if found.escaping:
        shown = ", ".join(f"{name} -> {_answer(lookups[name])}" for name in found.escaping[:5])
        more = f" and {len(found.escaping) - 5} more" if len(found.escaping) > 5 else ""
        return Check("resolution", Level.FAIL,
                     f"{len(found.escaping)} of {scope} escape the block: {shown}{more}",
                     "make the system resolver read /etc/hosts first (see the nsswitch and "
                     "systemd-resolved checks); flush caches: sudo detoxd reload")
    if found.unresolved:
        shown = ", ".join(found.unresolved[:5])
        return Check("resolution", Level.WARN,
                     f"{len(found.blocked)} of {scope} resolve to 0.0.0.0/::; {len(found.unresolved)} "
                     f"did not resolve at all (nothing escapes, but the block did not answer them: "
                     f"{shown})", "check that /etc/hosts comes first (the nsswitch check) and that "
                     "the resolver is not timing out: getent ahosts " + found.unresolved[0])
    return Check("resolution", Level.OK, f"{scope} resolve to 0.0.0.0/:: through getaddrinfo")


def _answer(addresses: tuple[str, ...] | None) -> str:
    return "no answer" if addresses is None else ", ".join(addresses) or "nothing"


def check_nsswitch(text: str | None) -> Check:
    line = diagnosis.hosts_sources(text)
    sources = [token for token in line.split() if not token.startswith("[")]
    fix = "in /etc/nsswitch.conf put files before dns: hosts: files dns"
    if "files" not in sources:
        return Check("nsswitch", Level.FAIL, f"hosts: {line} never consults /etc/hosts", fix)
    files = sources.index("files")
    if "dns" in sources and sources.index("dns") < files:
        return Check("nsswitch", Level.FAIL, f"hosts: {line} asks dns before files", fix)
    if "resolve" in sources[:files]:
        return Check("nsswitch", Level.OK, f"hosts: {line} (systemd-resolved answers first; "
                     "it reads /etc/hosts unless ReadEtcHosts=no)")
    return Check("nsswitch", Level.OK, f"hosts: {line}")


def check_resolved(running: bool, configs: Sequence[str]) -> Check:
    if not running:
        return Check("systemd-resolved", Level.SKIP, "not running")
    if reads_etc_hosts(configs):
        return Check("systemd-resolved", Level.OK, "running and reads /etc/hosts (ReadEtcHosts)")
    return Check("systemd-resolved", Level.FAIL, "ReadEtcHosts=no: it answers without /etc/hosts",
                 "remove ReadEtcHosts=no from /etc/systemd/resolved.conf(.d), then "
                 "sudo systemctl restart systemd-resolved")


def reads_etc_hosts(configs: Sequence[str]) -> bool:
    """ReadEtcHosts= from resolved.conf and its drop-ins, in order (the last wins; default yes)."""
    value = True
    for text in configs:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        setting = parser.get("Resolve", "ReadEtcHosts", fallback=None)
        if setting is not None and setting.strip().lower() in ("no", "false", "0", "off"):
            value = False
        elif setting is not None and setting.strip().lower() in ("yes", "true", "1", "on"):
            value = True
    return value


def check_browser_policies(facts: Facts, active: bool) -> list[Check]:
    """Each installed browser: its secure DNS off, and the `paths:` blocked, by policy."""
    if not active:
        return [Check("browser policies", Level.SKIP, "no detox running")]
    if not facts.browser_policies_enabled:
        return [Check("browser policies", Level.WARN, "switched off (bypass.browser_policies: false): "
                      "browsers with DNS-over-HTTPS skip the block"), *_path_checks(facts)]
    checks = [_policy_check(spec, facts) for spec in policies.SPECS if spec.browser in facts.browsers.covered]
    checks += _path_checks(facts)
    checks += [Check(f"browser policies: {item}", Level.WARN,
                     "a snap or flatpak browser may not read the system policies in /etc",
                     "switch its secure DNS (DNS over HTTPS) off in its settings")
               for item in facts.browsers.uncovered]
    return checks or [Check("browser policies", Level.SKIP, "no supported browser installed")]


def check_chromium_extension(facts: Facts, active: bool) -> list[Check]:
    """Each installed Chromium-family browser: detoxd's extension force-installed (the block page),
    incognito and guest windows off (the extension cannot run there) and the native host registered."""
    if not active or not facts.browser_policies_enabled:
        return []  # the browser policies' line says why nothing is in force
    fix = "sudo systemctl restart detoxd (it installs the extension), then restart the browser"
    checks = []
    for browser, file in browserext.CHROMIUM_POLICY_FILES:
        if browser not in facts.browsers.covered:
            continue
        name = f"browser extension: {browser}"
        document = facts.policy_documents.get(file)
        entries = document.get("ExtensionInstallForcelist") if isinstance(document, dict) else None
        ours = [entry for entry in entries or () if isinstance(entry, str)
                and entry.endswith(f"/{browserext.CHROMIUM_DIR}/{browserext.UPDATE_NAME}")]
        if not ours:
            checks.append(Check(name, Level.FAIL, f"/{file} does not force-install detoxd's extension: "
                                "blocked sites show the browser's error page, not why", fix))
            continue
        ext_id = ours[0].split(";")[0]
        missing = [path for path in (f"{browserext.CHROMIUM_DIR}/{browserext.UPDATE_NAME}",
                                     f"{browserext.CHROMIUM_DIR}/{browserext.CRX_NAME}",
                                     f"{browserext.BROWSER_DIR}/{browserext.LAUNCHER_NAME}")
                   if not facts.extension_files.get(path)]
        host_file = browserext.host_manifest_file(browser) or ""
        host = facts.extension_files.get(host_file)
        origin = f"chrome-extension://{ext_id}/"
        if missing:
            shown = ", ".join(f"/{path}" for path in missing)
            checks.append(Check(name, Level.FAIL, f"missing: {shown}", fix))
        elif not isinstance(host, dict) or origin not in (host.get("allowed_origins") or ()):
            why = host if isinstance(host, str) else f"/{host_file} does not let the extension reach detoxd"
            checks.append(Check(name, Level.FAIL, f"{why}: the block page cannot ask the daemon", fix))
        elif ((document or {}).get("IncognitoModeAvailability") != browserext.INCOGNITO_DISABLED
              or (document or {}).get(browserext.GUEST_POLICY) is not False):
            checks.append(Check(name, Level.FAIL, f"incognito or guest windows are available (/{file}): "
                                "the extension does not run there", fix))
        else:
            checks.append(Check(name, Level.OK, f"force-installed ({ext_id}), incognito and guest "
                                "windows off, native host registered"))
    return checks


FIREFOX_CHANNELS = "firefox channels"  # Facts.extension_files: install directory -> update channel


def check_firefox_extension(facts: Facts, active: bool) -> list[Check]:
    """Firefox: detoxd's unsigned extension force-installed (signatures not required: honoured by
    ESR, ignored by release and beta builds), in private windows too, and the native host registered."""
    if not active or not facts.browser_policies_enabled or policies.FIREFOX not in facts.browsers.covered:
        return []
    fix = "sudo systemctl restart detoxd (it installs the extension), then restart Firefox"
    name = "browser extension: firefox"
    file = f"/{policies.FIREFOX_FILE}"
    document = facts.policy_documents.get(policies.FIREFOX_FILE)
    entry = firefoxext.extension_entry(document)
    missing = [f"/{path}" for path in (f"{firefoxext.FIREFOX_DIR}/{firefoxext.XPI_NAME}",
                                       f"{browserext.BROWSER_DIR}/{browserext.LAUNCHER_NAME}")
               if not facts.extension_files.get(path)]
    host = facts.extension_files.get(firefoxext.HOST_FILE)
    if isinstance(document, str):
        return [Check(name, Level.FAIL, document, f"repair the JSON in {file}")]
    if not firefoxext.firefox_forced(document):
        return [Check(name, Level.FAIL, f"{file} does not force-install detoxd's extension (unsigned: "
                      "it needs xpinstall.signatures.required off): blocked sites show Firefox's error "
                      "page, not why", fix)]
    if missing:
        return [Check(name, Level.FAIL, f"missing: {', '.join(missing)}", fix)]
    if not isinstance(host, dict) or firefoxext.FIREFOX_ID not in (host.get("allowed_extensions") or ()):
        why = (host if isinstance(host, str)
               else f"/{firefoxext.HOST_FILE} does not let the extension reach detoxd")
        return [Check(name, Level.FAIL, f"{why}: the block page cannot ask the daemon", fix)]
    if not isinstance(entry, dict) or entry.get("private_browsing") is not True:
        return [Check(name, Level.FAIL, f"{file} leaves private windows without the extension", fix)]
    checks = [Check(name, Level.OK, "force-installed (unsigned, signatures off by policy), in private "
                    "windows too, native host registered")]
    for install, channel in sorted(facts.extension_files.get(FIREFOX_CHANNELS, {}).items()):
        if channel in ("release", "beta"):
            checks.append(Check(f"{name} ({install})", Level.WARN, f"a {channel} build refuses unsigned "
                                "extensions whatever the policy: no block page there (the hosts file "
                                "and the policies still block)", "use Firefox ESR (Debian: firefox-esr)"))
    return checks


def _path_checks(facts: Facts) -> list[Check]:
    """`paths:` in force (status ``paths_blocked``): each installed browser's list holds them."""
    paths = facts.status.paths_blocked if facts.status is not None else ()
    checks = []
    for spec in policies.path_specs(tuple(paths)):
        if spec.browser not in facts.browsers.covered:
            continue
        name = f"browser paths: {spec.browser}"
        document = facts.policy_documents.get(spec.file)
        path = f"/{spec.file}"
        policy = ".".join(spec.key_path[1:] if spec.key_path[0] == "policies" else spec.key_path)
        if isinstance(document, str):
            checks.append(Check(name, Level.FAIL, document, f"repair the JSON in {path}"))
        elif not policies.is_applied(document, spec):
            checks.append(Check(name, Level.FAIL, f"{policy} in {path} does not hold every path of "
                                f"`paths:` ({len(paths)})", "sudo systemctl restart detoxd (it installs "
                                "the policy), then restart the browser"))
        else:
            checks.append(Check(name, Level.OK, f"{policy} in {path} blocks {len(paths)} "
                                f"path{'' if len(paths) == 1 else 's'}"))
    return checks


def _policy_check(spec: policies.PolicySpec, facts: Facts) -> Check:
    name = f"browser policies: {spec.browser}"
    document = facts.policy_documents.get(spec.file)
    path = f"/{spec.file}"
    if isinstance(document, str):
        return Check(name, Level.FAIL, document, f"repair the JSON in {path}")
    if not policies.is_applied(document, spec):
        return Check(name, Level.FAIL, f"{path} does not switch DNS-over-HTTPS off",
                     "sudo systemctl restart detoxd (it installs the policy), then restart the browser")
    conflicts = facts.policy_conflicts.get(spec.browser, ())
    if conflicts:
        return Check(name, Level.FAIL, f"DnsOverHttpsMode is also set in {', '.join(conflicts)}",
                     "remove DnsOverHttpsMode from those files")
    return Check(name, Level.OK, f"{path} switches DNS-over-HTTPS off")


def check_notifications(status: Status | None) -> Check:
    """From the tray agents' reports in the daemon status: ``agents: [{uid, notifications_silenced}]``."""
    agents = status.agents if status is not None else ()
    if status is None or not agents:
        return Check("notifications", Level.SKIP, "no tray agent connected to report on them")
    loud = [agent for agent in agents if not agent.notifications_silenced]
    if status.active and status.notifications_suppress and loud:
        # The agents measure and say why (Safe Eyes style); an older agent only says "not silenced".
        reasons = [f"uid {agent.uid}: {agent.reason or 'not silenced'}" for agent in loud]
        fixes = [agent.fix for agent in loud if agent.fix]
        return Check("notifications", Level.FAIL, "not silenced for " + "; ".join(reasons),
                     "; ".join(dict.fromkeys(fixes))
                     or "check the tray agent's log: journalctl --user -u detoxd-tray")
    return Check("notifications", Level.OK,
                 f"silenced, as reported by {statustext.count(len(agents), 'tray agent')}")


def check_network(status: Status | None, answers: dict[str, dict[str, dnswire.Answer | None]],
                  active: bool) -> list[Check]:
    """Each household engine: its agent's report, then what it answers for blocked names."""
    checks = []
    for row in status.network if status is not None else ():
        label = statustext.engine_label(row)
        if not active:
            checks.append(Check(f"engine {label}", Level.SKIP, "no detox running"))
            continue
        if row.state != "in_sync":
            unit = dnsengines.agent_unit(row.engine)
            fix = f"journalctl -u {unit}"
            if row.state == "no_agent":
                fix += f"; sudo systemctl enable --now {unit}"
            checks.append(Check(f"engine {label}", Level.FAIL, statustext.engine_line(row), fix))
            continue
        checks.append(_answers_check(label, row, answers.get(label, {})))
    return checks


def _answers_check(label: str, row: EngineRow, answers: dict[str, dnswire.Answer | None]) -> Check:
    name = f"engine {label}"
    if row.clients:
        return Check(name, Level.OK, "holds the detox for its named clients only: ask from one of them, "
                     f"e.g. dig @{dns_server(row)} {next(iter(answers), 'twitter.com')}")
    if not answers:
        return Check(name, Level.OK, "holds the detox (no names to ask it about)")
    silent = [n for n, a in answers.items() if a is None]
    leaking = [n for n, a in answers.items() if a is not None and not dnswire.is_blocked(a)]
    if leaking:
        return Check(name, Level.FAIL, f"answers {len(leaking)} of {len(answers)} sampled blocked names "
                     f"normally over DNS: {', '.join(leaking[:3])}", f"journalctl -u detoxd-network; "
                     f"dig @{dns_server(row)} {leaking[0]}")
    if len(silent) == len(answers):
        return Check(name, Level.WARN, f"holds the detox, but did not answer DNS at {dns_server(row)}")
    blocked = len(answers) - len(silent)
    return Check(name, Level.OK, f"holds the detox: {statustext.count(blocked, 'sampled name')} blocked "
                 "over DNS")


def dns_server(row: EngineRow) -> str:
    """Where a client asks: a Pi-hole's / AdGuard Home's host, a local engine on this machine."""
    if row.url:
        from urllib.parse import urlsplit

        return urlsplit(row.url).hostname or "127.0.0.1"
    return "127.0.0.1"


def sample(names: Collection[str], size: int = SAMPLE_SIZE) -> list[str]:
    """All names up to ``size``, else ``size`` evenly spaced ones of the sorted names (what the
    household's engines are asked about; the system resolver is asked about every name)."""
    ordered = sorted(names)
    if len(ordered) <= size:
        return ordered
    return [ordered[index * len(ordered) // size] for index in range(size)]


# ---- output ----

def format_human(report: Report) -> str:
    lines = []
    for check in report.checks:
        lines.append(f"[{check.level.value:>4}] {check.name}: {check.message}")
        if check.fix and check.level in (Level.FAIL, Level.WARN):
            lines.append(f"       -> {check.fix}")
    failed = sum(check.level is Level.FAIL for check in report.checks)
    lines.append("The detox is effective." if report.effective
                 else f"The detox is NOT effective: {failed} check{'s' if failed != 1 else ''} failed.")
    return "\n".join(lines)


def format_json(report: Report) -> str:
    checks = [{**asdict(check), "level": check.level.value} for check in report.checks]
    return json.dumps({"effective": report.effective, "checks": checks}, indent=2)
