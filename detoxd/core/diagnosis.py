"""What `detoxd doctor` concludes from what it read, as glibc and applications would see it. Pure.

- :func:`hosts_sources`: the ``hosts:`` line of nsswitch.conf that glibc uses: the *last* one
  (its parser overwrites earlier entries of the same database).
- :func:`overrides`: lines of the hosts file that give a blocked name an address other than
  ``0.0.0.0``/``::``. glibc's files backend takes the first matching line, so such a line above
  detoxd's block (or an alias on any line) lets the name through. Read line by line as glibc does,
  not through detoxd's own block parser: the doctor must not trust what it checks.
- :func:`sort_lookups`: a lookup escapes only when it answers an address other than the null
  ones; a name that does not resolve at all does not escape (it is reported, not failed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

NULL_ADDRESSES = frozenset({ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")})  # noqa: S104
GLIBC_DEFAULT_HOSTS = "dns [!UNAVAIL=return] files"  # glibc's order without a hosts: line


def hosts_sources(nsswitch: str | None) -> str:
    """The sources glibc asks for host names, in order (its default without a ``hosts:`` line)."""
    found = GLIBC_DEFAULT_HOSTS
    for raw in (nsswitch or "").splitlines():
        key, _, value = raw.partition("#")[0].partition(":")
        if key.strip() == "hosts":
            found = " ".join(value.split())
    return found


@dataclass(frozen=True)
class Override:
    """Line ``line`` (1-based) of the hosts file gives ``name`` the address ``address``."""

    line: int
    address: str
    name: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.address} {self.name}"


def overrides(hosts_text: str, blocked: Collection[str]) -> list[Override]:
    """Every line that maps a blocked name (or an alias) to a real address."""
    wanted = {name.lower() for name in blocked}
    found = []
    for number, raw in enumerate(hosts_text.split("\n"), start=1):  # glibc: \n ends a line
        found += [Override(number, address, name) for address, name in line_overrides(raw, wanted)]
    return found


def line_overrides(line: str, wanted: AbstractSet[str]) -> list[tuple[str, str]]:
    """(address, name) for each name of this one hosts-file line that is in ``wanted`` (lower
    case) and gets a real address from it. The daemon neutralises such lines with this too
    (:func:`detoxd.core.hosts.apply`)."""
    fields = line.partition("#")[0].split()
    named = [name for name in fields[1:] if name.lower() in wanted]  # first: the cheap test
    if not named:
        return []
    address = _address(fields[0])
    if address is None or _null(address):
        return []  # glibc skips a line it cannot parse; a null address is the block's answer
    return [(fields[0], name) for name in named]


def _null(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """0.0.0.0, :: and ::ffff:0.0.0.0: nothing a connection reaches beyond this machine."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address in NULL_ADDRESSES or mapped in NULL_ADDRESSES


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])  # fe80::1%eth0 has a scope
    except ValueError:
        return None


@dataclass(frozen=True)
class Lookups:
    """The outcome of looking blocked names up: which escape, which did not resolve."""

    blocked: tuple[str, ...]
    escaping: tuple[str, ...]  # answered with a real address
    unresolved: tuple[str, ...]  # no answer at all (not an escape: nothing reaches the site)


def sort_lookups(lookups: Mapping[str, tuple[str, ...] | None]) -> Lookups:
    blocked, escaping, unresolved = [], [], []
    for name in sorted(lookups):
        addresses = lookups[name]
        if not addresses:
            unresolved.append(name)
        elif all((parsed := _address(address)) is not None and _null(parsed) for address in addresses):
            blocked.append(name)
        else:
            escaping.append(name)
    return Lookups(tuple(blocked), tuple(escaping), tuple(unresolved))
