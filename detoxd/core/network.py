"""The household's DNS engines: the `network:` config and what each engine should hold (pure).

detoxd does not answer DNS itself: it puts the detox into the engine the household already runs
(Pi-hole v6, AdGuard Home, dnsmasq, Unbound) and takes out exactly what it added. This module
parses ``network:`` from ``detoxd.yaml`` and computes, for each engine, the entries that express
the local block; the classes in :mod:`detoxd.netagent` (one per engine) talk to the engines.

Semantics, per engine (each follows the engine's own idiom):

- Pi-hole: one ``deny/exact`` entry per blocked name, exactly the local block.
- AdGuard Home, dnsmasq, Unbound: a rule per name that also covers its subdomains (that is how
  these engines express a blocked domain); an ``allow:`` name under a blocked one gets an
  exception entry, so ``allow`` means the same everywhere.
- Everywhere: ``use-application-dns.net`` is answered NXDOMAIN during a detox, Firefox's canary that
  turns its default DNS-over-HTTPS off for the whole network (where an engine supports NXDOMAIN).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from detoxd.core import dnsengines
from detoxd.core.yamlsource import Node, Source, as_list, as_mapping, as_str, as_str_list, join

ENGINES = dnsengines.KINDS

# Firefox resolves this name through the network's resolver before it enables DNS-over-HTTPS by
# default; NXDOMAIN means "this network filters DNS, keep DoH off" (Mozilla's "canary domain").
CANARY = "use-application-dns.net"

# Every entry detoxd puts into an engine carries this word, so detoxd finds exactly its own.
MARKER = "detoxd"
MARKER_COMMENT = "detoxd: digital detox, removed automatically when it ends"

OWN_FILE = "detoxd.conf"  # the one file detoxd writes into a local engine's conf_dir

_COMMON_KEYS = {"engine"}
_ALL_KEYS = set().union(_COMMON_KEYS, *(spec.keys for spec in dnsengines.DNS_ENGINES))

_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_FINGERPRINT = re.compile(r"(?:sha256:)?((?:[0-9a-f]{2}:?){32})")
_UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]+\.service")
MAX_CLIENTS = 256


@dataclass(frozen=True)
class DnsEngineConfig:
    """One entry of ``network:``; which fields are set depends on ``engine``."""

    engine: str  # a kind of dnsengines.DNS_ENGINES
    index: int
    line: int
    url: str | None = None  # pihole, adguardhome: the web/API base address, no trailing slash
    password_file: str | None = None  # relative to the config dir; read by the shell
    tls_fingerprint: bytes | None = None  # SHA-256 of the server certificate (DER), pinned
    clients: tuple[str, ...] = ()  # normalised IPs, CIDRs or MACs; () = every device
    conf_dir: str | None = None  # dnsmasq, unbound: where detoxd writes OWN_FILE
    service: str | None = None  # dnsmasq: the systemd unit restarted to re-read its config
    control_config: str | None = None  # unbound: the config file unbound-control reads
    password_file_line: int = 0  # for the shell's errors about the file itself

    @property
    def key(self) -> str:
        """A stable name for this engine in status, state files and logs (never a secret)."""
        return f"{self.engine} {self.url or self.conf_dir}"

    @property
    def location(self) -> str:
        return f"network[{self.index}]"


# ---- detoxd.yaml: network: ----

def parse_network(source: Source, node: Node, path: str) -> tuple[DnsEngineConfig, ...]:
    engines: list[DnsEngineConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(as_list(source, node, path) or []):
        item_path = join(path, index)
        engine = _parse_engine(source, item, item_path, index)
        if engine is None:
            continue
        if engine.key in seen:
            first = f"{path}[{seen[engine.key]}]"
            source.error(item.line, item_path, f"the same engine is already listed as {first}")
            continue
        seen[engine.key] = index
        engines.append(engine)
    return tuple(engines)


def _parse_engine(source: Source, node: Node, path: str, index: int) -> DnsEngineConfig | None:
    fields = as_mapping(source, node, path, _ALL_KEYS)
    if fields is None:
        return None
    if "engine" not in fields:
        source.error(node.line, path, f"needs engine: one of {', '.join(ENGINES)}")
        return None
    kind = as_str(source, fields["engine"], join(path, "engine"))
    if kind is None:
        return None
    if kind not in ENGINES:
        source.error(fields["engine"].line, join(path, "engine"),
                     f"unknown engine {kind!r} (expected one of: {', '.join(ENGINES)})")
        return None
    spec = dnsengines.BY_KIND[kind]
    ok = True
    for key in fields:
        if key not in _COMMON_KEYS and key not in spec.keys:
            source.error(node.key_lines[key], join(path, key),
                         f"not used by engine {kind} (it takes: {', '.join(sorted(spec.keys))})")
            ok = False
    for key in spec.required:
        if key not in fields:
            source.error(node.line, path, f"engine {kind} needs {key}")
            ok = False

    def text(key: str) -> tuple[str, int] | None:
        if key not in fields:
            return None
        value = as_str(source, fields[key], join(path, key))
        return None if value is None else (value, fields[key].line)

    url = _url(source, text("url"), join(path, "url"))
    password_file = _relative_file(source, text("password_file"), join(path, "password_file"))
    fingerprint = _fingerprint(source, text("tls_fingerprint"), join(path, "tls_fingerprint"))
    clients = _clients(source, fields.get("clients"), join(path, "clients"), spec)
    conf_dir = _absolute_path(source, text("conf_dir"), join(path, "conf_dir"))
    control_config = _absolute_path(source, text("control_config"), join(path, "control_config"))
    service = _service(source, text("service"), join(path, "service"))
    if fingerprint is not None and url is not None and not url.startswith("https://"):
        source.error(fields["tls_fingerprint"].line, join(path, "tls_fingerprint"),
                     "a certificate pin needs an https:// url")
        ok = False
    if ("url" in fields and url is None) or ("password_file" in fields and password_file is None):
        ok = False
    if not ok:
        return None
    conf_dir = conf_dir or spec.defaults.get("conf_dir")
    service = service or spec.defaults.get("service")
    control_config = control_config or spec.defaults.get("control_config")
    return DnsEngineConfig(kind, index, node.line, url, password_file, fingerprint, clients,
                        conf_dir, service, control_config,
                        fields["password_file"].line if "password_file" in fields else 0)


def _url(source: Source, given: tuple[str, int] | None, path: str) -> str | None:
    if given is None:
        return None
    raw, line = given
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        source.error(line, path, "not a valid URL")
        return None
    if parts.username is not None or parts.password is not None:
        # Never echo it: the text before '@' may be a password.
        source.error(line, path, "must not contain a user or password (use password_file)")
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source.error(line, path, f"expected an http:// or https:// address, got {raw[:80]!r}")
        return None
    if parts.query or parts.fragment:
        source.error(line, path, "must not have a query or fragment")
        return None
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    netloc = f"{shown_host}:{port}" if port is not None else shown_host
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _relative_file(source: Source, given: tuple[str, int] | None, path: str) -> str | None:
    if given is None:
        return None
    raw, line = given
    parts = raw.split("/")
    if not raw or raw.startswith("/") or "\x00" in raw or ".." in parts or "" in parts:
        source.error(line, path, "expected a file name relative to the config directory")
        return None
    return raw


def _absolute_path(source: Source, given: tuple[str, int] | None, path: str) -> str | None:
    if given is None:
        return None
    raw, line = given
    if not raw.startswith("/") or "\x00" in raw or "\n" in raw or ".." in raw.split("/"):
        source.error(line, path, "expected an absolute path")
        return None
    return raw.rstrip("/") or "/"


def _service(source: Source, given: tuple[str, int] | None, path: str) -> str | None:
    if given is None:
        return None
    raw, line = given
    if not _UNIT.fullmatch(raw) or raw.startswith("-"):
        source.error(line, path, f"expected a systemd service name such as dnsmasq.service, got {raw[:80]!r}")
        return None
    return raw


def _fingerprint(source: Source, given: tuple[str, int] | None, path: str) -> bytes | None:
    if given is None:
        return None
    raw, line = given
    match = _FINGERPRINT.fullmatch(raw.strip().lower().replace(" ", ""))
    if not match:
        source.error(line, path, "expected a SHA-256 fingerprint: sha256: and 32 hex bytes (AB:CD:…)")
        return None
    return bytes.fromhex(match.group(1).replace(":", ""))


def normalize_client(raw: str) -> tuple[str | None, str]:
    """(the client in canonical form, or None; its kind "ip", "cidr", "mac" or the error)."""
    text = raw.strip().lower()
    if _MAC.fullmatch(text.replace("-", ":")):
        return text.replace("-", ":"), "mac"
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            return str(network), "cidr"
        return str(ipaddress.ip_address(text)), "ip"
    except ValueError:
        return None, f"{raw[:80]!r} is not an IP address, a CIDR range or a MAC address"


def _clients(source: Source, node: Node | None, path: str,
             spec: dnsengines.DnsEngineSpec) -> tuple[str, ...]:
    if node is None:
        return ()
    clients: list[str] = []
    entries = as_str_list(source, node, path)
    if len(entries) > MAX_CLIENTS:
        source.error(node.line, path, f"at most {MAX_CLIENTS} clients")
        return ()
    for raw, line, item_path in entries:
        client, kind_or_error = normalize_client(raw)
        if client is None:
            source.error(line, item_path, kind_or_error)
        elif kind_or_error == "mac" and not spec.mac_clients:
            source.error(line, item_path, f"{spec.label} rules match IP addresses or CIDR ranges, "
                         "not MAC addresses: give the device's IP address")
        elif client not in clients:
            clients.append(client)
    return tuple(clients)


def engine_to_json(engine: DnsEngineConfig) -> dict[str, object]:
    """For the control socket (daemon → network agent). Holds no secret: only the file's name."""
    return {"engine": engine.engine, "index": engine.index, "line": engine.line, "url": engine.url,
            "password_file": engine.password_file,
            "tls_fingerprint": engine.tls_fingerprint.hex() if engine.tls_fingerprint else None,
            "clients": list(engine.clients), "conf_dir": engine.conf_dir, "service": engine.service,
            "control_config": engine.control_config}


