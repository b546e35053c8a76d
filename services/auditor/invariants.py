"""The invariants judged once the whole log is folded, pure: no Kafka, no database.

Orders, and why:
- A collectivité's envelope is folded with the issuer's own `evolve` in *decision order*:
  its events sorted by (stream, sequence). Issuer commands are keyed by SIREN, so one
  collectivité's decisions form one chain, in the order the issuer made them; "activated
  <= received at all times" is judged after every event of that order.
- A venue's accreditation is folded with the redeemer's own `evolve` in *event-time order*
  (time key, then stream name, then sequence: intrinsic to each event, so every replay of
  every copy of the log sorts identically), and each redemption is judged against the
  venue's status at the redemption's instant.
- A voucher with more than one fact (a second redemption, a cancellation) is judged by
  its facts in event-time order.
"""

from __future__ import annotations

import bisect
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from operator import itemgetter

import numpy as np
from numpy.typing import NDArray

from schemas.base import Event
from schemas.messages import BookletActivated, FundsReceived
from services.auditor import columns, wire
from services.auditor.compiled import StandingIndex
from services.auditor.books import (
    NO_SECOND,
    PHASE_REDEMPTION,
    SECONDS_EPOCH,
    Books,
    Contest,
    Finding,
    second_key,
)
from passnum.ledger import booklet as booklet_rules
from passnum.ledger import envelope as envelope_rules
from passnum.ledger import settlement_month
from passnum.ledger import time as ledger_time
from passnum.ledger import voucher as voucher_rules


def placeholder(fingerprint: int) -> str:
    """Stands for an event id known only by its fingerprint; `resolve` names it."""
    return f"fingerprint:{fingerprint:016x}"


def position_placeholder(stream: str, sequence: int) -> str:
    return f"position:{stream}#{sequence}"


@dataclass
class Tally:
    vouchers: int = 0
    cents: int = 0

    def add(self, vouchers: int, cents: int) -> None:
        self.vouchers += vouchers
        self.cents += cents


@dataclass
class CollectiviteBooks:
    siren: str
    name: str = ""
    committed_cents: int = 0
    received_cents: int = 0
    fees_received_cents: int = 0
    activated_cents: int = 0
    issued: Tally = field(default_factory=Tally)
    activated: Tally = field(default_factory=Tally)
    redeemed: Tally = field(default_factory=Tally)
    redeemed_recorded: Tally = field(default_factory=Tally)
    outstanding: Tally = field(default_factory=Tally)
    blocked: Tally = field(default_factory=Tally)
    expired: Tally = field(default_factory=Tally)
    inactive: Tally = field(default_factory=Tally)
    redeemed_target_group: Tally = field(default_factory=Tally)  # PIC vouchers used
    booklets_issued: int = 0
    booklets_distributed: int = 0
    booklets_started: int = 0


