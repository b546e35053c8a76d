"""The audit report: one immutable value, printed as a terminal summary, JSON, HTML or CSV.

The JSON is byte-identical across two replays of the same log: everything in it comes from
the log (no wall clock, no timing, no host), every list is sorted, every mapping has sorted
keys. Timings and rates are printed on the terminal only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from schemas.messages import ProviderAccredited
from services.auditor import wire
from services.auditor.books import Finding
from services.auditor.invariants import CollectiviteBooks, Judgement, Tally

if TYPE_CHECKING:
    from services.auditor.books import Books
    from services.auditor.chain import ChainVerifier


class ReplayState(Protocol):
    """What a report is built from (`services.auditor.replay.Replayer`, which imports this
    module)."""

    books: Books
    options: Any
    chains: ChainVerifier
    records_read: int
    invalid_count: int

# A log broken everywhere would otherwise list millions of identical findings.
MAX_FINDINGS_PER_CODE = 1_000


@dataclass(frozen=True)
class CollectiviteTotals:
    """One collectivité's books, flat (the columns of `audit_collectivites`)."""

    siren: str
    name: str
    committed_cents: int
    received_cents: int
    fees_received_cents: int
    activated_cents: int
    issued_vouchers: int
    issued_cents: int
    activated_vouchers: int
    redeemed_vouchers: int
    redeemed_cents: int
    outstanding_vouchers: int
    outstanding_cents: int
    blocked_vouchers: int
    blocked_cents: int
    expired_vouchers: int
    expired_cents: int
    inactive_vouchers: int
    inactive_cents: int
    redeemed_pic_vouchers: int
    redeemed_pic_cents: int
    booklets_issued: int
    booklets_distributed: int
    booklets_started: int

    @classmethod
    def of(cls, books: CollectiviteBooks) -> "CollectiviteTotals":
        return cls(books.siren, books.name, books.committed_cents, books.received_cents,
                   books.fees_received_cents, books.activated_cents, books.issued.vouchers,
                   books.issued.cents, books.activated.vouchers,
                   books.redeemed_recorded.vouchers, books.redeemed_recorded.cents,
                   books.outstanding.vouchers, books.outstanding.cents,
                   books.blocked.vouchers, books.blocked.cents, books.expired.vouchers,
                   books.expired.cents, books.inactive.vouchers, books.inactive.cents,
                   books.redeemed_target_group.vouchers, books.redeemed_target_group.cents,
                   books.booklets_issued, books.booklets_distributed, books.booklets_started)


@dataclass(frozen=True)
class AuditReport:
    as_of: str
    until: str | None
    collectivite: str | None
    records_read: int
    event_count: int
    duplicate_count: int
    invalid_count: int
    events_after_until: int
    counts_by_type: dict[str, int]
    rejections_by_reason: dict[str, int]
    findings: tuple[Finding, ...]
    findings_by_code: dict[str, int]
    totals: dict[str, CollectiviteTotals]
    venues: dict[str, dict[str, int]]
    venue_months: dict[str, dict[str, dict[str, int]]]
    collectivite_months: dict[str, dict[str, dict[str, int]]]
    issued_months: dict[str, dict[str, dict[str, int]]]
    validity_years: dict[str, dict[str, dict[str, dict[str, int]]]]
    streams: dict[str, dict[str, Any]]
    checkpoints: tuple[dict[str, Any], ...]
    memory: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the live agreement
    # SIRET -> the name of its latest accreditation, for the readers of the HTML report
    venue_names: dict[str, str] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        return not self.findings

    @property
    def undecodable_count(self) -> int:
        return self.invalid_count

    def unresolved_names(self) -> set[str]:
        return {name for finding in self.findings for name in finding.event_ids
                if name.startswith(("fingerprint:", "position:"))}

    def with_names(self, names: dict[str, str]) -> "AuditReport":
        findings = tuple(replace(f, event_ids=tuple(sorted(names.get(n, n) for n in f.event_ids)))
                         for f in self.findings)
        return replace(self, findings=tuple(sorted(findings, key=_finding_order)))

    def with_findings(self, more: list[Finding], extra: dict[str, Any]) -> "AuditReport":
        findings = _capped(list(self.findings) + more)
        return replace(self, findings=findings, findings_by_code=_by_code(
            list(self.findings) + more), extra={**self.extra, **extra})

    def as_document(self) -> dict[str, Any]:
        document = asdict(self)
        document["sound"] = self.sound
        document["findings"] = [asdict(finding) for finding in self.findings]
        document["collectivites"] = document.pop("totals")
        return document

    def to_json(self) -> str:
        return json.dumps(self.as_document(), sort_keys=True, indent=2, ensure_ascii=False)


