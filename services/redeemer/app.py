"""Composition root of the redeemer worker: `faust -A services.redeemer.app worker`.

Where a voucher is redeemed: `services.redeemer.domain.decide_redeem`. Why it cannot be
redeemed twice: see the docstring of that module and docs/processing.md. Settlement:
`services.redeemer.settlement`. The venues' HTTP API (services/redeemer/web.py) is mounted
on the worker's web server. Nothing connects at import: connections open when the app starts.

`PASSNUM_REDEEMER_PROFILE=path` writes a cProfile of the worker's batch decisions there
when the worker stops (see services/redeemer/profiling.py and docs/redeemer.md).
"""

from __future__ import annotations

from passnum.database import connect
from passnum.settings import Settings
from passnum.topology import topology_for
from passnum.worker import attach_batch_agent, build_app
from services.redeemer.handler import RedeemerHandler
from services.redeemer.web import attach_api

settings = Settings.from_environment()
topology = topology_for(settings)
handler = RedeemerHandler(topology, settings.voucher_code_key.encode())
app = build_app(topology.redeemer_group, settings, settings.web_port_redeemer)
runner = attach_batch_agent(
    app, handler, settings,
    [topology.redeemer_commands.name, topology.issuer_events.name],
    lambda: connect(settings.database_url))
api = attach_api(app, settings)