@dataclass
class Judgement:
    """Everything the end of the replay computed."""

    as_of_day: int
    collectivites: dict[str, CollectiviteBooks] = field(default_factory=dict)
    venues: dict[str, Tally] = field(default_factory=dict)
    venue_months: dict[tuple[str, str], Tally] = field(default_factory=dict)
    collectivite_months: dict[tuple[str, str], Tally] = field(default_factory=dict)
    issued_months: dict[tuple[str, str], Tally] = field(default_factory=dict)
    # (siren, year of valid_until) -> "issued" | "activated" | "redeemed" | "redeemed_pic"
    # | "unused_activated" -> tally: what the year-end statement needs
    validity_years: dict[tuple[str, int], dict[str, Tally]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


# ------------------------------------------------------------------ envelopes


def fold_envelopes(books: Books, judgement: Judgement) -> None:
    for siren, collectivite in books.collectivites.items():
        facts: list[tuple[str, int, Event | None, int, int]] = [
            (stream, sequence, event, 0, 0)
            for stream, sequence, event in collectivite.envelope_events]
        facts += _activations_of(books, siren)
        facts.sort(key=itemgetter(0, 1))
        envelope = envelope_rules.Envelope(siren)
        over_funds_reported = False
        start = 0
        while start < len(facts):
            stream, sequence, event, _, _ = facts[start]
            end = start + 1
            if event is None:  # a run of activations, folded as one (see _activation_run)
                while end < len(facts) and facts[end][2] is None:
                    end += 1
                activated_before = envelope.activated_cents
                envelope = envelope_rules.evolve(envelope, _activation_run(siren, facts[start:end]))
                if envelope.activated_cents > envelope.received_cents and not over_funds_reported:
                    over_funds_reported = True
                    stream, sequence = _first_over(facts[start:end], activated_before,
                                                   envelope.received_cents)
                    judgement.findings.append(Finding(
                        "activated_exceeds_funds", f"{siren}: activated "
                        f"{envelope.activated_cents} > received {envelope.received_cents} after "
                        f"{stream}#{sequence}", (position_placeholder(stream, sequence),), siren))
                start = end
                continue
            envelope = envelope_rules.evolve(envelope, event)
            if isinstance(event, FundsReceived) and (
                    event.total_received_cents != envelope.received_cents):
                judgement.findings.append(Finding(
                    "funds_total_mismatch", f"{siren}: event says "
                    f"{event.total_received_cents}, the sum is {envelope.received_cents}",
                    (event.event_id,), siren))
            if envelope.activated_cents > envelope.received_cents and not over_funds_reported:
                over_funds_reported = True
                judgement.findings.append(Finding(
                    "activated_exceeds_funds", f"{siren}: activated "
                    f"{envelope.activated_cents} > received {envelope.received_cents} after "
                    f"{stream}#{sequence}", (_event_name(event, stream, sequence),), siren))
            start = end
        books_of = judgement.collectivites.setdefault(siren, CollectiviteBooks(siren))
        books_of.name = envelope.name
        books_of.committed_cents = envelope.committed_cents
        books_of.received_cents = envelope.received_cents
        books_of.fees_received_cents = envelope.fees_received_cents
        books_of.activated_cents = envelope.activated_cents


def _activation_run(siren: str, run: list[tuple]) -> BookletActivated:
    """Consecutive activations of the decision order as one `BookletActivated`: the sum of
    their amounts, for the highest booklet sequence. The issuer's evolve adds the amount
    and moves the activation cursor to max(cursor, sequence + 1) then past blocked
    booklets; that composes, so folding the run as one event gives the same envelope
    (tests/unit/test_auditor_fast_path.py checks it against folding each event). No check
    between the events of a run can differ: only activations move `activated_cents`, and
    `_first_over` names the one that crossed the funds."""
    highest = max(item[4] for item in run)
    return BookletActivated.model_construct(
        event_id="", request_id="", occurred_at=datetime.min, siren=siren,
        booklet_id=f"{siren}-{highest:07d}", activated_cents=sum(item[3] for item in run))


def _first_over(run: list[tuple], activated_before: int, received: int) -> tuple[str, int]:
    activated = activated_before
    for stream, sequence, _, cents, _ in run:
        activated += cents
        if activated > received:
            return stream, sequence
    raise AssertionError("the run exceeds the funds, so one of its activations does")


def _event_name(event: object, stream: str, sequence: int) -> str:
    event_id = getattr(event, "event_id", "")
    return event_id or position_placeholder(stream, sequence)


def _activations_of(books: Books, siren: str) -> list[tuple[str, int, None, int, int]]:
    """(stream, sequence, None, cents, booklet sequence) of a collectivité's activations."""
    collectivite = books.collectivites[siren]
    activations = []
    sequences, stream_of = books.booklet_activation_sequence, books.booklet_activation_stream
    framing_of, streams = books.booklet_framing, books.streams
    values = [framing.voucher_count * framing.face_value_cents for framing in books.framings]
    for booklet_plus_one in filter(None, collectivite.booklets):
        booklet = booklet_plus_one - 1
        sequence = sequences[booklet]
        if sequence:
            activations.append((streams[stream_of[booklet]], sequence, None,
                                values[framing_of[booklet]], books.booklet_sequence[booklet]))
    return activations


# ------------------------------------------------------------------ venues


@dataclass(frozen=True)
class VenueTimeline:
    """A venue's changes in the order the redeemer decided them (its stream): the second
    key of each and the status after it, and the address. A change takes effect no earlier
    than the one before it (`passnum.ledger.venue.effective_instant`), so the seconds never
    go down; within one second a suspension may precede a reinstatement, whose key (phase
    0) is then below the suspension's (phase 2): the keys are not in order (`in_order`
    False), and a scan is judged against the changes keyed below its own, in their order
    (of one second, the enabling ones: a tie is never counted against a venue)."""

    keys: tuple[int, ...]
    statuses: tuple[str, ...]
    address_code: str
    events: tuple[Event, ...] = ()
    in_order: bool = True
    # out of order: the status folded for each key asked (a venue's redemptions share few)
    folded: dict[int, str] = field(default_factory=dict, compare=False)

    def status_at(self, key: int) -> str:
        if self.in_order:
            index = bisect.bisect_left(self.keys, key) - 1
            return self.statuses[index] if index >= 0 else "unknown"
        status = self.folded.get(key)
        if status is None:
            view = voucher_rules.RedeemerView({}, {}, {})
            for change_key, event in zip(self.keys, self.events):
                if change_key < key:
                    voucher_rules.evolve(view, event)
            provider = next(iter(view.providers.values()), None)
            status = self.folded[key] = provider.status if provider is not None else "unknown"
        return status


def venue_timelines(books: Books) -> list[VenueTimeline]:
    timelines = []
    for venue in books.venues:
        view = voucher_rules.RedeemerView({}, {}, {})
        keys: list[int] = []
        statuses: list[str] = []
        events: list[Event] = []
        for key, _, _, event in sorted(venue.events, key=lambda item: item[1:3]):
            voucher_rules.evolve(view, event)
            provider = view.providers.get(venue.siret)
            if provider is not None:
                micros, phase = divmod(key, 4)
                keys.append(second_key(micros // wire.MICROSECONDS - SECONDS_EPOCH + 1, phase))
                statuses.append(provider.status)
                events.append(event)
        provider = view.providers.get(venue.siret)
        in_order = all(earlier <= later for earlier, later in zip(keys, keys[1:]))
        timelines.append(VenueTimeline(tuple(keys), tuple(statuses),
                                       provider.address_code if provider else "",
                                       tuple(events), in_order))
    return timelines


# ------------------------------------------------------------------ the audit's instant


def judge_dates_in_the_future(books: Books, as_of_micros: int, tolerance_seconds: int,
                              findings: list[Finding]) -> None:
    """The redeemer refuses a scan dated later than its clock by more than the tolerance
    (`passnum.ledger.time.scan_in_the_future`, with the same setting), and the audit
    runs after every decision it reads: a standing redemption dated later than the audit's
    instant plus the tolerance was never decided so. (A refusal keeps the date its command
    carried: it changes no books, and is not judged here.)"""
    bound = as_of_micros + tolerance_seconds * wire.MICROSECONDS
    bound_second = bound // wire.MICROSECONDS - SECONDS_EPOCH + 1
    seconds, events = books.redeemed_second, books.redeemed_event
    if max(seconds[:books.voucher_total], default=0) <= bound_second:  # (one C loop)
        return
    as_of = datetime.fromtimestamp(as_of_micros / wire.MICROSECONDS, tz=timezone.utc)
    tolerance = timedelta(seconds=tolerance_seconds)
    for voucher in range(books.voucher_total):
        # the redeemer's own rule, on the instant kept (to the second, rounded down)
        if seconds[voucher] > bound_second and ledger_time.scan_in_the_future(
                _instant(seconds[voucher]), as_of, tolerance):
            findings.append(Finding(
                "redemption_in_the_future", f"{_voucher_id(books, voucher)} dated "
                f"{_instant_text(seconds[voucher])}, after the audit's instant",
                (f"fingerprint:{events[voucher]:016x}",), _siren_of_voucher(books, voucher)))


def _instant(second: int) -> datetime:
    return datetime.fromtimestamp(second - 1 + SECONDS_EPOCH, tz=timezone.utc)


def _instant_text(second: int) -> str:
    return _instant(second).isoformat()


# ------------------------------------------------------------------ contested vouchers


def resolve_contested(books: Books, findings: list[Finding]) -> None:
    """Judge each voucher with several facts in log order, the order the redeemer decided
    them in (never by event time: a redemption, its cancellation and a new redemption can
    share one second), and leave in its slot the redemption that stands (the first one; a
    later one is the fault)."""
    for voucher, facts in sorted(books.contested.items()):
        standing: Contest | None = None
        for fact in sorted(facts, key=lambda contest: (contest.log_order(), contest.event_id)):
            siren = _siren_of_voucher(books, voucher)
            if fact.kind == "redeemed":
                if standing is not None:
                    findings.append(Finding("voucher_redeemed_twice", _voucher_id(books, voucher),
                                            (standing.event_id, fact.event_id), siren))
                else:
                    standing = fact
            elif standing is not None and standing.fingerprint == fact.cancels and (
                    standing.venue == fact.venue):
                # The ledger's rule (`voucher.decide_cancel`): the same day in France only;
                # a later cancellation is void, the redemption stands.
                if ledger_time.same_local_day(_instant(standing.key // 4),
                                              _instant(fact.key // 4)):
                    standing = None
                else:
                    findings.append(Finding("cancellation_too_late",
                                            _voucher_id(books, voucher), (fact.event_id,),
                                            siren))
            else:
                findings.append(Finding("cancellation_of_unknown_redemption",
                                        _voucher_id(books, voucher), (fact.event_id,), siren))
        # The slot holds the standing redemption (none: the voucher is unused again).
        books.redeemed_second[voucher] = standing.key // 4 if standing else 0
        books.redeemed_venue[voucher] = standing.venue if standing else 0
        books.redeemed_event[voucher] = standing.fingerprint if standing else 0


def _booklet_of_voucher(books: Books, voucher: int) -> int:
    return bisect.bisect_right(books.booklet_first_voucher, voucher) - 1


def _siren_of_voucher(books: Books, voucher: int) -> str:
    booklet = _booklet_of_voucher(books, voucher)
    return books.collectivite_sirens[books.booklet_collectivite[booklet]]


def _voucher_id(books: Books, voucher: int) -> str:
    booklet = _booklet_of_voucher(books, voucher)
    siren = books.collectivite_sirens[books.booklet_collectivite[booklet]]
    position = voucher - books.booklet_first_voucher[booklet] + 1
    return f"{siren}-{books.booklet_sequence[booklet]:07d}-{position:02d}"


@lru_cache(maxsize=65_536)
def paris_month(hour_since_epoch: int) -> str:
    """Settlement months are French calendar months (passnum.ledger.settlement_month)."""
    return settlement_month.month_of(
        datetime.fromtimestamp(hour_since_epoch * 3600, tz=timezone.utc))


def month_of_second(seconds: int) -> str:
    return paris_month((seconds - 1 + SECONDS_EPOCH) // 3600)


def fingerprint_buckets(books: Books) -> list[array]:
    """Every event fingerprint, redemptions' included, by low byte (for the uniqueness
    check: one bucket in memory as a set at a time)."""
    buckets = [array("Q", bucket) for bucket in books.event_fingerprints]
    for voucher in range(books.voucher_total):
        fingerprint = books.redeemed_event[voucher]
        if fingerprint and books.redeemed_second[voucher]:
            buckets[fingerprint & 255].append(fingerprint)
    return buckets


def requests_decided_twice(books: Books, index: StandingIndex | None = None) -> list[Finding]:
    """Event ids are uuid5(origin, request_id, index): a request decided twice records
    the same event ids again at new chain positions (a re-delivery keeps its position and
    was counted once). So a repeated event id means two outcomes for one request.

    With the index of standing redemptions (`compiled.StandingIndex`), a sound log is told in
    C: as many index entries as standing redemptions, and every other event's fingerprint
    unique in its bucket and absent from the index. Otherwise every fingerprint is counted."""
    if index is not None:
        events = books.redeemed_event[:books.voucher_total]
        if len(index) == len(events) - events.count(0) and all(
                len(set(bucket)) == len(bucket) and not index.contains_any(bucket)
                for bucket in books.event_fingerprints):
            return []
    findings = []
    for bucket in fingerprint_buckets(books):
        if len(set(bucket)) == len(bucket):
            continue
        for fingerprint, count in sorted(Counter(bucket).items()):
            if count > 1:
                findings.append(Finding(
                    "request_decided_twice", f"one event id at {count} chain positions",
                    (placeholder(fingerprint),)))
    return findings


# ------------------------------------------------------------------ the voucher sweep


@dataclass
class VenueRules:
    """Per venue, what a redemption there is judged against (cached per framing)."""

    timelines: list[VenueTimeline]
    perimeter_cache: dict[tuple[int, int], bool] = field(default_factory=dict)

    def refusal(self, books: Books, framing_index: int, venue: int, key: int) -> str | None:
        timeline = self.timelines[venue]
        if timeline.status_at(key) != "accredited":
            return "redemption_by_unaccredited_venue"
        return None if self.inside(books, framing_index, venue) else (
            "redemption_outside_perimeter")

    def inside(self, books: Books, framing_index: int, venue: int) -> bool:
        place = (framing_index, venue)
        inside = self.perimeter_cache.get(place)
        if inside is None:
            inside = self.perimeter_cache[place] = booklet_rules.in_perimeter(
                books.framings[framing_index].perimeter, self.timelines[venue].address_code)
        return inside

    def accredited_after(self, venue: int) -> int | None:
        """The second key after which the venue is accredited for good (None: it is not
        accredited at the end). A redemption keyed above it needs no per-voucher look."""
        timeline = self.timelines[venue]
        if not timeline.statuses or timeline.statuses[-1] != "accredited":
            return None
        if not timeline.in_order:
            return max(timeline.keys)  # above every change: all of them stand, in order
        index = len(timeline.statuses) - 1
        while index > 0 and timeline.statuses[index - 1] == "accredited":
            index -= 1
        return timeline.keys[index]


class MonthIndex:
    """Paris calendar months of seconds (as the voucher columns count them), by bisection
    over month starts; month number 0 is "no redemption" (second 0), so that whole voucher
    columns map in C."""

    def __init__(self, first_second: int, last_second: int) -> None:
        month = month_of_second(max(first_second, 1))
        self.labels: list[str] = ["", month]
        self.bounds: list[int] = [1]
        while True:
            month = _next_month(month)
            start = _month_start_second(month)
            if start > last_second:
                break
            self.labels.append(month)
            self.bounds.append(start)

    def of_seconds(self, seconds: NDArray) -> NDArray:
        """The month number of each second (numbers, as `bisect_right` over the starts)."""
        return np.searchsorted(np.array(self.bounds, dtype=np.int64), seconds, side="right")

    def label(self, second: int) -> str:
        if second < 1:
            return month_of_second(second)
        return self.labels[bisect.bisect_right(self.bounds, second)]


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12}-{number % 12 + 1:02d}"


def _month_start_second(month: str) -> int:
    return int(settlement_month.month_start(month).timestamp()) - SECONDS_EPOCH + 1


def _activation_second(key: int) -> int:
    return key // 4 // wire.MICROSECONDS - SECONDS_EPOCH + 1


def sweep_vouchers(books: Books, judgement: Judgement, rules: VenueRules) -> None:
    """Each voucher is redeemed, blocked, inactive, expired or outstanding as of the as-of
    day, and each redemption is judged against its venue. Whole voucher and booklet columns
    are counted with numpy (months, keys, per-booklet totals, `columns`); Python loops run
    per group of like booklets, and per voucher only for the venues or framings where a
    redemption could be refused."""
    seconds = columns.numbers(books.redeemed_second, books.voucher_total).astype(np.int64)
    booklet_count = len(books.booklet_framing)
    activated_keys = columns.numbers(books.booklet_activated_key, booklet_count)
    redeemed_seconds, activated = seconds[seconds != 0], activated_keys[activated_keys != 0]
    activations = [_activation_second(key) for key in (
        int(activated.min()) if activated.size else 0,
        int(activated_keys.max()) if activated_keys.size else 0) if key]
    known = ([int(redeemed_seconds.min()), int(redeemed_seconds.max())]
             if redeemed_seconds.size else []) + activations
    months = MonthIndex(min(known, default=1), max(known, default=1))
    sizes = columns.booklet_sizes(books)
    groups = _booklet_groups(books, months, activated_keys,
                             columns.redeemed_per_booklet(books, sizes))
    _tally_booklets(books, judgement, groups)
    _tally_redemptions(books, judgement, months, months.of_seconds(seconds), sizes)
    _judge_venues(books, judgement, rules)


def _booklet_groups(books: Books, months: MonthIndex, activated_keys: NDArray,
                    redeemed: NDArray) -> dict[tuple, int]:
    """(framing, activation month, state, redeemed vouchers, distributed) -> booklets."""
    count = len(books.booklet_framing)
    framings = columns.numbers(books.booklet_framing, count).astype(np.int64)
    distributed = (columns.numbers(books.booklet_flags, count) != 0).astype(np.int64)
    blocked = np.zeros(count, dtype=bool)
    blocked[[booklet for booklet in books.blocked_keys if 0 <= booklet < count]] = True
    is_activated = activated_keys != 0
    state = np.where(blocked, 0, np.where(is_activated, 2, 1))
    # The activation month as an index into `months.labels` (0: "", not activated); the
    # rare activation before the first second (its own label) as a negative code.
    activation_seconds = activated_keys // 4 // wire.MICROSECONDS - SECONDS_EPOCH + 1
    codes = np.where(is_activated, months.of_seconds(activation_seconds), 0)
    early_labels: list[str] = []
    for booklet in np.flatnonzero(is_activated & (activation_seconds < 1)).tolist():
        label = months.label(int(activation_seconds[booklet]))
        if label not in early_labels:
            early_labels.append(label)
        codes[booklet] = -1 - early_labels.index(label)
    groups: dict[tuple, int] = {}
    for (framing, code, booklet_state, used, distributed_flag), number in columns.count_rows(
            (framings, codes + len(early_labels), state, redeemed, distributed)):
        code -= len(early_labels)
        month = months.labels[code] if code >= 0 else early_labels[-1 - code]
        place = (framing, month, booklet_state, used, distributed_flag != 0)
        groups[place] = groups.get(place, 0) + number
    return groups


def _tally_booklets(books: Books, judgement: Judgement, groups: dict[tuple, int]) -> None:
    years = [wire.date_of_day(f.valid_until_day).year for f in books.framings]
    for (framing_index, month, state, redeemed, distributed), booklets in sorted(
            groups.items()):
        framing = books.framings[framing_index]
        siren, size, value = framing.siren, framing.voucher_count, framing.face_value_cents
        totals = judgement.collectivites.setdefault(siren, CollectiviteBooks(siren))
        issued, used, unused = size * booklets, redeemed * booklets, (size - redeemed) * booklets
        totals.issued.add(issued, issued * value)
        totals.booklets_issued += booklets
        totals.booklets_distributed += booklets if distributed else 0
        activated = month != ""
        if used:
            totals.booklets_started += booklets
            totals.redeemed.add(used, used * value)
            if framing.target_group == "pic":
                totals.redeemed_target_group.add(used, used * value)
        if activated:
            totals.activated.add(issued, issued * value)
        if state == 0:
            totals.blocked.add(unused, unused * value)
        elif not activated:
            totals.inactive.add(unused, unused * value)
        elif framing.grace_until_day < judgement.as_of_day:
            totals.expired.add(unused, unused * value)
        else:
            totals.outstanding.add(unused, unused * value)
        _add_month(judgement.issued_months, (siren, month or "not-activated"), issued, value)
        year = judgement.validity_years.setdefault(
            (siren, years[framing_index]),
            {name: Tally() for name in ("issued", "activated", "redeemed", "redeemed_pic",
                                        "unused_activated")})
        year["issued"].add(issued, issued * value)
        year["redeemed"].add(used, used * value)
        if framing.target_group == "pic":
            year["redeemed_pic"].add(used, used * value)
        if activated:
            year["activated"].add(issued, issued * value)
            year["unused_activated"].add(unused, unused * value)


def _tally_redemptions(books: Books, judgement: Judgement, months: MonthIndex,
                       month_of: NDArray, sizes: NDArray) -> None:
    """Per venue and month, and per collectivité and month, by counting keys over whole
    columns: (owner class x months + month), the owner class being (venue or collectivité,
    face value) so that cents follow from the counts. Vouchers are laid out booklet by
    booklet; month 0 is no redemption."""
    month_count = len(months.labels)
    faces = sorted({framing.face_value_cents for framing in books.framings})
    face_class = {face: number for number, face in enumerate(faces)}
    collectivite_count = max(1, len(books.collectivite_sirens))
    booklet_count = len(sizes)
    framing_face = np.array([face_class[framing.face_value_cents]
                             for framing in books.framings] or [0], dtype=np.int64)
    face_of_booklet = framing_face[columns.numbers(books.booklet_framing, booklet_count)]
    owner_of_booklet = (face_of_booklet * collectivite_count
                        + columns.numbers(books.booklet_collectivite, booklet_count))
    face_of, owner_of = np.repeat(face_of_booklet, sizes), np.repeat(owner_of_booklet, sizes)
    owned = min(owner_of.size, month_of.size)
    owner_keys = owner_of[:owned] * month_count + month_of[:owned]
    placed = min(face_of.size, month_of.size, len(books.redeemed_venue))
    venue = columns.numbers(books.redeemed_venue, placed).astype(np.int64)
    venue_keys = (venue * len(faces) + face_of[:placed]) * month_count + month_of[:placed]
    for key, vouchers in columns.counts_of(venue_keys[month_of[:placed] != 0]):
        rest, month = divmod(key, month_count)
        venue_number, face = divmod(rest, len(faces))
        siret, value = books.venues[venue_number].siret, faces[face]
        _add_month(judgement.venue_months, (siret, months.labels[month]), vouchers, value)
        tally = judgement.venues.get(siret)
        if tally is None:
            tally = judgement.venues[siret] = Tally()
        tally.add(vouchers, vouchers * value)
    for key, vouchers in columns.counts_of(owner_keys[month_of[:owned] != 0]):
        rest, month = divmod(key, month_count)
        face, collectivite = divmod(rest, collectivite_count)
        _add_month(judgement.collectivite_months,
                   (books.collectivite_sirens[collectivite], months.labels[month]), vouchers,
                   faces[face])


def _judge_venues(books: Books, judgement: Judgement, rules: VenueRules) -> None:
    """Redemptions at venues that were not accredited at their instant, or outside their
    booklet's perimeter: looked at per voucher only where one could be."""
    suspects = set()
    for venue, first_second in enumerate(books.venue_first_second):
        if first_second == NO_SECOND:
            continue
        clear_after = rules.accredited_after(venue)
        if clear_after is None or second_key(first_second, PHASE_REDEMPTION) <= clear_after:
            suspects.add(venue)
    bounded = {index for index, framing in enumerate(books.framings) if framing.perimeter}
    if not suspects and not bounded:
        return
    for booklet in range(len(books.booklet_framing)):
        framing_index = books.booklet_framing[booklet]
        framing = books.framings[framing_index]
        first = books.booklet_first_voucher[booklet]
        for voucher in range(first, first + framing.voucher_count):
            second = books.redeemed_second[voucher]
            venue = books.redeemed_venue[voucher]
            if not second or (venue not in suspects and framing_index not in bounded):
                continue
            refusal = rules.refusal(books, framing_index, venue,
                                    second_key(second, PHASE_REDEMPTION))
            if refusal is not None:
                judgement.findings.append(Finding(
                    refusal, f"{_voucher_id(books, voucher)} at {books.venues[venue].siret}",
                    (placeholder(books.redeemed_event[voucher]),), framing.siren))


def _add_month(table: dict, place: tuple[str, str], vouchers: int, value: int) -> None:
    tally = table.get(place)
    if tally is None:
        tally = table[place] = Tally()
    tally.add(vouchers, vouchers * value)


# ------------------------------------------------------------------ balance


def check_balance(books: Books, judgement: Judgement) -> None:
    """issued = redeemed + outstanding + blocked + expired + inactive, in vouchers and
    cents, where "redeemed" is what the redemption events recorded (cancellations netted),
    counted independently of the per-voucher slots the other terms come from."""
    for siren, collectivite in sorted(books.collectivites.items()):
        totals = judgement.collectivites.setdefault(siren, CollectiviteBooks(siren))
        totals.redeemed_recorded = Tally(collectivite.redeemed_vouchers_recorded,
                                         collectivite.redeemed_cents_recorded)
        unused = (totals.outstanding, totals.blocked, totals.expired, totals.inactive)
        vouchers = totals.redeemed_recorded.vouchers + sum(t.vouchers for t in unused)
        cents = totals.redeemed_recorded.cents + sum(t.cents for t in unused)
        if (vouchers, cents) != (totals.issued.vouchers, totals.issued.cents):
            judgement.findings.append(Finding(
                "books_do_not_balance", f"{siren}: redeemed + outstanding + blocked + expired "
                f"+ inactive = {vouchers} vouchers / {cents} cents, issued "
                f"{totals.issued.vouchers} / {totals.issued.cents}", (), siren))
        if totals.activated.cents != totals.activated_cents:
            judgement.findings.append(Finding(
                "activation_mismatch", f"{siren}: the envelope says {totals.activated_cents}, "
                f"the activated booklets are worth {totals.activated.cents}", (), siren))
