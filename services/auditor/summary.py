"""Terminal summary of an audit report (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from services.auditor.replay import AuditReport


def euros(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d} €".replace(",", " ")


def print_summary(report: AuditReport, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Books per collectivité (replayed from offset 0)")
    for column in ("SIREN", "received", "activated", "redeemed", "outstanding", "blocked"):
        table.add_column(column, justify="right")
    for siren, total in sorted(report.totals.items()):
        table.add_row(siren, euros(total.received_cents), euros(total.activated_cents),
                      f"{total.redeemed_vouchers} / {euros(total.redeemed_cents)}",
                      f"{total.outstanding_vouchers} / {euros(total.outstanding_cents)}",
                      f"{total.blocked_vouchers} / {euros(total.blocked_cents)}")
    console.print(table)
    console.print(f"events: {report.event_count}, duplicate deliveries ignored: "
                  f"{report.duplicate_count}, undecodable: {report.undecodable_count}")
    if report.sound:
        console.print("[bold green]AUDIT VERDICT: SOUND[/] — every invariant holds")
    else:
        console.print(f"[bold red]AUDIT VERDICT: NOT SOUND[/] — {len(report.findings)} findings")
        for finding in report.findings[:50]:
            console.print(f"  {finding.code}: {finding.detail} {list(finding.event_ids)}")
