"""The household DNS engines detoxd can drive: the one list of them (pure).

Every other place reads this table: the ``network:`` schema (which keys each engine takes,
which it needs, their defaults), the network agent's registry (one class per engine in
:mod:`detoxd.netagent`, found by kind), ``detoxd netagent --engines`` and the daemon's
``network_sync`` (which agent serves which engine), and doctor (which unit to look at).
Adding an engine is a row here plus a module ``detoxd/netagent/<kind>.py``.

It imports nothing: the CLI builds its parser from it at every start.
"""

from __future__ import annotations


class DnsEngineSpec:
    """What detoxd knows about one kind of DNS engine before talking to it."""

    __slots__ = ("defaults", "keys", "kind", "label", "mac_clients", "remote", "required")

    def __init__(self, kind: str, label: str, *, keys: tuple[str, ...], remote: bool,
                 required: tuple[str, ...] = (), defaults: tuple[tuple[str, str], ...] = (),
                 mac_clients: bool = False) -> None:
        self.kind = kind  # the config's and the JSON's ``engine:`` value: never rename
        self.label = label  # what users read: "Pi-hole"
        self.keys = keys  # the keys of its ``network:`` entry besides ``engine``
        self.remote = remote  # reached over the network (a web API) rather than on this machine
        self.required = required
        self.defaults = dict(defaults)
        self.mac_clients = mac_clients  # ``clients:`` may name a device by its MAC address

    @property
    def agent_unit(self) -> str:
        """The systemd unit whose network agent drives this engine."""
        return "detoxd-network" if self.remote else f"detoxd-network-{self.kind}"

    def __repr__(self) -> str:
        return f"DnsEngineSpec({self.kind!r})"


_WEB_API_KEYS = ("url", "password_file", "tls_fingerprint", "clients")

DNS_ENGINES: tuple[DnsEngineSpec, ...] = (
    DnsEngineSpec("pihole", "Pi-hole", keys=_WEB_API_KEYS, remote=True, required=("url", "password_file"),
                  mac_clients=True),
    # AdGuard Home's $client modifier matches IPs, CIDRs and client names; a MAC address
    # identifies a device only when AdGuard Home is the network's DHCP server.
    DnsEngineSpec("adguardhome", "AdGuard Home", keys=_WEB_API_KEYS, remote=True,
                  required=("url", "password_file")),
    DnsEngineSpec("dnsmasq", "dnsmasq", keys=("conf_dir", "service"), remote=False,
                  defaults=(("conf_dir", "/etc/dnsmasq.d"), ("service", "dnsmasq.service"))),
    DnsEngineSpec("unbound", "Unbound", keys=("conf_dir", "control_config"), remote=False,
                  defaults=(("conf_dir", "/etc/unbound/unbound.conf.d"),
                            ("control_config", "/etc/unbound/unbound.conf"))),
)

BY_KIND: dict[str, DnsEngineSpec] = {spec.kind: spec for spec in DNS_ENGINES}
KINDS: tuple[str, ...] = tuple(BY_KIND)
REMOTE_KINDS = frozenset(spec.kind for spec in DNS_ENGINES if spec.remote)
LOCAL_KINDS: tuple[str, ...] = tuple(spec.kind for spec in DNS_ENGINES if not spec.remote)

# What one network agent serves (``detoxd netagent --engines``, ``network_sync``'s ``agent``):
# the remote engines (one unit, network only), the local ones, one local engine (the narrowest
# unit that can write its files), or all.
AGENT_KINDS: tuple[str, ...] = ("remote", "local", *LOCAL_KINDS, "all")


def serves(agent_kind: str, engine_kind: str) -> bool:
    """Whether an agent started with ``--engines agent_kind`` drives an engine of that kind."""
    if agent_kind == "all":
        return True
    if agent_kind in ("remote", "local"):
        return (engine_kind in REMOTE_KINDS) == (agent_kind == "remote")
    return engine_kind == agent_kind


def agent_unit(engine_kind: str) -> str:
    """The unit to look at for an engine (an unknown kind is named like a local one)."""
    spec = BY_KIND.get(engine_kind)
    return spec.agent_unit if spec else f"detoxd-network-{engine_kind}"


def agent_kinds_help() -> str:
    """``--engines``' help: "remote: Pi-hole, AdGuard Home; local: dnsmasq and Unbound; ..."."""
    remote = ", ".join(spec.label for spec in DNS_ENGINES if spec.remote)
    local = " and ".join(spec.label for spec in DNS_ENGINES if not spec.remote)
    return f"remote: {remote}; local: {local}; or one local engine (default: all)"


def label(engine_kind: str) -> str:
    spec = BY_KIND.get(engine_kind)
    return spec.label if spec else engine_kind
