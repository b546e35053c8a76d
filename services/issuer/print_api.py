"""Printed booklets at the edge: which booklets a document holds, loaded from PostgreSQL, and
the collectivités' HTTP routes that answer them as PDF (services/issuer/printing.py renders).

    GET /v1/booklets/{booklet_id}/print   one booklet
    GET /v1/orders/{order_id}/print       every booklet of an order that is not blocked

Same token and tenancy as the rest of the issuer API (`IssuerApi.respond`): the SIREN comes
from the token and every query is scoped by it, so another collectivité's booklet or order
answers 404 exactly like one that does not exist. Voucher codes leave the server only in
the document the collectivité asked for, and are never logged.

Where the printed facts come from:
- the booklet, its order, size and face value: the issuer's `issuer_booklets`;
- the collectivité's name, and an order's booklet range: the issuer's envelope;
- the validity dates and the perimeter: `redeemer_booklets`, the redeemer's record of the
  issuer's `booklet_issued` facts, i.e. exactly what the redeemer checks at the counter. A
  booklet the redeemer has not recorded yet (a second or so after the order) is refused
  with `booklet_not_ready` rather than printed with dates nobody enforces.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import faust
import psycopg
from faust.web import View

from passnum.core.settings import Settings
from passnum.edge.http import Tenant
from passnum.edge.openapi import ApiDescription
from passnum.edge.problems import PROBLEM_MEDIA_TYPE
from passnum.edge.web_api import Answer, ApiError
from passnum.edge.web_views import _send as send_answer
from services.issuer.api import IssuerApi
from services.issuer.printing import PrintedBooklet, printed_booklet, render_booklets

BOOKLET_ID = re.compile(r"^([0-9]{9})-([0-9]{7})$")
ORDER_ID = re.compile(r"^([0-9]{9})-order-[0-9]{5}$")
PDF_MEDIA_TYPE = "application/pdf"
BOOKLET_PRINT_PATH = "/v1/booklets/{booklet_id}/print"
ORDER_PRINT_PATH = "/v1/orders/{order_id}/print"

# The range of an order's booklets, from the envelope that issued them (orders are issued
# as consecutive sequence numbers): the booklets are then read through the (siren, sequence)
# index, never by scanning every booklet of the collectivité for an order id.
ORDER_RANGE_SQL = (
    "SELECT (o->>'first_sequence')::int, (o->>'booklet_count')::int "
    "FROM issuer_envelopes e, jsonb_array_elements(e.state->'orders') o "
    "WHERE e.siren = %s AND o->>'order_id' = %s")
BOOKLETS_SQL = (
    "SELECT b.booklet_id, b.sequence, b.order_id, b.voucher_count, b.face_value_cents, "
    "b.status, coalesce(e.state->>'name', ''), r.perimeter, r.valid_from, r.valid_until "
    "FROM issuer_booklets b "
    "LEFT JOIN issuer_envelopes e ON e.siren = b.siren "
    "LEFT JOIN redeemer_booklets r ON r.booklet_id = b.booklet_id "
    "WHERE b.siren = %s AND b.sequence BETWEEN %s AND %s ORDER BY b.sequence")


class PrintRefused(Exception):
    """Why a document cannot be printed: a reason code, its HTTP status, and a sentence."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.detail = status, reason, detail


@dataclass(frozen=True)
class Selection:
    """What a document holds: one booklet, or the booklets of one order (of one SIREN)."""

    siren: str
    booklet_id: str | None = None
    order_id: str | None = None

    @property
    def label(self) -> str:
        return self.booklet_id or self.order_id or ""


def selection_of(identifier: str, siren: str | None = None, kind: str | None = None
                 ) -> Selection:
    """A booklet id or an order id (or only the `kind` given), read; with `siren`, only
    that collectivité's: an id of another one names nothing it may print, and reads as
    unknown, exactly like an id that names nothing."""
    for pattern, pattern_kind in ((BOOKLET_ID, "booklet"), (ORDER_ID, "order")):
        match = pattern.fullmatch(identifier)
        if match is None or kind not in (None, pattern_kind):
            continue
        if siren not in (None, match.group(1)):
            break
        return Selection(match.group(1), **{f"{pattern_kind}_id": identifier})
    raise PrintRefused(404, f"unknown_{kind or 'booklet'}",
                       f"no {kind or 'booklet or order'} {identifier}")


