"""The venue's counter page, driven in headless Chromium (Debian's /usr/bin/chromium, through
playwright) against a real redeemer worker, issuer worker, broker and PostgreSQL.

The way a venue uses it: sign in with its token, check a code, redeem it, redeem it again
and read the refusal, a mistyped code, a forged code, a double click, cancel, the monthly
statement and its CSV, English, sign out; a suspended venue's attempt; a scanned QR code;
and what makes it safe at a public counter: a POST without its CSRF token is refused (403)
and changes nothing, the session cookie is HttpOnly and SameSite=Strict, and the token
never appears in a URL.

Screenshots are saved under the test's tmp dir; with WRITE_DOCS_SCREENSHOTS=1, the one of
the counter is also written to docs/counter-page.png for the README."""

from __future__ import annotations

import os
import subprocess
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest
from babel.dates import format_skeleton
from babel.numbers import format_currency

from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites, venues
from passnum.ledger.voucher_codes import VoucherNumber, make_code, with_recomputed_check
from passnum.tools.scenario import accreditations, booklet_codes
from schemas.messages import (
    ChangeProviderStatus,
    CloseSettlementMonth,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)
from services.redeemer.cli import wait_for_close
from tests.integration.helpers import scalar, wait_for_rows

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "counter-page.png"
PHONE = {"width": 412, "height": 915}
BOOKLETS = 2


def _fund_booklets(client: LedgerClient, siren: str, name: str) -> None:
    now = datetime.now(timezone.utc)
    today = now.date()
    commands = [
        RegisterCollectivite(request_id="b-register", occurred_at=now, siren=siren, name=name),
        FundEnvelope(request_id="b-envelope", occurred_at=now, siren=siren,
                     committed_cents=BOOKLETS * 10 * 1000),
        OrderBooklets(request_id="b-order", occurred_at=now, siren=siren,
                      booklet_count=BOOKLETS, valid_from=today - timedelta(days=10),
                      valid_until=today + timedelta(days=60)),
        RecordFundsReceived(request_id="b-paid", occurred_at=now, siren=siren,
                            face_value_cents=BOOKLETS * 10 * 1000, payment_reference="OP-1"),
    ]
    client.send(commands)
    outcomes = client.wait_for([c.request_id for c in commands], timeout_seconds=90)
    assert not [e for events in outcomes.values() for e in events if "rejected" in e.type]


@pytest.fixture
def counter(ledger, start_worker) -> Iterator[dict[str, Any]]:
    """A funded collectivité, an accredited venue and a suspended one, their tokens."""
    start_worker("issuer")
    start_worker("redeemer")
    partner = next(p for p in collectivites(8) if p.vouchers_per_booklet == 10)
    venue, suspended = venues(2)
    client = LedgerClient(ledger)
    _fund_booklets(client, partner.siren, partner.name)
    now = datetime.now(timezone.utc)
    setup = accreditations([venue, suspended], now, tag="b") + [
        ChangeProviderStatus(request_id="b-suspend", occurred_at=now, siret=suspended.siret,
                             status="suspended", reason="audit")]
    client.send(setup)
    client.wait_for([c.request_id for c in setup])
    wait_for_rows(ledger, "SELECT count(*) FROM redeemer_booklets WHERE activated", BOOKLETS)
    with psycopg.connect(ledger.database_url) as connection:
        tokens = {"venue": issue_token(connection, "venue", venue.siret),
                  "suspended": issue_token(connection, "venue", suspended.siret),
                  "collectivite": issue_token(connection, "collectivite", partner.siren)}
    key = ledger.voucher_code_key.encode()
    yield {"base": f"http://127.0.0.1:{ledger.web_port_redeemer}", "tokens": tokens,
           "codes": booklet_codes(key, partner, range(1, BOOKLETS + 1)), "venue": venue,
           "suspended": suspended, "partner": partner, "client": client}
    client.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap installs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGUMENTS)
        yield launched
        launched.close()


