"""Composition root of the redeemer worker: `faust -A services.redeemer.app worker`.

Where a voucher is redeemed: `passnum.ledger.voucher.decide_redeem`. Why it cannot be
redeemed twice: see the docstring of that module and docs/processing.md. Settlement:
`passnum.ledger.settlement_month`. The venues' HTTP API (services/redeemer/web.py) is mounted
on the worker's web server. Nothing connects at import: connections open when the app starts.

`PASSNUM_REDEEMER_PROFILE=timing` (or a file path, for cProfile) logs where the worker's
time goes: services/redeemer/profiling.py, figures in docs/redeemer.md.
"""

from __future__ import annotations

from datetime import timedelta

from passnum.core.database import connect
from passnum.core.head_signatures import signer_for
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.core.worker import attach_batch_consumer, build_app
from services.redeemer.counter import attach_counter
from services.redeemer.handler import RedeemerHandler
from services.redeemer.profiling import instrument
from services.redeemer.web import attach_apis

# A bad PASSNUM_ setting: one line and exit 2, not an import traceback from faust's CLI.
settings = Settings.from_environment_or_exit()
topology = topology_for(settings)
handler = RedeemerHandler(topology, settings.voucher_code_key.encode(),
                          scan_clock_tolerance=timedelta(
                              seconds=settings.scan_clock_tolerance_seconds),
                          head_signer=signer_for(settings))
app = build_app(topology.redeemer_group, settings, settings.web_port_redeemer)
input_topics = [topology.redeemer_commands.name, topology.issuer_events.name]
runner = attach_batch_consumer(app, handler, settings, input_topics,
                               lambda: connect(settings.database_url))
api, operator = attach_apis(app, settings)
# The venues' counter page (docs/counter.md), on the API's pool and gateway.
counter = attach_counter(app, api)
runner.outcome_listeners.append(api.outcomes_decided)
runner.outcome_listeners.append(operator.outcomes_decided)
instrument(runner)
