"""Composition root of the redeemer worker: `faust -A services.redeemer.app worker`.

Where a voucher is redeemed: `services.redeemer.domain.decide_redeem`. Why it cannot be
redeemed twice: see the docstring of that module and docs/processing.md.
"""

from __future__ import annotations

from passnum.database import connect
from passnum.settings import Settings
from passnum.topology import topology_for
from passnum.worker import attach_batch_agent, build_app
from services.redeemer.handler import RedeemerHandler

settings = Settings.from_environment()
topology = topology_for(settings)
handler = RedeemerHandler(topology, settings.voucher_code_key.encode())
app = build_app(topology.redeemer_group, settings, settings.web_port_redeemer)
runner = attach_batch_agent(
    app, handler, settings,
    [topology.redeemer_commands.name, topology.issuer_events.name],
    lambda: connect(settings.database_url))
