"""The venue's counter page: server-rendered HTML served by the redeemer worker, next to the
venues' JSON API (docs/counter.md).

A venue signs in with its token, then types or scans a voucher code, checks it, redeems it,
cancels a redemption of the same day, and reads this month's redemptions and its monthly
statements. Routes: `routes.py`; sessions and CSRF: `sessions.py`; what a click shows:
`outcomes.py` and `pages.py`; words, amounts and dates: `texts.py` (French first).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import View

from services.redeemer.api import RedeemerApi
from services.redeemer.counter.routes import Counter, Handler


def attach_counter(app: faust.App, api: RedeemerApi) -> Counter:
    """Serve the counter's routes on the worker's web server. Call it before the worker
    starts: routes added first win, so `/` is the counter's rather than faust's status."""
    counter = Counter(api)
    for path, handlers in counter.routes().items():
        app.page(path, name=f"counter:{path}")(_view(counter, handlers))
    return counter


def _view(counter: Counter, handlers: dict[str, Handler]) -> type[View]:
    def view_method(handler: Handler) -> Any:
        async def answer(view: View, request: Any, **path_parameters: str) -> Any:
            return await counter.answer(handler, request)

        return answer

    methods = {method: view_method(handler) for method, handler in handlers.items()}
    return type("CounterPage", (View,), methods)
