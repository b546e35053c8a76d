"""The demo's table of scan answers speaks French, as the audit summary printed after it
does: a refusal by the title the API gives it, with its code for whoever reads the logs."""

from __future__ import annotations

from datetime import datetime, timezone

from rich.console import Console

from passnum.tools.demo import _outcome_table, outcome_label
from schemas.messages import RedemptionRejected, VoucherRedeemed

AT = datetime(2026, 12, 8, 10, 0, tzinfo=timezone.utc)
REDEEMED = VoucherRedeemed(event_id="e1", request_id="r1", occurred_at=AT,
                           siret="36252187900034", siren="213300063",
                           booklet_id="213300063-0000001", voucher_id="213300063-0000001-01",
                           face_value_cents=1000)


def rejected(reason: str) -> RedemptionRejected:
    return RedemptionRejected(event_id="e2", request_id="r2", occurred_at=AT,
                              siret="36252187900034", voucher_id=None, reason=reason)


def test_a_redemption_and_refusals_are_named_in_french() -> None:
    assert outcome_label(REDEEMED) == "Chèque encaissé"
    assert outcome_label(rejected("forged_code")) == (
        "Refusé : Code de chèque falsifié (forged_code)")
    assert outcome_label(rejected("already_redeemed")) == (
        "Refusé : Chèque déjà encaissé (already_redeemed)")


def test_the_table_counts_each_answer() -> None:
    console = Console(record=True, width=120)
    console.print(_outcome_table({"a": [REDEEMED], "b": [REDEEMED],
                                  "c": [rejected("forged_code")]}))
    printed = console.export_text()
    assert "Passages en caisse de la démonstration" in printed
    row = next(line for line in printed.splitlines() if "Chèque encaissé" in line)
    assert row.rstrip(" │").endswith("2")
    assert "Code de chèque falsifié" in printed and "Redemption" not in printed
