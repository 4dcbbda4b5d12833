"""The manual pages cannot fall behind the code: detoxd(1) is generated from the parser
(detoxd/manpage.py, run by debian/rules) and must name every command and option it declares;
the hand-written detoxd.yaml(5) must name every key the config model accepts, as the model
itself reports them (its "unknown key (expected one of: …)" errors)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from detoxd import manpage
from detoxd.cli import build_parser
from detoxd.core import config

ROOT = Path(__file__).resolve().parents[1]
YAML_PAGE = ROOT / "debian" / "detoxd.yaml.5"


def plain(roff: str) -> str:
    """The words a reader sees: font switches and escapes dropped, minus signs as typed."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace(r"\-", "-").replace(r"\(dq", '"').replace(r"\&", "").replace(r"\e", "\\")


def sections(page: str) -> dict[str, str]:
    """Each command's part of the page (from its .SS heading to the next heading)."""
    parts = re.split(r"^\.S[SH] ", page, flags=re.MULTILINE)
    found = {}
    for part in parts:
        match = re.match(r'"detoxd ([^\s"]+)', part)
        if match:
            found[match.group(1)] = part
    return found


@pytest.fixture(scope="module")
def page() -> str:
    return plain(manpage.render(build_parser(), "0.1.0", "2026-12-07"))


def test_every_command_and_each_of_its_options_is_in_the_page(page: str) -> None:
    parser = build_parser()
    documented = sections(page)
    names = [name for name, _help, _command in manpage.commands(parser)]
    # What the issue found missing from the hand-written page, and the rest of the parser.
    assert {"open", "close", "cut", "netagent", "run", "start", "end", "status"} <= set(names)
    assert set(documented) == set(names)
    for name, help_text, command in manpage.commands(parser):
        part = documented[name]
        assert help_text and help_text in part.replace("\n", " "), name
        for action in manpage.options(command):
            for option in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", part), (name, option)
            if not action.option_strings:
                assert str(action.metavar or action.dest.upper()) in part, (name, action.dest)
            if action.help:
                assert action.help.split("`")[0].strip()[:30] in part.replace("\n", " "), (name, action.help)


def test_the_global_options_and_exit_codes_are_in_the_page(page: str) -> None:
    head = page.split(".SH COMMANDS")[0]
    for action in manpage.options(build_parser()):
        for option in action.option_strings:
            assert option in head, option
    for option in ("--shares-out", "--with-peers", "--block-only"):
        assert option in page
    exit_status = page.split(".SH EXIT STATUS")[1].split(".SH")[0]
    assert [line for line in exit_status.splitlines() if line.startswith(".B ")] == [
        ".B 0", ".B 1", ".B 2", ".B 3", ".B 4"]


def test_an_option_added_to_the_parser_appears_in_the_page() -> None:
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    commands.choices["status"].add_argument("--made-up-option", help="a test option")
    commands.add_parser("made-up-command", help="a test command")
    page = plain(manpage.render(parser, "0.1.0", "2026-12-07"))
    assert "--made-up-option" in sections(page)["status"]
    assert "a test command" in sections(page)["made-up-command"]


def test_the_module_writes_the_page_the_build_installs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "detoxd.manpage", str(tmp_path)], cwd=ROOT,
                          env={"SOURCE_DATE_EPOCH": "1796601600", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "detoxd.1").read_text()
    assert written.startswith('.TH DETOXD 1 2026-12-07 "detoxd ')
    assert "debian/generated/detoxd.1" in (ROOT / "debian" / "detoxd.manpages").read_text()
    assert "python3 -m detoxd.manpage debian/generated" in (ROOT / "debian" / "rules").read_text()


def config_keys() -> dict[str, set[str]]:
    """Every key the config model accepts, per place, from its own error messages."""
    probes = {
        "detoxd.yaml": ("main", "zzz: 1"), "detox": ("main", "detox: {zzz: 1}"),
        "notifications": ("main", "notifications: {zzz: 1}"), "bypass": ("main", "bypass: {zzz: 1}"),
        "me": ("main", "me: {zzz: 1}"), "peers": ("main", "peers: [{zzz: 1}]"),
        "sessions": ("main", "sessions: {zzz: 1}"), "network": ("main", "network: [{zzz: 1}]"),
        "mail": ("main", "mail: {zzz: 1}"),
        "blocklist.yaml": ("blocklist", "zzz: 1"), "apps": ("blocklist", "apps: [{zzz: 1}]"),
        "allowances": ("blocklist", "allowances: [{zzz: 1}]"),
    }
    keys = {}
    for place, (which, text) in probes.items():
        if which == "main":
            _config, source = config.parse_main(text)
        else:
            _config, source = config.parse_blocklist(text, ["social"])
        messages = " ".join(str(error) for error in source.errors)
        match = re.search(r"unknown key \(expected one of: ([^)]*)\)", messages)
        assert match, (place, messages)
        keys[place] = set(match.group(1).split(", "))
    return keys


def test_detoxd_yaml_5_names_every_config_key() -> None:
    page = YAML_PAGE.read_text()
    keys = config_keys()
    assert "browser_policies" in keys["bypass"] and "day_starts_at" in keys["allowances"]
    main_part = page.split(".SH DETOXD.YAML")[1].split(".SH BLOCKLIST.YAML")[0]
    blocklist_part = page.split(".SH BLOCKLIST.YAML")[1].split(".SH LIMITS")[0]
    for place, names in keys.items():
        part = blocklist_part if place in ("blocklist.yaml", "apps", "allowances") else main_part
        for name in names:
            if place in ("detoxd.yaml", "blocklist.yaml"):  # a top-level key: its own heading or entry
                assert re.search(rf"^\.(SS|B) (.*, )?{name}(,|$)", part, flags=re.MULTILINE), (place, name)
            else:  # a nested key: an entry of its own, or named in bold
                assert re.search(rf"^\.B {name}$|\\fB{name}\\fR", part, flags=re.MULTILINE), (place, name)
