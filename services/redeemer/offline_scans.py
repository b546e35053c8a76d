"""Offline scans: a venue without network writes one voucher code per line, optionally
followed by the instant it was scanned; the file is later sent through the log.

Pure: text in, commands and line errors out. The request id of a scan is derived from the
venue, the code and the written instant, so that sending the same file twice redeems
nothing twice and answers every line with its first outcome.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from passnum.ledger.time import FRANCE
from passnum.ledger.voucher_codes import normalise
from schemas.base import YEAR_MAX, YEAR_MIN
from schemas.messages import RedeemVoucher

# A bound on one file: an offline day at the busiest venue is a few hundred scans.
MAX_SCAN_LINES = 100_000
_SEPARATOR = re.compile(r"[,;\t ]+")
# What a command may carry (schemas.base.PlainText): a code with control characters in it
# could not be sent, so it is a line error here rather than a failure of the whole file.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Scan:
    line_number: int
    code: str
    scanned_at: datetime | None  # None: the scan is dated when the file is sent


@dataclass(frozen=True)
class LineError:
    line_number: int
    reason: str  # "unreadable_timestamp" | "unreadable_code"
    text: str


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601; an instant written without offset is a time on the venue's clock in France.
    An instant outside the years a command may name (schemas.base) is unreadable too."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not YEAR_MIN <= instant.year <= YEAR_MAX:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=FRANCE)


def parse_scans(lines: Iterable[str]) -> tuple[list[Scan], list[LineError]]:
    """Blank lines and lines starting with # are skipped. A code is never judged here:
    a malformed code is for the redeemer to reject, with its reason, in the log."""
    scans: list[Scan] = []
    errors: list[LineError] = []
    for line_number, raw in enumerate(lines, start=1):
        assert line_number <= MAX_SCAN_LINES, f"more than {MAX_SCAN_LINES} lines"
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = _SEPARATOR.split(text, maxsplit=1)
        if _CONTROL_CHARACTER.search(fields[0]):
            errors.append(LineError(line_number, "unreadable_code", repr(text)))
            continue
        if len(fields) == 1:
            scans.append(Scan(line_number, fields[0], None))
            continue
        scanned_at = parse_timestamp(fields[1].strip())
        if scanned_at is None:
            errors.append(LineError(line_number, "unreadable_timestamp", text))
        else:
            scans.append(Scan(line_number, fields[0], scanned_at))
    return scans, errors


def scan_request_id(siret: str, scan: Scan) -> str:
    written = scan.scanned_at.isoformat() if scan.scanned_at else ""
    digest = hashlib.sha256(f"{siret}\x1f{normalise(scan.code)}\x1f{written}".encode())
    return f"scan-{siret}-{digest.hexdigest()[:32]}"


def scan_commands(siret: str, scans: Iterable[Scan], now: datetime
                  ) -> dict[int, RedeemVoucher]:
    """Line number -> command. Two lines of the same scan share one command (one request)."""
    commands: dict[int, RedeemVoucher] = {}
    by_request: dict[str, RedeemVoucher] = {}
    for scan in scans:
        request_id = scan_request_id(siret, scan)
        command = by_request.get(request_id)
        if command is None:
            command = RedeemVoucher(request_id=request_id, occurred_at=scan.scanned_at or now,
                                    code=scan.code[:64], siret=siret)
            by_request[request_id] = command
        commands[scan.line_number] = command
    return commands
