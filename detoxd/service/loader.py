"""Reads the config directory: both YAML files and their `lists:` includes (shell around config)."""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from detoxd.core import domains, presets
from detoxd.core.config import (
    BLOCKLIST_FILE,
    MAIN_FILE,
    BlocklistConfig,
    ListRef,
    MainConfig,
    parse_blocklist,
    parse_main,
)
from detoxd.core.yamlsource import ConfigError, ConfigIssue, Source

# glibc reads the whole hosts file on every lookup: past this, every name the machine resolves slows.
LARGE_BLOCK_WARNING = 100_000
MAX_CONFIG_BYTES = 1 << 20
MAX_LIST_BYTES = 256 << 20


@dataclass(frozen=True)
class LoadedConfig:
    main: MainConfig
    blocklist: BlocklistConfig
    names: frozenset[str]  # every host name the blocklist blocks, validated
    order: tuple[str, ...]  # the same names in the config's order (how the block lists them)
    warnings: tuple[ConfigIssue, ...]


def load_config(config_dir: Path, trusted_uids: Collection[int] | None = None) -> LoadedConfig:
    """Load and validate everything, or raise ConfigError with every error found.

    ``trusted_uids`` may own `lists:` files (root and the daemon's own user by default).
    """
    trusted = set(trusted_uids) if trusted_uids is not None else {0, os.geteuid()}
    issues: list[ConfigIssue] = []
    main, main_source = parse_main(_read_config_file(config_dir / MAIN_FILE))
    blocklist, block_source = parse_blocklist(
        _read_config_file(config_dir / BLOCKLIST_FILE), known_presets=presets.PRESET_NAMES)
    issues += main_source.issues + block_source.issues
    if main is not None:
        issues += _check_secret_files(config_dir, main, trusted)
    order: tuple[str, ...] = ()
    if blocklist is not None:
        list_names = _read_lists(config_dir, blocklist.lists, trusted, issues)
        order = domains.expand_in_order(
            domains=blocklist.domains,
            presets=[host for name in blocklist.presets for host in presets.load_preset(name)],
            lists=list_names,
            allow=blocklist.allow,
        )
        if len(order) > LARGE_BLOCK_WARNING:
            issues.append(ConfigIssue(
                BLOCKLIST_FILE, 0, "", f"{len(order)} names blocked: past {LARGE_BLOCK_WARNING} every "
                "lookup on this machine slows down (glibc re-reads the hosts file each time)", "warning"))
    errors = [issue for issue in issues if issue.severity == "error"]
    warnings = tuple(issue for issue in issues if issue.severity == "warning")
    if errors or main is None or blocklist is None:
        raise ConfigError(errors, warnings)
    return LoadedConfig(main, blocklist, frozenset(order), order, warnings)


def _read_config_file(path: Path) -> str:
    """The file's text; a missing file means all defaults (an empty blocklist blocks nothing)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError([ConfigIssue(path.name, 0, "", f"cannot read: {exc.strerror}")]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigIssue(path.name, 0, "", "larger than 1 MiB; use `lists:` for long lists")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(path.name, line, "", "not valid UTF-8")]) from exc


def _read_lists(
    config_dir: Path, refs: tuple[ListRef, ...], trusted: set[int], issues: list[ConfigIssue]
) -> list[str]:
    names: list[str] = []
    for ref in refs:
        source = Source(BLOCKLIST_FILE)
        text = _read_trusted_list(config_dir / ref.path, ref, trusted, source)
        if text is not None:
            list_names, list_issues = domains.parse_list_text(text)
            names += list_names
            for problem in list_issues:
                # The list's own file and line; the message may quote a root-only file.
                issues.append(ConfigIssue(ref.path, problem.line, ref.key_path, problem.message,
                                          private=True))
        issues += source.issues
    return names


def _read_trusted_list(path: Path, ref: ListRef, trusted: set[int], source: Source) -> str | None:
    """Read an include the way sudo reads sudoers: refuse files others could have written."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        source.error(ref.line, ref.key_path, f"cannot open {str(path)!r}: {exc.strerror}")
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)  # checked on the open file, so a swapped path cannot slip through
        problem = _untrusted_reason(info, trusted)
        if problem:
            source.error(ref.line, ref.key_path, f"refusing {str(path)!r}: {problem}")
            return None
        data = handle.read(MAX_LIST_BYTES + 1)
    if len(data) > MAX_LIST_BYTES:
        source.error(ref.line, ref.key_path, f"{str(path)!r} is larger than 256 MiB")
        return None
    return data.decode("utf-8", errors="replace")


def _untrusted_reason(info: os.stat_result, trusted: set[int]) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid not in trusted:
        return f"owned by uid {info.st_uid}, not by root"
    if info.st_mode & stat.S_IWOTH:
        return "writable by other users"
    if info.st_mode & stat.S_IWGRP and info.st_gid != 0:
        return "writable by a group other than root"
    return None


def _check_secret_files(config_dir: Path, main: MainConfig, trusted: set[int]) -> list[ConfigIssue]:
    """Each engine's password_file must be a regular file of root's that nobody else can read.

    The file's content is never read here and never quoted: the network agent gets it through
    systemd's LoadCredential=, not from the daemon."""
    issues: list[ConfigIssue] = []
    for engine in main.network:
        if engine.password_file is None:
            continue
        where = f"{engine.location}.password_file"
        path = config_dir / engine.password_file
        try:
            info = os.lstat(path)
        except OSError as exc:
            issues.append(ConfigIssue(MAIN_FILE, engine.password_file_line, where,
                                      f"cannot read {engine.password_file!r}: {exc.strerror}"))
            continue
        problem = _untrusted_reason(info, trusted)
        if problem is None and info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            problem = f"mode {mode:04o}, must be 0600 (chmod 600 {engine.password_file})"
        if problem:
            issues.append(ConfigIssue(MAIN_FILE, engine.password_file_line, where,
                                      f"refusing {engine.password_file!r}: {problem}"))
    return issues
