"""Composition root of the issuer worker: `faust -A services.issuer.app worker`.

Wires settings, topology, the issuer's handler and the database into the shared batch
consumer, and mounts the collectivités' HTTP API (services/issuer/web.py) on the
worker's web server. Nothing connects at import: connections open when the app starts.
"""

from __future__ import annotations

from passnum.core.database import connect
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.core.worker import attach_batch_consumer, build_app
from services.issuer.handler import handler_for
from services.issuer.web import attach_apis

# A bad PASSNUM_ setting: one line and exit 2, not an import traceback from faust's CLI.
settings = Settings.from_environment_or_exit()
topology = topology_for(settings)
handler = handler_for(settings, topology)
app = build_app(topology.issuer_group, settings, settings.web_port_issuer)
runner = attach_batch_consumer(app, handler, settings, [topology.issuer_commands.name],
                               lambda: connect(settings.database_url))
api, operator = attach_apis(app, settings)
runner.outcome_listeners.append(api.outcomes_decided)
runner.outcome_listeners.append(operator.outcomes_decided)
