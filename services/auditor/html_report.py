"""The audit report as one self-contained HTML page, for a finance officer who reconciles
it: a verdict at the top, the balance equation with its totals, the books of each
collectivité by name, the venues' payments by month, the findings explained with their
evidence, and inline SVG charts drawn from the same figures as the tables (no CDN, no
script, so the file can be archived and opened or printed anywhere).

`render` is pure: an `AuditReport` in, a string out. French first (`language="fr"`),
English on request; numbers, amounts and dates are formatted by babel for the language.
`services.auditor.pdf` prints the same page to PDF.

The voucher categories partition the issued vouchers, as `invariants.check_balance` judges:
issued = redeemed + outstanding + blocked + expired + inactive. Activated vouchers are a
separate figure (activated booklets, used or not), shown with the funds they need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from services.auditor.findings_fr import explain
from services.auditor.report import AuditReport, CollectiviteTotals

LANGUAGES = ("fr", "en")
LOCALES = {"fr": "fr_FR", "en": "en_GB"}
# The categories that partition the issued vouchers, in the order of the equation.
STATES = ("redeemed", "outstanding", "blocked", "expired", "inactive")
COLOURS = {"redeemed": "#2da44e", "outstanding": "#1f6feb", "blocked": "#cf222e",
           "expired": "#8c959f", "inactive": "#bf8700", "committed": "#8250df",
           "received": "#1f6feb", "activated": "#1b7c83", "due": "#2da44e"}
MONTH = re.compile(r"\d{4}-\d{2}")
# Venues drawn one bar each in the payments chart; the others share one bar.
CHART_VENUES_SHOWN = 30
CHART_WIDTH, BAR_HEIGHT, LABEL_WIDTH, VALUE_WIDTH, LEGEND_WIDTH = 760, 18, 230, 120, 250

TEXTS: dict[str, dict[str, Any]] = {
    "fr": {
        "title": "Rapport d'audit du pass numérique",
        "as_of": "Situation au {day}",
        "scope": "Périmètre\u00a0: la collectivité {siren}",
        "sound": "SAIN", "unsound": "NON SAIN",
        "sound_detail": "Chaque règle vérifiée est respectée.",
        "unsound_detail": "{count} anomalie(s) relevée(s)\u00a0: voir la section Anomalies.",
        "replayed": "Le journal a été rejoué depuis son origine\u00a0: {events} événements, "
                    "{duplicates} livraisons en double ignorées, {invalid} enregistrements "
                    "illisibles, {streams} chaînes d'événements, {checkpoints} clôtures "
                    "mensuelles signées.",
        "balance": "Équation d'équilibre (total national)",
        "balance_rule": "Chèques émis = utilisés + en circulation + bloqués + expirés "
                        "+ non activés",
        "vouchers": "Chèques", "euros": "Montant", "sum": "Somme", "check": "Vérification",
        "holds": "égalité vérifiée",
        "fails_more": "écart de {gap}\u00a0: la somme dépasse les émis",
        "fails_less": "écart de {gap}\u00a0: les émis dépassent la somme",
        "definitions": "Définitions",
        "funds": "Fonds par collectivité",
        "books": "Chèques par collectivité",
        "collectivite": "Collectivité", "siren": "SIREN", "siret": "SIRET",
        "committed": "Engagé", "received": "Reçu", "activated": "Activé",
        "fees": "Frais reçus",
        "booklets": "Carnets et public prioritaire",
        "booklets_issued": "Carnets émis", "booklets_distributed": "Carnets remis",
        "booklets_started": "Carnets entamés",
        "redeemed_pic_vouchers": "Chèques utilisés par le public prioritaire (PIC)",
        "redeemed_pic_cents": "Montant utilisé par le public prioritaire (PIC)",
        "issued": "Émis", "redeemed": "Utilisés", "outstanding": "En circulation",
        "blocked": "Bloqués", "expired": "Expirés", "inactive": "Non activés",
        "activated_rule": "Activé ≤ reçu", "balanced": "Équilibre",
        "yes": "oui", "no": "non", "national": "Total national",
        # French typography: a no-break space before the colon.
        "colon": "\u00a0: ",
        "define": {
            "committed": "montant de l'enveloppe que la collectivité s'est engagée à "
                         "financer ;",
            "received": "fonds effectivement reçus de la collectivité (valeur faciale des "
                        "chèques) ;",
            "fees": "frais versés en plus de la valeur faciale ;",
            "issued": "chèques des carnets commandés et émis ;",
            "redeemed": "chèques encaissés par une structure habilitée (annulations "
                        "déduites) ;",
            "outstanding": "chèques activés, non utilisés et encore valables ;",
            "blocked": "chèques non utilisés de carnets déclarés perdus ou volés ;",
            "expired": "chèques activés, non utilisés, dont la validité (tolérance de "
                       "janvier comprise) est passée ;",
            "inactive": "chèques non utilisés de carnets pas encore activés, faute de "
                        "paiement reçu de la collectivité ;",
            "activated": "chèques des carnets activés après réception des fonds, utilisés "
                         "ou non (l'activation exige\u00a0: activé ≤ reçu).",
        },
        "venues": "Paiements dus aux structures, par mois d'utilisation",
        "venue": "Structure", "month": "Mois", "venue_total": "Total {name}",
        "no_venue": "Aucune utilisation enregistrée.",
        "venues_scope": "Ces montants ne comptent que les chèques de la collectivité "
                        "{siren}.",
        "unnamed": "sans nom enregistré",
        "findings": "Anomalies", "no_findings": "Aucune anomalie.",
        "shown": "{shown} affichée(s) sur {total}.",
        "detail": "Détail technique", "evidence": "Preuves (identifiants d'événements)",
        "log": "journal",
        "charts": "Graphiques",
        "chart_states": "Chèques émis par collectivité, par état (montants)",
        "chart_funds": "Fonds par collectivité\u00a0: engagé, reçu, activé",
        "chart_months": "Activations et utilisations par mois (montants)",
        "chart_venues": "Paiements dus par structure (montants)", "due": "Dû",
        "other_venues": "Autres structures ({count})",
        "chart_total": "total {value}",
        "extra": "Accord avec la base de données des services",
        "live_agrees": "La base de données des services concorde avec le journal rejoué.",
        "live_disagrees": "La base de données des services ne concorde pas avec le journal "
                          "rejoué\u00a0: voir les anomalies.",
    },
    "en": {
        "title": "Pass numérique audit report",
        "as_of": "Books as of {day}",
        "scope": "Scope: the collectivité {siren}",
        "sound": "SOUND", "unsound": "NOT SOUND",
        "sound_detail": "Every rule checked holds.",
        "unsound_detail": "{count} finding(s): see the Findings section.",
        "replayed": "The log was replayed from its origin: {events} events, {duplicates} "
                    "duplicate deliveries ignored, {invalid} unreadable records, {streams} "
                    "event chains, {checkpoints} signed monthly checkpoints.",
        "balance": "Balance equation (national total)",
        "balance_rule": "Vouchers issued = redeemed + outstanding + blocked + expired "
                        "+ inactive",
        "vouchers": "Vouchers", "euros": "Amount", "sum": "Sum", "check": "Check",
        "holds": "equal", "fails_more": "gap of {gap}: the sum exceeds the issued",
        "fails_less": "gap of {gap}: the issued exceed the sum",
        "definitions": "Definitions",
        "funds": "Funds per collectivité",
        "books": "Vouchers per collectivité",
        "collectivite": "Collectivité", "siren": "SIREN", "siret": "SIRET",
        "committed": "Committed", "received": "Received", "activated": "Activated",
        "fees": "Fees received",
        "booklets": "Booklets and priority public",
        "booklets_issued": "Booklets issued", "booklets_distributed": "Booklets handed out",
        "booklets_started": "Booklets started",
        "redeemed_pic_vouchers": "Vouchers redeemed by the priority public (PIC)",
        "redeemed_pic_cents": "Amount redeemed by the priority public (PIC)",
        "issued": "Issued", "redeemed": "Redeemed", "outstanding": "Outstanding",
        "blocked": "Blocked", "expired": "Expired", "inactive": "Inactive",
        "activated_rule": "Activated ≤ received", "balanced": "Balanced",
        "yes": "yes", "no": "no", "national": "National total", "colon": ": ",
        "define": {
            "committed": "the envelope the collectivité committed to fund;",
            "received": "funds actually received from the collectivité (the vouchers' face "
                        "value);",
            "fees": "fees paid on top of the face value;",
            "issued": "vouchers of the booklets ordered and issued;",
            "redeemed": "vouchers redeemed at an accredited venue (cancellations "
                        "deducted);",
            "outstanding": "activated vouchers, unused and still valid;",
            "blocked": "unused vouchers of booklets reported lost or stolen;",
            "expired": "activated vouchers, unused, past their validity (January "
                       "tolerance included);",
            "inactive": "unused vouchers of booklets not activated yet, the "
                        "collectivité's payment not being received;",
            "activated": "vouchers of the booklets activated once funds arrived, used or "
                         "not (activation requires: activated ≤ received).",
        },
        "venues": "Payments due to venues, by month of redemption",
        "venue": "Venue", "month": "Month", "venue_total": "Total {name}",
        "no_venue": "No redemption recorded.",
        "venues_scope": "These amounts count the vouchers of the collectivité {siren} "
                        "only.",
        "unnamed": "no name recorded",
        "findings": "Findings", "no_findings": "No finding.",
        "shown": "{shown} shown of {total}.",
        "detail": "Technical detail", "evidence": "Evidence (event ids)",
        "log": "log",
        "charts": "Charts",
        "chart_states": "Vouchers issued per collectivité, by state (amounts)",
        "chart_funds": "Funds per collectivité: committed, received, activated",
        "chart_months": "Activations and redemptions per month (amounts)",
        "chart_venues": "Payments due per venue (amounts)", "due": "Due",
        "other_venues": "Other venues ({count})",
        "chart_total": "total {value}",
        "extra": "Agreement with the services' database",
        "live_agrees": "The services' database agrees with the replayed log.",
        "live_disagrees": "The services' database disagrees with the replayed log: see the "
                          "findings.",
    },
}

STYLE = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em;color:#1b1f24;font-size:14px}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de}
.verdict{padding:.6em 1em;border-radius:6px;margin:1em 0}
.verdict strong{font-size:1.6em;letter-spacing:.05em}
.sound{background:#dafbe1;border:2px solid #2da44e}
.unsound{background:#ffebe9;border:2px solid #cf222e}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #d0d7de;padding:3px 7px;font-size:12px;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tfoot td,tr.total td{font-weight:bold;background:#f6f8fa}
.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}
.equation-rule{font-weight:bold}
code{font-size:11px;word-break:break-all}
figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}
.finding h3{margin-bottom:.2em;color:#cf222e}
@media print{
@page{size:A4 landscape;margin:12mm}
body{margin:0;font-size:10px}
h2{break-after:avoid}tr,figure,.verdict,.finding{break-inside:avoid}
thead{display:table-header-group}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
svg{max-width:100%;height:auto}
}
"""


