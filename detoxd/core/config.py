"""The config model: YAML text → typed, validated settings (pure: no files, no clocks).

Two files live in the config directory: ``detoxd.yaml`` (how detoxd behaves) and
``blocklist.yaml`` (what it blocks). Every problem in either is reported at once as
``FILE:LINE: key.path: message``. The loader in ``detoxd.service.loader`` reads the files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from detoxd.core import domains, paths, peerkey, policies
from detoxd.core.allowances import Allowance, SiteCatalog, builtin_catalog, parse_allowances
from detoxd.core.apps import AppPresets, AppRule, builtin_presets, parse_rules
from detoxd.core.detox import MAX_DAYS
from detoxd.core.mail import MailSettings, parse_mail, parse_peers_informed, parse_share_activity
from detoxd.core.network import DnsEngineConfig, parse_network
from detoxd.core.schedule import BlockWindow, check_after, parse_schedule
from detoxd.core.sessions import (
    CHALLENGE_PEERS,
    Person,
    SessionSettings,
    check_people,
    parse_me,
    parse_peers,
    parse_sessions,
)
from detoxd.core.yamlsource import (
    Node,
    Source,
    as_bool,
    as_mapping,
    as_number,
    as_str_list,
    join,
    parse_document,
)

MAIN_FILE = "detoxd.yaml"
BLOCKLIST_FILE = "blocklist.yaml"
MAX_DETOX_DAYS = float(MAX_DAYS)  # the detox's own rule (detox.checked_days)


class LockMode(StrEnum):
    """`detox.lock`: how a running detox may end early."""

    ON = "true"  # it cannot
    OFF = "false"  # `sudo detoxd end`
    PEERS = "peers"  # `sudo detoxd end --with-peers` and `peers_needed` of the peers' shares


@dataclass(frozen=True)
class DetoxSettings:
    days: float = 14.0
    lock: bool = True  # `detoxd end` (without peers) is refused; True for lock: peers too
    lock_mode: LockMode = LockMode.ON
    peers_needed: int = 3  # used with lock: peers
    line: int = field(default=0, compare=False)  # of `detox.lock` (or `detox`), for cross-checks
    peers_needed_line: int = field(default=0, compare=False)
    # `detox.after`: schedule entries that take over when the detox ends (detoxd.core.schedule)
    after: tuple[str, ...] = ()
    after_lines: tuple[tuple[str, int, str], ...] = field(default=(), compare=False)

    @property
    def peer_lock(self) -> bool:
        return self.lock_mode is LockMode.PEERS


@dataclass(frozen=True)
class NotificationSettings:
    suppress: bool = True


@dataclass(frozen=True)
class BypassSettings:
    """Closing the ways around the hosts file: browsers' own DNS-over-HTTPS."""

    browser_policies: bool = True


