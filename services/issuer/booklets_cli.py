"""`passnum booklets print`: a booklet or a whole order as a PDF to print and hand out.

For the programme's operator, on the collectivité's request (a collectivité prints its own
through GET /v1/booklets/{id}/print and GET /v1/orders/{id}/print). Reads PostgreSQL like
the HTTP route (services/issuer/print_api.py), renders with services/issuer/printing.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from passnum.core.settings import Settings

booklets_app = typer.Typer(no_args_is_help=True, help="Printed booklets (PDF)")

EXIT_REFUSED = 1  # the booklet or order cannot be printed (unknown, blocked, not ready...)
EXIT_FONT_MISSING = 3  # the machine lacks the fonts: an installation problem, not the input


@booklets_app.command("print")
def print_booklets(
    identifier: str = typer.Argument(
        ..., help="a booklet id (SIREN-NNNNNNN) or an order id (SIREN-order-NNNNN)"),
    output: Path = typer.Option(..., "--output", "-o", dir_okay=False,
                                help="the PDF file to write"),
) -> None:
    """Write the PDF of a booklet, or of every booklet of an order that is not blocked."""
    from services.issuer.print_api import PrintRefused
    from services.issuer.printing import FontMissing

    try:
        count = print_to_file(Settings.from_environment(), identifier, output)
    except PrintRefused as refusal:
        _refused(f"{refusal.reason}: {refusal.detail}", EXIT_REFUSED)
    except FontMissing as error:
        _refused(str(error), EXIT_FONT_MISSING)
    typer.echo(f"{output}: {count} booklet{'s' if count > 1 else ''}, {2 * count} pages")


def print_to_file(settings: Settings, identifier: str, output: Path) -> int:
    """Write the PDF of a booklet or an order to `output` (nothing is written when it is
    refused: PrintRefused, FontMissing); the number of booklets printed. Also what the
    demo calls."""
    from passnum.core.database import connect
    from services.issuer.print_api import load_printable, selection_of
    from services.issuer.printing import render_booklets

    selection = selection_of(identifier)
    with connect(settings.database_url) as connection:
        booklets = load_printable(connection, selection, settings.voucher_code_key.encode(),
                                  settings.print_booklets_max)
    output.write_bytes(render_booklets(booklets, Path(settings.print_font_directory)))
    return len(booklets)


def _refused(reason: str, exit_code: int) -> NoReturn:
    typer.echo(f"booklets print: {reason}", err=True)
    raise typer.Exit(code=exit_code)
