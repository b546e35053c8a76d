"""Onboarding from nothing (issue 12's acceptance): an empty ledger, real issuer and redeemer
workers, the real broker and PostgreSQL, and only the surfaces each person of the programme
uses:

1. an administrator issues the first operator token with `passnum token issue operator`;
2. the operator, over the operator HTTP API only, registers a collectivité, commits its
   envelope and issues its token, accredits a venue and issues the venue's token;
3. the collectivité orders a booklet on its API, the operator records the funds received
   (which activates it), the collectivité prints its order as PDF; poppler renders the PDF
   and zxing-cpp decodes one voucher's QR code;
4. the venue, at its counter page in headless Chromium, signs in with its token, checks the
   decoded code (valide), redeems it and signs out;
5. `passnum audit --json` finds the books SOUND, with no finding, and counts the one
   voucher redeemed for that collectivité.

Nothing is sent to the log or written to PostgreSQL by the test itself: the database is
only read, to wait until the redeemer has learned of the activation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import zxingcpp
from PIL import Image

from passnum.core.settings import Settings
from passnum.edge.operator_client import OperatorClient, Reply
from passnum.ledger.partners import collectivites, venues
from tests.integration.helpers import scalar, wait_for_rows

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"]
PHONE = {"width": 412, "height": 915}
FACE_VALUE_CENTS = 1000


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap installs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGUMENTS)
        yield launched
        launched.close()


def passnum(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The `passnum` command line as an administrator runs it, in its own process."""
    environment = {**os.environ, **settings.as_environment(), "PASSNUM_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "passnum.tools.cli", *arguments], env=environment,
                          capture_output=True, text=True, timeout=180)


def tenant_call(port: int, method: str, path: str, token: str, body: Any = None,
                key: str | None = None) -> tuple[int, str, bytes]:
    """A collectivité's request on its API: (status, content type, body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def expect(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body)
    return reply.body


def first_operator_token(settings: Settings) -> str:
    issued = passnum(settings, "token", "issue", "operator", "onboarding")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("pn_ope_") and len(token.splitlines()) == 1, issued.stdout
    return token


def onboard(operator: OperatorClient, partner: Any, venue: Any) -> dict[str, str]:
    """The operator's part, over its HTTP API only: the two tenants and their tokens."""
    registered = expect(operator.register_collectivite(
        partner.siren, partner.name, "onboard-register", partner.vouchers_per_booklet,
        FACE_VALUE_CENTS), 201)
    assert [e["type"] for e in registered["events"]] == ["collectivite_registered"]
    funded = expect(operator.fund_envelope(partner.siren, booklet_cents(partner),
                                           "onboard-envelope"), 201)
    assert funded["events"][0]["total_committed_cents"] == booklet_cents(partner)
    collectivite = expect(operator.call(
        "issuer", "POST", f"/v1/operator/collectivites/{partner.siren}/tokens", {},
        "onboard-collectivite-token"), 201)["token"]
    expect(operator.accredit_venue(venue.siret, venue.name, venue.iban, venue.address_code,
                                   ("Atelier",), "onboard-accredit"), 201)
    venue_token = expect(operator.call(
        "redeemer", "POST", f"/v1/operator/venues/{venue.siret}/tokens", {},
        "onboard-venue-token"), 201)["token"]
    return {"collectivite": collectivite, "venue": venue_token}


def booklet_cents(partner: Any) -> int:
    return partner.vouchers_per_booklet * FACE_VALUE_CENTS


def order_one_booklet(settings: Settings, token: str, venue: Any) -> str:
    """The collectivité's order (one booklet, valid around today, in the venue's
    department): its order id."""
    today = datetime.now(timezone.utc).date()
    status, _, body = tenant_call(settings.web_port_issuer, "POST", "/v1/orders", token, {
        "booklet_count": 1, "perimeter": [venue.address_code[:2]],
        "valid_from": (today - timedelta(days=1)).isoformat(),
        "valid_until": (today + timedelta(days=60)).isoformat()}, "onboard-order")
    assert status == 201, body
    return str(json.loads(body)["order_id"])


def print_order(settings: Settings, token: str, order_id: str) -> bytes:
    """The order as PDF. The issuer answers 409 booklet_not_ready for the second or so
    before the redeemer has recorded the booklet: a collectivité would ask again."""
    deadline = time.monotonic() + 60
    while True:
        status, content_type, body = tenant_call(settings.web_port_issuer, "GET",
                                                 f"/v1/orders/{order_id}/print", token)
        if status != 409 or b"booklet_not_ready" not in body:
            break
        assert time.monotonic() < deadline, "the booklet never became printable"
        time.sleep(0.2)
    assert (status, content_type) == (200, "application/pdf"), body[:300]
    return body


