"""The auditor's replay: read the event topics from offset 0, verify each record's chain
link, fold the new facts into the books, judge the invariants, name every offending event.

Read order: the issuer's topic to its end, then the redeemer's, then the auditor's. A
redemption is then read after every issuer fact it can depend on, so that what the issuer
decides about it (issued, active, blocked, validity) is judged as it is read; what depends
on other redeemer facts (the venue's accreditation at that instant, a second redemption,
settlement) is judged at the end. The result does not depend on how partitions interleave:
the per-record work is order-independent and the end judgements sort by intrinsic keys.

Findings name events by id. Where the replay kept only a fingerprint (a redemption's slot,
an activation's chain position), `resolve_names` re-reads the log once to name them: a
faulty log costs a second read, a sound one never does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from hashlib import sha256
from typing import Callable, Iterable, Sequence

from passnum.core.codec import CHAIN_HEADER, SIGNATURE_HEADER
from passnum.core.head_signatures import verify_head
from passnum.core.log import fetch_high_water_marks
from passnum.core.settings import Settings
from passnum.core.topology import Topology, topology_for
from services.auditor import checkpoint, compiled, wire
from services.auditor.books import Books, Finding, apply_value
from services.auditor.canonical import CanonicalDecoder
from services.auditor.chain import NEW, REJECTED, ChainVerifier, StreamChain
from services.auditor.invariants import (
    Judgement,
    VenueRules,
    check_balance,
    fold_envelopes,
    judge_dates_in_the_future,
    requests_decided_twice,
    resolve_contested,
    sweep_vouchers,
    venue_timelines,
)
from services.auditor.parallel import Forked
from services.auditor.reader import collector_paused, read_batches, read_record_batches
from services.auditor.report import AuditReport, build_report
from services.auditor.settlement_checks import check_settlement, standing_index
from services.auditor.wire import InvalidEvent

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class ReplayOptions:
    until: datetime | None = None  # books as of this instant (by occurred_at)
    collectivite: str | None = None  # one tenant's books
    trusted_keys: frozenset[str] = frozenset()  # checkpoint keys; empty: any valid signature
    resolve_names: bool = True
    # Worker processes for the first read, split by partition (services.auditor.parallel);
    # 0: one per core (at most 4), 1: read in this process.
    processes: int = 0
    # Public keys of the processors' chain-head signatures (passnum.core.head_signatures);
    # empty: heads are not checked (logs written without workers: tests, benchmark).
    head_keys: tuple[bytes, ...] = ()


@dataclass
class Replayer:
    """The replay's state; `read` can be called again to continue (the follower does)."""

    settings: Settings
    options: ReplayOptions = field(default_factory=ReplayOptions)
    books: Books = field(init=False)
    chains: ChainVerifier = field(default_factory=ChainVerifier)
    record_findings: list[Finding] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    records_read: int = 0
    invalid_count: int = 0
    # Plain redemptions, activations and issues folded by the compiled module
    # (`services.auditor.compiled`) when it is built; False: every record by the Python
    # path, the reference it is tested against.
    compiled: bool = True

    def __post_init__(self) -> None:
        until = wire.micros_of(self.options.until) if self.options.until else None
        self.books = Books(until_micros=until, only_siren=self.options.collectivite)
        self.canonical = CanonicalDecoder(self.books)
        self.topology = topology_for(self.settings)
        if self.compiled:
            compiled.report_missing()

    def topics_in_order(self) -> list[str]:
        return [self.topology.issuer_events.name, self.topology.redeemer_events.name,
                self.topology.auditor_events.name]

    def read(self, progress: ProgressCallback | None = None, *, trim: bool = True) -> int:
        """Read every topic from where the last read stopped to its current end.

        `trim` (a one-shot read): the columns' unused tails are cut at the end, so that what
        is held afterwards, and what the report counts per voucher, is what the books hold.
        The follower reads again every few seconds and keeps them (at most one chunk of
        vouchers, `books._CHUNK`, and 16,384 positions per stream): trimming there would
        copy every column at each cycle, and the next issue would grow it again."""
        with collector_paused():
            return self._read(progress, trim)

    def _read(self, progress: ProgressCallback | None, trim: bool) -> int:
        before = self.records_read
        topics = self.topics_in_order()
        # A forged chain sequence beyond what this log holds is a finding, not an allocation.
        self.chains.limit_sequences(sum(fetch_high_water_marks(self.settings, topics).values()))
        if self._read_in_parts():
            if progress is not None:
                progress(self.records_read - before)
            topics = topics[2:]
        for topic in topics:
            ends: dict[tuple[str, int], int] = {}
            starts = {place: offset for place, offset in self.next_offsets.items()
                      if place[0] == topic}
            for topic_name, partition, records in read_record_batches(
                    self.settings, [topic], start_offsets=starts, ends=ends):
                self.ingest_batch(topic_name, partition, records)
                if progress is not None:
                    progress(len(records))
            self.next_offsets.update(ends)
        if trim:
            self.books.trim()
            self.chains.trim()
        return self.records_read - before

    def _read_in_parts(self) -> bool:
        """The first read of a whole log, in worker processes split by partition."""
        from services.auditor import parallel

        processes = self.options.processes or parallel.DEFAULT_PROCESSES
        if (processes < 2 or self.records_read or self.next_offsets
                or self.books.until_micros is not None or self.books.only_siren is not None):
            return False
        return parallel.read_in_parts(self, processes)

    def adopt(self, books: Books, chains: ChainVerifier, parts: list) -> None:
        """Take the merged books and chains of the parts read in worker processes."""
        self.books, self.chains = books, chains
        self.canonical = CanonicalDecoder(books)
        for part in parts:
            self.records_read += part.records_read
            self.invalid_count += part.invalid_count
            self.record_findings.extend(part.record_findings)
            self.next_offsets.update(part.ends)

    def ingest(self, messages: Iterable) -> None:
        """Records that carry their own topic and partition (kafka-python's, the tests')."""
        run: list = []
        place: tuple[str, int] | None = None
        for message in messages:
            if (message.topic, message.partition) != place:
                if run:
                    self.ingest_batch(place[0], place[1], run)  # type: ignore[index]
                run, place = [], (message.topic, message.partition)
            run.append(message)
        if run:
            self.ingest_batch(place[0], place[1], run)  # type: ignore[index]

    def ingest_batch(self, topic: str, partition: int, records: list) -> None:
        """One partition's records in offset order: each has offset, value and headers.
        The compiled module, when it is there, admits every plain chain link and folds the
        plain redemptions, activations and issues (other values through `fold_admitted`);
        it stops at a record
        whose link is not plain, which `ingest_record` takes (the reference path)."""
        heads = self.chains.heads_in(topic, partition)
        signed_topic = topic == self.topology.auditor_events.name
        self.records_read += len(records)
        fold_records = self._compiled_fold(topic, partition, heads)
        if fold_records is not None and type(records) is not list:
            records = list(records)
        index, end = 0, len(records)
        while index < end:
            if fold_records is not None:
                index = fold_records(records, index)
                if index == end:
                    break
            self.ingest_record(topic, partition, records[index], heads, signed_topic)
            index += 1

    def _compiled_fold(self, topic: str, partition: int,
                       heads: dict) -> Callable[[list, int], int] | None:
        """`fold_records` bound to this replay's state, or None: not built, asked not to
        (`compiled`), or outside the canonical path (filtered books, tests)."""
        if not (self.compiled and compiled.fold_records is not None
                and self.canonical.enabled):
            return None
        chains, decoder = self.chains, self.canonical
        return partial(compiled.fold_records, chains.by_raw_name, heads, chains.key,
                       chains.genesis, sha256, self.books, decoder.days, decoder.months,
                       decoder.venues, decoder.framings, partial(self.fold_admitted, topic,
                                                                 partition),
                       chains.topic_numbers, topic, partition)

    def ingest_record(self, topic: str, partition: int, record: object,
                      heads: dict, signed_topic: bool) -> None:
        """One record, any record: its link checked, its value folded (the reference path
        the compiled fold of plain redemptions is tested against)."""
        chains = self.chains
        headers = record.headers  # type: ignore[attr-defined]
        if len(headers) == 1 and headers[0][0] == CHAIN_HEADER:
            header = headers[0][1] or None
        else:
            header = _chain_header(headers)
        value = record.value  # type: ignore[attr-defined]
        offset = record.offset  # type: ignore[attr-defined]
        parts: Sequence[bytes] = header.split(b"|") if header is not None else ()
        if (len(parts) != 4 or len(parts[2]) != 64 or len(parts[3]) != 64
                or not header.isascii() or not parts[1].isdigit()):  # type: ignore[union-attr]
            link = _link_of(header) if header is not None else None
            if link is None:
                self._unchained(topic, partition, offset, value, signed_topic)
                return
            stream, sequence, previous_hash, digest = link
        else:
            stream, sequence, previous_hash, digest = (parts[0], int(parts[1]), parts[2],
                                                       parts[3])
        verdict = chains.admit_link(stream, sequence, previous_hash, digest, value or b"", topic,
                                    partition, offset, heads)
        if len(headers) > 1 and self.options.head_keys and verdict == NEW:
            self._check_head_signature(headers, header, stream, sequence, value)  # type: ignore[arg-type]
        if verdict != NEW:
            if verdict == REJECTED:
                self._name_rejected(value)
            return
        self.fold_admitted(topic, partition, record, chains.by_raw_name[stream], sequence,
                           previous_hash)

    def _check_head_signature(self, headers: list, header: bytes, stream: bytes,
                              sequence: int, value: bytes | None) -> None:
        signatures = [raw for name, raw in headers if name == SIGNATURE_HEADER]
        if not signatures:
            return
        if len(signatures) == 1 and verify_head(self.options.head_keys, header, signatures[0]):
            chain = self.chains.by_raw_name[stream]
            chain.signed_through = max(chain.signed_through, sequence)
            return
        event_id = _event_id_of(value)
        self.record_findings.append(Finding(
            "head_signature_invalid", f"{stream.decode()}#{sequence}: the head signature is "
            "not one of the processors' keys", (event_id,) if event_id else ()))

    def fold_admitted(self, topic: str, partition: int, record: object, chain: StreamChain,
                      sequence: int, previous_hash: bytes) -> None:
        """The value of a record whose chain link was just admitted as new (here, or by the
        compiled module), and the month it is dated in."""
        value = record.value  # type: ignore[attr-defined]
        offset = record.offset  # type: ignore[attr-defined]
        try:
            month = self.canonical.fold(value, chain.name, sequence)
        except InvalidEvent as error:  # found after the event was noted, as in general
            self._invalid(topic, partition, offset, value,
                          f"{chain.name}#{sequence}: "
                          + f"{type(error).__name__}: {error}"[:300])
            month = wire.utc_month(self.books.current_micros)
        if month is None:
            month = self._fold_in_general(topic, partition, offset, value, chain.name,
                                          sequence)
            if month is None:
                return
        first = chain.month_firsts.get(month)
        if first is None or sequence < first[0]:
            chain.month_firsts[month] = (sequence, previous_hash.decode())

    def _fold_in_general(self, topic: str, partition: int, offset: int, value: bytes | None,
                         stream: str, sequence: int) -> str | None:
        """The general path (json, the codec); the UTC month of the event, if it has one."""
        books = self.books
        books.current_micros = -1
        failure = apply_value(books, value, stream, sequence)
        if failure is not None:
            self._invalid(topic, partition, offset, value, f"{stream}#{sequence}: {failure}")
        return wire.utc_month(books.current_micros) if books.current_micros >= 0 else None

    def _name_rejected(self, value: bytes | None) -> None:
        """A rejected record's finding names the event id its value claims."""
        event_id = _event_id_of(value)
        if event_id:
            last = self.chains.findings[-1]
            self.chains.findings[-1] = replace(last, event_ids=(event_id,))

    def _unchained(self, topic: str, partition: int, offset: int, value: bytes | None,
                   signed_topic: bool) -> None:
        """Only the auditor's own events (signed checkpoints, credit notes) carry no chain
        link: anything else without one was not written by a processor."""
        if signed_topic:
            failure = apply_value(self.books, value, "", 0)
            if failure is not None:
                self._invalid(topic, partition, offset, value, failure)
            return
        event_id = _event_id_of(value)
        self.record_findings.append(Finding(
            "unchained_event", f"{topic}[{partition}]@{offset} has "
            "no valid chain link: not written by a processor", (event_id,) if event_id else ()))

    def _invalid(self, topic: str, partition: int, offset: int, value: bytes | None,
                 reason: str) -> None:
        self.invalid_count += 1
        event_id = _event_id_of(value)
        self.record_findings.append(Finding(
            "invalid_event", f"{topic}[{partition}]@{offset} "
            f"{reason}", (event_id,) if event_id else ()))

    def judge(self, as_of: datetime | None = None) -> AuditReport:
        """Every end-of-replay judgement, as of `as_of`, else `--until`, else the time of
        the audit (never a date read in the log: one scan dated in the future must not
        expire the programme). Repeatable: the books can be read further and judged again
        (the follower does)."""
        with collector_paused():
            return self._judge(as_of)

    def _judge(self, as_of: datetime | None) -> AuditReport:
        books = self.books
        if as_of is None and books.until_micros is None:
            as_of = datetime.now(timezone.utc)
        as_of_micros = wire.micros_of(as_of) if as_of else books.until_micros
        assert as_of_micros is not None
        judgement = Judgement(as_of_day=as_of_micros // (86_400 * wire.MICROSECONDS))
        findings = judgement.findings
        findings.extend(self.record_findings)
        findings.extend(books.findings)
        findings.extend(books.unreported_block_findings())
        findings.extend(_as_findings(self.chains.finish()))
        if self.options.head_keys:
            findings.extend(unsigned_streams(self.chains.streams, self.topology))
        resolve_contested(books, findings)
        if books.until_micros is None:  # (with --until, later facts are left out)
            judge_dates_in_the_future(books, as_of_micros,
                                      self.settings.scan_clock_tolerance_seconds, findings)
        # Settlement and the uniqueness of event ids in a forked child, the rest here.
        settlement = Forked(_settlement_findings, books)
        fold_envelopes(books, judgement)
        sweep_vouchers(books, judgement, VenueRules(venue_timelines(books)))
        check_balance(books, judgement)
        settlement_findings, marks = settlement.get()
        findings.extend(settlement_findings)
        # (after the sweep and the balance: they read the books as they were at the fork)
        books.record_payments(marks)
        for signed in books.checkpoints:
            findings.extend(checkpoint.verify(signed, self.chains, self.options.trusted_keys))
        report = build_report(self, judgement, as_of_micros)
        if self.options.resolve_names and report.unresolved_names():
            report = report.with_names(resolve_names(self.settings, self.topics_in_order(),
                                                     report.unresolved_names()))
        return report


def _chain_header(headers: Iterable) -> bytes | None:
    """The first non-empty `passnum-chain` header (as `wire.parse_chain_header` takes it)."""
    for name, raw in headers:
        if name == CHAIN_HEADER and raw:
            return raw  # type: ignore[no-any-return]
    return None


def _link_of(header: bytes) -> tuple[bytes, int, bytes, bytes] | None:
    """(stream, sequence, previous hash, hash) of a `passnum-chain` header, as its ASCII
    bytes; None when it is not a link (what `wire.parse_chain_header` refuses)."""
    parts = header.split(b"|")
    if len(parts) != 4 or len(parts[2]) != 64 or len(parts[3]) != 64 or not header.isascii():
        return None
    try:
        return parts[0], int(parts[1]), parts[2], parts[3]
    except ValueError:
        return None


def _settlement_findings(books: Books) -> tuple[list[Finding], tuple | None]:
    """Settlement, and event ids decided twice: one index of the standing redemptions (by
    event fingerprint) serves both, the second consuming it. With the statements whose
    lists can become marks on the vouchers (`Books.record_payments`)."""
    index = standing_index(books)
    findings = requests_decided_twice(books, index)
    judgement = Judgement(as_of_day=0)
    payments = check_settlement(books, judgement, consumed=index)
    return judgement.findings + findings, books.marks_of(payments)


def unsigned_streams(streams: dict[str, StreamChain], topology: Topology) -> list[Finding]:
    """With the processors' public keys: every stream is one the topology defines (a
    processor and one partition of its command topic), and its last event is covered by a
    signed head. A forger with write access to the topics can chain events (SHA-256 is
    unkeyed) but cannot sign: a new stream, or well-linked events appended after the last
    signed head, are named by their first event."""
    known = {f"{processor}/{topic.name}/{partition}"
             for processor, topic in (("issuer", topology.issuer_commands),
                                      ("redeemer", topology.redeemer_commands))
             for partition in range(topic.partitions)}
    findings = []
    for name, chain in sorted(streams.items()):
        if name.startswith("auditor/") or not chain.highest:
            continue
        if name not in known:
            findings.append(Finding("unknown_stream", f"{name}: {chain.highest} event(s) on a "
                                    "stream no processor decides", (f"position:{name}#1",)))
        elif chain.signed_through < chain.highest:
            first = chain.signed_through + 1
            findings.append(Finding(
                "unsigned_chain_tail", f"{name}#{first} to #{chain.highest}: after the last "
                f"head a processor signed (#{chain.signed_through})",
                (f"position:{name}#{first}",)))
    return findings


def _as_findings(chain_findings: Iterable) -> list[Finding]:
    return [Finding(f.code, f.detail, f.event_ids) for f in chain_findings]


def _event_id_of(value: bytes | None) -> str:
    try:
        document = json.loads(value or b"")
        event_id = document.get("event_id") if isinstance(document, dict) else None
        return event_id if isinstance(event_id, str) else ""
    except ValueError:
        return ""


def resolve_names(settings: Settings, topics: list[str], wanted: set[str]) -> dict[str, str]:
    """Placeholder -> event id, by reading the log once more."""
    fingerprints = {int(name.split(":", 1)[1], 16): name for name in wanted
                    if name.startswith("fingerprint:")}
    positions = {name.split(":", 1)[1]: name for name in wanted if name.startswith("position:")}
    names: dict[str, str] = {}
    for batch in read_batches(settings, topics):
        for message in batch:
            event_id = _event_id_of(message.value)
            if not event_id:
                continue
            name = fingerprints.get(wire.event_fingerprint(event_id))
            if name is not None:
                names[name] = event_id
            link = wire.parse_chain_header(message.headers)
            if link is not None and f"{link[0]}#{link[1]}" in positions:
                names[positions[f"{link[0]}#{link[1]}"]] = event_id
        if len(names) == len(wanted):
            break
    return names


def replay(settings: Settings, options: ReplayOptions | None = None,
           progress: ProgressCallback | None = None) -> AuditReport:
    """Replay every event topic from offset 0 and judge the books (by default with the
    processors' public keys the settings give: the demo's audit checks the heads)."""
    from passnum.core.head_signatures import trusted_head_keys

    replayer = Replayer(settings, options or ReplayOptions(head_keys=trusted_head_keys(settings)))
    replayer.read(progress)
    return replayer.judge()


def write_projection(connection: object, report: AuditReport) -> None:
    """Load the read models (kept here for the demo and the walking-skeleton test)."""
    from services.auditor.projections import load_projections

    load_projections(connection, report)  # type: ignore[arg-type]