def _finding_order(finding: Finding) -> tuple:
    return (finding.code, finding.siren, finding.detail, finding.event_ids)


def _by_code(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.code] = counts.get(finding.code, 0) + 1
    return dict(sorted(counts.items()))


def _capped(findings: list[Finding]) -> tuple[Finding, ...]:
    kept: list[Finding] = []
    per_code: dict[str, int] = {}
    for finding in sorted(findings, key=_finding_order):
        per_code[finding.code] = per_code.get(finding.code, 0) + 1
        if per_code[finding.code] <= MAX_FINDINGS_PER_CODE:
            kept.append(finding)
    return tuple(kept)


def _tally(tally: Tally) -> dict[str, int]:
    return {"vouchers": tally.vouchers, "cents": tally.cents}


def _nested(table: dict[tuple[str, str], Tally]) -> dict[str, dict[str, dict[str, int]]]:
    nested: dict[str, dict[str, dict[str, int]]] = {}
    for (outer, inner), tally in sorted(table.items()):
        nested.setdefault(outer, {})[inner] = _tally(tally)
    return nested


def venue_names(books: "Books") -> dict[str, str]:
    """Each venue's name as its latest accreditation (in event time) gives it."""
    names: dict[str, str] = {}
    for venue in books.venues:
        accreditations = [item for item in venue.events if isinstance(item[3], ProviderAccredited)]
        if accreditations:
            latest = max(accreditations, key=lambda item: item[:3])[3]
            assert isinstance(latest, ProviderAccredited)  # the list holds nothing else
            names[venue.siret] = latest.name
    return dict(sorted(names.items()))


def build_report(replayer: ReplayState, judgement: Judgement, as_of_micros: int) -> AuditReport:
    books, options = replayer.books, replayer.options
    selected = {siren: books_of for siren, books_of in judgement.collectivites.items()
                if options.collectivite is None or siren == options.collectivite}
    findings = [f for f in judgement.findings
                if options.collectivite is None or f.siren in ("", options.collectivite)]
    years: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for (siren, year), tallies in sorted(judgement.validity_years.items()):
        years.setdefault(siren, {})[str(year)] = {k: _tally(v) for k, v in tallies.items()}
    memory: dict[str, float] = dict(books.memory_bytes(),
                                     chain_hashes=replayer.chains.memory_bytes())
    memory["vouchers_count"] = books.voucher_total
    memory["bytes_per_voucher"] = round(
        sum(v for k, v in memory.items() if k != "vouchers_count") / max(1, books.voucher_total),
        2)
    return AuditReport(
        as_of=wire.date_of_day(judgement.as_of_day).isoformat(),
        until=options.until.isoformat() if options.until else None,
        collectivite=options.collectivite, records_read=replayer.records_read,
        event_count=books.event_count, duplicate_count=replayer.chains.duplicates,
        invalid_count=replayer.invalid_count, events_after_until=books.events_after_until,
        counts_by_type=dict(sorted(books.counts_by_type.items())),
        rejections_by_reason=dict(sorted(books.rejections_by_reason.items())),
        findings=_capped(findings), findings_by_code=_by_code(findings),
        totals={siren: CollectiviteTotals.of(b) for siren, b in sorted(selected.items())},
        venues={siret: _tally(t) for siret, t in sorted(judgement.venues.items())},
        venue_months=_nested(judgement.venue_months),
        collectivite_months={k: v for k, v in _nested(judgement.collectivite_months).items()
                             if k in selected},
        issued_months={k: v for k, v in _nested(judgement.issued_months).items()
                       if k in selected},
        validity_years={k: v for k, v in years.items() if k in selected},
        streams={name: {"events": sequence, "head_hash": digest}
                 for name, (sequence, digest) in replayer.chains.heads().items()},
        checkpoints=tuple(sorted(
            ({"month": c.month, "root_hash": c.root_hash, "event_count": c.event_count,
              "public_key": c.public_key, "event_id": c.event_id} for c in books.checkpoints),
            key=lambda c: (c["month"], c["event_id"]))),
        memory=memory, venue_names=venue_names(books))
