"""The venue's counter page: server-rendered HTML served by the redeemer's API process, next
to the venues' JSON API (docs/counter.md).

A venue signs in with its token, then types or scans a voucher code, checks it, redeems it,
cancels a redemption of the same day, and reads this month's redemptions and its monthly
statements. Routes: `routes.py`; sessions and CSRF: `sessions.py`; what a click shows:
`outcomes.py` and `pages.py`; words, amounts and dates: `texts.py` (French first).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.redeemer.api import RedeemerApi
from services.redeemer.counter.routes import Counter, Handler


def attach_counter(app: web.Application, api: RedeemerApi) -> Counter:
    """Serve the counter's routes on the API process's aiohttp application."""
    counter = Counter(api)
    for path, handlers in counter.routes().items():
        for method, handler in handlers.items():
            app.router.add_route(method.upper(), path, _view(counter, handler))
    return counter


def _view(counter: Counter, handler: Handler) -> Any:
    async def answer(request: web.Request) -> web.StreamResponse:
        return await counter.answer(handler, request)

    return answer
