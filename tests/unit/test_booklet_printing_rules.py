"""Printed booklets, the pure parts: which booklets a document may hold and why not, the
French wording, and a rendered PDF read back (pdftotext, zxing-cpp) without any service.
The end-to-end proof through the workers is tests/integration/test_booklet_printing.py."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from passnum.core.settings import Settings
from passnum.ledger.voucher_codes import parse_code
from services.issuer.print_api import (
    PrintRefused,
    Selection,
    booklet_range,
    printable,
    selection_of,
)
from services.issuer.printing import (
    FontMissing,
    euros,
    perimeter_text,
    printed_booklet,
    render_booklets,
)

SIREN, OTHER_SIREN = "123456782", "732829320"
KEY = b"unit-test-key"
FONTS = Path(Settings().print_font_directory)


def _row(sequence: int, status: str = "issued", *, recorded: bool = True) -> tuple:
    """A row as BOOKLETS_SQL returns it."""
    framing = ((), date(2026, 3, 2), date(2026, 12, 31)) if recorded else (None, None, None)
    return (f"{SIREN}-{sequence:07d}", sequence, f"{SIREN}-order-00001", 5, 1000, status,
            "Ville de Lille", *framing)


def _reason(call) -> str:
    with pytest.raises(PrintRefused) as refused:
        call()
    return refused.value.reason


def test_ids_are_read_and_another_collectivites_read_as_unknown() -> None:
    assert selection_of(f"{SIREN}-0000012") == Selection(SIREN, booklet_id=f"{SIREN}-0000012")
    assert selection_of(f"{SIREN}-order-00003", SIREN) == Selection(
        SIREN, order_id=f"{SIREN}-order-00003")
    assert _reason(lambda: selection_of(f"{SIREN}-0000012", OTHER_SIREN)) == "unknown_booklet"
    assert _reason(lambda: selection_of(f"{SIREN}-order-00003", OTHER_SIREN, "order")) == (
        "unknown_order")
    # An order id on the booklet route names no booklet, and garbage names nothing.
    assert _reason(lambda: selection_of(f"{SIREN}-order-00003", SIREN, "booklet")) == (
        "unknown_booklet")
    assert _reason(lambda: selection_of("../../etc/passwd")) == "unknown_booklet"


def test_an_orders_booklets_are_its_range() -> None:
    order = Selection(SIREN, order_id=f"{SIREN}-order-00002")
    assert booklet_range(order, (11, 5)) == (11, 15)
    assert booklet_range(Selection(SIREN, booklet_id=f"{SIREN}-0000007"), None) == (7, 7)
    assert _reason(lambda: booklet_range(order, None)) == "unknown_order"


def test_what_is_printed_and_what_is_refused() -> None:
    booklet = Selection(SIREN, booklet_id=f"{SIREN}-0000002")
    order = Selection(SIREN, order_id=f"{SIREN}-order-00001")
    printed = printable(order, [_row(1), _row(2, "blocked"), _row(3, "handed_out")], KEY, 10)
    assert [b.booklet_id for b in printed] == [f"{SIREN}-0000001", f"{SIREN}-0000003"]
    assert _reason(lambda: printable(booklet, [_row(2, "blocked")], KEY, 10)) == (
        "booklet_blocked")
    assert _reason(lambda: printable(order, [_row(1, "blocked")], KEY, 10)) == (
        "booklet_blocked")
    assert _reason(lambda: printable(booklet, [], KEY, 10)) == "unknown_booklet"
    assert _reason(lambda: printable(booklet, [_row(2, recorded=False)], KEY, 10)) == (
        "booklet_not_ready")
    assert _reason(lambda: printable(order, [_row(n) for n in range(1, 4)], KEY, 2)) == (
        "order_too_large")


def test_codes_are_the_vouchers_own() -> None:
    booklet = printable(Selection(SIREN, booklet_id=f"{SIREN}-0000002"), [_row(2)], KEY, 1)[0]
    numbers = [parse_code(KEY, voucher.code).number for voucher in booklet.vouchers]
    assert [(n.booklet_id, n.position) for n in numbers] == [
        (f"{SIREN}-0000002", position) for position in range(1, 6)]


def test_french_wording() -> None:
    # babel's French: a comma for decimals, a no-break space before the euro sign.
    assert euros(1000).replace("\u00a0", " ").replace("\u202f", " ") == "10,00 €"
    assert euros(123_456).replace("\u00a0", " ").replace("\u202f", " ") == "1 234,56 €"
    assert perimeter_text(()) == "Périmètre : tout le territoire de la collectivité"
    assert perimeter_text(("59", "62041"), 3) == "Périmètre (codes INSEE) : 59, 62041"
    assert perimeter_text(tuple(f"{n}" for n in range(10, 16)), 3) == (
        "Périmètre (codes INSEE) : 10, 11, 12 et 3 autres")


@pytest.mark.skipif(shutil.which("pdftotext") is None or not FONTS.is_dir(),
                    reason="poppler-utils and fonts-dejavu-core (scripts/bootstrap)")
def test_a_rendered_booklet_reads_back(tmp_path: Path) -> None:
    booklet = printed_booklet(
        KEY, siren=SIREN, sequence=42, order_id=f"{SIREN}-order-00001",
        collectivite_name="Département de l'Hérault", voucher_count=5, face_value_cents=1250,
        valid_from=date(2026, 3, 2), valid_until=date(2026, 12, 31), perimeter=("34",))
    pdf = render_booklets([booklet], FONTS)
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True,
                          timeout=60).stdout.decode()
    cover, sheet = text.split("\f")[:2]
    flat_sheet = " ".join(sheet.split())
    assert f"{SIREN}-0000042" in cover and "Département de l'Hérault" in cover
    assert "5 chèques de 12,50 €, soit 62,50 €" in " ".join(cover.split())
    assert all(voucher.code not in cover for voucher in booklet.vouchers)
    assert all(voucher.code in flat_sheet for voucher in booklet.vouchers)
    assert "du 2 mars 2026" in flat_sheet and "au 31 décembre 2026" in flat_sheet


def test_missing_fonts_are_told(tmp_path: Path) -> None:
    booklet = printed_booklet(
        KEY, siren=SIREN, sequence=1, order_id=f"{SIREN}-order-00001", collectivite_name="X",
        voucher_count=5, face_value_cents=1000, valid_from=date(2026, 3, 2),
        valid_until=date(2026, 12, 31), perimeter=())
    with pytest.raises(FontMissing, match="fonts-dejavu-core"):
        render_booklets([booklet], tmp_path)
