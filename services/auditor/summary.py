"""Terminal summary of an audit report (rich tables), French first (`--lang`).

The words and the formatting are the HTML report's (`html_report.TEXTS`, babel through
`html_report.Formatter`, the findings' titles from `findings_fr.explain`), so the terminal,
the page and the PDF say the same thing the same way."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from services.auditor.findings_fr import explain
from services.auditor.html_report import STATES, TEXTS, Formatter
from services.auditor.report import AuditReport

FINDINGS_SHOWN = 50


def print_summary(report: AuditReport, console: Console | None = None,
                  language: str = "fr") -> None:
    console = console or Console()
    text, formatter = TEXTS[language], Formatter(language)
    title = text["books"]
    if report.collectivite:
        title += " — " + text["scope"].format(siren=report.collectivite)
    table = Table(title=f"{title} — {text['as_of'].format(day=formatter.day(report.as_of[:10]))}")
    # An identifier is never cut: in a narrow terminal (rich takes 80 columns in a log) the
    # figures wrap, the SIREN keeps its nine digits.
    table.add_column(text["siren"], justify="right", no_wrap=True, min_width=9)
    for column in (text["received"], text["activated"], *(text[state] for state in STATES)):
        table.add_column(column, justify="right")
    for siren, total in sorted(report.totals.items()):
        table.add_row(siren, formatter.euros(total.received_cents),
                      formatter.euros(total.activated_cents),
                      *(f"{formatter.count(getattr(total, f'{state}_vouchers'))} / "
                        f"{formatter.euros(getattr(total, f'{state}_cents'))}"
                        for state in STATES))
    console.print(table)
    console.print(text["replayed"].format(
        events=formatter.count(report.event_count),
        duplicates=formatter.count(report.duplicate_count),
        invalid=formatter.count(report.invalid_count),
        streams=formatter.count(len(report.streams)),
        checkpoints=formatter.count(len(report.checkpoints))),
        markup=False, highlight=False)
    for name, value in sorted(report.extra.items()):
        console.print(f"{name}{text['colon']}{value}", markup=False, highlight=False)
    if report.sound:
        console.print(f"[bold green]{text['sound']}[/] — {text['sound_detail']}")
        return
    finding_count = sum(report.findings_by_code.values())
    console.print(f"[bold red]{text['unsound']}[/] — "
                  + text["unsound_detail"].format(count=formatter.count(finding_count)))
    for code, count in report.findings_by_code.items():
        console.print(f"  {count:>8}  {code}  {explain(code, language).title}",
                      markup=False, highlight=False)
    for finding in report.findings[:FINDINGS_SHOWN]:
        console.print(f"  {finding.code}: {finding.detail} {list(finding.event_ids)}",
                      markup=False, highlight=False)
