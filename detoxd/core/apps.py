"""Blocked desktop apps: rules, matching a process description to a rule, and what to spare (pure).

A rule is a name (what `status` counts under) and matchers. A matcher is one of:

* a plain name (``slack``): the process name, the executable's basename or ``argv[0]``'s basename,
  compared case-insensitively (the Discord binary is called ``Discord``);
* an absolute path (``/opt/mychat/mychat``): the executable or ``argv[0]``, exactly;
* a directory, an absolute path ending in ``/`` (``/snap/slack/``): anything run from under it;
* ``flatpak:APP.ID`` (``flatpak:com.slack.Slack``): every process of that Flatpak app, known from
  the ``app-flatpak-<id>-<n>.scope`` cgroup Flatpak starts it in.

Nothing else of the command line is looked at: an editor with ``slack.txt`` open must survive.
The shell (``detoxd.service.appwatch``) reads ``/proc`` and sends signals; this module only decides.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

import yaml

from detoxd.core.yamlsource import Node, Source, as_list, as_mapping, as_str, as_str_list, join

# Rule names are shown in logs and status and used as keys: a plain, safe charset.
APP_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]{0,63}")
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9._+-]{1,255}")
# Flatpak application ids: reverse DNS, at least three elements (flatpak's own rule).
_FLATPAK_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){2,}")
_FLATPAK_SCOPE = re.compile(r"app-flatpak-(.+)-[0-9]+\.scope")
FLATPAK_PREFIX = "flatpak:"
MAX_PATH = 4096
# The kernel keeps only the first 15 bytes of a process name (TASK_COMM_LEN - 1).
COMM_LENGTH = 15
# Accounts below this are the system's (login.defs UID_MIN); 65534 is "nobody".
FIRST_USER_UID = 1000
NOBODY_UID = 65534
PF_KTHREAD = 0x00200000  # /proc/PID/stat flags bit of kernel threads

# Matchers that would close the system or the user's whole session are refused outright.
_ESSENTIAL_PROGRAMS = frozenset({
    "systemd", "init", "sh", "bash", "dash", "zsh", "fish", "ksh", "tcsh", "csh", "sudo", "su",
    "doas", "pkexec", "login", "sshd", "ssh", "dbus-daemon", "dbus-broker", "xorg", "xwayland",
    "gnome-shell", "gnome-session-binary", "plasmashell", "kwin_x11", "kwin_wayland", "xfwm4",
    "xfce4-session", "mutter", "sway", "pipewire", "wireplumber", "pulseaudio", "env", "detoxd",
    "python", "python3", "perl", "node", "electron", "java", "bwrap", "flatpak", "snap",
})
_INTERPRETER = re.compile(r"python[0-9.]*|perl[0-9.]*|node[0-9]*|electron[0-9]*|java")
# Directories that hold many programs: a directory matcher on one closes far more than an app.
# (Top-level directories such as /opt/ are refused by their depth.)
_SHARED_DIRECTORIES = frozenset({
    "/usr/bin/", "/usr/sbin/", "/usr/lib/", "/usr/lib64/", "/usr/lib32/", "/usr/libexec/",
    "/usr/local/", "/usr/local/bin/", "/usr/local/sbin/", "/usr/local/lib/", "/usr/local/share/",
    "/usr/share/", "/usr/games/", "/var/lib/", "/var/lib/flatpak/", "/var/lib/snapd/", "/snap/bin/",
    "/snap/core/", "/snap/snapd/", "/app/bin/", "/app/lib/", "/app/extra/", "/run/user/",
})

MatcherKind = Literal["name", "path", "directory", "flatpak"]


@dataclass(frozen=True)
class ProcessInfo:
    """What the shell read about one process; empty strings for what it could not read."""

    pid: int
    ppid: int
    name: str  # /proc/PID/comm: at most 15 characters
    exe: str = ""  # the executable's path, without " (deleted)"
    argv: tuple[str, ...] = ()  # at most the first three arguments (only to recognise detoxd)
    real_uid: int | None = None
    effective_uid: int | None = None
    kernel_thread: bool = False
    zombie: bool = False
    flatpak_app: str | None = None

    @property
    def argv0(self) -> str:
        return self.argv[0] if self.argv else ""


@dataclass(frozen=True)
class Matcher:
    kind: MatcherKind
    value: str  # names casefolded; directories end in "/"

    def matches(self, process: ProcessInfo) -> bool:
        if self.kind == "flatpak":
            return process.flatpak_app == self.value
        if self.kind == "name":
            return (self.value in _program_names(process)
                    or _truncated_name_matches(self.value, process.name))
        programs = [path for path in (process.exe, process.argv0) if path]
        if self.kind == "path":
            return self.value in programs
        return any(path.startswith(self.value) for path in programs)

    def __str__(self) -> str:
        return FLATPAK_PREFIX + self.value if self.kind == "flatpak" else self.value


@dataclass(frozen=True)
class AppRule:
    name: str
    matchers: tuple[Matcher, ...]
    description: str = ""

    def matches(self, process: ProcessInfo) -> bool:
        return any(matcher.matches(process) for matcher in self.matchers)


def _program_names(process: ProcessInfo) -> set[str]:
    """The names a plain-name matcher is compared with, casefolded."""
    names = {process.name.casefold()}
    if process.exe:
        names.add(posixpath.basename(process.exe).casefold())
    # A process that rewrote its argv[0] into a title ("vim /home/me/slack") would otherwise
    # match by the title's last word; such titles hold spaces, real program names rarely do.
    if process.argv0 and not any(char.isspace() for char in process.argv0):
        names.add(posixpath.basename(process.argv0).casefold())
    names.discard("")
    return names


def _truncated_name_matches(name: str, comm: str) -> bool:
    # "telegram-desktop" runs as "telegram-deskto": the kernel cut the name, not the user.
    return len(name) > COMM_LENGTH and len(comm) == COMM_LENGTH and name.startswith(comm.casefold())


def parse_matcher(text: str) -> Matcher | str:
    """A validated matcher, or why ``text`` is not one."""
    if not text.strip():
        return "empty matcher"
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return f"{text!r} holds control characters"
    if text.startswith(FLATPAK_PREFIX):
        app_id = text.removeprefix(FLATPAK_PREFIX)
        if not _FLATPAK_ID.fullmatch(app_id) or len(app_id) > 255:
            return f"{app_id!r} is not a Flatpak app id (like com.slack.Slack)"
        return Matcher("flatpak", app_id)
    if text.startswith("/"):
        return _path_matcher(text)
    if "/" in text:
        return f"{text!r}: paths must be absolute (start with /)"
    if not _PROGRAM_NAME.fullmatch(text):
        return f"{text!r} is not a program name (letters, digits, . _ + -)"
    if _is_essential(text):
        return f"refusing {text!r}: closing it would close the system or your session"
    return Matcher("name", text.casefold())


def _path_matcher(text: str) -> Matcher | str:
    directory = text.endswith("/")
    body = text.rstrip("/")
    if len(text) > MAX_PATH:
        return "path longer than 4096 characters"
    if not body or posixpath.normpath(body) != body:
        return f"{text!r} is not a normalised absolute path (no //, . or ..)"
    if directory:
        if body.count("/") < 2 or text in _SHARED_DIRECTORIES:
            return f"refusing {text!r}: a directory this broad holds programs of the whole system"
        return Matcher("directory", text)
    if _is_essential(posixpath.basename(body)):
        return f"refusing {text!r}: closing it would close the system or your session"
    return Matcher("path", body)


def _is_essential(program: str) -> bool:
    folded = program.casefold()
    return folded in _ESSENTIAL_PROGRAMS or bool(_INTERPRETER.fullmatch(folded))


def rule_for(rules: Iterable[AppRule], process: ProcessInfo) -> AppRule | None:
    """The first rule matching ``process``, protected or not (see :func:`protection`)."""
    return next((rule for rule in rules if rule.matches(process)), None)


def protection(process: ProcessInfo, own_pid: int) -> str | None:
    """Why ``process`` must never be closed, or None.

    Only user accounts' processes are closed: a process with a system uid as its real or
    effective user (root, daemons, setuid helpers, `nobody`) is spared, whatever it is called.
    """
    if process.pid in (0, 1, 2):
        return "the init process" if process.pid == 1 else "a kernel process"
    if process.kernel_thread or process.ppid == 2:
        return "a kernel thread"
    if process.pid == own_pid or is_detoxd(process):
        return "detoxd itself"
    uids = (process.real_uid, process.effective_uid)
    if None in uids:
        return "its owner is unknown"
    if any(uid is not None and (uid < FIRST_USER_UID or uid == NOBODY_UID) for uid in uids):
        return f"runs as a system user (uid {min(uid for uid in uids if uid is not None)})"
    return None


def is_detoxd(process: ProcessInfo) -> bool:
    """The daemon, the CLI or the tray: `detoxd …`, `python3 /usr/bin/detoxd …`, `python -m detoxd`."""
    if process.name == "detoxd":
        return True
    if any(posixpath.basename(arg) == "detoxd" for arg in process.argv[:2]):
        return True
    return process.argv[1:3] == ("-m", "detoxd")


def tree_root(
    process: ProcessInfo, rule: AppRule, describe: Callable[[int], ProcessInfo | None], own_pid: int
) -> ProcessInfo:
    """The topmost ancestor of ``process`` that the same rule matches: closing it closes the app
    (Electron apps run a main process with helpers below it), not just one helper."""
    root = process
    seen = {process.pid}
    while root.ppid > 1 and root.ppid not in seen:
        parent = describe(root.ppid)
        if parent is None or not rule.matches(parent) or protection(parent, own_pid):
            break
        seen.add(parent.pid)
        root = parent
    return root


def descendants(pid: int, parents: Mapping[int, int]) -> set[int]:
    """Every process below ``pid``, from a PID → parent PID map."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = list(children.get(pid, ()))
    while stack:
        child = stack.pop()
        if child not in found and child != pid:
            found.add(child)
            stack.extend(children.get(child, ()))
    return found


