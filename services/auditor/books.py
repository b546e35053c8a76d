"""The auditor's books, pure: what the replay remembers of every booklet and voucher, in
compact columns keyed by integer indexes, and the fold of one event into them.

No Kafka, no database. No second copy of any state machine: the envelopes are folded with
`passnum.ledger.envelope.evolve` and the venues' accreditation with
`passnum.ledger.voucher.evolve` (in `services.auditor.invariants`, at the end, in the
order explained there). What is kept here per voucher is not a state machine but the
recorded facts the invariants judge: when and where it was redeemed, by which event.

Memory, per voucher: redemption second (4 bytes), venue index (2, widened to 4 past
65,535 venues), redemption event fingerprint (8); per booklet: collectivité, sequence,
framing, first voucher, activation time and chain position, flags (27 bytes, plus 4 in its
collectivité's sequence table, shared by its 5 or 10 vouchers). Booklet ids are never
stored: a booklet is (collectivité, sequence), and `BookletIssued` numbers booklets 1, 2,
3 ... per collectivité.

Two decoders feed the same `fold_*` methods: `services.auditor.canonical` (compiled
patterns over the codec's bytes, the hot path) and `apply_value` below (json, field checks,
the codec), which takes everything the patterns do not.

Event time. A fact's time key is `occurred_at` in microseconds x 4 + a phase, so that at an
equal instant enabling facts (issue, activation, accreditation) come first, redemptions
next, restricting facts (block, suspension, revocation) last: the log cannot tell which of
two facts stamped with the same instant happened first, and the auditor does not count
such a tie against a venue.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field, replace
from itertools import compress

import numpy as np

from passnum.core.codec import DecodeFailure, decode_event
from schemas.base import Event
from schemas.messages import (
    AuditCheckpointSigned,
    BookletBlockApplied,
    BookletBlocked,
    BookletDistributed,
    BookletsOrdered,
    CollectiviteRegistered,
    CreditNoteIssued,
    EnvelopeFunded,
    FundsReceived,
    IssuerCommandRejected,
    ProviderAccredited,
    ProviderStatusChanged,
    RedeemerCommandRejected,
    RedemptionCancelled,
    SettlementStatementIssued,
)
from services.auditor import columns, compiled, wire
from services.auditor.wire import InvalidEvent

PHASE_ENABLING = 0
PHASE_REDEMPTION = 1
PHASE_RESTRICTING = 2
# Redemption instants are kept to the second, counted from this epoch (uint32: to 2136).
SECONDS_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z
NO_SECOND = 0xFFFF_FFFF
_CHUNK = 65_536
FLAG_DISTRIBUTED = 1
FLAG_HANDED_OUT = 2
SETTLEMENT_TYPES = ("settlement_statement_issued", "settlement_month_closed")


def time_key(micros: int, phase: int) -> int:
    return micros * 4 + phase


def second_key(seconds_since_epoch: int, phase: int) -> int:
    """A time key at one-second resolution (for the per-voucher redemption instants)."""
    return seconds_since_epoch * 4 + phase


@dataclass(frozen=True)
class Finding:
    code: str
    detail: str
    event_ids: tuple[str, ...] = ()
    siren: str = ""  # the collectivité concerned; "" for findings about the log itself


@dataclass(frozen=True)
class Framing:
    """What an order fixes for its booklets (shared, interned)."""

    siren: str
    order_id: str
    voucher_count: int
    face_value_cents: int
    target_group: str
    perimeter: tuple[str, ...]
    valid_from_day: int
    valid_until_day: int
    grace_until_day: int


@dataclass
class Collectivite:
    siren: str
    number: int  # position in `Books.collectivite_sirens`
    # booklet sequence -> booklet index + 1 (0: not issued)
    booklets: array = field(default_factory=lambda: array("i"))
    # (stream, sequence, event) of every fact the envelope folds, but activations, which
    # are rebuilt from the booklet columns (one per booklet: too many to keep as models).
    envelope_events: list[tuple[str, int, Event]] = field(default_factory=list)
    redeemed_vouchers_recorded: int = 0
    redeemed_cents_recorded: int = 0

    def booklet_index(self, sequence: int) -> int:
        if 0 < sequence < len(self.booklets):
            return self.booklets[sequence] - 1
        return -1


@dataclass
class Venue:
    siret: str
    # (time key, stream, sequence, event): accreditation and status changes
    events: list[tuple[int, str, int, Event]] = field(default_factory=list)


@dataclass(frozen=True)
class Statement:
    event_id: str
    siret: str
    month: str
    voucher_count: int
    face_value_cents: int
    listed: array  # event fingerprints of the redemptions it pays (those not in `paid`)
    time_key: int
    # References recorded as `Books.paid_by` marks instead (`Books.record_payments`): the
    # redemptions in those slots, which the statement listed, in any order
    paid: int = 0

    @property
    def listed_count(self) -> int:
        return len(self.listed) + self.paid


@dataclass(frozen=True)
class Contest:
    """One fact about a voucher that already had a redemption: resolved at the end, in log
    order: its chain place (stream, sequence). The redemption that held the slot has no
    place kept (`stream` ""): it is the voucher's first fact read, hence first in log order
    (a voucher's commands are keyed by its booklet: one stream decides them all)."""

    key: int  # second key of its instant (the venue rules judge at that instant)
    kind: str  # "redeemed" | "cancelled"
    event_id: str  # or "fingerprint:<hex>" for the slot's redemption, resolved later
    fingerprint: int
    venue: int
    cancels: int = 0  # fingerprint of the redemption a cancellation names
    stream: str = ""
    sequence: int = 0

    def log_order(self) -> tuple[int, str, int]:
        return (1, self.stream, self.sequence) if self.stream else (0, "", 0)


@dataclass
class Books:
    until_micros: int | None = None
    only_siren: str | None = None
    collectivites: dict[str, Collectivite] = field(default_factory=dict)
    collectivite_sirens: list[str] = field(default_factory=list)
    framings: list[Framing] = field(default_factory=list)
    framing_index: dict[Framing, int] = field(default_factory=dict)
    venues: list[Venue] = field(default_factory=list)
    venue_index: dict[str, int] = field(default_factory=dict)
    # per venue: the earliest redemption second recorded there (0xFFFFFFFF: none), so that
    # the end judges per voucher only the venues whose accreditation could refuse one
    venue_first_second: array = field(default_factory=lambda: array("I"))
    streams: list[str] = field(default_factory=list)
    stream_index: dict[str, int] = field(default_factory=dict)
    # booklet columns
    # (16-bit columns widen to 32 bits past 65,535 collectivités, orders or streams)
    booklet_collectivite: array = field(default_factory=lambda: array("H"))
    booklet_sequence: array = field(default_factory=lambda: array("I"))
    booklet_framing: array = field(default_factory=lambda: array("H"))
    booklet_first_voucher: array = field(default_factory=lambda: array("I"))
    booklet_activated_key: array = field(default_factory=lambda: array("q"))
    # where the activation sits in its chain: stream number and sequence (0: none)
    booklet_activation_stream: array = field(default_factory=lambda: array("H"))
    booklet_activation_sequence: array = field(default_factory=lambda: array("I"))
    booklet_flags: array = field(default_factory=lambda: array("B"))
    blocked_keys: dict[int, int] = field(default_factory=dict)
    # booklets whose block the redeemer applied (`BookletBlockApplied`), as read: a
    # redemption of one read after it, in the same stream, was decided knowing the block
    applied_blocks: set[int] = field(default_factory=set)
    # applications whose report (`BookletBlocked`) is not read (yet): booklet -> (event id,
    # booklet id, SIREN); a report read later, in another cycle, clears one
    unreported_blocks: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    # voucher columns (capacity grows by chunks; `voucher_total` are in use)
    voucher_total: int = 0
    redeemed_second: array = field(default_factory=lambda: array("I"))
    redeemed_venue: array = field(default_factory=lambda: array("H"))
    redeemed_event: array = field(default_factory=lambda: array("Q"))
    contested: dict[int, list[Contest]] = field(default_factory=dict)
    # voucher -> 1 + the statement that pays it, for the statements whose every reference
    # named a standing redemption when settlement was last judged sound (their `listed`
    # then emptied: 2 bytes a voucher instead of 8 a reference); empty until then. 16 bits,
    # widened to 32 past 65,535 statements.
    paid_by: array = field(default_factory=lambda: array("H"))
    # everything else
    event_fingerprints: list[array] = field(
        default_factory=lambda: [array("Q") for _ in range(256)])
    statements: list[Statement] = field(default_factory=list)
    closings: list[Event] = field(default_factory=list)
    checkpoints: list[AuditCheckpointSigned] = field(default_factory=list)
    credit_notes: list[CreditNoteIssued] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    event_count: int = 0
    events_after_until: int = 0
    events_of_other_collectivites: int = 0
    counts_by_type: dict[str, int] = field(default_factory=dict)
    rejections_by_reason: dict[str, int] = field(default_factory=dict)
    orphan_redemptions: list[tuple[str, str, int]] = field(default_factory=list)
    latest_micros: int = 0
    current_micros: int = -1  # occurred_at of the event folded last (for the chain's months)
    # A part of the log folded in a worker process (services.auditor.parallel): a fact about
    # a booklet this part does not hold could be about one another part holds, so it is not
    # judged here: the whole log is then replayed in one process.
    partial: bool = False
    needs_whole_log: bool = False

    # ------------------------------------------------------------------ registries

    def stream_number(self, stream: str) -> int:
        number = self.stream_index.get(stream)
        if number is None:
            number = self.stream_index[stream] = len(self.streams)
            self.streams.append(stream)
        return number

    def collectivite(self, siren: str) -> Collectivite:
        record = self.collectivites.get(siren)
        if record is None:
            if not wire.SIREN.fullmatch(siren):
                raise InvalidEvent(f"siren {siren!r}")
            record = self.collectivites[siren] = Collectivite(siren, len(self.collectivite_sirens))
            self.collectivite_sirens.append(siren)
        return record

    def venue(self, siret: object) -> int:
        index = self.venue_index.get(siret)  # type: ignore[call-overload]  # any key: not found
        if index is None:
            if type(siret) is not str or not wire.SIRET.fullmatch(siret):
                raise InvalidEvent(f"siret {siret!r}")
            index = self.venue_index[siret] = len(self.venues)
            self.venues.append(Venue(siret))
            self.venue_first_second.append(NO_SECOND)
            if index == 65_536 and self.redeemed_venue.typecode == "H":
                self.redeemed_venue = array("I", self.redeemed_venue)
        return index

    def framing(self, framing: Framing) -> int:
        index = self.framing_index.get(framing)
        if index is None:
            index = self.framing_index[framing] = len(self.framings)
            self.framings.append(framing)
        return index

    def finding(self, code: str, detail: str, event_ids: tuple[str, ...] = (),
                siren: str = "") -> None:
        self.findings.append(Finding(code, detail, event_ids, siren))

    def unknown_booklet(self) -> None:
        """A fact names a booklet these books do not hold."""
        if self.partial:
            self.needs_whole_log = True

    def note_event(self, event_type: str, event_id: str, micros: int) -> None:
        self.event_count += 1
        self.current_micros = micros
        self.counts_by_type[event_type] = self.counts_by_type.get(event_type, 0) + 1
        if micros > self.latest_micros:
            self.latest_micros = micros
        if event_type != "voucher_redeemed":
            fingerprint = wire.event_fingerprint(event_id)
            self.event_fingerprints[fingerprint & 255].append(fingerprint)

    def excluded(self, micros: int, siren: str | None) -> bool:
        """Outside the books asked for: after `--until`, or another collectivité."""
        if self.until_micros is not None and micros > self.until_micros:
            self.events_after_until += 1
            return True
        if self.only_siren is not None and siren is not None and siren != self.only_siren:
            self.events_of_other_collectivites += 1
            return True
        return False

    def trim(self) -> None:
        """The voucher columns cut to `voucher_total` and each collectivité's sequence table
        to its last issued booklet, at the end of a one-shot read: they grow by chunks (a
        read of a few booklets would otherwise reallocate them each time), and the unused
        tail of the last chunk is freed. The follower keeps it (`Replayer.read`)."""
        total = self.voucher_total
        if len(self.redeemed_event) > total:
            # (a slice is allocated exactly)
            self.redeemed_second = self.redeemed_second[:total]
            self.redeemed_venue = self.redeemed_venue[:total]
            self.redeemed_event = self.redeemed_event[:total]
        for collectivite in self.collectivites.values():
            table = collectivite.booklets
            used = len(table)
            while used and not table[used - 1]:
                used -= 1
            if used < len(table):
                collectivite.booklets = table[:used]

    def memory_bytes(self) -> dict[str, int]:
        def size(column: array) -> int:
            return column.buffer_info()[1] * column.itemsize

        booklets = sum(size(c) for c in (
            self.booklet_collectivite, self.booklet_sequence, self.booklet_framing,
            self.booklet_first_voucher, self.booklet_activated_key,
            self.booklet_activation_stream, self.booklet_activation_sequence,
            self.booklet_flags))
        booklets += sum(size(c.booklets) for c in self.collectivites.values())
        vouchers = sum(size(c) for c in (self.redeemed_second, self.redeemed_venue,
                                          self.redeemed_event))
        return {"booklets": booklets, "vouchers": vouchers,
                "event_fingerprints": sum(size(c) for c in self.event_fingerprints),
                "settlement_references": sum(size(s.listed) for s in self.statements)
                + size(self.paid_by)}

    # ------------------------------------------------------------------ hot facts

    def _booklet_fact(self, document: dict, event_type: str) -> tuple[int, str, int] | None:
        """A booklet fact's checked fields, noted: (instant in µs, SIREN, booklet sequence),
        or None when the books asked for leave it out."""
        wire.check_fields(document, event_type)
        micros = wire.instant_micros(document["occurred_at"])
        siren = document["siren"]
        self.note_event(event_type, document["event_id"], micros)
        if self.excluded(micros, siren):
            return None
        booklet_id = document["booklet_id"]
        match = wire.BOOKLET_ID.fullmatch(booklet_id) if type(booklet_id) is str else None
        if match is None or match.group(1) != siren:
            raise InvalidEvent(f"booklet_id {booklet_id!r} of {siren!r}")
        return micros, siren, int(match.group(2))

    def apply_booklet_issued(self, document: dict, stream: str, sequence: int) -> None:
        fact = self._booklet_fact(document, "booklet_issued")
        if fact is not None:
            _, siren, booklet_sequence = fact
            self.fold_booklet_issued(siren, booklet_sequence,
                                     self.framing(self._framing_of(document)),
                                     document["event_id"])

    def fold_booklet_issued(self, siren: str, booklet_sequence: int, framing_index: int,
                            event_id: str) -> None:
        """A valid `BookletIssued` inside the books asked for (decoded and noted)."""
        collectivite = self.collectivite(siren)
        if collectivite.booklet_index(booklet_sequence) >= 0:
            self.finding("booklet_issued_twice", f"{siren}-{booklet_sequence:07d}",
                         (event_id,), siren)
            return
        self._add_booklet(collectivite, booklet_sequence, framing_index,
                          self.framings[framing_index].voucher_count)

    def _framing_of(self, document: dict) -> Framing:
        return make_framing(document["siren"], document["order_id"], document["voucher_count"],
                            document["face_value_cents"], document["target_group"],
                            document["perimeter"], document["valid_from"],
                            document["valid_until"], document["grace_until"])

    def _widen(self) -> None:
        for name in ("booklet_collectivite", "booklet_framing", "booklet_activation_stream"):
            column = getattr(self, name)
            if column.typecode == "H":
                setattr(self, name, array("I", column))

    def _add_booklet(self, collectivite: Collectivite, booklet_sequence: int,
                     framing_index: int, voucher_count: int) -> None:
        index = len(self.booklet_framing)
        table = collectivite.booklets
        if booklet_sequence >= len(table):
            table.frombytes(bytes(4 * (booklet_sequence + 1024 - len(table))))
        table[booklet_sequence] = index + 1
        if max(collectivite.number, framing_index, len(self.streams)) > 65_535:
            self._widen()
        self.booklet_collectivite.append(collectivite.number)
        self.booklet_sequence.append(booklet_sequence)
        self.booklet_framing.append(framing_index)
        self.booklet_first_voucher.append(self.voucher_total)
        self.booklet_activated_key.append(0)
        self.booklet_activation_stream.append(0)
        self.booklet_activation_sequence.append(0)
        self.booklet_flags.append(0)
        self.voucher_total += voucher_count
        if self.voucher_total > len(self.redeemed_event):
            for column in (self.redeemed_second, self.redeemed_venue, self.redeemed_event):
                column.frombytes(bytes(column.itemsize * _CHUNK))

    def apply_booklet_activated(self, document: dict, stream: str, sequence: int) -> None:
        fact = self._booklet_fact(document, "booklet_activated")
        if fact is not None:
            micros, siren, booklet_sequence = fact
            cents = wire.positive_int(document["activated_cents"], "activated_cents")
            self.fold_booklet_activated(siren, booklet_sequence, cents, micros,
                                        document["event_id"], stream, sequence)

    def fold_booklet_activated(self, siren: str, booklet_sequence: int, cents: int,
                               micros: int, event_id: str, stream: str, sequence: int) -> None:
        """A valid `BookletActivated` inside the books asked for (decoded and noted)."""
        collectivite = self.collectivites.get(siren)
        booklet = collectivite.booklet_index(booklet_sequence) if collectivite else -1
        booklet_id = f"{siren}-{booklet_sequence:07d}"
        if booklet < 0:
            self.unknown_booklet()
            self.finding("activation_of_unissued_booklet", booklet_id, (event_id,), siren)
            return
        if self.booklet_activated_key[booklet]:
            self.finding("booklet_activated_twice", booklet_id, (event_id,), siren)
            return
        framing = self.framings[self.booklet_framing[booklet]]
        if cents != framing.voucher_count * framing.face_value_cents:
            self.finding("activation_amount_mismatch",
                         f"{booklet_id}: {cents} for a booklet worth "
                         f"{framing.voucher_count * framing.face_value_cents}", (event_id,), siren)
        self.booklet_activated_key[booklet] = time_key(micros, PHASE_ENABLING)
        stream_number = self.stream_number(stream)
        if stream_number > 65_535:
            self._widen()
        self.booklet_activation_stream[booklet] = stream_number
        self.booklet_activation_sequence[booklet] = sequence

    def apply_voucher_redeemed(self, document: dict, stream: str, sequence: int) -> None:
        wire.check_fields(document, "voucher_redeemed")
        occurred_at = document["occurred_at"]
        micros = wire.instant_micros(occurred_at)
        event_id = document["event_id"]
        self.note_event("voucher_redeemed", event_id, micros)
        voucher_id = document["voucher_id"]
        match = wire.VOUCHER_ID.fullmatch(voucher_id) if type(voucher_id) is str else None
        if match is None or document["booklet_id"] != voucher_id[:17] or (
                document["siren"] != match.group(1)):
            raise InvalidEvent(f"voucher_id {voucher_id!r} against its booklet and SIREN")
        siren = match.group(1)
        venue = self.venue(document["siret"])
        face_value = wire.positive_int(document["face_value_cents"], "face_value_cents")
        if self.excluded(micros, siren):
            return
        self.fold_redemption(siren, int(match.group(2)), int(match.group(3)), venue,
                             face_value, micros, wire.local_day(occurred_at), event_id, 0,
                             stream, sequence)

    def fold_redemption(self, siren: str, booklet_sequence: int, position: int, venue: int,
                        face_value: int, micros: int, day: int, event_id: str,
                        fingerprint: int = 0, stream: str = "", sequence: int = 0) -> None:
        """A valid `VoucherRedeemed` inside the books asked for (decoded and noted); `day`
        is its calendar day as written (the day the redeemer judged validity on);
        `fingerprint`, when given, is `wire.event_fingerprint(event_id)`; (`stream`,
        `sequence`) its chain place."""
        collectivite = self.collectivites.get(siren) or self.collectivite(siren)
        collectivite.redeemed_vouchers_recorded += 1
        collectivite.redeemed_cents_recorded += face_value
        table = collectivite.booklets
        booklet = table[booklet_sequence] - 1 if 0 < booklet_sequence < len(table) else -1
        framing = self.framings[self.booklet_framing[booklet]] if booklet >= 0 else None
        if framing is None or not 1 <= position <= framing.voucher_count:
            if framing is None:
                self.unknown_booklet()
            voucher_id = f"{siren}-{booklet_sequence:07d}-{position:02d}"
            self.finding("redemption_of_unissued_voucher", voucher_id, (event_id,), siren)
            self.orphan_redemptions.append((siren, event_id, face_value))
            return
        key = micros * 4 + PHASE_REDEMPTION
        activated = self.booklet_activated_key[booklet]
        if (face_value != framing.face_value_cents or not activated or activated > key
                or booklet in self.blocked_keys
                or not framing.valid_from_day <= day <= framing.grace_until_day):
            self._judge_redemption_now(booklet, f"{siren}-{booklet_sequence:07d}-{position:02d}",
                                       event_id, day, micros, face_value, siren)
        voucher = self.booklet_first_voucher[booklet] + position - 1
        seconds = micros // 1_000_000 - SECONDS_EPOCH + 1
        if not 0 < seconds < 2**32:
            raise InvalidEvent(f"redemption instant out of range: {micros}")
        if not fingerprint:
            fingerprint = wire.event_fingerprint(event_id)
        if seconds < self.venue_first_second[venue]:
            self.venue_first_second[venue] = seconds
        if self.redeemed_second[voucher] or voucher in self.contested:
            self._contest(voucher, Contest(second_key(seconds, PHASE_REDEMPTION), "redeemed",
                                           event_id, fingerprint, venue, 0, stream, sequence))
            return
        self.redeemed_second[voucher] = seconds
        self.redeemed_venue[voucher] = venue
        self.redeemed_event[voucher] = fingerprint

    def _judge_redemption_now(self, booklet: int, voucher_id: str, event_id: str,
                              day: int, micros: int, face_value: int,
                              siren: str) -> None:
        """What the issuer's facts decide, all known now (the issuer's topic is read
        first): issued, amount, active, blocked, validity. Venue rules wait for the end."""
        framing = self.framings[self.booklet_framing[booklet]]
        key = time_key(micros, PHASE_REDEMPTION)
        if face_value != framing.face_value_cents:
            self.finding("redemption_amount_mismatch", f"{voucher_id}: {face_value} for a "
                         f"voucher worth {framing.face_value_cents}", (event_id,), siren)
        activated = self.booklet_activated_key[booklet]
        if not activated or activated > key:
            self.finding("redemption_of_inactive_voucher", voucher_id, (event_id,), siren)
        if booklet in self.applied_blocks:
            # The block was in this stream before the redemption: the redeemer knew it (a
            # block it had not applied yet was not known to it: `voucher.block_to_apply`).
            self.finding("redemption_of_blocked_voucher", voucher_id, (event_id,), siren)
        if not framing.valid_from_day <= day <= framing.grace_until_day:
            self.finding("redemption_outside_validity", f"{voucher_id} on "
                         f"{wire.date_of_day(day).isoformat()}", (event_id,), siren)

    def _contest(self, voucher: int, contest: Contest) -> None:
        """A second fact about one voucher (a cancellation, a second redemption): all its
        facts move out of the slot, to be ordered and judged at the end."""
        facts = self.contested.get(voucher)
        if facts is None:
            facts = self.contested[voucher] = []
            if self.redeemed_second[voucher]:
                first = self.redeemed_event[voucher]
                facts.append(Contest(second_key(self.redeemed_second[voucher], PHASE_REDEMPTION),
                                     "redeemed", f"fingerprint:{first:016x}", first,
                                     self.redeemed_venue[voucher]))
                self.redeemed_second[voucher] = 0
                self._unrecord_payment(voucher, first)
        facts.append(contest)

    def _unrecord_payment(self, voucher: int, fingerprint: int) -> None:
        """A paid voucher is contested: which redemption stands is judged at the end, so
        its statement lists the slot's redemption again, as it did."""
        if voucher < len(self.paid_by) and self.paid_by[voucher]:
            number = self.paid_by[voucher] - 1
            self.paid_by[voucher] = 0
            statement = self.statements[number]
            statement.listed.append(fingerprint)
            self.statements[number] = replace(statement, paid=statement.paid - 1)

    def marks_of(self, payments: list[tuple[int, array]]
                 ) -> tuple[array, list[tuple[int, int]]] | None:
        """The `paid_by` column with these payments marked, and (statement, count) of each:
        (statement number, vouchers) of statements found to pay exactly those standing,
        uncontested redemptions (`settlement_checks.check_settlement`). Built where the
        settlement is judged (a forked child, which has time to spare: about 0.1 s for the
        1.5 million redemptions of the --full log), applied by `record_payments`."""
        if not payments:
            return None
        typecode = "I" if len(self.statements) >= 65_535 or self.paid_by.typecode == "I" else "H"
        marked = np.zeros(max(len(self.paid_by), self.voucher_total), dtype=typecode)
        marked[:len(self.paid_by)] = columns.numbers(self.paid_by, len(self.paid_by))
        for number, vouchers in payments:
            marked[columns.numbers(vouchers, len(vouchers))] = number + 1
        column = array(typecode)
        column.frombytes(marked.tobytes())
        return column, [(number, len(vouchers)) for number, vouchers in payments]

    def record_payments(self, marks: tuple[array, list[tuple[int, int]]] | None) -> None:
        """The statements whose references `marks_of` marked drop their lists. The
        judgement rebuilds them when settlement must be checked reference by reference."""
        if marks is None:
            return
        column, counts = marks
        for number, count in counts:
            statement = self.statements[number]
            assert not statement.paid and len(statement.listed) == count
            self.statements[number] = replace(statement, listed=array("Q"), paid=count)
        self.paid_by = column

    def full_statements(self) -> list[Statement]:
        """Every statement with all its references listed (the recorded payments added
        back, in voucher order)."""
        if not any(statement.paid for statement in self.statements):
            return self.statements
        listed = [array("Q", statement.listed) for statement in self.statements]
        events = self.redeemed_event
        for voucher in compress(range(len(self.paid_by)), self.paid_by):
            listed[self.paid_by[voucher] - 1].append(events[voucher])
        return [replace(statement, listed=references, paid=0)
                for statement, references in zip(self.statements, listed)]

    def apply_rejection(self, document: dict, event_type: str) -> None:
        """RedemptionRejected and VoucherChecked: outcomes without effect on the books."""
        wire.check_fields(document, event_type)
        micros = wire.instant_micros(document["occurred_at"])
        self.note_event(event_type, document["event_id"], micros)
        self.venue(document["siret"])
        reason = document["reason"]
        if reason is not None and type(reason) is not str:
            raise InvalidEvent(f"reason {reason!r}")
        self.count_outcome(event_type, reason)

    def count_outcome(self, event_type: str, reason: str | None) -> None:
        label = f"{event_type}: {reason or 'valid'}"
        self.rejections_by_reason[label] = self.rejections_by_reason.get(label, 0) + 1

    # ------------------------------------------------------------------ other facts

    def apply_event(self, event: Event, stream: str, sequence: int) -> None:
        """Every type but the hot ones, validated by the codec."""
        micros = wire.micros_of(event.occurred_at)
        self.note_event(event.type, event.event_id, micros)
        if isinstance(event, AuditCheckpointSigned):
            self.checkpoints.append(event)
            return
        if isinstance(event, (IssuerCommandRejected, RedeemerCommandRejected)):
            # Refusals change no books; counted by reason, so that an operator's skip of
            # a record (`skipped_by_operator`, passnum/tools/log_cli.py) shows in every audit.
            self.count_outcome(event.type, event.reason)
            return
        if self.excluded(micros, getattr(event, "siren", None)):
            return
        if isinstance(event, (CollectiviteRegistered, EnvelopeFunded, FundsReceived,
                              BookletsOrdered)):
            self.collectivite(event.siren).envelope_events.append((stream, sequence, event))
        elif isinstance(event, BookletBlocked):
            self._apply_blocked(event, stream, sequence, micros)
        elif isinstance(event, BookletDistributed):
            self._apply_distributed(event)
        elif isinstance(event, BookletBlockApplied):
            self._apply_block_applied(event, micros)
        elif isinstance(event, (ProviderAccredited, ProviderStatusChanged)):
            phase = PHASE_ENABLING if getattr(event, "status", "accredited") == "accredited" \
                else PHASE_RESTRICTING
            venue = self.venues[self.venue(event.siret)]
            venue.events.append((time_key(micros, phase), stream, sequence, event))
        elif isinstance(event, RedemptionCancelled):
            self._apply_cancelled(event, micros, stream, sequence)
        elif isinstance(event, SettlementStatementIssued):
            listed = compiled.event_fingerprints(event.redemption_event_ids)
            self.statements.append(Statement(event.event_id, event.siret, event.month,
                                             event.voucher_count, event.face_value_cents,
                                             listed, time_key(micros, PHASE_ENABLING)))
        elif event.type in SETTLEMENT_TYPES:
            self.closings.append(event)
        elif isinstance(event, CreditNoteIssued):
            self.credit_notes.append(event)

    def _booklet_of(self, booklet_id: str) -> int:
        siren, sequence = booklet_id.split("-")
        collectivite = self.collectivites.get(siren)
        return collectivite.booklet_index(int(sequence)) if collectivite else -1

    def _blocked_booklet(self, event: BookletBlocked | BookletBlockApplied) -> int:
        """The booklet a block names, or -1 (named `block_of_unissued_booklet`)."""
        booklet = self._booklet_of(event.booklet_id)
        if booklet < 0:
            self.unknown_booklet()
            self.finding("block_of_unissued_booklet", event.booklet_id, (event.event_id,),
                         event.siren)
        return booklet

    def _apply_blocked(self, event: BookletBlocked, stream: str, sequence: int,
                       micros: int) -> None:
        booklet = self._blocked_booklet(event)
        if booklet < 0:
            return
        key = time_key(micros, PHASE_RESTRICTING)
        if self.unreported_blocks.pop(booklet, None) is not None:
            self.blocked_keys[booklet] = key  # the report, found after its application
        else:
            self.blocked_keys[booklet] = min(key, self.blocked_keys.get(booklet, key))
        self.collectivite(event.siren).envelope_events.append((stream, sequence, event))

    def _apply_block_applied(self, event: BookletBlockApplied, micros: int) -> None:
        """The redeemer applies a block the issuer reported. The report is usually read
        already (the issuer's topic is read first), but may lie past the end the read took
        of it: whether one exists is judged at the end (`unreported_block_findings`).
        Meanwhile the booklet counts as blocked, so that its later redemptions go to the
        judgement that names them (`fold_redemption`)."""
        booklet = self._blocked_booklet(event)
        if booklet < 0:
            return
        self.applied_blocks.add(booklet)
        if booklet not in self.blocked_keys:
            self.blocked_keys[booklet] = time_key(micros, PHASE_RESTRICTING)
            self.unreported_blocks[booklet] = (event.event_id, event.booklet_id, event.siren)

    def unreported_block_findings(self) -> list[Finding]:
        """Blocks the redeemer applied that no collectivité reported, in the whole read."""
        return [Finding("block_applied_without_report", booklet_id, (event_id,), siren)
                for event_id, booklet_id, siren in sorted(self.unreported_blocks.values())]

    def _apply_distributed(self, event: BookletDistributed) -> None:
        booklet = self._booklet_of(event.booklet_id)
        if booklet < 0:
            self.unknown_booklet()
            self.finding("distribution_of_unissued_booklet", event.booklet_id,
                         (event.event_id,), event.siren)
            return
        flag = FLAG_HANDED_OUT if event.beneficiary_reference else FLAG_DISTRIBUTED
        self.booklet_flags[booklet] |= flag

    def _apply_cancelled(self, event: RedemptionCancelled, micros: int, stream: str,
                         sequence: int) -> None:
        booklet = self._booklet_of(event.booklet_id)
        position = int(event.voucher_id.rsplit("-", 1)[1])
        collectivite = self.collectivite(event.siren)
        collectivite.redeemed_vouchers_recorded -= 1
        collectivite.redeemed_cents_recorded -= event.face_value_cents
        if booklet < 0 or not 1 <= position <= self.framings[
                self.booklet_framing[booklet]].voucher_count:
            # (a position beyond the booklet was once taken as a voucher of the next one)
            if booklet < 0:
                self.unknown_booklet()
            self.finding("cancellation_of_unknown_redemption", event.voucher_id,
                         (event.event_id,), event.siren)
            return
        voucher = self.booklet_first_voucher[booklet] + position - 1
        seconds = micros // wire.MICROSECONDS - SECONDS_EPOCH + 1
        self._contest(voucher, Contest(
            second_key(seconds, PHASE_REDEMPTION), "cancelled", event.event_id,
            wire.event_fingerprint(event.event_id), self.venue(event.siret),
            wire.event_fingerprint(event.redemption_event_id), stream, sequence))


def make_framing(siren: str, order_id: object, voucher_count: object, face_value_cents: object,
                 target_group: object, perimeter: object, valid_from: object,
                 valid_until: object, grace_until: object) -> Framing:
    """An order's framing from decoded fields, checked as the invariants need them."""
    if type(perimeter) is not list or any(type(code) is not str for code in perimeter):
        raise InvalidEvent(f"perimeter {perimeter!r}")
    if target_group not in ("pic", "general"):
        raise InvalidEvent(f"target_group {target_group!r}")
    count = wire.positive_int(voucher_count, "voucher_count")
    if count > 99:  # a voucher id numbers positions with two digits
        raise InvalidEvent(f"voucher_count {count}")
    if type(order_id) is not str:
        raise InvalidEvent("order_id")
    return Framing(siren, order_id, count, wire.positive_int(face_value_cents, "face_value_cents"),
                   target_group, tuple(perimeter), wire.day_number(valid_from),  # type: ignore[arg-type]
                   wire.day_number(valid_until), wire.day_number(grace_until))  # type: ignore[arg-type]


HOT_APPLIERS = {
    "voucher_redeemed": Books.apply_voucher_redeemed,
    "booklet_issued": Books.apply_booklet_issued,
    "booklet_activated": Books.apply_booklet_activated,
}


# The decoder itself: `json.loads` on bytes first sniffs the encoding, which the codec fixes.
_JSON_DECODE = json.JSONDecoder().decode


def apply_value(books: Books, value: bytes | None, stream: str, sequence: int,
                document: dict | None = None) -> str | None:
    """Fold one record's value; None, or the reason it is not a valid event."""
    try:
        if document is None:
            document = _JSON_DECODE(value.decode())  # type: ignore[union-attr]
        event_type = document.get("type") if type(document) is dict else None
        if document.get("schema_version") == 1:  # type: ignore[union-attr]
            applier = HOT_APPLIERS.get(event_type)  # type: ignore[arg-type]
            if applier is not None:
                applier(books, document, stream, sequence)
                return None
            if event_type in ("redemption_rejected", "voucher_checked"):
                books.apply_rejection(document, event_type)  # type: ignore[arg-type]
                return None
    except (InvalidEvent, KeyError, TypeError, ValueError, AttributeError,
            UnicodeDecodeError) as error:
        return f"{type(error).__name__}: {error}"[:300]
    event = decode_event(value)
    if isinstance(event, DecodeFailure):
        return f"{event.reason}: {event.detail}"[:300]
    if event.type in HOT_APPLIERS or event.type in ("redemption_rejected", "voucher_checked"):
        # An older schema version, upcast by the codec: fold its current form.
        return apply_value(books, None, stream, sequence, event.model_dump(mode="json"))
    try:
        books.apply_event(event, stream, sequence)
    except InvalidEvent as error:
        return str(error)[:300]
    return None
