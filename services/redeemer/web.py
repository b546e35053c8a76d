"""Mounting the redeemer's HTTP API on the faust worker's web server.

The views are thin: each hands the request to `RedeemerApi` (services/redeemer/api.py). The
API's connections and producer open in a faust service that starts with the worker.
"""

from __future__ import annotations

from typing import Any

import faust
import mode
from faust.web import View

from passnum.settings import Settings
from services.redeemer.api import Answer, RedeemerApi
from services.redeemer.openapi import OPENAPI_PATH, openapi_document


def attach_api(app: faust.App, settings: Settings) -> RedeemerApi:
    api = RedeemerApi(settings)

    @app.service
    class RedeemerApiLifecycle(mode.Service):
        async def on_start(self) -> None:
            await api.start()

        async def on_stop(self) -> None:
            await api.stop()

    def send(view: View, answer: Answer) -> Any:
        return view.json(answer.body, status=answer.status, headers=answer.headers or None)

    @app.page("/v1/checks", name="redeemer-checks")
    class Checks(View):
        async def post(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.check))

    @app.page("/v1/redemptions", name="redeemer-redemptions")
    class Redemptions(View):
        async def post(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.redeem))

        async def get(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.list_redemptions))

    @app.page("/v1/redemptions/{voucher_id}/cancellation", name="redeemer-cancellation")
    class Cancellation(View):
        async def post(self, request: Any, voucher_id: str) -> Any:
            return send(self, await api.respond(request, api.cancel))

    @app.page("/v1/statements", name="redeemer-statements")
    class Statements(View):
        async def get(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.list_statements))

    document = openapi_document()

    @app.page(OPENAPI_PATH, name="redeemer-openapi")
    class OpenApi(View):
        async def get(self, request: Any) -> Any:
            return self.json(document)

    return api
