"""YAML text → a tree of positioned nodes, plus typed accessors that collect every error.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of two duplicate keys.
Config errors must name file, line and key path, and *all* of them are reported together
(``blocklist.yaml:12: domains[3]: 'twiter..com' is not a valid domain name``), so this module
builds its own tree from the YAML parser's event stream.

Any text ends as a tree or as errors with a line, never as an exception: the config is read by a
root daemon that must keep enforcing the last good one. Building the tree from events (not with
PyYAML's recursive composer) bounds the work a hostile document can cause before it is refused:

- nesting deeper than :data:`MAX_DEPTH` (no recursion anywhere, so no ``RecursionError``);
- more than :data:`MAX_NODES` nodes or :data:`MAX_SCALAR_CHARS` characters of text *after*
  aliases are expanded, counted while the tree is built ("billion laughs", a large anchored
  string referenced many times);
- an alias to a collection that contains it (``&a [*a]``);
- characters YAML forbids (control characters, NUL, DEL, U+FFFE) and text that is no Unicode.

Errors never depend on the parser underneath: libyaml (PyYAML's C parser) is only the fast path
for documents it reads without error. When it stops, the document is read again by PyYAML's
pure-Python parser, whose errors are the words the user reads, so they are the same whichever
libyaml PyYAML was built with, or none. (PyPI's wheels bundle a libyaml that stops at 1,000
levels of flow nesting while scanning ahead, before :data:`MAX_DEPTH` is checked on the events;
Debian's has no such limit.) A broken 1 MiB file costs about a second more to report.

Past :data:`MAX_ERRORS_PER_FILE` errors a file's further errors are only counted
("… and 40 more errors").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import yaml

# Aliases can make a tiny document expand exponentially ("billion laughs"); real configs are small.
MAX_NODES = 200_000
# Text after alias expansion: a 1 MiB file has at most 1 Mi characters without aliases.
MAX_SCALAR_CHARS = 4 << 20
MAX_DEPTH = 64
MAX_ERRORS_PER_FILE = 100
MAX_REPORTED_ISSUES = 200  # all files together, in a ConfigError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int  # 1-based; 0 when the issue concerns the whole file
    path: str  # key path such as "detox.days" or "domains[3]"; "" for the whole document
    message: str
    severity: Severity = "error"
    # True when the message quotes a root-only file (a `lists:` include): shown to root only.
    private: bool = False
    # "… and N more errors": sorted after the file's other issues.
    summary: bool = False
    # The key path comes from a file other users may not read: redacted too.
    path_private: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = f" {self.path}:" if self.path else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}:{path} {prefix}{self.message}"

    def redacted(self) -> ConfigIssue:
        """The issue as an unprivileged client may see it: position, no content."""
        if not self.private:
            return self
        return ConfigIssue(
            self.file, self.line, "" if self.path_private else self.path,
            "invalid entry (details visible to root only)", self.severity, summary=self.summary,
        )

    def as_private(self) -> ConfigIssue:
        """The issue of a file other users may not read: its key path and message are root's."""
        return ConfigIssue(self.file, self.line, self.path, self.message, self.severity,
                           private=True, summary=self.summary, path_private=True)


def _reading_order(issue: ConfigIssue) -> tuple[str, bool, int]:
    return (issue.file, issue.summary, issue.line)


class ConfigError(Exception):
    """Raised with every error found; the daemon keeps enforcing its last good config.

    At most :data:`MAX_REPORTED_ISSUES` are kept; ``total`` counts them all."""

    def __init__(self, issues: Iterable[ConfigIssue], warnings: Collection[ConfigIssue] = ()) -> None:
        # In reading order, so the list can be fixed top to bottom.
        ordered = sorted(issues, key=_reading_order)
        self.total = sum(_count(issue) for issue in ordered)
        kept = ordered[:MAX_REPORTED_ISSUES]
        if len(ordered) > len(kept):
            dropped = sum(_count(issue) for issue in ordered[len(kept):])
            kept.append(ConfigIssue(kept[-1].file, 0, "", f"and {dropped} more errors", summary=True))
        self.issues = tuple(kept)
        self.warnings = tuple(warnings)[:MAX_REPORTED_ISSUES]  # found in the same run
        super().__init__("\n".join(str(issue) for issue in self.issues))