@dataclass(frozen=True)
class Formatter:
    """babel's formatting for one language: counts, euros from integer cents, days."""

    language: str

    @property
    def locale(self) -> str:
        return LOCALES[self.language]

    def count(self, number: int) -> str:
        return format_decimal(number, locale=self.locale)

    def euros(self, cents: int) -> str:
        return format_currency(Decimal(cents).scaleb(-2), "EUR", locale=self.locale)

    def day(self, iso_day: str) -> str:
        return format_date(date.fromisoformat(iso_day), format="long", locale=self.locale)

    def month(self, year_month: str) -> str:
        first = date(int(year_month[:4]), int(year_month[5:7]), 1)
        return format_date(first, format="MMMM y", locale=self.locale)


def national_totals(report: AuditReport) -> CollectiviteTotals:
    """Every figure of the collectivités' books summed (the national line)."""
    sums = {f.name: sum(getattr(t, f.name) for t in report.totals.values())
            for f in fields(CollectiviteTotals) if f.type in ("int", int)}
    return CollectiviteTotals(siren="", name="", **sums)


def partition_sum(totals: CollectiviteTotals) -> tuple[int, int]:
    """The right-hand side of the balance equation: (vouchers, cents)."""
    return (sum(getattr(totals, f"{state}_vouchers") for state in STATES),
            sum(getattr(totals, f"{state}_cents") for state in STATES))