# ---- `apps:` in blocklist.yaml ----

AppPresets = Mapping[str, AppRule]


def parse_rules(source: Source, node: Node, path: str, presets: AppPresets) -> tuple[AppRule, ...]:
    """`apps:` entries: preset names or ``{name, match}`` mappings; every problem is reported."""
    rules: dict[str, AppRule] = {}
    for index, item in enumerate(as_list(source, node, path) or []):
        item_path = join(path, index)
        if item.kind == "map":
            rule = _explicit_rule(source, item, item_path)
        else:
            rule = _preset_rule(source, item, item_path, presets)
        if rule is None or rules.get(rule.name) == rule:  # a preset listed twice is harmless
            continue
        if rule.name in rules:
            source.error(item.line, item_path, f"app {rule.name!r} is listed twice")
            continue
        rules[rule.name] = rule
    return tuple(rules.values())


def _preset_rule(source: Source, item: Node, path: str, presets: AppPresets) -> AppRule | None:
    name = as_str(source, item, path)
    if name is None:
        return None
    if name not in presets:
        available = ", ".join(sorted(presets))
        source.error(item.line, path, f"unknown app preset {name!r} (available: {available}; "
                     "or give `name:` and `match:`)")
        return None
    return presets[name]


def _explicit_rule(source: Source, item: Node, path: str) -> AppRule | None:
    fields = as_mapping(source, item, path, {"name", "match"}) or {}
    for key in ("name", "match"):
        if key not in fields:
            source.error(item.line, path, f"missing `{key}:`")
    if "name" not in fields or "match" not in fields:
        return None
    name = as_str(source, fields["name"], join(path, "name"))
    if name is not None and not APP_NAME.fullmatch(name):
        source.error(fields["name"].line, join(path, "name"),
                     f"{name!r} is not an app name (lower-case letters, digits, . _ + -)")
        name = None
    match_path = join(path, "match")
    entries = as_str_list(source, fields["match"], match_path)
    matchers = []
    for text, line, entry_path in entries:
        matcher = parse_matcher(text)
        if isinstance(matcher, str):
            source.error(line, entry_path, matcher)
        else:
            matchers.append(matcher)
    if fields["match"].value in (None, []):  # `match:` or `match: []`
        source.error(fields["match"].line, match_path,
                     "needs at least one matcher (a program name, an absolute path or flatpak:APP.ID)")
    if name is None or not matchers or len(matchers) != len(entries):
        return None
    return AppRule(name, tuple(dict.fromkeys(matchers)))