def _count(issue: ConfigIssue) -> int:
    """How many errors an issue stands for (a summary stands for the ones it counts)."""
    words = issue.message.split()
    if issue.summary and len(words) == 4 and words[0] == "and" and words[2:] == ["more", "errors"]:
        return int(words[1]) if words[1].isdigit() else 1
    return 1  # also "and N more words not checked": those are not known to be errors


@dataclass
class Node:
    kind: Literal["map", "seq", "scalar"]
    value: Any  # dict[str, Node] for maps, list[Node] for sequences, a Python scalar otherwise
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Source:
    """Collects issues for one file while its nodes are read; past
    :data:`MAX_ERRORS_PER_FILE` of a severity, further ones are only counted."""

    file: str
    issues: list[ConfigIssue] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    def error(self, line: int, path: str, message: str, *, private: bool = False) -> None:
        self._add(ConfigIssue(self.file, line, path, message, "error", private))

    def warn(self, line: int, path: str, message: str) -> None:
        self._add(ConfigIssue(self.file, line, path, message, "warning"))

    def _add(self, issue: ConfigIssue) -> None:
        count = self._counts.get(issue.severity, 0) + 1
        self._counts[issue.severity] = count
        if count <= MAX_ERRORS_PER_FILE:
            self.issues.append(issue)
            return
        more = count - MAX_ERRORS_PER_FILE
        noun = "error" if issue.severity == "error" else "warning"
        summary = ConfigIssue(self.file, 0, "", f"and {more} more {noun}{'s' if more > 1 else ''}",
                              issue.severity, summary=True)
        if more > 1:  # replace the previous summary of this severity
            for index in range(len(self.issues) - 1, -1, -1):
                old = self.issues[index]
                if old.summary and old.severity == issue.severity:
                    self.issues[index] = summary
                    return
        self.issues.append(summary)

    @property
    def errors(self) -> list[ConfigIssue]:
        return sorted((i for i in self.issues if i.severity == "error"),
                      key=lambda i: (i.summary, i.line))


# The C parser when PyYAML has it (30 times faster); both produce the same events. Errors are
# always worded by the pure-Python one (see the module's docstring).
_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Refused(Exception):
    """The document cannot be turned into a tree: one error at ``line``."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def parse_document(text: str, source: Source) -> Node | None:
    """Parse YAML text; an empty document is an empty mapping. None (with an error) on bad YAML.

    Never raises for any ``text``: every problem is an error in ``source``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: no file decodes to them
        source.error(text[: exc.start].count("\n") + 1, "", "not valid Unicode text")
        return None
    if _Loader is not yaml.SafeLoader:
        issues, counts = list(source.issues), dict(source._counts)
        try:
            return _read(_Loader, text, source)
        except yaml.YAMLError:  # read again below, for the pure-Python parser's words
            source.issues[:], source._counts = issues, counts
    try:
        return _read(yaml.SafeLoader, text, source)
    except yaml.YAMLError as exc:
        source.error(_error_line(exc, text), "", _yaml_message(exc))
        return None


def _read(loader_class: type[Any], text: str, source: Source) -> Node | None:
    """One reading: the parser's YAMLErrors are raised, every other problem is an error in ``source``."""
    loader = loader_class(text)  # the pure-Python reader checks characters here
    try:
        return _Composer(loader, source).document()
    except _Refused as refused:
        source.error(refused.line, "", refused.message)
    except yaml.YAMLError:
        raise
    except (RecursionError, MemoryError):
        source.error(0, "", "the document is too complex to read")
    except Exception as exc:  # a parser bug must not stop the daemon
        source.error(0, "", f"the document cannot be read ({type(exc).__name__})")
    finally:
        loader.dispose()
    return None


def _error_line(exc: yaml.YAMLError, text: str) -> int:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return mark.line + 1 if mark else 0
    if isinstance(exc, yaml.reader.ReaderError):  # the pure-Python reader counts characters
        return text[: exc.position].count("\n") + 1
    return 0


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        character = exc.character
        code = ord(character) if isinstance(character, str) and len(character) == 1 else character
        shown = f"U+{code:04X}" if isinstance(code, int) else "a character"
        return f"{shown} is not allowed in YAML (control characters, NUL, DEL, U+FFFE, U+FFFF)"
    if isinstance(exc, yaml.MarkedYAMLError):
        return f"YAML syntax error: {exc.problem or exc.context}"
    return "YAML error: the text cannot be read"