class Visits:
    """Every URL the browser requested, to prove the token never travels in one."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def watch(self, context: Any) -> Any:
        context.on("request", lambda request: self.urls.append(request.url))
        return context


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("#code-form")


def submit_code(page: Any, code: str, button: str) -> str:
    page.fill("#code", code)
    page.click(button)
    page.wait_for_selector("#result")
    return page.inner_text("#result")


def form_fields(page: Any) -> dict[str, str]:
    return {name: page.locator(f"#code-form input[name={name}]").get_attribute("value")
            for name in ("csrf", "key")}


def euros(cents: int) -> str:
    return format_currency(Decimal(cents).scaleb(-2), "EUR", locale="fr_FR")


def count_redemptions(ledger, voucher_id: str) -> int:
    return scalar(ledger, f"SELECT count(*) FROM redemptions WHERE voucher_id = '{voucher_id}'")


def test_a_venue_at_its_counter(counter, ledger, browser, tmp_path) -> None:
    base, tokens, codes = counter["base"], counter["tokens"], counter["codes"]
    visits = Visits()
    context = visits.watch(browser.new_context(viewport=PHONE, locale="fr-FR"))
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    shot = _screenshots(page, tmp_path)

    # `/` is the sign-in page now, in French, and a wrong token is refused in plain French.
    page.goto(base + "/")
    assert page.get_attribute("html", "lang") == "fr"
    assert "Connexion de votre structure" in page.inner_text("main")
    shot("sign-in")
    page.fill("#token", "pn_ven_not-a-token")
    page.click("#sign-in")
    assert "pas reconnu" in page.inner_text("#sign-in-error")
    assert "pn_ven_not-a-token" not in page.content(), "a token is never written back"
    page.fill("#token", tokens["collectivite"])
    page.click("#sign-in")
    assert "réservé aux structures" in page.inner_text("#sign-in-error")

    sign_in(page, base, tokens["venue"])
    assert counter["venue"].name in page.inner_text(".venue")
    _assert_session_cookie(context, tokens["venue"])
    # No camera scanning where the browser has no BarcodeDetector (Chromium on Linux): the
    # button stays hidden and typing does everything.
    assert page.evaluate("typeof BarcodeDetector") == "undefined"
    assert page.locator("#scan").is_hidden()

    code = codes[0]
    verdict = submit_code(page, code, "#check")
    assert "valide" in verdict and "non valide" not in verdict
    assert page.get_attribute("#result", "class").split() == ["result", "accepted"]
    shot("checked")
    verdict = submit_code(page, code, "#redeem")
    voucher_id = f"{counter['partner'].siren}-0000001-01"
    assert "Chèque encaissé" in verdict and voucher_id in verdict and euros(1000) in verdict
    assert scalar(ledger, "SELECT siret FROM redemptions") == counter["venue"].siret
    assert page.locator(f"#redemptions tr[data-voucher='{voucher_id}'] button").count() == 1
    if os.environ.get("WRITE_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    verdict = submit_code(page, code, "#redeem")
    assert "Encaissement refusé" in verdict and "déjà été encaissé" in verdict
    assert "Il a été encaissé le" in verdict
    shot("redeemed-twice")
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    verdict = submit_code(page, mistyped, "#check")
    assert "non valide" in verdict and "faute de frappe" in verdict
    forged = with_recomputed_check(make_code(b"not-the-key",
                                             VoucherNumber(counter["partner"].siren, 1, 3)))
    verdict = submit_code(page, forged, "#redeem")
    assert "Encaissement refusé" in verdict and "faux" in verdict
    assert scalar(ledger, "SELECT count(*) FROM redemptions") == 1

    _double_submit_is_one_redemption(page, ledger, codes[1], counter["partner"].siren)
    _forms_without_their_csrf_token_change_nothing(page, ledger, base, codes[2])

    # Cancel the first redemption (the same day): the voucher is free again.
    page.click(f"#redemptions tr[data-voucher='{voucher_id}'] button")
    page.wait_for_selector("#result")
    assert "Encaissement annulé" in page.inner_text("#result")
    assert count_redemptions(ledger, voucher_id) == 0
    shot("cancelled")

    _english(page)
    _statement(page, ledger, counter, tmp_path)

    page.click("#sign-out")
    page.wait_for_selector("#sign-in")
    assert "Vous êtes déconnecté" in page.inner_text("main")
    assert scalar(ledger, "SELECT count(*) FROM counter_sessions") == 0
    page.goto(base + "/guichet/")
    assert page.locator("#code-form").count() == 0
    shot("signed-out")

    _suspended_venue(browser, visits, counter, ledger, tmp_path)
    _scanned_code(browser, visits, counter)
    assert visits.urls and not [url for url in visits.urls
                                for token in tokens.values() if token in url]
    context.close()


def _screenshots(page: Any, directory: Path) -> Any:
    def shot(name: str) -> None:
        page.screenshot(path=str(directory / f"counter-{name}.png"), full_page=True)

    return shot


def _assert_session_cookie(context: Any, token: str) -> None:
    cookies = {cookie["name"]: cookie for cookie in context.cookies()}
    session = cookies["passnum_guichet"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert session["path"] == "/" and session["expires"] > datetime.now().timestamp()
    assert token not in session["value"] and len(session["value"]) >= 40


def _double_submit_is_one_redemption(page: Any, ledger, code: str, siren: str) -> None:
    """The same form sent twice (a double click, a reload) is one request: both answers say
    redeemed, and the ledger holds one redemption."""
    fields = {**form_fields(page), "code": code}
    answers = [page.request.post(page.url.split("/guichet/")[0] + "/guichet/encaisser",
                                 form=fields) for _ in range(2)]
    assert [answer.status for answer in answers] == [200, 200]
    assert all("Chèque encaissé" in answer.text() for answer in answers)
    assert count_redemptions(ledger, f"{siren}-0000001-02") == 1


def _forms_without_their_csrf_token_change_nothing(page: Any, ledger, base: str,
                                                   code: str) -> None:
    before = (scalar(ledger, "SELECT count(*) FROM redemptions"),
              scalar(ledger, "SELECT count(*) FROM request_outcomes"))
    fields = form_fields(page)
    for form in ({"key": fields["key"], "code": code},
                 {"key": fields["key"], "code": code, "csrf": "forged" + fields["csrf"][6:]}):
        answer = page.request.post(base + "/guichet/encaisser", form=form)
        assert answer.status == 403, answer.status
        assert "Demande refusée" in answer.text()
    answer = page.request.post(base + "/guichet/deconnexion", form={})
    assert answer.status == 403
    answer = page.request.post(base + "/guichet/connexion", form={"token": "x"})
    assert answer.status == 403
    assert scalar(ledger, "SELECT count(*) FROM counter_sessions") == 1
    after = (scalar(ledger, "SELECT count(*) FROM redemptions"),
             scalar(ledger, "SELECT count(*) FROM request_outcomes"))
    assert after == before, "a refused form submitted nothing"


def _english(page: Any) -> None:
    page.click("a.language")
    page.wait_for_selector("html[lang=en]")
    assert page.inner_text("#check") == "Check"
    verdict = submit_code(page, "AAAA", "#check")
    assert "not valid" in verdict and "This is not a voucher code" in verdict
    page.click("a.language")
    page.wait_for_selector("html[lang=fr]")


def _statement(page: Any, ledger, counter: dict[str, Any], directory: Path) -> None:
    """Close this month (as if at the end of it): the statement is listed and downloads."""
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    close = CloseSettlementMonth(request_id="b-close", month=month,
                                 occurred_at=datetime.now(timezone.utc) + timedelta(days=40))
    counter["client"].send([close])
    assert wait_for_close(counter["client"], "b-close")[-1].type == "settlement_month_closed"
    count, cents = (scalar(ledger, "SELECT voucher_count FROM settlement_statements"),
                    scalar(ledger, "SELECT face_value_cents FROM settlement_statements"))
    page.goto(page.url.split("/guichet/")[0] + "/guichet/")
    listed = page.inner_text("#statements")
    assert f"{count} chèque" in listed and euros(cents) in listed and "partie 1" in listed
    # A redemption on a statement can no longer be cancelled: no button.
    assert page.locator("#redemptions button").count() == 0
    with page.expect_download() as download:
        page.click("#statements a.statement")
    path = directory / download.value.suggested_filename
    download.value.save_as(path)
    header, row = path.read_text(encoding="utf-8").splitlines()
    assert header.startswith("month,siret,venue_name")
    assert row.startswith(f"{month},{counter['venue'].siret},") and f",{cents}," in row
    # The vouchers it pays: those the venue redeemed and did not cancel.
    link = page.locator("#statements a.statement-vouchers").get_attribute("href")
    lines = page.request.get(counter["base"] + link).text().splitlines()
    with psycopg.connect(ledger.database_url) as connection:
        redeemed = [row[0] for row in connection.execute(
            "SELECT voucher_id FROM redemptions ORDER BY redeemed_at, voucher_id")]
    assert [line.split(",")[2] for line in lines[1:]] == redeemed and len(redeemed) == count
    # The same as a PDF, read back with poppler's pdftotext.
    link = page.locator("#statements a.statement-pdf").get_attribute("href")
    answer = page.request.get(counter["base"] + link)
    assert answer.headers["content-type"] == "application/pdf"
    (directory / "statement.pdf").write_bytes(answer.body())
    printed = subprocess.run(["pdftotext", "-layout", str(directory / "statement.pdf"), "-"],
                             capture_output=True, text=True, check=True).stdout
    printed = " ".join(printed.split())  # lines wrapped by the layout, joined back
    label = format_skeleton("yMMMM", date(*map(int, month.split("-")), 1), locale="fr_FR")
    assert f"Relevé de paiement pass numérique : {label}, partie 1" in printed
    assert counter["venue"].siret in printed and all(voucher in printed for voucher in redeemed)
    total = " ".join(euros(cents).split())  # no-break spaces come back as plain ones
    assert f"Total : {count} chèque" in printed and total in printed


def _suspended_venue(browser: Any, visits: Visits, counter: dict[str, Any], ledger,
                     directory: Path) -> None:
    context = visits.watch(browser.new_context(viewport=PHONE))
    page = context.new_page()
    sign_in(page, counter["base"], counter["tokens"]["suspended"])
    assert "suspendue" in page.inner_text("main")
    verdict = submit_code(page, counter["codes"][4], "#redeem")
    assert "Encaissement refusé" in verdict and "pas habilitée" in verdict
    page.screenshot(path=str(directory / "counter-suspended.png"), full_page=True)
    # Another venue's statement is not there for this one, by either link.
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    for link in (f"/guichet/releves/{month}/1", f"/guichet/releves/{month}/1/cheques"):
        assert page.request.get(counter["base"] + link).status == 404
    # Revoking the token ends its sessions at once.
    with psycopg.connect(ledger.database_url) as connection:
        connection.execute("UPDATE api_tokens SET revoked_at = now() WHERE tenant_id = %s",
                           (counter["suspended"].siret,))
    page.goto(counter["base"] + "/guichet/")
    assert "Votre session a pris fin" in page.inner_text("main")
    assert page.locator("#code-form").count() == 0
    assert scalar(ledger, "SELECT count(*) FROM redemptions WHERE siret = "
                          f"'{counter['suspended'].siret}'") == 0
    context.close()


# A stand-in for the camera and the browser's QR decoder, which headless Chromium on Linux
# lacks: what it tests is the page's own wiring (the scan button appears, a detected code
# fills the field and is checked at once).
FAKE_CAMERA = """
window.BarcodeDetector = class {
  constructor(options) { this.formats = options.formats; }
  async detect(source) { return [{ rawValue: "PASSNUM " + window.__code, format: "qr_code" }]; }
};
navigator.mediaDevices.getUserMedia = async () => {
  const canvas = document.createElement("canvas");
  canvas.getContext("2d").fillRect(0, 0, 10, 10);
  return canvas.captureStream(5);
};
"""


def _scanned_code(browser: Any, visits: Visits, counter: dict[str, Any]) -> None:
    context = visits.watch(browser.new_context(viewport=PHONE))
    code = counter["codes"][5]
    context.add_init_script(f"window.__code = {code!r};" + FAKE_CAMERA)
    page = context.new_page()
    sign_in(page, counter["base"], counter["tokens"]["venue"])
    page.click("#scan")
    page.wait_for_selector("#result")
    assert page.input_value("#code") == code
    assert "valide" in page.inner_text("#result")
    assert "non valide" not in page.inner_text("#result")
    context.close()