def render(report: AuditReport, language: str = "fr") -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    text, formatter = TEXTS[language], Formatter(language)
    sections = [
        _header(report, text, formatter),
        _balance_section(national_totals(report), text, formatter),
        _definitions(text),
        _funds_table(report, text, formatter),
        _books_table(report, text, formatter),
        _booklets_table(report, text, formatter),
        _venues_table(report, text, formatter),
        _findings_section(report, text, language),
        _extra_section(report, text),
        _charts(report, text, formatter),
    ]
    return (f'<!doctype html>\n<html lang="{language}"><head><meta charset="utf-8">'
            f"<title>{escape(text['title'])} — {escape(formatter.day(report.as_of))}</title>"
            f"<style>{STYLE}</style></head><body>" + "".join(sections) + "</body></html>\n")


def write_html(report: AuditReport, path: Path, language: str = "fr") -> None:
    path.write_text(render(report, language), encoding="utf-8")


# ------------------------------------------------------------------ sections


def _header(report: AuditReport, text: dict, formatter: Formatter) -> str:
    count = sum(report.findings_by_code.values())
    verdict = (f'<div class="verdict sound" id="verdict"><strong>{text["sound"]}</strong> '
               f'<span>{escape(text["sound_detail"])}</span></div>') if report.sound else (
        f'<div class="verdict unsound" id="verdict"><strong>{text["unsound"]}</strong> '
        f'<span>{escape(text["unsound_detail"].format(count=formatter.count(count)))}'
        "</span></div>")
    scoped = report.totals.get(report.collectivite or "")
    named = f"{scoped.name} ({scoped.siren})" if scoped and scoped.name else report.collectivite
    scope = f"<p>{escape(text['scope'].format(siren=named))}</p>" if report.collectivite else ""
    replayed = text["replayed"].format(
        events=formatter.count(report.event_count),
        duplicates=formatter.count(report.duplicate_count),
        invalid=formatter.count(report.invalid_count),
        streams=formatter.count(len(report.streams)),
        checkpoints=formatter.count(len(report.checkpoints)))
    return (f"<h1>{escape(text['title'])}</h1>"
            f'<p id="as-of">{escape(text["as_of"].format(day=formatter.day(report.as_of)))}</p>'
            f"{scope}{verdict}<p>{escape(replayed)}</p>")