def engine_from_json(data: dict[str, object]) -> DnsEngineConfig:
    """The inverse of engine_to_json; raises ValueError/TypeError/KeyError on anything else."""
    kind = data["engine"]
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}")

    def optional(key: str) -> str | None:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{key} must be text")
        return value

    clients = data.get("clients") or []
    if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
        raise TypeError("clients must be a list of text")
    index, line = data.get("index", 0), data.get("line", 0)
    if not isinstance(index, int) or not isinstance(line, int):
        raise TypeError("index and line must be numbers")
    pin = optional("tls_fingerprint")
    return DnsEngineConfig(kind, index, line, optional("url"), optional("password_file"),
                        bytes.fromhex(pin) if pin else None, tuple(clients), optional("conf_dir"),
                        optional("service"), optional("control_config"))


# ---- what every engine should hold ----

def engine_names(block: Iterable[str]) -> tuple[str, ...]:
    """The local block's names plus the canary, sorted (engines keep no order)."""
    return tuple(sorted({*block, CANARY}))


def _ancestors(name: str) -> Iterable[str]:
    labels = name.split(".")
    for start in range(1, len(labels) - 1):
        yield ".".join(labels[start:])


def exceptions(names: Iterable[str], allow: Iterable[str]) -> tuple[str, ...]:
    """Allowed names that a subdomain-covering rule for a blocked name would block too."""
    blocked = set(names)
    return tuple(sorted(name for name in set(allow) - blocked
                        if any(parent in blocked for parent in _ancestors(name))))


