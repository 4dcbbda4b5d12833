"""Paths to block (``paths:`` in blocklist.yaml): ``host/path-prefix`` entries (pure).

``linkedin.com/feed`` blocks every page of linkedin.com (and its subdomains, www. included) whose
path starts with ``/feed``; the rest of the site stays reachable, so the host never goes into the
hosts file. Browsers enforce it through their enterprise policies (:func:`detoxd.core.policies.path_specs`).

An entry is normalised to ``host/path``: the host as :func:`detoxd.core.domains.normalize_domain`
accepts it, ``www.`` dropped (the filters cover subdomains), and a path of printable ASCII without
the characters the browsers' filters read differently (``*``, ``?``, ``#``, a backslash, quotes).
A pasted URL (``https://www.reddit.com/r/all``) is reduced to its entry with a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from detoxd.core import domains

MAX_PATH_LENGTH = 1000
# RFC 3986 path characters and "%" escapes: nothing the policies' filters read as a wildcard,
# a query or a fragment.
_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()+,;=:@%-]*)+")


@dataclass(frozen=True, slots=True)
class PathEntry:
    """The outcome of :func:`normalize_path`: exactly one of ``entry`` and ``error`` is set."""

    entry: str | None
    error: str | None = None
    warning: str | None = None


def normalize_path(raw: str) -> PathEntry:
    """``raw`` as ``host/path-prefix``, or why it is not one."""
    text = raw.strip(" \t")
    shown = repr(text if len(text) <= 80 else text[:80] + "…")
    scheme = "://" in text
    if scheme:
        if not text.lower().startswith(("http://", "https://")):
            return PathEntry(None, f"{shown}: only http:// and https:// addresses can be blocked by path")
        parts = urlsplit(text)
        if parts.query or parts.fragment:
            return PathEntry(None, f"{shown}: a query ('?') or fragment ('#') cannot be blocked; "
                                   "give the path only")
        host_text, path = parts.netloc, parts.path
    else:
        host_text, slash, rest = text.partition("/")
        path = slash + rest
    if not path.strip("/"):
        return PathEntry(None, f"{shown} names no path; to block the whole site list its host "
                               "under `domains:`")
    host = domains.normalize_domain(host_text)
    if host.name is None or host.warning is not None:
        reason = host.error or host.warning or "not a host name"
        return PathEntry(None, f"{shown}: the host is unusable: {reason}")
    if len(path) > MAX_PATH_LENGTH or _PATH.fullmatch(path) is None:
        return PathEntry(None, f"{shown}: the path may hold letters, digits and / . _ ~ - % and "
                               "the like, but no '*', '?', '#', spaces, quotes or backslashes")
    name = host.name.removeprefix("www.") if host.name.count(".") >= 2 else host.name
    entry = name + path
    warning = f"{shown} is a URL; blocking '{entry}'" if scheme or name != host.name else None
    return PathEntry(entry, None, warning)


def url_path_entry(raw: str) -> str | None:
    """For a `domains:` entry: the `paths:` entry a URL with a path stands for (None: no path)."""
    text = raw.strip(" \t")
    if "/" not in text or not any(ch.isalnum() for ch in text):
        return None
    candidate = text if "://" in text else "//" + text
    try:
        path = urlsplit(candidate).path
    except ValueError:
        return None
    if not path.strip("/"):
        return None
    result = normalize_path(text.split("?", 1)[0].split("#", 1)[0])
    return result.entry


def host_of(entry: str) -> str:
    return entry.split("/", 1)[0]
