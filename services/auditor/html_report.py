"""A self-contained HTML report: tables and inline SVG bar charts generated here (no CDN,
no script), so the file can be archived and opened anywhere."""

from __future__ import annotations

from html import escape
from pathlib import Path

from services.auditor.report import AuditReport

WIDTH, BAR_HEIGHT, LABEL_WIDTH = 720, 18, 160


def bar_chart(title: str, rows: list[tuple[str, list[int]]], legend: list[str]) -> str:
    """Horizontal grouped bars, one colour per series."""
    colours = ("#1f6feb", "#2da44e", "#bf8700", "#cf222e")
    top = max([value for _, values in rows for value in values] + [1])
    height = (len(rows) * len(legend) * BAR_HEIGHT) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">']
    y = 24
    for index, name in enumerate(legend):
        parts.append(f'<rect x="{LABEL_WIDTH + index * 140}" y="4" width="10" height="10" '
                     f'fill="{colours[index % 4]}"/><text x="{LABEL_WIDTH + index * 140 + 14}" '
                     f'y="13" font-size="11">{escape(name)}</text>')
    for label, values in rows:
        parts.append(f'<text x="0" y="{y + 12}" font-size="11">{escape(label)}</text>')
        for index, value in enumerate(values):
            length = int((WIDTH - LABEL_WIDTH - 80) * value / top)
            parts.append(f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length}" '
                         f'height="{BAR_HEIGHT - 3}" fill="{colours[index % 4]}"/>'
                         f'<text x="{LABEL_WIDTH + length + 4}" y="{y + 12}" '
                         f'font-size="10">{value / 100:,.2f} €</text>')
            y += BAR_HEIGHT
    parts.append("</svg>")
    return f"<h2>{escape(title)}</h2>" + "".join(parts)


def monthly_rows(report: AuditReport) -> list[tuple[str, list[int]]]:
    issued: dict[str, int] = {}
    redeemed: dict[str, int] = {}
    for months in report.issued_months.values():
        for month, tally in months.items():
            issued[month] = issued.get(month, 0) + tally["cents"]
    for months in report.collectivite_months.values():
        for month, tally in months.items():
            redeemed[month] = redeemed.get(month, 0) + tally["cents"]
    return [(month, [issued.get(month, 0), redeemed.get(month, 0)])
            for month in sorted(set(issued) | set(redeemed))]


def render(report: AuditReport) -> str:
    verdict = "SOUND" if report.sound else f"NOT SOUND ({len(report.findings)} findings)"
    collectivites = [(siren, [t.issued_cents, t.redeemed_cents, t.outstanding_cents])
                     for siren, t in report.totals.items()]
    venues = [(siret, [t["cents"]]) for siret, t in report.venues.items()]
    findings = "".join(f"<tr><td>{escape(f.code)}</td><td>{escape(f.detail)}</td>"
                       f"<td>{escape(' '.join(f.event_ids))}</td></tr>" for f in report.findings)
    return (
        "<!doctype html><html lang='fr'><meta charset='utf-8'><title>passnum audit</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px;font-size:12px}"
        "</style>"
        f"<h1>Audit as of {escape(report.as_of)}: {escape(verdict)}</h1>"
        f"<p>{report.event_count} events, {report.duplicate_count} duplicate deliveries, "
        f"{len(report.streams)} streams, {len(report.checkpoints)} checkpoints.</p>"
        + bar_chart("Issued (activated) vs redeemed per month", monthly_rows(report),
                    ["activated", "redeemed"])
        + bar_chart("Per collectivité", collectivites, ["issued", "redeemed", "outstanding"])
        + bar_chart("Outstanding liabilities", [(s, [v[2]]) for s, v in collectivites],
                    ["outstanding"])
        + bar_chart("Venue payments (redeemed face value)", venues, ["redeemed"])
        + f"<h2>Findings</h2><table>{findings}</table></html>")


def write_html(report: AuditReport, path: Path) -> None:
    path.write_text(render(report), encoding="utf-8")
