"""Mounting an HTTP API (`passnum.edge.web_api.TenantApi`) on the faust worker's web server.

The views are thin and generated from the route table: each hands the request to the API
object, which authenticates, validates and answers. So the routes served are the routes
documented, by construction. The API's connections open in a faust service that starts with
the worker, never at import.
"""

from __future__ import annotations

from typing import Any

import faust
import mode
from faust.web import View
from faust.web.exceptions import WebError

from passnum.edge.openapi import OPENAPI_PATH
from passnum.edge.problems import PROBLEM_MEDIA_TYPE, is_problem
from passnum.edge.web_api import Answer, RequestHandler, TenantApi


def mount_api(app: faust.App, api: TenantApi, document: dict[str, Any] | None) -> None:
    """Serve every route of the API with its handler, and `document` at OPENAPI_PATH (None:
    a second API of the same worker, whose routes the first one's document describes)."""
    _attach_lifecycle(app, api)
    health = getattr(app, "passnum_health", None)
    if health is not None:
        health.api_ready.append(api.ready)  # unready until its connections open
    for path, handlers in _handlers_by_path(api).items():
        app.page(path, name=f"{api.processor}:{path}")(_page(api, handlers))
    if document is not None:
        app.page(OPENAPI_PATH, name=f"{api.processor}:{OPENAPI_PATH}")(
            _document_page(document))


def _attach_lifecycle(app: faust.App, api: TenantApi) -> None:
    class ApiLifecycle(mode.Service):
        async def on_start(self) -> None:
            await api.start()

        async def on_stop(self) -> None:
            await api.stop()

    app.service(ApiLifecycle)


def _handlers_by_path(api: TenantApi) -> dict[str, dict[str, RequestHandler]]:
    """{path: {method: handler}}, in the order of the route table (aiohttp matches routes in
    the order they were added)."""
    by_path: dict[str, dict[str, RequestHandler]] = {}
    for route, handler in api.routed_handlers():
        by_path.setdefault(route.path, {})[route.method] = handler
    return by_path


class LeanView(View):
    """faust's View with a shorter `dispatch`: the method and the error page, as faust's,
    without (1) its runtime `typing.cast(Callable[..., Awaitable[Response]], ...)`, whose
    subscripted type is built on every request (8 % of the redeemer worker's CPU at 1,000
    requests/s, measured with py-spy), and (2) faust's sensor calls, which feed only the
    statistics pages that `build_app` turns off (4 %); passnum.core.health's middleware
    times every request for `/metrics`."""

    async def dispatch(self, request: Any) -> Any:
        method = self.methods[request.method.lower()]
        try:
            return await method(request, **(request.match_info or {}))
        except WebError as error:
            return await self.on_request_error(request, error)


def _page(api: TenantApi, handlers: dict[str, RequestHandler]) -> type[View]:
    """A view answering each method of `handlers`; faust passes the path's parameters as
    keywords, which the handlers read from the request instead."""

    def view_method(handler: RequestHandler) -> Any:
        async def answer(view: View, request: Any, **path_parameters: str) -> Any:
            return _send(view, await api.respond(request, handler))

        return answer

    methods = {method: view_method(handler) for method, handler in handlers.items()}
    return type(f"{api.processor.capitalize()}Page", (LeanView,), methods)


def _document_page(document: dict[str, Any]) -> type[View]:
    class OpenApi(View):
        async def get(self, request: Any) -> Any:
            return self.json(document)

    return OpenApi


def _send(view: View, answer: Answer) -> Any:
    # Error answers are RFC 9457 problem details (passnum/edge/problems.py), with their own type.
    content_type = PROBLEM_MEDIA_TYPE if is_problem(answer.body) else None
    return view.json(answer.body, status=answer.status, headers=answer.headers or None,
                     content_type=content_type)
