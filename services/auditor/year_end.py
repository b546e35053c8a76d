"""Year end, pure: for a closed year, per collectivité, the joint statement, the credit
note (avoir) for the face value of unused vouchers, and the co-financing claim.

A booklet belongs to the year of its `valid_until`. Unused vouchers are those activated
(hence paid for) and never redeemed, blocked ones included: the funder paid their face
value and gets it back. Co-financing (2020 call for projects): the State pays at most 50 %
of the vouchers actually used; at least half of the vouchers must go to the PIC target
group, reported here as the PIC share of the vouchers used.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from services.auditor.report import AuditReport

STATE_SHARE_PERCENT = 50
PIC_MINIMUM_PERCENT = 50


def year_end_statements(report: AuditReport, year: int) -> dict[str, Any]:
    statements: dict[str, Any] = {}
    for siren, years in sorted(report.validity_years.items()):
        tallies = years.get(str(year))
        if tallies is None:
            continue
        used_cents = tallies["redeemed"]["cents"]
        used = tallies["redeemed"]["vouchers"]
        pic = tallies["redeemed_pic"]["vouchers"]
        statements[siren] = {
            "joint_statement": {name: tallies[name] for name in
                                ("issued", "activated", "redeemed", "unused_activated")},
            "credit_note": {"unused_voucher_count": tallies["unused_activated"]["vouchers"],
                            "face_value_cents": tallies["unused_activated"]["cents"]},
            "co_financing": {
                "vouchers_used": used, "used_cents": used_cents,
                "state_share_cents": used_cents * STATE_SHARE_PERCENT // 100,
                "pic_vouchers_used": pic,
                "pic_share_percent": round(100 * pic / used, 2) if used else 0.0,
                "pic_target_met": used > 0 and 100 * pic >= PIC_MINIMUM_PERCENT * used},
        }
    return {"year": year, "sound": report.sound, "collectivites": statements}


def print_year_end(statements: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"Year end {statements['year']}: joint statements")
    for column in ("SIREN", "issued", "used", "credit note (unused)", "State share",
                   "PIC share"):
        table.add_column(column, justify="right")
    for siren, statement in statements["collectivites"].items():
        credit, claim = statement["credit_note"], statement["co_financing"]
        table.add_row(siren, str(statement["joint_statement"]["issued"]["vouchers"]),
                      str(claim["vouchers_used"]),
                      f"{credit['unused_voucher_count']} / {credit['face_value_cents'] / 100:.2f} €",
                      f"{claim['state_share_cents'] / 100:.2f} €",
                      f"{claim['pic_share_percent']} %" + ("" if claim["pic_target_met"] else " (below 50 %)"))
    console.print(table)
