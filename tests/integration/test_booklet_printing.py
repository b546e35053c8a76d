"""Printed booklets from the real pipeline (issuer and redeemer workers, the broker,
PostgreSQL): a collectivité prints its order over HTTP; poppler renders the PDF to images
(pdftoppm -r 150), zxing-cpp decodes every QR code, and each decodes to a code that the
redeemer's check answers valid for an accredited venue and that the page's text
(pdftotext) carries. Another collectivité cannot print it; a blocked booklet is never
printed; `passnum booklets print` writes a file, or refuses in one line with exit code 1."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import zxingcpp
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from passnum.core.settings import Settings
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites, venues
from passnum.tools.cli import app as cli_app
from passnum.tools.scenario import accreditations
from schemas.messages import (
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)
from tests.integration.helpers import wait_for_rows

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_SECONDS = 60
BOOKLETS = 2


def _http(port: int, method: str, path: str, token: str | None, body: Any = None,
          key: str | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def _reason(body: bytes) -> str:
    """The reason code of an error answer (RFC 9457 problem details carry it as `code`)."""
    document = json.loads(body)
    return str(document["code"] if "code" in document else document["error"]["reason"])


def _ledger(settings: Settings) -> dict[str, Any]:
    """Collectivités A (an order of BOOKLETS booklets framed around today, in the venue's
    department, paid for) and B (registered, nothing ordered); one accredited venue."""
    partner, other = collectivites(2)
    venue = venues(1)[0]
    now = datetime.now(timezone.utc)
    window = {"valid_from": now.date() - timedelta(days=10),
              "valid_until": now.date() + timedelta(days=60)}
    booklet_value = partner.vouchers_per_booklet * 1000
    commands = [
        RegisterCollectivite(request_id="print-register-a", occurred_at=now,
                             siren=partner.siren, name=partner.name,
                             default_vouchers_per_booklet=partner.vouchers_per_booklet),
        RegisterCollectivite(request_id="print-register-b", occurred_at=now, siren=other.siren,
                             name=other.name),
        FundEnvelope(request_id="print-envelope", occurred_at=now, siren=partner.siren,
                     committed_cents=BOOKLETS * booklet_value),
        OrderBooklets(request_id="print-order", occurred_at=now, siren=partner.siren,
                      booklet_count=BOOKLETS, perimeter=(venue.address_code[:2],), **window),
        RecordFundsReceived(request_id="print-paid", occurred_at=now, siren=partner.siren,
                            face_value_cents=BOOKLETS * booklet_value,
                            payment_reference="OP-print"),
        *accreditations([venue], now, tag="print"),
    ]
    client = LedgerClient(settings)
    try:
        client.send(commands)
        outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    finally:
        client.close()
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]
    wait_for_rows(settings, "SELECT count(*) FROM redeemer_booklets WHERE activated", BOOKLETS)
    with psycopg.connect(settings.database_url) as connection:
        tokens = {"a": issue_token(connection, "collectivite", partner.siren),
                  "b": issue_token(connection, "collectivite", other.siren),
                  "venue": issue_token(connection, "venue", venue.siret)}
    return {"partner": partner, "tokens": tokens, "window": window,
            "order_id": f"{partner.siren}-order-00001"}


MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
          "septembre", "octobre", "novembre", "décembre")


def _french_date(day: date) -> str:
    """Written out here, independently of babel, which the code under test uses."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def _pages(pdf: bytes, directory: Path) -> list[tuple[list[str], str]]:
    """(QR codes decoded from the page's image, the page's text) for each page."""
    directory.mkdir()
    (directory / "document.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "150", "-png", "document.pdf", "page"], cwd=directory,
                   check=True, timeout=120)
    text = subprocess.run(["pdftotext", "-layout", "document.pdf", "-"], cwd=directory,
                          check=True, capture_output=True, text=True, timeout=60).stdout
    texts = text.split("\f")
    images = sorted(directory.glob("page-*.png"))
    assert len(images) == len(texts) - 1  # pdftotext ends every page with a form feed
    return [([result.text for result in zxingcpp.read_barcodes(
        Image.open(image), formats=zxingcpp.BarcodeFormat.QRCode)], page_text)
        for image, page_text in zip(images, texts)]


def _cli(settings: Settings, *arguments: str) -> Result:
    """`passnum booklets print ...` through the real `passnum` application, in this process
    (a new interpreter per call costs seconds on a busy machine)."""
    return CliRunner().invoke(cli_app, ["booklets", "print", *arguments],
                              env=settings.as_environment())


