"""CSV exports of an audit report: one file per read model, sorted, with a header."""

from __future__ import annotations

import csv
from dataclasses import asdict, fields
from pathlib import Path

from services.auditor.report import AuditReport, CollectiviteTotals


def write_csv(report: AuditReport, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    tables = {
        "collectivites.csv": ([f.name for f in fields(CollectiviteTotals)],
                              [list(asdict(t).values()) for t in report.totals.values()]),
        "venues.csv": (["siret", "redeemed_vouchers", "redeemed_cents"],
                       [[s, t["vouchers"], t["cents"]] for s, t in report.venues.items()]),
        "venue_months.csv": (["siret", "month", "redeemed_vouchers", "redeemed_cents"],
                             [[s, m, t["vouchers"], t["cents"]]
                              for s, months in report.venue_months.items()
                              for m, t in months.items()]),
        "findings.csv": (["code", "siren", "detail", "event_ids"],
                         [[f.code, f.siren, f.detail, " ".join(f.event_ids)]
                          for f in report.findings]),
    }
    written = []
    for name, (header, rows) in tables.items():
        path = directory / name
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(path)
    return written
