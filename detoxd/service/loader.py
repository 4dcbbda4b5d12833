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
    paths_blocked_whole,
)
from detoxd.core.schedule import check_apps
from detoxd.core.yamlsource import ConfigError, ConfigIssue, Source
from detoxd.service import safeopen

# glibc reads the whole hosts file on every lookup: past this, every name the machine resolves slows.
LARGE_BLOCK_WARNING = 100_000
MAX_CONFIG_BYTES = 1 << 20  # each of the two YAML files
MAX_LIST_BYTES = 64 << 20  # each `lists:` file
MAX_LIST_NAMES = 2_000_000  # names in one `lists:` file
MAX_BLOCKED_NAMES = 4_000_000  # names in the whole block


@dataclass(frozen=True)
class LoadedConfig:
    main: MainConfig
    blocklist: BlocklistConfig
    names: frozenset[str]  # every host name the blocklist blocks, validated
    order: tuple[str, ...]  # the same names in the config's order (how the block lists them)
    warnings: tuple[ConfigIssue, ...]
    # Config files that do not exist, read as all defaults. The daemon runs on them, but a detox
    # never starts on built-in defaults nobody wrote (see :func:`missing_files_error`).
    missing: tuple[str, ...] = ()


def load_config(config_dir: Path, trusted_uids: Collection[int] | None = None) -> LoadedConfig:
    """Load and validate everything, or raise ConfigError with every error found.

    ``trusted_uids`` may own the directory and the files (root and the daemon's own user by
    default); every path is checked as :mod:`detoxd.service.safeopen` describes.
    """
    trusted = frozenset(trusted_uids) if trusted_uids is not None else safeopen.default_trusted()
    issues: list[ConfigIssue] = []
    missing: list[str] = []
    try:
        with safeopen.open_directory(os.path.abspath(config_dir), trusted) as directory:
            main_text = _read_config_file(directory, MAIN_FILE, trusted, issues, missing)
            block_text = _read_config_file(directory, BLOCKLIST_FILE, trusted, issues, missing)
            main, main_source = parse_main(main_text.text) if main_text else (None, Source(MAIN_FILE))
            blocklist, block_source = (parse_blocklist(block_text.text, known_presets=presets.PRESET_NAMES)
                                       if block_text else (None, Source(BLOCKLIST_FILE)))
            issues += _privacy(main_source.issues, main_text) + _privacy(block_source.issues, block_text)
            if main is not None:
                issues += _check_secret_files(directory, main, trusted)
            if main is not None and blocklist is not None:  # `block.apps` names blocklist.yaml's apps
                issues += check_apps(main.schedule, (rule.name for rule in blocklist.apps))
            list_names = (_read_lists(directory, blocklist.lists, trusted, issues)
                          if blocklist is not None else [])
    except safeopen.Untrusted as problem:
        if not problem.missing:
            raise ConfigError([ConfigIssue(str(config_dir), 0, "", problem.reason)]) from None
        # No config directory: every default, an empty blocklist.
        main, blocklist, list_names = parse_main("")[0], parse_blocklist("", presets.PRESET_NAMES)[0], []
        missing = [MAIN_FILE, BLOCKLIST_FILE]
    order: tuple[str, ...] = ()
    if blocklist is not None:
        order = domains.expand_in_order(
            domains=blocklist.domains,
            presets=[host for name in blocklist.presets for host in presets.load_preset(name)],
            lists=list_names,
            allow=blocklist.allow,
        )
        if blocklist.path_lines:
            blocked_names = frozenset(order)
            issues += [ConfigIssue(BLOCKLIST_FILE, line, key, message, "warning")
                       for line, key, message in paths_blocked_whole(blocklist, blocked_names)]
        if len(order) > MAX_BLOCKED_NAMES:
            issues.append(ConfigIssue(BLOCKLIST_FILE, 0, "", f"{len(order)} names to block: at most "
                                      f"{MAX_BLOCKED_NAMES} are supported"))
        elif len(order) > LARGE_BLOCK_WARNING:
            issues.append(ConfigIssue(
                BLOCKLIST_FILE, 0, "", f"{len(order)} names blocked: past {LARGE_BLOCK_WARNING} every "
                "lookup on this machine slows down (glibc re-reads the hosts file each time)", "warning"))
    errors = [issue for issue in issues if issue.severity == "error"]
    warnings = tuple(issue for issue in issues if issue.severity == "warning")
    if errors or main is None or blocklist is None:
        raise ConfigError(errors, warnings)
    return LoadedConfig(main, blocklist, frozenset(order), order, warnings, tuple(missing))