# ------------------------------------------------------------------ decisions (pure)


def booklet_range(selection: Selection, order_range: tuple[int, int] | None
                  ) -> tuple[int, int]:
    """(first, last) sequence of the selection; `order_range` is the order's (first, count)
    from its envelope, or None when the collectivité has no such order."""
    if selection.booklet_id is not None:
        sequence = int(selection.booklet_id.rsplit("-", 1)[1])
        return sequence, sequence
    if order_range is None:
        raise PrintRefused(404, "unknown_order", f"no order {selection.order_id}")
    first, count = order_range
    return first, first + count - 1


def printable(selection: Selection, rows: Sequence[tuple], code_key: bytes,
              booklets_max: int) -> list[PrintedBooklet]:
    """The booklets to print from the loaded rows (BOOKLETS_SQL), or the refusal. A blocked
    booklet is never printed: alone it is refused, in an order it is left out."""
    if not rows:
        raise PrintRefused(404, "unknown_booklet", f"no booklet {selection.label}")
    if selection.booklet_id is not None and rows[0][5] == "blocked":
        raise PrintRefused(409, "booklet_blocked", f"{selection.booklet_id} is blocked: its "
                           "vouchers can no longer be redeemed")
    kept = [row for row in rows if row[5] != "blocked"]
    if not kept:
        raise PrintRefused(409, "booklet_blocked", f"every booklet of {selection.label} "
                           "is blocked")
    if len(kept) > booklets_max:
        raise PrintRefused(422, "order_too_large", f"{len(kept)} booklets; one document "
                           f"holds at most {booklets_max}: print them by booklet")
    waiting = [row[0] for row in kept if row[7] is None]
    if waiting:
        raise PrintRefused(409, "booklet_not_ready", f"{waiting[0]} is not recorded by the "
                           "redeemer yet: retry in a few seconds")
    return [printed_booklet(
        code_key, siren=selection.siren, sequence=sequence, order_id=order_id,
        collectivite_name=name, voucher_count=voucher_count, face_value_cents=face_value,
        valid_from=valid_from, valid_until=valid_until, perimeter=perimeter)
        for (_, sequence, order_id, voucher_count, face_value, _, name, perimeter,
             valid_from, valid_until) in kept]


# ------------------------------------------------------------------ loading (I/O)


def load_printable(connection: psycopg.Connection, selection: Selection, code_key: bytes,
                   booklets_max: int) -> list[PrintedBooklet]:
    """The command line's way in (a synchronous connection)."""
    order_range = None
    if selection.order_id is not None:
        order_range = connection.execute(ORDER_RANGE_SQL,
                                         (selection.siren, selection.order_id)).fetchone()
    first, last = booklet_range(selection, order_range)
    rows = connection.execute(BOOKLETS_SQL, (selection.siren, first, last)).fetchall()
    return printable(selection, rows, code_key, booklets_max)


async def load_printable_async(connection: psycopg.AsyncConnection, selection: Selection,
                               code_key: bytes, booklets_max: int) -> list[PrintedBooklet]:
    """The HTTP route's way in: the same SQL and decisions on the worker's event loop."""
    order_range = None
    async with connection.cursor() as cursor:
        if selection.order_id is not None:
            await cursor.execute(ORDER_RANGE_SQL, (selection.siren, selection.order_id))
            order_range = await cursor.fetchone()
        first, last = booklet_range(selection, order_range)
        await cursor.execute(BOOKLETS_SQL, (selection.siren, first, last))
        rows = await cursor.fetchall()
    return printable(selection, rows, code_key, booklets_max)


def file_name(selection: Selection) -> str:
    return f"pass-numerique-{selection.label}.pdf"


# ------------------------------------------------------------------ OpenAPI

