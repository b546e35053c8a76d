"""A venue's statement as a PDF to print or file: the venue, the month, every voucher the
statement pays and the total, in the venue's language, amounts and dates written by babel.
Set in DejaVu (`Settings.print_font_directory`, as the printed booklets are): it carries
"€", accented letters and the narrow no-break space of French amounts.

Pure: the statement in, bytes out. A statement part holds at most
`settlement.STATEMENT_MAX_REDEMPTIONS` vouchers (about 110 pages); the route renders it in
a thread so that the worker's event loop keeps serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fpdf import FPDF

from services.redeemer.counter import texts
from services.redeemer.counter.statements import VenueStatement

FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
MARGIN_MM = 15
ROW_HEIGHT_MM = 6
# Number, voucher, date, amount: 180 mm, the width of A4 inside the margins.
COLUMN_WIDTHS_MM = (14, 58, 70, 38)
COLUMN_ALIGNS = ("R", "L", "L", "R")


class FontMissing(RuntimeError):
    """The fonts are not where the configuration says."""


def render_statement_pdf(statement: VenueStatement, language: str, font_directory: Path
                         ) -> bytes:
    line = statement.line
    say = texts.text
    document = _new_document(font_directory, language)
    month = texts.month_text(line.month, language)
    document.set_title(say("pdf_title", language, month=month, part=line.part))
    document.set_font("Sans", "B", 14)
    document.multi_cell(0, 8, say("pdf_title", language, month=month, part=line.part),
                        new_x="LMARGIN", new_y="NEXT")
    document.ln(2)
    document.set_font("Sans", "", 10)
    facts = [
        say("pdf_venue", language, name=line.venue_name, siret=line.siret),
        say("pdf_account", language, iban=line.iban),
        say("pdf_issued", language, when=texts.when_text(statement.issued_at, language)),
        say("pdf_total", language, vouchers=texts.count_text(line.voucher_count, language),
            amount=texts.amount_text(line.face_value_cents, language)),
        say("pdf_event", language, event_id=line.statement_event_id),
    ]
    for fact in facts:
        document.multi_cell(0, 5.5, fact, new_x="LMARGIN", new_y="NEXT")
    document.ln(4)
    _vouchers_table(document, statement, language)
    document.ln(4)
    document.set_font("Sans", "", 8)
    document.multi_cell(0, 4.5, say("pdf_footer", language), new_x="LMARGIN", new_y="NEXT")
    return bytes(document.output())


def _new_document(font_directory: Path, language: str) -> FPDF:
    document = FPDF(orientation="P", unit="mm", format="A4")
    document.set_margins(MARGIN_MM, MARGIN_MM)
    document.set_auto_page_break(True, MARGIN_MM)
    document.set_lang("en-GB" if language == "en" else "fr-FR")
    for style, file_name in FONT_FILES.items():
        path = font_directory / file_name
        if not path.is_file():
            raise FontMissing(f"font {path} not found: install fonts-dejavu-core or set "
                              "PASSNUM_PRINT_FONT_DIRECTORY")
        document.add_font("Sans", style, str(path))
    document.add_page()
    return document


def _vouchers_table(document: FPDF, statement: VenueStatement, language: str) -> None:
    """One row per voucher, the header repeated on each page, the total last. Drawn cell by
    cell: fpdf2's `table()` took a minute for the 5,000 rows of a full part (cells, about
    two seconds)."""
    headings = [texts.text(key, language) for key in
                ("column_number", "column_voucher", "column_when", "column_amount")]
    _row(document, headings, bold=True)
    for number, voucher in enumerate(statement.vouchers, start=1):
        if document.will_page_break(ROW_HEIGHT_MM):
            document.add_page()
            _row(document, headings, bold=True)
        _row(document, (str(number), voucher.voucher_id,
                        texts.when_text(voucher.redeemed_at, language),
                        texts.amount_text(voucher.face_value_cents, language)))
    total = sum(voucher.face_value_cents for voucher in statement.vouchers)
    _row(document, ("", texts.text("total", language),
                    texts.count_text(len(statement.vouchers), language),
                    texts.amount_text(total, language)), bold=True)


def _row(document: FPDF, cells: Sequence[str], bold: bool = False) -> None:
    document.set_font("Sans", "B" if bold else "", 9)
    for width, align, text in zip(COLUMN_WIDTHS_MM, COLUMN_ALIGNS, cells):
        document.cell(width, ROW_HEIGHT_MM, text, border="B", align=align)
    document.ln(ROW_HEIGHT_MM)
