"""detoxd(1), generated from the command line's argparse definitions (as fail2ban does).

The Debian package runs ``python3 -m detoxd.manpage DIR`` while it builds (debian/rules), so the
manual lists every command and option that :func:`detoxd.cli.build_parser` declares and cannot
fall behind it; ``tests/test_manpage.py`` checks that. The config files' manual, detoxd.yaml(5),
is written by hand (``debian/detoxd.yaml.5``; a test checks it names every key the config model
accepts).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

DESCRIPTION = """\
.B detoxd
blocks social and networking sites through
.I /etc/hosts
for the whole detox (14 days by default). The root service
.B detoxd.service
(\\fBdetoxd run\\fR) keeps the block, restores it within milliseconds when anyone tampers with
it, and cannot be ended early while the detox is locked: not by stopping the service, rebooting,
editing the configuration or setting the clock forward. It also closes blocked desktop apps,
lets named sites out of the block for a while (allowances), can hold the block in the
household's DNS engines (Pi-hole, AdGuard Home, dnsmasq, Unbound), plans the two peer sessions
of the challenge and keeps a journal the report is built from. The tray agent
(\\fBdetoxd tray\\fR) shows the status and silences desktop notifications for the detox.
.PP
What is blocked and how detoxd behaves is configured in
.I /etc/detoxd/blocklist.yaml
and
.IR /etc/detoxd/detoxd.yaml ;
see
.BR detoxd.yaml (5).
Anyone may read the status; commands that change enforcement need root, except
\\fBopen\\fR and \\fBclose\\fR, which any person at the seat may run.
"""

TRAILER = """\
.SH EXIT STATUS
.TP
.B 0
success
.TP
.B 1
invalid configuration (every error is listed as FILE:LINE: key.path: message);
for \\fBdoctor\\fR: at least one check failed
.TP
.B 2
usage error
.TP
.B 3
refused: the detox is locked, or the caller is not authorised
.TP
.B 4
the daemon is not reachable
.SH ENVIRONMENT
.TP
.B DETOXD_CONFIG_DIR
the configuration directory (default \\fI/etc/detoxd\\fR)
.TP
.B DETOXD_STATE_DIR
the state directory (default \\fI/var/lib/detoxd\\fR)
.TP
.B DETOXD_HOSTS_FILE
the hosts file detoxd guards (default \\fI/etc/hosts\\fR)
.TP
.B DETOXD_SOCKET
the control socket (default \\fI/run/detoxd/control.sock\\fR)
.TP
.B DETOXD_ACTIVITYWATCH_URL
the tray agent's ActivityWatch server (default \\fIhttp://127.0.0.1:5600\\fR; loopback only)
.SH FILES
.TP
.I /etc/detoxd/detoxd.yaml, /etc/detoxd/blocklist.yaml
the configuration; see
.BR detoxd.yaml (5)
.TP
.I /etc/hosts
only the block between detoxd's markers is detoxd's
.TP
.I /var/lib/detoxd
the detox state, the ratchet and allowance usage
.TP
.I /var/lib/detoxd/journal
the event journal the report is built from (root only)
.TP
.I /run/detoxd/control.sock
the control socket
.TP
.I ~/.local/state/detoxd
the tray agent's saved do-not-disturb settings
.SH SEE ALSO
.BR detoxd.yaml (5),
.BR hosts (5),
.BR systemctl (1),
.BR journalctl (1)
.PP
The user's guide: /usr/share/doc/detoxd/README.md.gz and the pages in
/usr/share/doc/detoxd/docs/ (in a source checkout: README.md and docs/).
"""


def render(parser: argparse.ArgumentParser, version: str, date: str) -> str:
    """The whole page in roff (man macros)."""
    lines = [f'.TH DETOXD 1 {date} "detoxd {version}" "User Commands"',
             ".SH NAME", r"detoxd \- a 14-day digital detox that sticks",
             ".SH SYNOPSIS", ".B detoxd",
             r"[\fIglobal options\fR] \fIcommand\fR [\fIoptions\fR] [\fIarguments\fR]",
             ".SH DESCRIPTION", DESCRIPTION.rstrip("\n"),
             ".SH GLOBAL OPTIONS"]
    lines += _options(parser)
    lines.append(".SH COMMANDS")
    for name, help_text, command in commands(parser):
        lines.append(f'.SS "{_escape(_usage(name, command))}"')
        lines.append(_text(help_text))
        lines += _options(command)
    lines.append(TRAILER.rstrip("\n"))
    return "\n".join(lines) + "\n"


def commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """Each sub-command as (name, one-line help, its parser), in the order declared."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            seen: set[int] = set()
            for name, command in action.choices.items():
                if id(command) in seen:  # an alias
                    continue
                seen.add(id(command))
                yield name, helps.get(name, ""), command


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a page documents: everything but -h/--help and the sub-command slot."""
    return [action for action in parser._actions
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)]


def _usage(name: str, command: argparse.ArgumentParser) -> str:
    parts = [f"detoxd {name}"]
    for action in options(command):
        if action.option_strings:
            takes = _metavar(action)
            spelled = action.option_strings[-1] + (f" {takes}" if takes else "")
            parts.append(spelled if action.required else f"[{spelled}]")
        else:
            parts.append(f"[{_metavar(action)}]" if action.nargs in ("?", "*") else _metavar(action))
    return " ".join(parts)


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + "|".join(str(choice) for choice in action.choices) + "}"
    return action.dest.upper()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    formatter = parser._get_formatter()
    for action in options(parser):
        takes = _metavar(action)
        if action.option_strings:
            names = ", ".join(rf"\fB{_escape(option)}\fR" for option in action.option_strings)
        else:
            names = ""
        if takes:
            names = f"{names} \\fI{_escape(takes)}\\fR" if names else f"\\fI{_escape(takes)}\\fR"
        help_text = formatter._expand_help(action) if action.help else ""
        lines += [".TP", names, _text(help_text)]
    return lines


def _escape(text: str) -> str:
    """Plain text for roff: backslashes, and every hyphen a minus (options are typed)."""
    return text.replace("\\", r"\e").replace("-", r"\-").replace('"', r"\(dq")


def _text(text: str) -> str:
    """A help text as a roff line: `code` in bold, nothing read as a request."""
    escaped = text.replace("\\", r"\e")
    escaped = re.sub(r"`([^`]+)`", lambda match: r"\fB" + match.group(1).replace("-", r"\-") + r"\fR",
                     escaped)
    escaped = re.sub(r"(?<![\w\\])(--?[a-z][\w-]*)",
                     lambda match: match.group(1).replace("-", r"\-"), escaped)
    return r"\&" + escaped if escaped[:1] in (".", "'") else escaped


def build_date() -> str:
    """The page's date: SOURCE_DATE_EPOCH (reproducible builds set it from the changelog), else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.strftime("%Y-%m-%d")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python3 -m detoxd.manpage OUTDIR   (writes OUTDIR/detoxd.1)", file=sys.stderr)
        return 2
    from detoxd import __version__
    from detoxd.cli import build_parser

    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "detoxd.1").write_text(render(build_parser(), __version__, build_date()), encoding="utf-8")
    print(f"wrote {out / 'detoxd.1'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