@dataclass
class _Open:
    """A collection whose end event has not come yet."""

    node: Node
    anchor: str | None
    nodes: int = 1  # in this subtree so far, aliases expanded
    chars: int = 0
    key: str | None = None
    key_line: int = 0
    have_key: bool = False  # the next child is a value (of ``key``, None: a skipped key)


class _Composer:
    """Events → :class:`Node` tree, iteratively, counting what aliases expand to."""

    def __init__(self, loader: Any, source: Source) -> None:
        self.loader = loader
        self.source = source
        self.stack: list[_Open] = []
        # anchor -> (node, nodes, chars); None while the anchored collection is still open
        self.anchors: dict[str, tuple[Node, int, int] | None] = {}
        self.nodes = 0
        self.chars = 0
        self.root: Node | None = None

    def document(self) -> Node | None:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return Node("map", {}, 1)
        loader.get_event()  # DocumentStart
        while not loader.check_event(yaml.DocumentEndEvent):
            self._step(loader.get_event())
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise _Refused(event.start_mark.line + 1, "expected a single document, found another")
        if self.root is None or (self.root.kind == "scalar" and self.root.value is None):
            return Node("map", {}, 1)  # only comments, or an explicit null
        return self.root

    def _step(self, event: Any) -> None:
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self._alias(event.anchor or "", line)
        elif isinstance(event, yaml.ScalarEvent):
            self._count(1, len(event.value), line)
            node = Node("scalar", self._scalar(event, line), line)
            self._register(event.anchor, node, 1, len(event.value))
            self._finish(node, 1, len(event.value), line)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self._open(event, line)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            closed = self.stack.pop()
            self._register(closed.anchor, closed.node, closed.nodes, closed.chars)
            if closed.node.kind == "map" and closed.have_key:
                raise _Refused(line, "YAML syntax error: a key without a value")
            self._finish(closed.node, closed.nodes, closed.chars, closed.node.line)
        else:
            raise _Refused(line, f"YAML syntax error: unexpected {type(event).__name__}")

    def _open(self, event: Any, line: int) -> None:
        kind: Literal["map", "seq"] = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
        tag = event.tag
        if tag not in (None, "!") and tag not in _PLAIN_TAGS:
            raise _Refused(line, f"unsupported YAML tag {tag!r}")
        if len(self.stack) >= MAX_DEPTH:
            raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep")
        self._count(1, 0, line)
        if event.anchor is not None:
            self.anchors[event.anchor] = None  # open: an alias to it now would be recursive
        self.stack.append(_Open(Node(kind, {} if kind == "map" else [], line), event.anchor))

    def _alias(self, anchor: str, line: int) -> None:
        if anchor not in self.anchors:
            raise _Refused(line, f"YAML syntax error: undefined alias *{anchor}")
        target = self.anchors[anchor]
        if target is None:
            raise _Refused(line, f"the alias *{anchor} refers to a collection that contains it")
        node, nodes, chars = target
        self._count(nodes, chars, line)
        self._finish(node, nodes, chars, line)

    def _count(self, nodes: int, chars: int, line: int) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_NODES:
            raise _Refused(line, f"document has more than {MAX_NODES} nodes (too many aliases?)")
        if self.chars > MAX_SCALAR_CHARS:
            raise _Refused(line, f"document expands to more than {MAX_SCALAR_CHARS >> 20} Mi "
                           "characters of text (too many aliases?)")

    def _register(self, anchor: str | None, node: Node, nodes: int, chars: int) -> None:
        if anchor is not None:
            self.anchors[anchor] = (node, nodes, chars)

    def _scalar(self, event: Any, line: int) -> Any:
        tag = event.tag
        if tag in (None, "!"):
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            raise _Refused(line, f"YAML error: {getattr(exc, 'problem', None) or exc}") from exc
        except Exception as exc:  # any value ends as an error, never a crash
            # e.g. a timestamp with month 13, an integer of a million digits
            reason = f": {_short(str(exc))}" if isinstance(exc, ValueError) else ""
            raise _Refused(line, f"cannot read the value {_short(event.value)} as "
                           f"{tag.rsplit(':', 1)[-1]}{reason}") from exc

    def _finish(self, node: Node, nodes: int, chars: int, line: int) -> None:
        """Attach a complete node to the open collection (or make it the root)."""
        if not self.stack:
            self.root = node
            return
        parent = self.stack[-1]
        parent.nodes += nodes
        parent.chars += chars
        if parent.node.kind == "seq":
            parent.node.value.append(node)
        elif not parent.have_key:
            parent.have_key = True
            parent.key_line = line
            parent.key = self._key(node, line)
        else:
            parent.have_key = False
            key = parent.key
            if key is None:
                return
            mapping = parent.node
            if key in mapping.value:
                first = mapping.key_lines[key]
                self.source.error(parent.key_line, key, f"duplicate key (first defined on line {first})")
                return
            mapping.value[key] = node
            mapping.key_lines[key] = parent.key_line

    def _key(self, node: Node, line: int) -> str | None:
        if node.kind == "scalar" and isinstance(node.value, str):
            return node.value
        shown = _type_name(node) if node.kind != "scalar" else type(node.value).__name__
        self.source.error(line, "", f"keys must be text, not {shown}")
        return None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# ---- typed accessors: each reports a problem to the source and returns None ----

