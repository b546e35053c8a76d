"""`passnum redeemer ...`: the redeemer's command line (offline scans, settlement, ...)."""

from __future__ import annotations

import typer

redeemer_app = typer.Typer(no_args_is_help=True, help="Venues, redemptions and settlement")
