"""The network agent's process (`detoxd netagent`): it puts the detox into the household's DNS
engines and keeps it there (:mod:`detoxd.netagent.agent`).

One class per DNS engine (:class:`~detoxd.netagent.engines.DnsEngine`), in a module named after
its kind (:mod:`~detoxd.netagent.pihole`, :mod:`~detoxd.netagent.adguardhome`,
:mod:`~detoxd.netagent.dnsmasq`, :mod:`~detoxd.netagent.unbound`), found through the registry
(:func:`~detoxd.netagent.engines.engine_class`); the list of engines itself is
:mod:`detoxd.core.dnsengines`, their pure rendering :mod:`detoxd.core.network`.

It runs in its own unprivileged units (``detoxd-network*.service``); the root daemon's side of
the exchange is :mod:`detoxd.service.targets.network`.
"""