def printed_codes(pdf: bytes, directory: Path) -> tuple[list[str], str]:
    """Every QR code of the rendered pages (pdftoppm, zxing-cpp), and the document's text."""
    directory.mkdir()
    (directory / "order.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "150", "-png", "order.pdf", "page"], cwd=directory,
                   check=True, timeout=120)
    text = subprocess.run(["pdftotext", "-layout", "order.pdf", "-"], cwd=directory,
                          check=True, capture_output=True, text=True, timeout=60).stdout
    codes = [result.text for image in sorted(directory.glob("page-*.png"))
             for result in zxingcpp.read_barcodes(Image.open(image),
                                                  formats=zxingcpp.BarcodeFormat.QRCode)]
    return codes, " ".join(text.split())


def at_the_counter(browser: Any, base: str, token: str, code: str, venue: Any,
                   directory: Path) -> None:
    """The venue's part, in the browser: sign in, check, redeem, sign out."""
    context = browser.new_context(viewport=PHONE, locale="fr-FR")
    page = context.new_page()
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("#code-form")
    assert venue.name in page.inner_text(".venue")

    verdict = submit(page, code, "#check")
    page.screenshot(path=str(directory / "onboarding-checked.png"), full_page=True)
    assert "valide" in verdict and "non valide" not in verdict, verdict
    assert page.get_attribute("#result", "class").split() == ["result", "accepted"]
    verdict = submit(page, code, "#redeem")
    page.screenshot(path=str(directory / "onboarding-redeemed.png"), full_page=True)
    assert "Chèque encaissé" in verdict, verdict

    page.click("#sign-out")
    page.wait_for_selector("#sign-in")
    assert "Vous êtes déconnecté" in page.inner_text("main")
    page.goto(base + "/guichet/")
    assert page.locator("#code-form").count() == 0
    context.close()


def submit(page: Any, code: str, button: str) -> str:
    page.fill("#code", code)
    page.click(button)
    page.wait_for_selector("#result")
    return page.inner_text("#result")


def audit(settings: Settings) -> dict[str, Any]:
    result = passnum(settings, "audit", "--json", "--no-progress")
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr)
    return dict(json.loads(result.stdout))


def test_onboarding_from_nothing(ledger, start_worker, browser, tmp_path) -> None:
    # Both workers start at once (each start waits until its worker answers ready).
    with ThreadPoolExecutor(max_workers=2) as starting:
        list(starting.map(start_worker, ("issuer", "redeemer")))
    partner, venue = collectivites(1)[0], venues(1)[0]

    # 1-2. The administrator's first operator token; the operator onboards both tenants.
    operator = OperatorClient.for_settings(ledger, first_operator_token(ledger))
    tokens = onboard(operator, partner, venue)

    # 3. The collectivité orders; the operator records its funds; the order is printed.
    order_id = order_one_booklet(ledger, tokens["collectivite"], venue)
    received = expect(operator.record_funds_received(
        partner.siren, booklet_cents(partner), 0, "VIR-ONBOARD-1", "onboard-funds"), 201)
    assert [e["type"] for e in received["events"]].count("booklet_activated") == 1
    pdf = print_order(ledger, tokens["collectivite"], order_id)
    codes, text = printed_codes(pdf, tmp_path / "printed")
    assert len(codes) == partner.vouchers_per_booklet == len(set(codes))
    assert all(code in text for code in codes) and partner.name in text
    code = codes[0]

    # 4. The venue redeems the printed code at its counter page, once the redeemer has
    # learned of the activation (read, not written).
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", 1)
    at_the_counter(browser, f"http://127.0.0.1:{ledger.web_port_redeemer}", tokens["venue"],
                   code, venue, tmp_path)
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 1

    # 5. The auditor's judgement, from the log: sound, and the redemption is in the books.
    report = audit(ledger)
    assert report["sound"] is True and report["findings"] == [], report["findings"]
    books = report["collectivites"][partner.siren]
    assert (books["issued_vouchers"], books["redeemed_vouchers"], books["redeemed_cents"]) == (
        partner.vouchers_per_booklet, 1, FACE_VALUE_CENTS), books
    assert report["venues"][venue.siret]["cents"] == FACE_VALUE_CENTS, report["venues"]