def test_printed_codes_scan_to_vouchers_the_redeemer_accepts(ledger, start_worker,
                                                             tmp_path) -> None:
    start_worker("issuer")
    start_worker("redeemer")
    world = _ledger(ledger)
    tokens, partner, order_id = world["tokens"], world["partner"], world["order_id"]
    issuer, redeemer = ledger.web_port_issuer, ledger.web_port_redeemer

    status, content_type, pdf = _http(issuer, "GET", f"/v1/orders/{order_id}/print",
                                      tokens["a"])
    assert (status, content_type) == (200, "application/pdf"), pdf[:300]
    pages = _pages(pdf, tmp_path / "order")
    assert len(pages) == 2 * BOOKLETS  # a cover and a sheet of vouchers per booklet
    scanned: list[str] = []
    for number, (codes, text) in enumerate(pages):
        flat_text = " ".join(text.split())
        booklet_id = f"{partner.siren}-{number // 2 + 1:07d}"
        assert booklet_id in flat_text
        if number % 2 == 0:  # the cover: no code on it
            assert codes == [] and partner.name in flat_text
            continue
        assert len(codes) == partner.vouchers_per_booklet
        for code in codes:
            assert code in flat_text  # the printed code is the scanned one
        assert flat_text.count("10,00 €") == partner.vouchers_per_booklet
        assert f"au {_french_date(world['window']['valid_until'])}" in flat_text
        scanned.extend(codes)
    assert len(set(scanned)) == BOOKLETS * partner.vouchers_per_booklet
    for code in scanned:
        status, _, body = _http(redeemer, "POST", "/v1/checks", tokens["venue"],
                                {"code": code})
        assert (status, json.loads(body)["valid"]) == (200, True), (code, body)

    _tenancy_and_blocking(ledger, world)
    _command_line(ledger, world, tmp_path)


def _tenancy_and_blocking(ledger: Settings, world: dict[str, Any]) -> None:
    tokens, partner, order_id = world["tokens"], world["partner"], world["order_id"]
    port = ledger.web_port_issuer
    first, second = f"{partner.siren}-0000001", f"{partner.siren}-0000002"
    for path in (f"/v1/booklets/{first}/print", f"/v1/orders/{order_id}/print"):
        status, content_type, body = _http(port, "GET", path, tokens["b"])
        assert (status, content_type != "application/pdf") == (404, True), path
        assert _reason(body) == f"unknown_{path.split('/')[2][:-1]}"
        assert partner.name.encode() not in body
        assert _http(port, "GET", path, None)[0] == 401
        assert _http(port, "GET", path, tokens["venue"])[0] == 403
    # Another's order reads exactly like an order that does not exist.
    for path, token in ((f"/v1/orders/{order_id}/print", tokens["b"]),
                        (f"/v1/orders/{order_id[:-1]}9/print", tokens["a"])):
        status, _, body = _http(port, "GET", path, token)
        assert (status, _reason(body)) == (404, "unknown_order")

    status, _, body = _http(port, "POST", f"/v1/booklets/{second}/block", tokens["a"],
                            {"reason": "stolen"}, key="print-block")
    assert status == 200, body
    status, _, body = _http(port, "GET", f"/v1/booklets/{second}/print", tokens["a"])
    assert (status, _reason(body)) == (409, "booklet_blocked")
    status, _, pdf = _http(port, "GET", f"/v1/orders/{order_id}/print", tokens["a"])
    assert status == 200
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                          check=True, timeout=60).stdout.decode()
    assert first in text and second not in text


def _command_line(ledger: Settings, world: dict[str, Any], directory: Path) -> None:
    partner = world["partner"]
    output = directory / "booklet.pdf"
    finished = _cli(ledger, f"{partner.siren}-0000001", "--output", str(output))
    assert finished.exit_code == 0, finished.output
    assert output.read_bytes().startswith(b"%PDF-")
    assert len(_pages(output.read_bytes(), directory / "cli")) == 2
    for unknown in (f"{partner.siren}-0000099", f"{partner.siren}-order-00042",
                    "not-a-booklet"):
        missing = directory / "missing.pdf"
        finished = _cli(ledger, unknown, "--output", str(missing))
        assert finished.exit_code == 1, finished.output
        assert len(finished.stderr.strip().splitlines()) == 1, finished.stderr
        assert finished.stderr.startswith("booklets print: unknown_")
        assert not missing.exists()
