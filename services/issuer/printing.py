"""Printable booklets, pure: booklets in, PDF bytes out (fpdf2, QR codes from segno).

Each booklet is two A4 pages: a cover (the booklet number, the collectivité, the value, the
validity, the perimeter) and a sheet of its vouchers, cut along the dashed lines. Each
voucher carries its code in large type and as a QR code that holds exactly the printed code,
its face value, its validity and the collectivité's name and perimeter. Amounts and dates
are formatted for French readers by babel (CLDR), never by hand; an English line says what
the booklet is for readers who need it.

No database, no clock: the caller loads the booklets (services/issuer/print_api.py) and
hands over the code key; the only file read is the font, whose directory is configuration.
Why fpdf2: docs/booklets.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Sequence, cast

from babel.dates import format_date
from babel.numbers import format_currency
from fpdf import FPDF

from passnum.ledger.voucher_codes import VoucherNumber, make_code

LOCALE = "fr_FR"
# Faces of DejaVu (fonts-dejavu-core): regular and bold sans for text, bold mono for codes,
# so that look-alike symbols (0 and O are never both in a code, but 1 and 7 are) stay apart.
FONT_FILES = {("Sans", ""): "DejaVuSans.ttf", ("Sans", "B"): "DejaVuSans-Bold.ttf",
              ("Mono", "B"): "DejaVuSansMono-Bold.ttf"}
# A4 portrait in millimetres; two columns of five vouchers (a booklet holds 5 or 10).
PAGE_WIDTH, PAGE_HEIGHT, MARGIN = 210.0, 297.0, 12.0
HEADER_HEIGHT = 12.0
COLUMNS, ROWS = 2, 5
CELL_WIDTH = (PAGE_WIDTH - 2 * MARGIN) / COLUMNS
CELL_HEIGHT = (PAGE_HEIGHT - 2 * MARGIN - HEADER_HEIGHT) / ROWS
QR_SIZE = 30.0  # millimetres, quiet zone included: about 0.9 mm a module for a version 2 code
QR_BORDER_MODULES = 4  # the quiet zone the QR standard asks for
VOUCHER_TEXT_WIDTH = CELL_WIDTH - QR_SIZE - 6  # beside the QR code
SMALL_PRINT_LINES = 3  # the collectivité's name and perimeter, below the validity
NAME_LINES = 3  # the collectivité's name on the cover (a name has at most 200 characters)
CODE_POINTS = 15  # the code in large type: 26 monospaced symbols fill about 83 mm
# A perimeter is a list of INSEE codes; a long one is cut so that it fits on the cover, and
# shorter on a voucher.
PERIMETER_CODES_SHOWN = 30
VOUCHER_PERIMETER_CODES_SHOWN = 3


class FontMissing(RuntimeError):
    """The fonts are not installed where the configuration says."""


@dataclass(frozen=True)
class PrintedVoucher:
    position: int
    code: str


@dataclass(frozen=True)
class PrintedBooklet:
    booklet_id: str
    order_id: str
    collectivite_name: str
    face_value_cents: int
    valid_from: date
    valid_until: date
    perimeter: tuple[str, ...]
    vouchers: tuple[PrintedVoucher, ...]


def printed_booklet(code_key: bytes, *, siren: str, sequence: int, order_id: str,
                    collectivite_name: str, voucher_count: int, face_value_cents: int,
                    valid_from: date, valid_until: date, perimeter: Sequence[str]
                    ) -> PrintedBooklet:
    """A booklet as printed, with the codes of its vouchers (the same `make_code` as
    GET /v1/booklets/{id} and as the redeemer's check)."""
    numbers = [VoucherNumber(siren, sequence, position)
               for position in range(1, voucher_count + 1)]
    return PrintedBooklet(
        numbers[0].booklet_id, order_id, collectivite_name, face_value_cents, valid_from,
        valid_until, tuple(perimeter),
        tuple(PrintedVoucher(n.position, make_code(code_key, n)) for n in numbers))


# ------------------------------------------------------------------ French wording


def euros(cents: int) -> str:
    """"10,00 €" (babel puts the no-break space French typography asks for)."""
    return format_currency(Decimal(cents) / 100, "EUR", locale=LOCALE)


def long_date(day: date) -> str:
    return format_date(day, format="long", locale=LOCALE)


def validity(booklet: PrintedBooklet) -> str:
    return f"Valable du {long_date(booklet.valid_from)} au {long_date(booklet.valid_until)}"


def perimeter_text(perimeter: Sequence[str], codes_shown: int = PERIMETER_CODES_SHOWN) -> str:
    if not perimeter:
        return "Périmètre : tout le territoire de la collectivité"
    shown = ", ".join(perimeter[:codes_shown])
    rest = len(perimeter) - codes_shown
    more = f" et {rest} autre{'s' if rest > 1 else ''}" if rest > 0 else ""
    # INSEE codes of departments (2 or 3 characters) or communes (5), as ordered.
    return f"Périmètre (codes INSEE) : {shown}{more}"


# ------------------------------------------------------------------ the document


def render_booklets(booklets: Sequence[PrintedBooklet], font_directory: Path) -> bytes:
    """The PDF of `booklets`, in the order given: for each, its cover then its vouchers."""
    assert booklets, "a document prints at least one booklet"
    document = _new_document(font_directory)
    for booklet in booklets:
        assert 1 <= len(booklet.vouchers) <= COLUMNS * ROWS, booklet.booklet_id
        _cover(document, booklet)
        _voucher_sheet(document, booklet)
    return bytes(document.output())


def _new_document(font_directory: Path) -> FPDF:
    document = FPDF(orientation="P", unit="mm", format="A4")
    document.set_auto_page_break(False)
    document.set_title("Carnets de pass numérique")
    document.set_lang("fr-FR")
    for (family, style), file_name in FONT_FILES.items():
        path = font_directory / file_name
        if not path.is_file():
            raise FontMissing(f"font {path} not found: install fonts-dejavu-core or set "
                              "PASSNUM_PRINT_FONT_DIRECTORY")
        document.add_font(family, style, str(path))
    return document


def _line(document: FPDF, y: float, text: str, points: float, *, family: str = "Sans",
          style: str = "", x: float = MARGIN, width: float = PAGE_WIDTH - 2 * MARGIN,
          align: str = "L") -> None:
    document.set_font(family, style, points)
    document.set_xy(x, y)
    document.cell(width, points * 0.5, text, align=align)


def _fitted_lines(document: FPDF, text: str, width: float, max_lines: int) -> list[str]:
    """`text` broken into lines of `width` in the current font, at most `max_lines`, the
    last one ending with an ellipsis when some of the text does not fit."""
    # a dry run with output="LINES" returns the lines; fpdf types every output it can give
    lines = list(cast("list[str]", document.multi_cell(width, 5, text, dry_run=True,
                                                       output="LINES")))
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], lines[max_lines - 1].rstrip(" ,") + " …"]
    return lines