# dnsmasq(8), --address: "--address=/example.com/ is equivalent to --server=/example.com/ and returns
# NXDOMAIN for example.com and all its subdomains"; "an address specified as '#' translates to the
# NULL address of 0.0.0.0 and its IPv6 equivalent of ::". --server=/domain/# means "use the
# standard servers" for that (more specific) domain: the exception for an allowed name.
def render_dnsmasq(names: Sequence[str], allowed: Sequence[str]) -> str:
    lines = [f"# {MARKER_COMMENT}.", "# Written by detoxd; edits are undone during a detox."]
    lines += [f"address=/{name}/" if name == CANARY else f"address=/{name}/#" for name in names]
    lines += [f"server=/{name}/#" for name in allowed]
    return "\n".join(lines) + "\n"


# unbound.conf(5), local-zone: "always_null: Like refuse, but returns ... 0.0.0.0 or ::0";
# "always_nxdomain: Like static, but only returns nxdomain"; "transparent: ... the query is
# resolved normally" for names not in local-data (the exception for an allowed name). The most
# specific local-zone wins, so an exception inside a blocked zone is answered normally.
def unbound_zones(names: Sequence[str], allowed: Sequence[str]) -> dict[str, str]:
    zones = {name: "always_nxdomain" if name == CANARY else "always_null" for name in names}
    zones.update((name, "transparent") for name in allowed)
    return zones


_ZONE_LINE_PREFIX = '    local-zone: "'


def render_unbound(zones: dict[str, str]) -> str:
    lines = [f"# {MARKER_COMMENT}.", "# Written by detoxd; loaded at start-up so a restart keeps the block.",
             "server:"]
    lines += [f'{_ZONE_LINE_PREFIX}{name}." {kind}' for name, kind in sorted(zones.items())]
    return "\n".join(lines) + "\n"


def unbound_include_zones(text: str | None) -> dict[str, str]:
    """The zones an include file :func:`render_unbound` wrote lists (what detoxd added)."""
    zones: dict[str, str] = {}
    for line in (text or "").splitlines():
        if line.startswith(_ZONE_LINE_PREFIX):
            name, _, kind = line[len(_ZONE_LINE_PREFIX):].partition('." ')
            zones[name] = kind.strip()
    return zones