def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(node: Node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    if node.value is None:
        return "empty"
    return type(node.value).__name__


def as_mapping(
    source: Source, node: Node, path: str, allowed: Collection[str]
) -> dict[str, Node] | None:
    """A mapping whose keys are all in ``allowed``; null counts as an empty mapping."""
    if node.kind == "scalar" and node.value is None:
        return {}
    if node.kind != "map":
        source.error(node.line, path, f"expected a mapping, got {_type_name(node)}")
        return None
    for key, line in node.key_lines.items():
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            source.error(line, join(path, key), f"unknown key (expected one of: {expected})")
    return {k: v for k, v in node.value.items() if k in allowed}


def as_list(source: Source, node: Node, path: str) -> list[Node] | None:
    if node.kind == "scalar" and node.value is None:
        return []
    if node.kind != "seq":
        source.error(node.line, path, f"expected a list, got {_type_name(node)}")
        return None
    return list(node.value)


def as_str(source: Source, node: Node, path: str) -> str | None:
    if node.kind == "scalar" and isinstance(node.value, str):
        return node.value
    source.error(node.line, path, f"expected text, got {_type_name(node)}")
    return None


def as_bool(source: Source, node: Node, path: str) -> bool | None:
    if node.kind == "scalar" and isinstance(node.value, bool):
        return node.value
    source.error(node.line, path, f"expected true or false, got {_type_name(node)}")
    return None


def as_number(
    source: Source, node: Node, path: str, *, minimum: float, maximum: float, integer: bool = False
) -> float | None:
    value = node.value if node.kind == "scalar" else None
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok_type or isinstance(value, bool):
        wanted = "a whole number" if integer else "a number"
        source.error(node.line, path, f"expected {wanted}, got {_type_name(node)}")
        return None
    assert isinstance(value, int | float)
    if not minimum <= value <= maximum:
        source.error(node.line, path, f"must be between {minimum:g} and {maximum:g}, got {value}")
        return None
    return float(value)


def as_str_list(source: Source, node: Node, path: str) -> list[tuple[str, int, str]]:
    """Items of a list of text as (value, line, path); wrong items are reported and skipped."""
    items = as_list(source, node, path)
    result: list[tuple[str, int, str]] = []
    for index, item in enumerate(items or []):
        item_path = join(path, index)
        text = as_str(source, item, item_path)
        if text is not None:
            result.append((text, item.line, item_path))
    return result


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_Named)


def as_named_list(source: Source, node: Node, path: str, *, limit: int, noun: str,
                  parse: Callable[[Node, str, int], Named | None]) -> list[Named]:
    """A list of at most ``limit`` items, each parsed by ``parse(item, item_path, index)`` (None:
    reported already), whose names are unique: a second item of a name is reported and left out."""
    entries = as_list(source, node, path) or []
    if len(entries) > limit:
        source.error(node.line, path, f"at most {limit} {noun}")
        return []
    result: list[Named] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        item_path = join(path, index)
        parsed = parse(entry, item_path, index)
        if parsed is None:
            continue
        if parsed.name in seen:
            source.error(entry.line, join(item_path, "name"),
                         f"{parsed.name!r} is already the name of {path}[{seen[parsed.name]}]")
            continue
        seen[parsed.name] = index
        result.append(parsed)
    return result
