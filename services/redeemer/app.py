"""Composition root of the redeemer worker: `faust -A services.redeemer.app worker`.

Where a voucher is redeemed: `services.redeemer.domain.decide_redeem`. Why it cannot be
redeemed twice: see the docstring of that module and docs/processing.md. Settlement:
`services.redeemer.settlement`. The venues' HTTP API (services/redeemer/web.py) is mounted
on the worker's web server. Nothing connects at import: connections open when the app starts.

`PASSNUM_REDEEMER_PROFILE=timing` (or a file path, for cProfile) logs where the worker's
time goes: services/redeemer/profiling.py, figures in docs/redeemer.md.
"""

from __future__ import annotations

import os

from passnum.database import connect
from passnum.settings import Settings
from passnum.topology import topology_for
from passnum.worker import BatchRunner, attach_batch_agent, build_app
from services.redeemer.direct_consumer import attach_direct_consumer
from services.redeemer.handler import RedeemerHandler
from services.redeemer.profiling import instrument
from services.redeemer.web import attach_api

settings = Settings.from_environment()
topology = topology_for(settings)
handler = RedeemerHandler(topology, settings.voucher_code_key.encode())
app = build_app(topology.redeemer_group, settings, settings.web_port_redeemer)
input_topics = [topology.redeemer_commands.name, topology.issuer_events.name]
if os.environ.get("PASSNUM_REDEEMER_CONSUMER") == "direct":
    # The experiment of services/redeemer/direct_consumer.py (off by default).
    runner = BatchRunner(app, handler, settings, lambda: connect(settings.database_url))
    attach_direct_consumer(app, runner, settings, input_topics,
                           f"{topology.redeemer_group}-direct")
else:
    runner = attach_batch_agent(app, handler, settings, input_topics,
                                lambda: connect(settings.database_url))
api = attach_api(app, settings)
instrument(runner)
