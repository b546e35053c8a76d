"""`passnum booklets print`: a booklet or a whole order as a PDF to print and hand out.

For the programme's operator, on the collectivité's request (a collectivité prints its own
through GET /v1/booklets/{id}/print and GET /v1/orders/{id}/print). Reads PostgreSQL like
the HTTP route (services/issuer/print_api.py), renders with services/issuer/printing.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from passnum.settings import Settings

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
    from passnum.database import connect
    from services.issuer.print_api import PrintRefused, load_printable, selection_of
    from services.issuer.printing import FontMissing, render_booklets

    settings = Settings.from_environment()
    try:
        selection = selection_of(identifier)
        with connect(settings.database_url) as connection:
            booklets = load_printable(connection, selection, settings.voucher_code_key.encode(),
                                      settings.print_booklets_max)
        pdf = render_booklets(booklets, Path(settings.print_font_directory))
    except PrintRefused as refusal:
        _refused(f"{refusal.reason}: {refusal.detail}", EXIT_REFUSED)
    except FontMissing as error:
        _refused(str(error), EXIT_FONT_MISSING)
    output.write_bytes(pdf)
    typer.echo(f"{output}: {len(booklets)} booklet{'s' if len(booklets) > 1 else ''}, "
               f"{2 * len(booklets)} pages")


def _refused(reason: str, exit_code: int) -> NoReturn:
    typer.echo(f"booklets print: {reason}", err=True)
    raise typer.Exit(code=exit_code)
