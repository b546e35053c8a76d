"""Bulk distribution from a CSV file: rows -> DistributeBooklet commands -> a summary.

Pure: reading the file, the secrets and the log is the CLI's job (services/issuer/cli.py).
Request ids are derived from the file's digest and the row's line number, so running the
same file twice gives every row its recorded outcome again instead of a second effect, and
an interrupted run can simply be started again.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

from pydantic import ValidationError

from schemas.base import Event
from schemas.messages import DistributeBooklet
from services.issuer.beneficiaries import InvalidIdentifier

REQUIRED_COLUMNS = ("siren", "booklet_id", "distributor")
OPTIONAL_COLUMNS = ("beneficiary_identifier",)
MAX_ROWS = 1_000_000  # one file, one run: bigger files are split by the operator

# (siren, personal identifier) -> pseudonymous reference
ReferenceOf = Callable[[str, str], str]


class CsvFormatError(ValueError):
    """The file cannot be read as a distribution list at all (header, size)."""


@dataclass(frozen=True)
class InvalidRow:
    line: int
    problem: str


@dataclass(frozen=True)
class Plan:
    commands: list[DistributeBooklet]
    invalid: list[InvalidRow]


def file_tag(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row. Unknown columns are refused rather than
    ignored: a misspelt `beneficiary_identifer` would otherwise drop every identifier."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    unknown = [name for name in header if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise CsvFormatError(f"columns: missing {missing}, unknown {unknown}; expected "
                             f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        if len(rows) >= MAX_ROWS:
            raise CsvFormatError(f"more than {MAX_ROWS} rows: split the file")
        rows.append((reader.line_num, {key: (value or "").strip()
                                       for key, value in row.items() if key is not None}))
    return rows


def plan_distributions(rows: Iterable[tuple[int, Mapping[str, str]]], tag: str,
                       occurred_at: datetime, reference_of: ReferenceOf) -> Plan:
    commands: list[DistributeBooklet] = []
    invalid: list[InvalidRow] = []
    for line, row in rows:
        identifier = row.get("beneficiary_identifier") or None
        try:
            command = DistributeBooklet(
                request_id=f"bulk:{tag}:{line}", occurred_at=occurred_at, siren=row["siren"],
                booklet_id=row["booklet_id"], distributor=row["distributor"])
            if identifier:
                # After validation: a secret is only ever created for a well-formed SIREN.
                command = command.model_copy(update={
                    "beneficiary_reference": reference_of(command.siren, identifier)})
            commands.append(command)
        except InvalidIdentifier as error:
            invalid.append(InvalidRow(line, f"beneficiary_identifier: {error}"))
        except ValidationError as error:
            # Without the input values: the row may hold personal data.
            problems = error.errors(include_input=False, include_url=False)
            invalid.append(InvalidRow(line, "; ".join(
                f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)))
    return Plan(commands, invalid)


@dataclass
class Summary:
    distributed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    without_outcome: int = 0

    @property
    def all_distributed(self) -> bool:
        return not (self.rejected or self.invalid or self.without_outcome)


def summarise(commands: Sequence[DistributeBooklet], outcomes: Mapping[str, Sequence[Event]],
              invalid_rows: int) -> Summary:
    summary = Summary(invalid=invalid_rows)
    for command in commands:
        events = outcomes.get(command.request_id)
        if not events:
            summary.without_outcome += 1
        elif events[0].type == "booklet_distributed":
            summary.distributed += 1
        else:
            summary.rejected[getattr(events[0], "reason", events[0].type)] += 1
    return summary