def parse_unbound_local_zones(text: str) -> dict[str, str]:
    """`unbound-control list_local_zones` output ("name. type" lines) → {name: type}."""
    zones: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            zones[parts[0].rstrip(".").lower()] = parts[1]
    return zones


def zone_changes(
    wanted: dict[str, str], present: dict[str, str], ours_before: Iterable[str]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """(zones to (re-)add, zones to remove): only zones detoxd added itself are ever removed,
    never a local-zone of the user's."""
    missing = {name: kind for name, kind in wanted.items() if present.get(name) != kind}
    stale = tuple(sorted(name for name in set(ours_before) - set(wanted) if name in present))
    return missing, stale


# ---- AdGuard Home: user rules between detoxd's markers ----

ADGUARD_BEGIN = f"! {MARKER} begin: {MARKER_COMMENT}"
ADGUARD_END = f"! {MARKER} end"


def adguard_rules(names: Sequence[str], allowed: Sequence[str], clients: Sequence[str]) -> list[str]:
    """Rules in AdGuard's DNS filtering syntax: ``||name^`` blocks the name and its subdomains,
    ``@@`` makes an exception, ``$client=a|b`` limits a rule to those clients (IPs or CIDRs),
    ``$dnsrewrite=NXDOMAIN`` answers NXDOMAIN (for the canary)."""
    scope = f"$client={'|'.join(clients)}" if clients else ""

    def modifiers(*extra: str) -> str:
        parts = [part for part in (scope.removeprefix("$"), *extra) if part]
        return f"${','.join(parts)}" if parts else ""

    rules = [ADGUARD_BEGIN]
    for name in names:
        extra = ("dnsrewrite=NXDOMAIN",) if name == CANARY else ()
        rules.append(f"||{name}^{modifiers(*extra)}")
    rules += [f"@@||{name}^{modifiers()}" for name in allowed]
    rules.append(ADGUARD_END)
    return rules


def adguard_block(rules: Sequence[str]) -> list[str] | None:
    """detoxd's rules as they stand in the user rules, markers included; None when absent."""
    try:
        start = rules.index(ADGUARD_BEGIN)
    except ValueError:
        return None
    try:
        end = rules.index(ADGUARD_END, start)
    except ValueError:
        return list(rules[start:])  # a half-deleted block: everything after the marker
    return list(rules[start:end + 1])


def adguard_without_block(rules: Sequence[str]) -> list[str]:
    """The user's own rules: every detoxd block (there should be one) taken out."""
    result = list(rules)
    while (block := adguard_block(result)) is not None:
        start = result.index(ADGUARD_BEGIN)
        del result[start:start + len(block)]
    return result


def adguard_merged(rules: Sequence[str], ours: Sequence[str]) -> list[str]:
    """The user's rules with detoxd's block at the end (AdGuard gives no rule an order anyway)."""
    return adguard_without_block(rules) + list(ours)


# ---- Pi-hole v6 ----

@dataclass(frozen=True)
class PiholeEntry:
    """One row of GET /api/domains/deny/exact, as far as detoxd looks at it."""

    domain: str
    comment: str | None
    groups: tuple[int, ...]
    enabled: bool

    @property
    def ours(self) -> bool:
        return self.comment == MARKER_COMMENT


@dataclass(frozen=True)
class PiholePlan:
    add: tuple[str, ...]  # POST /domains/deny/exact with detoxd's comment and group
    repair: tuple[str, ...]  # PUT: ours, but disabled, regrouped or recommented
    delete: tuple[str, ...]  # ours, no longer wanted: /domains:batchDelete
    foreign: tuple[str, ...]  # the user's own deny entries for a blocked name: left alone


def pihole_plan(present: Iterable[PiholeEntry], wanted: Iterable[str], group: int) -> PiholePlan:
    """How to get from what the Pi-hole holds to detoxd's entries, touching nothing of the user's.

    A name the user already denies themselves (their own comment) is left to them: Pi-hole keeps
    one entry per (domain, type), so detoxd cannot add its own beside it; it is reported so the
    shell can say that it does not count as detoxd's (and will not be removed at the end)."""
    wanted_set = set(wanted)
    by_name = {entry.domain: entry for entry in present}
    add, repair, foreign = [], [], []
    for name in sorted(wanted_set):
        entry = by_name.get(name)
        if entry is None:
            add.append(name)
        elif not entry.ours:
            foreign.append(name)
        elif not entry.enabled or entry.groups != (group,):
            repair.append(name)
    delete = sorted(e.domain for e in by_name.values() if e.ours and e.domain not in wanted_set)
    return PiholePlan(tuple(add), tuple(repair), tuple(delete), tuple(foreign))
