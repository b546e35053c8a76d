"""Bulk distribution planning: CSV rows -> commands with stable request ids, invalid rows
reported without their personal data, and the summary of the outcomes."""

from __future__ import annotations

import pytest

from schemas.messages import BookletDistributed, IssuerCommandRejected
from services.issuer.beneficiaries import beneficiary_reference
from services.issuer.bulk import (
    CsvFormatError,
    file_tag,
    plan_distributions,
    read_rows,
    summarise,
)

from . import MORNING, OTHER_SIREN, SIREN

SECRET = bytes(32)
CSV = (f"siren,booklet_id,distributor,beneficiary_identifier\n"
       f"{SIREN},{SIREN}-0000001,Mairie,1 85 05 78 006 084 36\n"
       f"{SIREN},{SIREN}-0000002,Mairie,\n"
       f"12345,{SIREN}-0000003,Mairie,2 90 01 75 111 222 33\n"
       f"{OTHER_SIREN},{OTHER_SIREN}-0000001,CAF,\n")


def references(calls: list[str]):
    def reference_of(siren: str, identifier: str) -> str:
        calls.append(siren)
        return beneficiary_reference(SECRET, identifier)
    return reference_of


def test_rows_become_commands_with_references_and_invalid_rows_are_set_apart() -> None:
    calls: list[str] = []
    plan = plan_distributions(read_rows(CSV), "tag", MORNING, references(calls))
    assert [(c.siren, c.booklet_id, c.beneficiary_reference) for c in plan.commands] == [
        (SIREN, f"{SIREN}-0000001", beneficiary_reference(SECRET, "185057800608436")),
        (SIREN, f"{SIREN}-0000002", None),
        (OTHER_SIREN, f"{OTHER_SIREN}-0000001", None),
    ]
    assert [row.line for row in plan.invalid] == [4]
    assert "siren" in plan.invalid[0].problem and "2 90 01" not in plan.invalid[0].problem
    assert calls == [SIREN], "no secret looked up for a row with a malformed SIREN"


def test_request_ids_depend_on_the_file_and_the_line_only() -> None:
    rows = read_rows(CSV)
    first = plan_distributions(rows, file_tag(CSV.encode()), MORNING, references([]))
    again = plan_distributions(rows, file_tag(CSV.encode()), MORNING, references([]))
    other = plan_distributions(rows, file_tag(CSV.encode() + b"\n"), MORNING, references([]))
    ids = [c.request_id for c in first.commands]
    assert ids == [c.request_id for c in again.commands]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {c.request_id for c in other.commands}


@pytest.mark.parametrize("header", ["siren,booklet_id\n",
                                    "siren,booklet_id,distributor,beneficiary_identifer\n"])
def test_missing_or_misspelt_columns_refuse_the_whole_file(header: str) -> None:
    with pytest.raises(CsvFormatError):
        read_rows(header + "1,2,3,4\n")


def test_the_summary_counts_outcomes_by_reason() -> None:
    plan = plan_distributions(read_rows(CSV), "t", MORNING, references([]))
    first, second, third = plan.commands
    common = {"occurred_at": MORNING, "event_id": "e"}
    outcomes = {
        first.request_id: [BookletDistributed(**common, request_id=first.request_id,
                                              siren=SIREN, booklet_id=first.booklet_id,
                                              distributor="Mairie", beneficiary_reference=None)],
        second.request_id: [IssuerCommandRejected(**common, request_id=second.request_id,
                                                  siren=SIREN, command_type="distribute_booklet",
                                                  reason="booklet_blocked")],
    }
    summary = summarise(plan.commands, outcomes, len(plan.invalid))
    assert (summary.distributed, dict(summary.rejected), summary.invalid,
            summary.without_outcome) == (1, {"booklet_blocked": 1}, 1, 1)
    assert not summary.all_distributed
