"""The network agent's process (`detoxd netagent`): it puts the detox into the household's DNS
engines and keeps it there (:mod:`detoxd.netagent.agent`), one class per DNS engine
(:mod:`~detoxd.netagent.pihole`, :mod:`~detoxd.netagent.adguardhome`,
:mod:`~detoxd.netagent.dnsmasq`, :mod:`~detoxd.netagent.unbound`).

It runs in its own unprivileged units (``detoxd-network*.service``); the root daemon's side of
the exchange is :mod:`detoxd.service.targets.network`.
"""