def _balance_section(national: CollectiviteTotals, text: dict, formatter: Formatter) -> str:
    """The equation written out twice, in vouchers and in euros, with both sides' totals."""
    right_vouchers, right_cents = partition_sum(national)
    heads = [text["issued"], "="] + [part for state in STATES for part in (text[state], "+")]
    heads[-1] = "="
    header = "".join(f"<th>{escape(head)}</th>" for head in heads + [text["sum"]])
    rows = []
    for unit, suffix, left, right, show in (
            ("vouchers", "vouchers", national.issued_vouchers, right_vouchers, formatter.count),
            ("euros", "cents", national.issued_cents, right_cents, formatter.euros)):
        cells = [f'<td class="n" data-side="left">{show(left)}</td><td>=</td>']
        cells += [f'<td class="n" data-term="{state}">'
                  f"{show(getattr(national, f'{state}_{suffix}'))}</td>"
                  f"<td>{'+' if state != STATES[-1] else '='}</td>" for state in STATES]
        cells.append(f'<td class="n" data-side="right">{show(right)}</td>')
        gap = text["fails_more" if right > left else "fails_less"].format(
            gap=show(abs(left - right)))
        verdict = (f'<td class="ok">{escape(text["holds"])}</td>' if left == right else
                   f'<td class="bad">{escape(gap)}</td>')
        rows.append(f'<tr data-unit="{unit}"><th>{escape(text[unit])}</th>'
                    + "".join(cells) + verdict + "</tr>")
    return (f'<section id="balance"><h2>{escape(text["balance"])}</h2>'
            f'<p class="equation-rule">{escape(text["balance_rule"])}</p>'
            f"<table><thead><tr><th></th>{header}<th>{escape(text['check'])}</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def _definitions(text: dict) -> str:
    items = "".join(f"<li><strong>{escape(text[name])}</strong>{text['colon']}"
                    f"{escape(meaning)}</li>" for name, meaning in text["define"].items())
    return f"<details open><summary>{escape(text['definitions'])}</summary><ul>{items}</ul></details>"


def by_name(report: AuditReport) -> list[CollectiviteTotals]:
    """The collectivités in the order a reader looks them up: by name, then SIREN."""
    return sorted(report.totals.values(), key=lambda totals: (totals.name, totals.siren))


def _collectivite_label(totals: CollectiviteTotals) -> str:
    return escape(totals.name or totals.siren)


def _funds_table(report: AuditReport, text: dict, formatter: Formatter) -> str:
    def row(totals: CollectiviteTotals, label: str, siren: str, css: str) -> str:
        holds = totals.activated_cents <= totals.received_cents
        return (f'<tr class="{css}" data-siren="{escape(siren)}"><td>{label}</td>'
                f"<td>{escape(totals.siren)}</td>"
                f'<td class="n" data-field="committed_cents">'
                f"{formatter.euros(totals.committed_cents)}</td>"
                f'<td class="n" data-field="received_cents">'
                f"{formatter.euros(totals.received_cents)}</td>"
                f'<td class="n" data-field="fees_received_cents">'
                f"{formatter.euros(totals.fees_received_cents)}</td>"
                f'<td class="n" data-field="activated_vouchers">'
                f"{formatter.count(totals.activated_vouchers)}</td>"
                f'<td class="n" data-field="activated_cents">'
                f"{formatter.euros(totals.activated_cents)}</td>"
                f'<td class="{"ok" if holds else "bad"}">{text["yes" if holds else "no"]}</td>'
                "</tr>")

    rows = [row(t, _collectivite_label(t), t.siren, "") for t in by_name(report)]
    national = row(national_totals(report), escape(text["national"]), "", "total")
    return (f'<section id="funds"><h2>{escape(text["funds"])}</h2><table><thead><tr>'
            f"<th>{text['collectivite']}</th><th>{text['siren']}</th>"
            f"<th>{text['committed']}</th><th>{text['received']}</th><th>{text['fees']}</th>"
            f"<th>{text['activated']} ({text['vouchers'].lower()})</th>"
            f"<th>{text['activated']} ({text['euros'].lower()})</th>"
            f"<th>{escape(text['activated_rule'])}</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody><tfoot>{national}</tfoot></table></section>")


def _books_table(report: AuditReport, text: dict, formatter: Formatter) -> str:
    columns = ("issued",) + STATES

    def row(totals: CollectiviteTotals, label: str, siren: str, css: str) -> str:
        cells = "".join(
            f'<td class="n" data-field="{name}_vouchers">'
            f"{formatter.count(getattr(totals, f'{name}_vouchers'))}</td>"
            f'<td class="n" data-field="{name}_cents">'
            f"{formatter.euros(getattr(totals, f'{name}_cents'))}</td>" for name in columns)
        vouchers, cents = partition_sum(totals)
        holds = (vouchers, cents) == (totals.issued_vouchers, totals.issued_cents)
        return (f'<tr class="{css}" data-siren="{escape(siren)}"><td>{label}</td>{cells}'
                f'<td class="{"ok" if holds else "bad"}">{text["yes" if holds else "no"]}</td>'
                "</tr>")

    rows = [row(t, f"{_collectivite_label(t)}<br><small>{escape(t.siren)}</small>", t.siren,
                "") for t in by_name(report)]
    national = row(national_totals(report), escape(text["national"]), "", "total")
    top = "".join(f'<th colspan="2">{escape(text[name])}</th>' for name in columns)
    units = f"<th>{text['vouchers'].lower()}</th><th>€</th>" * len(columns)
    return (f'<section id="books"><h2>{escape(text["books"])}</h2><table><thead>'
            f'<tr><th rowspan="2">{text["collectivite"]}</th>{top}'
            f'<th rowspan="2">{text["balanced"]}</th></tr><tr>{units}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody><tfoot>{national}</tfoot></table></section>")


def _booklets_table(report: AuditReport, text: dict, formatter: Formatter) -> str:
    """Booklets handed out and started, and the vouchers used by the priority public (the
    co-financing rules count them)."""
    counts = ("booklets_issued", "booklets_distributed", "booklets_started",
              "redeemed_pic_vouchers")

    def row(totals: CollectiviteTotals, label: str, siren: str, css: str) -> str:
        cells = "".join(f'<td class="n" data-field="{name}">'
                        f"{formatter.count(getattr(totals, name))}</td>" for name in counts)
        return (f'<tr class="{css}" data-siren="{escape(siren)}"><td>{label}</td>{cells}'
                f'<td class="n" data-field="redeemed_pic_cents">'
                f"{formatter.euros(totals.redeemed_pic_cents)}</td></tr>")

    rows = [row(t, _collectivite_label(t), t.siren, "") for t in by_name(report)]
    national = row(national_totals(report), escape(text["national"]), "", "total")
    heads = "".join(f"<th>{escape(text[name])}</th>" for name in counts)
    return (f'<section id="booklets"><h2>{escape(text["booklets"])}</h2><table><thead><tr>'
            f"<th>{text['collectivite']}</th>{heads}"
            f"<th>{escape(text['redeemed_pic_cents'])}</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody><tfoot>{national}</tfoot></table></section>")


def venue_label(report: AuditReport, siret: str, text: dict) -> str:
    return report.venue_names.get(siret) or f"{siret} ({text['unnamed']})"


def _venues_table(report: AuditReport, text: dict, formatter: Formatter) -> str:
    # A report scoped to one collectivité folds its vouchers only (Books.excluded): the
    # venues' figures are then what that collectivité's vouchers owe them, and it says so.
    heading = f'<section id="venues"><h2>{escape(text["venues"])}</h2>' + (
        f"<p>{escape(text['venues_scope'].format(siren=report.collectivite))}</p>"
        if report.collectivite else "")
    if not report.venue_months:
        return f'{heading}<p>{text["no_venue"]}</p></section>'
    rows = []
    order = sorted(report.venue_months, key=lambda s: (venue_label(report, s, text), s))
    for siret in order:
        name = escape(venue_label(report, siret, text))
        for month, tally in sorted(report.venue_months[siret].items()):
            rows.append(f'<tr data-siret="{siret}" data-month="{month}"><td>{name}</td>'
                        f"<td>{siret}</td><td>{escape(formatter.month(month))}</td>"
                        f'<td class="n">{formatter.count(tally["vouchers"])}</td>'
                        f'<td class="n">{formatter.euros(tally["cents"])}</td></tr>')
        total = report.venues.get(siret, {"vouchers": 0, "cents": 0})
        rows.append(f'<tr class="total" data-siret="{siret}"><td colspan="3">'
                    f"{escape(text['venue_total'].format(name=venue_label(report, siret, text)))}"
                    f'</td><td class="n">{formatter.count(total["vouchers"])}</td>'
                    f'<td class="n">{formatter.euros(total["cents"])}</td></tr>')
    vouchers = sum(t["vouchers"] for t in report.venues.values())
    cents = sum(t["cents"] for t in report.venues.values())
    return (f"{heading}<table><thead><tr><th>{text['venue']}</th>"
            f"<th>{text['siret']}</th><th>{text['month']}</th>"
            f"<th>{text['vouchers']}</th><th>{text['euros']}</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody><tfoot><tr><td colspan=\"3\">{text['national']}"
            f'</td><td class="n">{formatter.count(vouchers)}</td>'
            f'<td class="n">{formatter.euros(cents)}</td></tr></tfoot></table></section>')


def _findings_section(report: AuditReport, text: dict, language: str) -> str:
    if report.sound:
        return (f'<section id="findings"><h2>{escape(text["findings"])}</h2>'
                f'<p class="ok" id="no-findings">{escape(text["no_findings"])}</p></section>')
    names = {siren: t.name for siren, t in report.totals.items()}
    parts = []
    for code, total in report.findings_by_code.items():
        explanation = explain(code, language)
        shown = [f for f in report.findings if f.code == code]
        rows = "".join(
            f'<tr><td>{escape(names.get(f.siren) or f.siren or text["log"])}</td>'
            f"<td><code>{escape(f.detail)}</code></td><td>"
            + "<br>".join(f"<code>{escape(name)}</code>" for name in f.event_ids)
            + "</td></tr>" for f in shown)
        more = (f"<p>{escape(text['shown'].format(shown=len(shown), total=total))}</p>"
                if len(shown) < total else "")
        parts.append(
            f'<div class="finding" data-code="{escape(code)}"><h3>{escape(explanation.title)}'
            f" ({total})</h3><p>{escape(explanation.text)}</p>{more}<table><thead><tr>"
            f"<th>{text['collectivite']}</th><th>{escape(text['detail'])}</th>"
            f"<th>{escape(text['evidence'])}</th></tr></thead><tbody>{rows}</tbody></table>"
            "</div>")
    return f'<section id="findings"><h2>{escape(text["findings"])}</h2>{"".join(parts)}</section>'


def _extra_section(report: AuditReport, text: dict) -> str:
    """The live agreement in one sentence, its digests (for a technician) folded away."""
    if not report.extra:
        return ""
    agreement = report.extra.get("live_agreement")
    sentence = "" if agreement is None else (
        f'<p class="ok">{escape(text["live_agrees"])}</p>' if agreement == "agrees" else
        f'<p class="bad">{escape(text["live_disagrees"])}</p>')
    items = "".join(f"<li>{escape(str(name))}{text['colon']}<code>{escape(str(value))}</code>"
                    "</li>" for name, value in sorted(report.extra.items())
                    if name != "live_agreement")
    details = (f"<details><summary>{escape(text['detail'])}</summary><ul>{items}</ul>"
               "</details>") if items else ""
    return f'<section id="extra"><h2>{escape(text["extra"])}</h2>{sentence}{details}</section>'


# ------------------------------------------------------------------ charts


@dataclass(frozen=True)
class Bar:
    """One bar (or one segment of a stacked bar): its series, amount and shown label."""

    series: str
    cents: int


def _charts(report: AuditReport, text: dict, formatter: Formatter) -> str:
    collectivites = by_name(report)
    states = [(_plain_label(t), [Bar(state, getattr(t, f"{state}_cents")) for state in STATES],
               t.issued_cents) for t in collectivites]
    funds = [(_plain_label(t), [Bar("committed", t.committed_cents),
                                Bar("received", t.received_cents),
                                Bar("activated", t.activated_cents)]) for t in collectivites]
    venues = venue_bars(report, text)
    return (f'<section id="charts"><h2>{escape(text["charts"])}</h2>'
            + stacked_chart("states", text["chart_states"], states, text, formatter)
            + grouped_chart("funds", text["chart_funds"], funds, text, formatter)
            + grouped_chart("months", text["chart_months"], monthly_bars(report, formatter),
                            text, formatter)
            + grouped_chart("venues", text["chart_venues"], venues, text, formatter)
            + "</section>")


def venue_bars(report: AuditReport, text: dict) -> list[tuple[str, list[Bar]]]:
    """The venues owed the most, one bar each, and the others together in one bar, so
    that thousands of venues make a readable chart that still adds up to the table."""
    ranked = sorted(report.venues.items(), key=lambda item: (-item[1]["cents"], item[0]))
    bars = [(venue_label(report, siret, text), [Bar("due", tally["cents"])])
            for siret, tally in ranked[:CHART_VENUES_SHOWN]]
    rest = ranked[CHART_VENUES_SHOWN:]
    if rest:
        bars.append((text["other_venues"].format(count=len(rest)),
                     [Bar("due", sum(tally["cents"] for _, tally in rest))]))
    return bars


def _plain_label(totals: CollectiviteTotals) -> str:
    return totals.name or totals.siren


def monthly_bars(report: AuditReport, formatter: Formatter) -> list[tuple[str, list[Bar]]]:
    """Per calendar month: the face value activated then, and the face value redeemed then.
    Booklets never activated have no month and are left out (they are in the table)."""
    activated: dict[str, int] = {}
    redeemed: dict[str, int] = {}
    for source, target in ((report.issued_months, activated),
                           (report.collectivite_months, redeemed)):
        for months in source.values():
            for month, tally in months.items():
                if MONTH.fullmatch(month):
                    target[month] = target.get(month, 0) + tally["cents"]
    return [(formatter.month(month), [Bar("activated", activated.get(month, 0)),
                                      Bar("redeemed", redeemed.get(month, 0))])
            for month in sorted(set(activated) | set(redeemed))]


def _legend(series: list[str], totals: dict[str, int], text: dict, formatter: Formatter,
            top: int = 4) -> str:
    """One colour key per series, with the series' total (what its bars add up to)."""
    parts = []
    for index, name in enumerate(series):
        x = index * LEGEND_WIDTH
        label = f"{text[name]} ({text['chart_total'].format(value=formatter.euros(totals[name]))})"
        parts.append(f'<rect x="{x}" y="{top}" width="10" height="10" fill="{COLOURS[name]}"/>'
                     f'<text x="{x + 14}" y="{top + 9}" font-size="11" data-legend="{name}">'
                     f"{escape(label)}</text>")
    return "".join(parts)


def _bar(name: str, bar: Bar, x: int, y: int, length: int, height: int) -> str:
    return (f'<rect x="{x}" y="{y}" width="{length}" height="{height}" '
            f'fill="{COLOURS[bar.series]}" data-series="{bar.series}" data-cents="{bar.cents}" '
            f'data-label="{escape(name)}"/>')


def _figure(chart: str, title: str, height: int, body: str) -> str:
    return (f'<figure data-chart="{chart}"><figcaption>{escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" '
            f'viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="{escape(title)}">'
            f"{body}</svg></figure>")


def grouped_chart(chart: str, title: str, rows: list[tuple[str, list[Bar]]], text: dict,
                  formatter: Formatter) -> str:
    """Horizontal bars, one per series under each label, each with its amount written."""
    series = list(dict.fromkeys(bar.series for _, bars in rows for bar in bars))
    totals = {name: sum(b.cents for _, bars in rows for b in bars if b.series == name)
              for name in series}
    top = max([bar.cents for _, bars in rows for bar in bars] + [1])
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    parts, y = [_legend(series, totals, text, formatter)], 26
    for label, bars in rows:
        parts.append(f'<text x="0" y="{y + 12}" font-size="11">{escape(label[:36])}</text>')
        for bar in bars:
            length = span * bar.cents // top
            parts.append(_bar(label, bar, LABEL_WIDTH, y, length, BAR_HEIGHT - 3)
                         + f'<text x="{LABEL_WIDTH + length + 4}" y="{y + 12}" font-size="10">'
                         f"{formatter.euros(bar.cents)}</text>")
            y += BAR_HEIGHT
        y += 6
    return _figure(chart, title, y + 4, "".join(parts))


def stacked_chart(chart: str, title: str, rows: list[tuple[str, list[Bar], int]], text: dict,
                  formatter: Formatter) -> str:
    """One bar per label, its segments the parts of a whole (the issued vouchers), the
    whole written at its end: the bar's length is the sum of its segments, and when that
    sum is not the whole the label says both."""
    series = list(STATES)
    totals = {name: sum(b.cents for _, bars, _ in rows for b in bars if b.series == name)
              for name in series}
    top = max([sum(bar.cents for bar in bars) for _, bars, _ in rows] + [1])
    span = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    parts, y = [_legend(series[:3], totals, text, formatter),
                _legend(series[3:], totals, text, formatter, top=20)], 42
    for label, bars, issued in rows:
        parts.append(f'<text x="0" y="{y + 13}" font-size="11">{escape(label[:36])}</text>')
        x, whole = LABEL_WIDTH, 0
        for bar in bars:
            whole += bar.cents
            end = LABEL_WIDTH + span * whole // top
            parts.append(_bar(label, bar, x, y, end - x, BAR_HEIGHT))
            x = end
        written = f"{text['issued']} {formatter.euros(whole)}" if whole == issued else (
            f"{text['sum']} {formatter.euros(whole)} ≠ {text['issued'].lower()} "
            f"{formatter.euros(issued)}")
        parts.append(f'<text x="{x + 4}" y="{y + 13}" font-size="10">{escape(written)}</text>')
        y += BAR_HEIGHT + 8
    return _figure(chart, title, y + 4, "".join(parts))