# How each status of a print route reads in the OpenAPI document.
PRINT_STATUS_TEXT = {
    404: "No such booklet or order among the collectivité's own (unknown_booklet, "
         "unknown_order): another tenant's looks the same as one that does not exist",
    409: "booklet_blocked (never printed), or booklet_not_ready (the redeemer has not "
         "recorded the booklet yet: retry in a few seconds)",
    422: "order_too_large: more booklets than one document holds; print them by booklet",
}


def print_operations(description: ApiDescription) -> dict[str, dict[str, Any]]:
    """The OpenAPI path items of the print routes. They answer a PDF, not a JSON model, so
    they are not in the route table; their errors are the API's own (`description`)."""
    error = {PROBLEM_MEDIA_TYPE: {"schema": {
        "$ref": f"#/components/schemas/{description.error_model.__name__}"}}}
    responses: dict[str, Any] = {"200": {
        "description": "The PDF: for each booklet a cover, then a sheet of its vouchers",
        "content": {PDF_MEDIA_TYPE: {"schema": {"type": "string",
                                                "contentMediaType": PDF_MEDIA_TYPE}}}}}
    for status in (401, 403, 404, 409, 422, 503):
        text = PRINT_STATUS_TEXT.get(status) or description.status_text[status]
        responses[str(status)] = {"description": text, "content": error}
    order_parameter = {"name": "order_id", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": ORDER_ID.pattern}}

    def operation(operation_id: str, summary: str, parameter: dict[str, Any]
                  ) -> dict[str, Any]:
        return {"get": {"operationId": operation_id, "summary": summary,
                        "security": [{"bearer": []}], "parameters": [parameter],
                        "responses": responses}}

    return {
        BOOKLET_PRINT_PATH: operation("printBooklet", "One of my booklets as a PDF to print",
                                      description.parameters["booklet_id"]),
        ORDER_PRINT_PATH: operation("printOrder", "The booklets of one of my orders (those "
                                    "not blocked) as a PDF to print", order_parameter),
    }


# ------------------------------------------------------------------ HTTP


async def print_answer(api: IssuerApi, settings: Settings, identifier: str, kind: str,
                       tenant: Tenant) -> tuple[Answer, bytes]:
    """The PDF of the tenant's booklet or order, or the refusal as an answer."""
    try:
        selection = selection_of(identifier, tenant.identifier, kind)
        async with api.pool.connection() as connection:
            booklets = await load_printable_async(connection, selection, api.code_key,
                                                  settings.print_booklets_max)
    except PrintRefused as refusal:
        raise ApiError(refusal.status, refusal.reason, refusal.detail) from None
    # Rendering is CPU work of up to seconds: off the event loop that runs the worker.
    pdf = await asyncio.to_thread(render_booklets, booklets,
                                  Path(settings.print_font_directory))
    headers = {"Content-Disposition": f'inline; filename="{file_name(selection)}"',
               "Cache-Control": "no-store"}  # voucher codes: never kept by a proxy
    return Answer(200, {}, headers), pdf


def mount_print_routes(app: faust.App, api: IssuerApi, settings: Settings) -> None:
    """Serve the two print routes on the issuer worker, behind `api`'s authentication."""

    def page(parameter: str, kind: str) -> type[View]:
        async def get(view: View, request: Any, **path_parameters: str) -> Any:
            rendered: list[bytes] = []

            async def handler(request: Any, tenant: Tenant) -> Answer:
                answer, pdf = await print_answer(api, settings, request.match_info[parameter],
                                                 kind, tenant)
                rendered.append(pdf)
                return answer

            answer = await api.respond(request, handler)
            if answer.status == 200 and rendered:
                return view.bytes(rendered[0], content_type=PDF_MEDIA_TYPE,
                                  headers=answer.headers)
            # A refusal reads exactly like every other answer of the API (same body, same
            # media type): the generated views' own way of sending it.
            return send_answer(view, answer)

        return type("PrintPage", (View,), {"get": get})

    app.page(BOOKLET_PRINT_PATH, name="issuer:print-booklet")(page("booklet_id", "booklet"))
    app.page(ORDER_PRINT_PATH, name="issuer:print-order")(page("order_id", "order"))