@dataclass(frozen=True)
class MainConfig:
    detox: DetoxSettings = field(default_factory=DetoxSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    bypass: BypassSettings = field(default_factory=BypassSettings)
    me: Person | None = None
    peers: tuple[Person, ...] = ()
    sessions: SessionSettings | None = None  # None: no peer sessions planned
    network: tuple[DnsEngineConfig, ...] = ()  # the household's DNS engines (detoxd.core.network)
    mail: MailSettings | None = None  # the user's SMTP server (detoxd.core.mail); None: no mail
    peers_informed: tuple[str, ...] = ()  # what the peers are told about (); () = nothing is sent
    share_activity: bool = False  # the informed messages may carry ActivityWatch/browsing counts
    schedule: tuple[BlockWindow, ...] = ()  # weekly block windows (detoxd.core.schedule)


@dataclass(frozen=True)
class ListRef:
    """A `lists:` include, resolved and read by the loader."""

    path: str
    line: int
    key_path: str


@dataclass(frozen=True)
class BlocklistConfig:
    presets: tuple[str, ...] = ()
    # Normalised, each once, in the order written (the block lists names in config order);
    # the loader adds their www. variants.
    domains: tuple[str, ...] = ()
    allow: frozenset[str] = frozenset()
    lists: tuple[ListRef, ...] = ()
    apps: tuple[AppRule, ...] = ()  # apps closed while a detox runs
    allowances: tuple[Allowance, ...] = ()  # sites that may leave the block for a while
    paths: tuple[str, ...] = ()  # `host/path-prefix` entries blocked by browser policy (core.paths)
    path_lines: tuple[tuple[str, int, str], ...] = field(default=(), compare=False)  # entry, line, key


# ---- detoxd.yaml ----

def _parse_detox(source: Source, node: Node, path: str) -> DetoxSettings:
    fields = as_mapping(source, node, path, {"days", "lock", "peers_needed", "after"}) or {}
    defaults = DetoxSettings()
    days = defaults.days
    if "days" in fields:
        # Fractions are allowed so a newcomer can try a detox of a few minutes (0.01 days).
        days = as_number(source, fields["days"], join(path, "days"),
                         minimum=0.0001, maximum=MAX_DETOX_DAYS) or days
    written = _lock_mode(source, fields["lock"], join(path, "lock")) if "lock" in fields else None
    mode = written or defaults.lock_mode
    needed = defaults.peers_needed
    if "peers_needed" in fields:
        value = as_number(source, fields["peers_needed"], join(path, "peers_needed"),
                          minimum=peerkey.MIN_NEEDED, maximum=peerkey.MAX_NEEDED, integer=True)
        needed = needed if value is None else int(value)
        if mode is not LockMode.PEERS and ("lock" not in fields or written is not None):
            source.warn(fields["peers_needed"].line, join(path, "peers_needed"),
                        "only used with `lock: peers`")
    return DetoxSettings(
        days=days, lock=mode is not LockMode.OFF, lock_mode=mode, peers_needed=needed,
        line=fields["lock"].line if "lock" in fields else node.line,
        peers_needed_line=fields["peers_needed"].line if "peers_needed" in fields else 0,
        **_parse_after(source, fields, path),
    )


def _parse_after(source: Source, fields: dict[str, Node], path: str) -> dict[str, Any]:
    if "after" not in fields:
        return {}
    entries = as_str_list(source, fields["after"], join(path, "after"))
    return {"after": tuple(dict.fromkeys(name for name, _, _ in entries)), "after_lines": tuple(entries)}


def _lock_mode(source: Source, node: Node, path: str) -> LockMode | None:
    value = node.value if node.kind == "scalar" else None
    if isinstance(value, bool):
        return LockMode.ON if value else LockMode.OFF
    if isinstance(value, str) and value.strip().lower() == LockMode.PEERS.value:
        return LockMode.PEERS
    shown = repr(value) if isinstance(value, str) else "a mapping" if node.kind == "map" else \
        "a list" if node.kind == "seq" else "empty" if value is None else repr(value)
    source.error(node.line, path, f"expected true, false or peers, got {shown}")
    return None


def _check_peer_lock(source: Source, config: MainConfig) -> None:
    """`lock: peers` needs the people who hold the shares: `peers:` (five in the challenge),
    at least `peers_needed` of them, and no more than SLIP-39 can split into."""
    settings = config.detox
    if not settings.peer_lock:
        return
    listed = len(config.peers)
    needed_line = settings.peers_needed_line or settings.line
    if listed == 0:
        source.error(settings.line, "detox.lock", "`lock: peers` needs `peers:`, the people who "
                     f"hold the shares of the early-end key (the challenge names {CHALLENGE_PEERS})")
    elif listed < settings.peers_needed:
        source.error(needed_line, "detox.peers_needed", f"{settings.peers_needed} peers needed, "
                     f"but `peers:` lists only {listed}")
    elif listed > peerkey.MAX_HOLDERS:
        source.error(settings.line, "detox.lock", f"`lock: peers` splits the key among at most "
                     f"{peerkey.MAX_HOLDERS} peers; `peers:` lists {listed}")


def _check_mail(source: Source, config: MainConfig, sections: dict[str, Node]) -> None:
    """`peers_informed:` needs `mail:` and peers with an email; `share_activity:` goes with it."""
    if config.peers_informed and "mail" not in sections:
        source.error(sections["peers_informed"].line, "peers_informed",
                     "needs `mail:`, the server the messages to the peers are sent through")
    elif config.peers_informed and not any(peer.email for peer in config.peers):
        source.warn(sections["peers_informed"].line, "peers_informed",
                    "no peer in `peers:` has an email: nobody would be told")
    if config.share_activity and not config.peers_informed:
        source.warn(sections["share_activity"].line, "share_activity", "only used with `peers_informed:`")


def _parse_notifications(source: Source, node: Node, path: str) -> NotificationSettings:
    fields = as_mapping(source, node, path, {"suppress"}) or {}
    if "suppress" not in fields:
        return NotificationSettings()
    value = as_bool(source, fields["suppress"], join(path, "suppress"))
    return NotificationSettings(suppress=True if value is None else value)



def _parse_bypass(source: Source, node: Node, path: str) -> BypassSettings:
    fields = as_mapping(source, node, path, {"browser_policies"}) or {}
    if "browser_policies" not in fields:
        return BypassSettings()
    value = as_bool(source, fields["browser_policies"], join(path, "browser_policies"))
    return BypassSettings(browser_policies=True if value is None else value)


# Each top-level section of detoxd.yaml and its parser; later features add theirs here.
MAIN_SECTIONS: dict[str, Callable[[Source, Node, str], Any]] = {
    "detox": _parse_detox,
    "notifications": _parse_notifications,
    "bypass": _parse_bypass,
    "me": parse_me,
    "peers": parse_peers,
    "sessions": parse_sessions,
    "network": parse_network,
    "mail": parse_mail,
    "peers_informed": parse_peers_informed,
    "share_activity": parse_share_activity,
    "schedule": parse_schedule,
}


def parse_main(text: str, file: str = MAIN_FILE) -> tuple[MainConfig | None, Source]:
    """Parse detoxd.yaml into (what parsed, the issues). The config is usable only when
    ``source.errors`` is empty; it is None only when the document itself is unreadable."""
    source = Source(file)
    root = parse_document(text, source)
    sections = as_mapping(source, root, "", MAIN_SECTIONS) if root else None
    if sections is None:
        return None, source
    values = {name: MAIN_SECTIONS[name](source, node, name) for name, node in sections.items()}
    config = MainConfig(**values)
    check_people(source, config.me, config.peers, config.sessions)  # rules spanning sections
    _check_peer_lock(source, config)
    _check_mail(source, config, sections)
    if not any(issue.path.startswith("schedule") for issue in source.errors):  # (no echo of those)
        check_after(source, config.detox.after_lines, config.schedule)
    return config, source


# ---- blocklist.yaml ----

BLOCKLIST_KEYS = {"presets", "domains", "allow", "lists", "apps", "allowances", "paths"}


def parse_blocklist(
    text: str, known_presets: Collection[str], file: str = BLOCKLIST_FILE,
    app_presets: AppPresets | None = None, site_catalog: SiteCatalog | None = None,
) -> tuple[BlocklistConfig | None, Source]:
    """Parse blocklist.yaml into (what parsed, the issues); see :func:`parse_main`.

    The valid parts are returned even when others have errors, so that the loader can still
    read the `lists:` files and report their errors in the same run."""
    source = Source(file)
    root = parse_document(text, source)
    fields = as_mapping(source, root, "", BLOCKLIST_KEYS) if root else None
    if fields is None:
        return None, source

    def items(key: str) -> list[tuple[str, int, str]]:
        return as_str_list(source, fields[key], key) if key in fields else []

    config = BlocklistConfig(
        presets=_presets(source, items("presets"), known_presets),
        domains=tuple(dict.fromkeys(_domain_names(source, items("domains"), suggest_paths=True))),
        allow=frozenset(_domain_names(source, items("allow"))),
        lists=tuple(ListRef(path, line, key_path) for path, line, key_path in items("lists")
                    if _list_path_ok(source, path, line, key_path)),
        apps=parse_rules(source, fields["apps"], "apps", _app_presets(app_presets))
        if "apps" in fields else (),
        allowances=parse_allowances(
            source, fields["allowances"], "allowances",
            builtin_catalog() if site_catalog is None else site_catalog)
        if "allowances" in fields else (),
        **_paths(source, items("paths")),
    )
    return config, source


def _paths(source: Source, entries: list[tuple[str, int, str]]) -> dict[str, Any]:
    found: list[tuple[str, int, str]] = []
    for raw, line, path in entries:
        result = paths.normalize_path(raw)
        if result.entry is None:
            source.error(line, path, result.error or f"{raw!r} is not a host/path entry")
            continue
        if result.warning:
            source.warn(line, path, result.warning)
        found.append((result.entry, line, path))
    unique = tuple(dict.fromkeys(entry for entry, _, _ in found))
    if len(unique) > policies.CHROMIUM_URL_LIMIT and entries:
        source.error(entries[policies.CHROMIUM_URL_LIMIT][1], "paths",
                     f"{len(unique)} paths: browsers take at most {policies.CHROMIUM_URL_LIMIT}")
    return {"paths": unique, "path_lines": tuple(found)}


def paths_blocked_whole(blocklist: BlocklistConfig, names: Collection[str]) -> list[tuple[int, str, str]]:
    """(line, key path, message) for each `paths:` entry whose site the blocklist blocks whole
    (a preset, `domains:`, a list): the path adds nothing, and the site it meant to keep is gone."""
    found = []
    for entry, line, key in blocklist.path_lines:
        host = paths.host_of(entry)
        if host in names or f"www.{host}" in names:
            found.append((line, key, f"'{host}' is blocked whole (presets, domains or lists): "
                                     f"'{entry}' adds nothing; to keep the rest of the site, "
                                     "take it out of those"))
    return found


def _presets(
    source: Source, entries: list[tuple[str, int, str]], known: Collection[str]
) -> tuple[str, ...]:
    chosen: list[str] = []
    for name, line, path in entries:
        if name not in known:
            source.error(line, path, f"unknown preset {name!r} (available: {', '.join(sorted(known))})")
        elif name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _domain_names(source: Source, entries: list[tuple[str, int, str]], *,
                  suggest_paths: bool = False) -> list[str]:
    names: list[str] = []
    for raw, line, path in entries:
        entry = paths.url_path_entry(raw) if suggest_paths else None
        if entry is not None:
            source.error(line, path, f"{raw!r} has a path: `domains:` blocks whole sites; to block only "
                         f"that path write it under `paths:` as '- {entry}' (the rest of "
                         f"{paths.host_of(entry)} stays reachable)")
            continue
        result = domains.normalize_domain(raw)
        if result.warning:
            source.warn(line, path, result.warning)
        homoglyph = domains.mixed_scripts(raw) if result.name is not None else None
        if homoglyph:
            source.warn(line, path, f"{homoglyph} (blocking '{result.name}')")
        if result.name is None:
            source.error(line, path, result.error or f"{raw!r} is not a valid domain name")
        else:
            names.append(result.name)
    return names


def _list_path_ok(source: Source, path: str, line: int, key_path: str) -> bool:
    if not path.strip() or "\x00" in path:
        source.error(line, key_path, "expected a file path")
        return False
    return True


def _app_presets(given: AppPresets | None) -> AppPresets:
    # The built-in presets are package data, read once; tests pass their own.
    return builtin_presets() if given is None else given