def _cover(document: FPDF, booklet: PrintedBooklet) -> None:
    document.add_page()
    value = euros(booklet.face_value_cents * len(booklet.vouchers))
    _line(document, 40, "Pass numérique", 30, style="B", align="C")
    _line(document, 62, "Carnet de chèques d'accompagnement au numérique", 14, align="C")
    _line(document, 90, "Carnet n°", 16, align="C")
    _line(document, 102, booklet.booklet_id, 26, family="Mono", style="B", align="C")
    document.set_font("Sans", "B", 16)
    name_lines = _fitted_lines(document, booklet.collectivite_name,
                               PAGE_WIDTH - 2 * MARGIN, NAME_LINES)
    for number, line in enumerate(name_lines):
        _line(document, 124 + 7 * number - 3.5 * (len(name_lines) - 1), line, 16, style="B",
              align="C")
    _line(document, 146, f"{len(booklet.vouchers)} chèques de {euros(booklet.face_value_cents)}"
          f", soit {value}", 13, align="C")
    _line(document, 158, validity(booklet), 13, align="C")
    document.set_font("Sans", "", 10)
    document.set_xy(MARGIN + 10, 166)
    document.multi_cell(PAGE_WIDTH - 2 * MARGIN - 20, 5, perimeter_text(booklet.perimeter),
                        align="C")
    document.set_font("Sans", "", 10)
    document.set_xy(MARGIN + 10, 200)
    document.multi_cell(
        PAGE_WIDTH - 2 * MARGIN - 20, 5.5,
        "Chaque chèque donne droit à une séance d'accompagnement au numérique (environ "
        "2 heures) dans un lieu agréé. Présentez le chèque sur place : le lieu scanne le "
        "QR code ou saisit le code. Un chèque s'utilise une seule fois.", align="C")
    document.set_xy(MARGIN + 10, 232)
    document.set_font("Sans", "", 8)
    document.multi_cell(
        PAGE_WIDTH - 2 * MARGIN - 20, 4.5,
        "Digital-skills vouchers: each voucher pays for one session at an accredited venue, "
        "which scans its QR code or types its code. Each voucher can be used once.",
        align="C")
    _line(document, 280, f"Commande {booklet.order_id}", 8, align="C")


