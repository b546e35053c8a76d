"""Terminal summary of an audit report (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from services.auditor.report import AuditReport

FINDINGS_SHOWN = 50


def euros(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100:,}.{cents % 100:02d} €".replace(",", " ")


def print_summary(report: AuditReport, console: Console | None = None) -> None:
    console = console or Console()
    scope = f" for {report.collectivite}" if report.collectivite else ""
    table = Table(title=f"Books per collectivité{scope}, as of {report.as_of} "
                        "(replayed from offset 0)")
    for column in ("SIREN", "received", "activated", "redeemed", "outstanding", "blocked",
                   "expired", "inactive"):
        table.add_column(column, justify="right")
    for siren, total in sorted(report.totals.items()):
        table.add_row(siren, euros(total.received_cents), euros(total.activated_cents),
                      f"{total.redeemed_vouchers} / {euros(total.redeemed_cents)}",
                      f"{total.outstanding_vouchers} / {euros(total.outstanding_cents)}",
                      f"{total.blocked_vouchers} / {euros(total.blocked_cents)}",
                      f"{total.expired_vouchers} / {euros(total.expired_cents)}",
                      f"{total.inactive_vouchers} / {euros(total.inactive_cents)}")
    console.print(table)
    console.print(f"records read: {report.records_read}, events: {report.event_count}, "
                  f"duplicate deliveries ignored: {report.duplicate_count}, invalid: "
                  f"{report.invalid_count}, streams: {len(report.streams)}, "
                  f"checkpoints: {len(report.checkpoints)}")
    for name, value in sorted(report.extra.items()):
        console.print(f"{name}: {value}")
    if report.sound:
        console.print("[bold green]AUDIT VERDICT: SOUND[/] — every invariant holds")
        return
    finding_count = sum(report.findings_by_code.values())
    console.print(f"[bold red]AUDIT VERDICT: NOT SOUND[/] — {finding_count} findings")
    for code, count in report.findings_by_code.items():
        console.print(f"  {count:>8}  {code}")
    for finding in report.findings[:FINDINGS_SHOWN]:
        console.print(f"  {finding.code}: {finding.detail} {list(finding.event_ids)}",
                      markup=False, highlight=False)
