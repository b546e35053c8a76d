"""`passnum issuer ...`: the issuer's command line (bulk issuance from a CSV, ...)."""

from __future__ import annotations

import typer

issuer_app = typer.Typer(no_args_is_help=True, help="Collectivités, envelopes and booklets")