def missing_files_error(config_dir: Path, missing: Collection[str]) -> ConfigError:
    """What `detoxd start` says when a config file does not exist: a locked detox of built-in
    defaults (14 days, blocking only Firefox's DoH canary) is nothing anyone asked for."""
    return ConfigError([ConfigIssue(name, 0, "", f"{config_dir / name} does not exist: a detox does "
                                    "not start on built-in defaults; write it (`sudo detoxd install` "
                                    "puts a commented default there), check it with `detoxd check`")
                        for name in missing])


@dataclass(frozen=True)
class _Text:
    text: str
    world_readable: bool


def _read_config_file(directory: int, name: str, trusted: frozenset[int],
                      issues: list[ConfigIssue], missing: list[str]) -> _Text | None:
    """The file's text; a missing file means all defaults (an empty blocklist blocks nothing).
    None, with the reason in ``issues``, when it may not or cannot be read."""
    try:
        result = safeopen.read_file(directory, name, trusted, MAX_CONFIG_BYTES)
    except safeopen.TooLarge:
        issues.append(ConfigIssue(name, 0, "", "larger than 1 MiB; use `lists:` for long lists"))
        return None
    except safeopen.Untrusted as problem:
        if problem.missing:
            missing.append(name)
            return _Text("", True)
        issues.append(ConfigIssue(name, 0, "", problem.reason))
        return None
    try:
        return _Text(result.data.decode("utf-8"), result.world_readable)
    except UnicodeDecodeError as exc:
        line = result.data[: exc.start].count(b"\n") + 1
        issues.append(ConfigIssue(name, line, "", "not valid UTF-8"))
        return None


def _privacy(issues: list[ConfigIssue], text: _Text | None) -> list[ConfigIssue]:
    """Issues of a file other users may not read quote it: shown to root only."""
    if text is None or text.world_readable:
        return issues
    return [issue.as_private() for issue in issues]


def _read_lists(
    directory: int, refs: tuple[ListRef, ...], trusted: frozenset[int], issues: list[ConfigIssue]
) -> list[str]:
    names: list[str] = []
    for ref in refs:
        text = _read_trusted_list(directory, ref, trusted, issues)
        if text is None:
            continue
        list_names, list_issues = domains.parse_list_text(text)
        if len(list_names) > MAX_LIST_NAMES:
            issues.append(ConfigIssue(BLOCKLIST_FILE, ref.line, ref.key_path,
                                      f"{len(list_names)} names in one list: at most {MAX_LIST_NAMES}"))
            continue
        names += list_names
        for problem in list_issues:
            # The list's own file and line; the message may quote a root-only file.
            issues.append(ConfigIssue(ref.path, problem.line, ref.key_path, problem.message,
                                      private=True, summary=problem.summary))
    return names


def _read_trusted_list(
    directory: int, ref: ListRef, trusted: frozenset[int], issues: list[ConfigIssue]
) -> str | None:
    """Read an include the way sudo reads sudoers: refuse files others could have written."""
    try:
        if ref.path.startswith("/"):
            result = safeopen.read_absolute(ref.path, trusted, MAX_LIST_BYTES)
        else:
            result = safeopen.read_file(directory, ref.path, trusted, MAX_LIST_BYTES)
    except safeopen.Untrusted as problem:
        issues.append(ConfigIssue(BLOCKLIST_FILE, ref.line, ref.key_path, problem.reason))
        return None
    return result.data.decode("utf-8", errors="replace")


def _check_secret_files(directory: int, main: MainConfig, trusted: frozenset[int]) -> list[ConfigIssue]:
    """Each engine's (and mail's) password_file must be a regular file of root's that nobody else
    can read.

    The file's content is never read here and never quoted: the network and mail agents get it
    through systemd's LoadCredential=, not from the daemon."""
    issues: list[ConfigIssue] = []
    secrets = [(engine.password_file, engine.password_file_line, f"{engine.location}.password_file")
               for engine in main.network]
    if main.mail is not None:
        secrets.append((main.mail.password_file, main.mail.password_file_line, "mail.password_file"))
    for name, line, where in secrets:
        if name is None:
            continue
        try:
            info = safeopen.stat_file(directory, name, trusted)
        except safeopen.Untrusted as problem:
            issues.append(ConfigIssue(MAIN_FILE, line, where, problem.reason))
            continue
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            issues.append(ConfigIssue(MAIN_FILE, line, where,
                                      f"refusing {name!r}: mode {mode:04o}, must be "
                                      f"0600 (chmod 600 {name})"))
    return issues
