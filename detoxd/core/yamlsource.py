"""YAML text → a tree of positioned nodes, plus typed accessors that collect every error.

PyYAML's ``safe_load`` forgets line numbers and silently keeps the last of two duplicate keys.
Config errors must name file, line and key path, and *all* of them are reported together
(``blocklist.yaml:12: domains[3]: 'twiter..com' is not a valid domain name``), so this module
composes the document with PyYAML's safe loader and converts it node by node.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

# Aliases can make a tiny document expand exponentially ("billion laughs"); real configs are small.
MAX_NODES = 200_000

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
            self.file, self.line, self.path, "invalid entry (details visible to root only)",
            self.severity, private=False,
        )


class ConfigError(Exception):
    """Raised with every error found; the daemon keeps enforcing its last good config."""

    def __init__(self, issues: Collection[ConfigIssue], warnings: Collection[ConfigIssue] = ()) -> None:
        # In reading order, so the list can be fixed top to bottom.
        self.issues = tuple(sorted(issues, key=lambda issue: (issue.file, issue.line)))
        self.warnings = tuple(warnings)  # found in the same run; shown with the errors
        super().__init__("\n".join(str(issue) for issue in self.issues))


@dataclass
class Node:
    kind: Literal["map", "seq", "scalar"]
    value: Any  # dict[str, Node] for maps, list[Node] for sequences, a Python scalar otherwise
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Source:
    """Collects issues for one file while its nodes are read."""

    file: str
    issues: list[ConfigIssue] = field(default_factory=list)

    def error(self, line: int, path: str, message: str, *, private: bool = False) -> None:
        self.issues.append(ConfigIssue(self.file, line, path, message, "error", private))

    def warn(self, line: int, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, path, message, "warning"))

    @property
    def errors(self) -> list[ConfigIssue]:
        return sorted((i for i in self.issues if i.severity == "error"), key=lambda i: i.line)


class _Loader(yaml.SafeLoader):
    pass


def parse_document(text: str, source: Source) -> Node | None:
    """Parse YAML text; an empty document is an empty mapping. None (with an error) on bad YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return Node("map", {}, 1)
        return _Converter(loader, source).convert(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        source.error(line, "", f"YAML syntax error: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        source.error(0, "", f"YAML error: {exc}")
    except _TooLarge:
        source.error(0, "", f"document has more than {MAX_NODES} nodes (too many aliases?)")
    finally:
        loader.dispose()
    return None


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _TooLarge(Exception):
    pass


class _Converter:
    def __init__(self, loader: _Loader, source: Source) -> None:
        self.loader = loader
        self.source = source
        self.visited = 0

    def convert(self, node: yaml.Node) -> Node:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _TooLarge
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            # Scalars with unknown tags are refused by the safe constructor; collections are
            # built here, so refuse theirs too rather than silently ignore them.
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported YAML tag {node.tag!r}", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, line)
        if isinstance(node, yaml.SequenceNode):
            return Node("seq", [self.convert(item) for item in node.value], line)
        return Node("scalar", self.loader.construct_object(node), line)

    def _mapping(self, node: yaml.MappingNode, line: int) -> Node:
        result = Node("map", {}, line)
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = self.loader.construct_object(key_node) if isinstance(
                key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.source.error(key_line, "", f"keys must be text, not {key_node.tag}")
                continue
            if key in result.value:
                first = result.key_lines[key]
                self.source.error(key_line, key, f"duplicate key (first defined on line {first})")
                continue
            result.value[key] = self.convert(value_node)
            result.key_lines[key] = key_line
        return result


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