def _voucher_sheet(document: FPDF, booklet: PrintedBooklet) -> None:
    document.add_page()
    document.set_font("Sans", "B", 10)
    _line(document, MARGIN, _fitted_lines(
        document, f"Carnet n° {booklet.booklet_id} — {booklet.collectivite_name}",
        PAGE_WIDTH - 2 * MARGIN, 1)[0], 10, style="B")
    document.set_draw_color(150, 150, 150)
    document.set_dash_pattern(dash=1.5, gap=1.5)
    for index, voucher in enumerate(booklet.vouchers):
        x = MARGIN + (index % COLUMNS) * CELL_WIDTH
        y = MARGIN + HEADER_HEIGHT + (index // COLUMNS) * CELL_HEIGHT
        document.rect(x, y, CELL_WIDTH, CELL_HEIGHT)
    document.set_dash_pattern()
    # The small print is the same on every voucher of a booklet: broken into lines once
    # (line breaking is the dear part of fpdf2's multi_cell).
    document.set_font("Sans", "", 7)
    small_print = _fitted_lines(
        document, f"{booklet.collectivite_name}\n"
        f"{perimeter_text(booklet.perimeter, VOUCHER_PERIMETER_CODES_SHOWN)}",
        VOUCHER_TEXT_WIDTH, SMALL_PRINT_LINES)  # the cover has it in full
    for index, voucher in enumerate(booklet.vouchers):
        x = MARGIN + (index % COLUMNS) * CELL_WIDTH
        y = MARGIN + HEADER_HEIGHT + (index // COLUMNS) * CELL_HEIGHT
        _voucher(document, booklet, voucher, x, y, small_print)


def _voucher(document: FPDF, booklet: PrintedBooklet, voucher: PrintedVoucher, x: float,
             y: float, small_print: Sequence[str]) -> None:
    _qr_code(document, voucher.code, x + 2, y + 2, QR_SIZE)
    text_x, text_width = x + QR_SIZE + 4, VOUCHER_TEXT_WIDTH
    _line(document, y + 4, f"Pass numérique — chèque {voucher.position}/"
          f"{len(booklet.vouchers)}", 8, style="B", x=text_x, width=text_width)
    _line(document, y + 10, euros(booklet.face_value_cents), 18, style="B", x=text_x,
          width=text_width)
    _line(document, y + 21, f"du {long_date(booklet.valid_from)}", 8, x=text_x,
          width=text_width)
    _line(document, y + 25, f"au {long_date(booklet.valid_until)}", 8, x=text_x,
          width=text_width)
    for number, line in enumerate(small_print):
        _line(document, y + 29 + 3.2 * number, line, 7, x=text_x, width=text_width)
    _line(document, y + CELL_HEIGHT - 11, voucher.code, CODE_POINTS, family="Mono", style="B",
          x=x, width=CELL_WIDTH, align="C")


def _qr_code(document: FPDF, text: str, x: float, y: float, size: float) -> None:
    """The QR code of `text` drawn as vector squares (sharp at any printer resolution),
    each row's runs of dark modules merged into one rectangle."""
    import segno

    code = segno.make_qr(text, error="m")
    matrix = code.matrix
    module = size / (len(matrix) + 2 * QR_BORDER_MODULES)
    origin_x, origin_y = x + QR_BORDER_MODULES * module, y + QR_BORDER_MODULES * module
    document.set_fill_color(0, 0, 0)
    for row_index, row in enumerate(matrix):
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            start = column
            while column < len(row) and row[column]:
                column += 1
            document.rect(origin_x + start * module, origin_y + row_index * module,
                          (column - start) * module, module, style="F")
