"""Mounting the issuer's HTTP API on the faust worker's web server.

The views are thin: each hands the request to `IssuerApi` (services/issuer/api.py), which
authenticates, validates and answers. The API's connections open in a faust service that
starts with the worker, never at import.
"""

from __future__ import annotations

from typing import Any

import faust
import mode
from faust.web import View

from passnum.settings import Settings
from services.issuer.api import Answer, IssuerApi
from services.issuer.openapi import OPENAPI_PATH, openapi_document


def attach_api(app: faust.App, settings: Settings) -> IssuerApi:
    api = IssuerApi(settings)

    @app.service
    class IssuerApiLifecycle(mode.Service):
        async def on_start(self) -> None:
            await api.start()

        async def on_stop(self) -> None:
            await api.stop()

    def send(view: View, answer: Answer) -> Any:
        return view.json(answer.body, status=answer.status, headers=answer.headers or None)

    @app.page("/v1/orders", name="issuer-orders")
    class Orders(View):
        async def post(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.create_order))

    @app.page("/v1/funds-received", name="issuer-funds-received")
    class FundsReceived(View):
        async def post(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.record_funds_received))

    @app.page("/v1/booklets/{booklet_id}/distribution", name="issuer-distribution")
    class Distribution(View):
        async def post(self, request: Any, booklet_id: str) -> Any:
            return send(self, await api.respond(request, api.distribute))

    @app.page("/v1/booklets/{booklet_id}/block", name="issuer-block")
    class Block(View):
        async def post(self, request: Any, booklet_id: str) -> Any:
            return send(self, await api.respond(request, api.block))

    @app.page("/v1/booklets", name="issuer-booklets")
    class Booklets(View):
        async def get(self, request: Any) -> Any:
            return send(self, await api.respond(request, api.list_booklets))

    @app.page("/v1/booklets/{booklet_id}", name="issuer-booklet")
    class Booklet(View):
        async def get(self, request: Any, booklet_id: str) -> Any:
            return send(self, await api.respond(request, api.get_booklet))

    document = openapi_document()

    @app.page(OPENAPI_PATH, name="issuer-openapi")
    class OpenApi(View):
        async def get(self, request: Any) -> Any:
            return self.json(document)

    return api
