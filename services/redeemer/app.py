"""Composition root of the redeemer worker: `faust -A services.redeemer.app worker`.

Where a voucher is redeemed: `passnum.ledger.voucher.decide_redeem`. Why it cannot be
redeemed twice: see the docstring of that module and docs/processing.md. Settlement:
`passnum.ledger.settlement_month`. Nothing connects at import: connections open when the
app starts.

The worker only decides: the venues' HTTP API, the operator's routes and the counter page
are served by a process of its own (services/redeemer/web.py), which the worker starts on
the port it was given (`--web-port`) and takes down with it. The worker's web server (its
health and metrics, which the API process relays) listens on a Unix socket.

`PASSNUM_REDEEMER_PROFILE=timing` (or a file path, for cProfile) logs where the worker's
time goes: services/redeemer/profiling.py, figures in docs/redeemer.md.
"""

from __future__ import annotations

from yarl import URL

from passnum.core.database import connect
from passnum.core.processing import process_tag
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.core.worker import attach_batch_consumer, build_app
from services.redeemer.handler import handler_for
from services.redeemer.profiling import instrument
from services.redeemer.web import attach_api_process, worker_socket_path

# A bad PASSNUM_ setting: one line and exit 2, not an import traceback from faust's CLI.
settings = Settings.from_environment_or_exit()
topology = topology_for(settings)
handler = handler_for(settings, topology)
app = build_app(topology.redeemer_group, settings, settings.web_port_redeemer)
worker_socket = worker_socket_path(process_tag())
app.conf.web_transport = URL(f"unix://{worker_socket}")
input_topics = [topology.redeemer_commands.name, topology.issuer_events.name]
runner = attach_batch_consumer(app, handler, settings, input_topics,
                               lambda: connect(settings.database_url))
attach_api_process(app, settings, worker_socket, runner)
instrument(runner)