# ---- reading /proc text (the shell hands the file contents over) ----


def parse_stat(pid: int, text: str) -> tuple[str, int, bool, bool] | None:
    """(name, parent pid, kernel thread, zombie) from /proc/PID/stat; None if unreadable."""
    opening, closing = text.find("("), text.rfind(")")  # the name itself may hold ") ("
    fields = text[closing + 2:].split() if 0 <= opening < closing else []
    if len(fields) < 7:
        return None
    state, ppid, flags = fields[0], fields[1], fields[6]
    if not (ppid.isdigit() and flags.isdigit()):
        return None
    return text[opening + 1:closing], int(ppid), bool(int(flags) & PF_KTHREAD), state in "ZX"


def parse_uids(status_text: str) -> tuple[int | None, int | None]:
    """(real, effective) uid from /proc/PID/status."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            parts = line.split()
            if len(parts) >= 3 and parts[1].isdigit() and parts[2].isdigit():
                return int(parts[1]), int(parts[2])
    return None, None


def parse_cmdline(data: bytes, keep: int = 3) -> tuple[str, ...]:
    return tuple(arg.decode("utf-8", "replace") for arg in data.split(b"\x00")[:keep] if arg)


def clean_exe(link: str) -> str:
    """The executable path from the /proc/PID/exe link (an upgraded app shows " (deleted)")."""
    return link.removesuffix(" (deleted)")


def flatpak_app_id(cgroup_text: str) -> str | None:
    """The Flatpak app id from /proc/PID/cgroup: ``…/app-flatpak-com.slack.Slack-12345.scope``."""
    for line in cgroup_text.splitlines():
        for part in line.rpartition(":")[2].split("/"):
            found = _FLATPAK_SCOPE.fullmatch(part)
            if found:
                app_id = found.group(1).replace("\\x2d", "-")  # systemd's unit-name escaping
                return app_id if _FLATPAK_ID.fullmatch(app_id) else None
    return None


# ---- what `detoxd check` shows ----


@dataclass(frozen=True)
class Finding:
    """A running process the rules match, as the dry run reports it."""

    app: str
    process: ProcessInfo
    spared_because: str | None  # None: it would be closed
    descendants: int = 0


def describe_findings(findings: Iterable[Finding]) -> list[str]:
    lines = []
    for finding in sorted(findings, key=lambda f: (f.app, f.spared_because is not None, f.process.pid)):
        process = finding.process
        program = process.exe or process.argv0 or process.name
        who = f"uid {process.real_uid}" if process.real_uid is not None else "unknown user"
        if finding.spared_because:
            lines.append(f"  {finding.app}: pid {process.pid} {program} ({who}) matches but is "
                         f"spared: {finding.spared_because}")
            continue
        children = f" and {finding.descendants} child processes" if finding.descendants else ""
        lines.append(f"  {finding.app}: would close pid {process.pid} {program} ({who}){children}")
    return lines


# ---- built-in presets (package data: detoxd/data/apps.yaml) ----


class BrokenAppPresetsError(ValueError):
    """The shipped app presets do not parse: a packaging bug."""


def parse_presets(text: str) -> dict[str, AppRule]:
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or not document:
        raise BrokenAppPresetsError("app presets must be a mapping of names to presets")
    presets: dict[str, AppRule] = {}
    for name, body in document.items():
        if not isinstance(name, str) or not APP_NAME.fullmatch(name) or not isinstance(body, dict):
            raise BrokenAppPresetsError(f"app preset {name!r} is malformed")
        description, texts = body.get("description"), body.get("match")
        if not isinstance(description, str) or not isinstance(texts, list) or not texts:
            raise BrokenAppPresetsError(f"app preset {name!r} needs a description and a match list")
        matchers = []
        for text in texts:
            matcher = parse_matcher(text) if isinstance(text, str) else f"{text!r} is not text"
            if isinstance(matcher, str):
                raise BrokenAppPresetsError(f"app preset {name!r}: {matcher}")
            matchers.append(matcher)
        presets[name] = AppRule(name, tuple(matchers), description.strip())
    return presets


@cache
def builtin_presets() -> Mapping[str, AppRule]:
    return parse_presets(files("detoxd").joinpath("data", "apps.yaml").read_text(encoding="utf-8"))


# ---- the rules a locked detox keeps (persisted by the daemon in its state directory) ----

def rules_to_json(rules: Iterable[AppRule]) -> list[dict[str, Any]]:
    return [{"name": rule.name, "match": [str(matcher) for matcher in rule.matchers],
             "description": rule.description} for rule in rules]


def rules_from_json(document: object) -> tuple[AppRule, ...]:
    """Rules saved by :func:`rules_to_json`, each matcher validated again; ValueError if bad."""
    if not isinstance(document, list):
        raise ValueError("expected a list of rules")
    rules = []
    for entry in document:
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), list):
            raise ValueError(f"not a rule: {entry!r}")
        matchers = tuple(parse_matcher(str(text)) for text in entry["match"])
        bad = [problem for problem in matchers if isinstance(problem, str)]
        if bad or not matchers:
            raise ValueError(f"invalid rule {entry.get('name')!r}: {', '.join(bad) or 'no matchers'}")
        rules.append(AppRule(str(entry["name"]), tuple(m for m in matchers if isinstance(m, Matcher)),
                             str(entry.get("description", ""))))
    return tuple(rules)


def ratchet_rules(kept: Iterable[AppRule], configured: Iterable[AppRule]) -> tuple[AppRule, ...]:
    """The configured rules plus every earlier rule of this detox that the config no longer has:
    during a locked detox, taking an app out of the blocklist does not let it run early."""
    configured = tuple(configured)
    return configured + tuple(rule for rule in kept if rule not in configured)
