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
from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from schemas.messages import BookletActivated, FundsReceived
from services.auditor import wire
from services.auditor.books import (
    PHASE_REDEMPTION,
    SECONDS_EPOCH,
    Books,
    Contest,
    Finding,
    second_key,
)
from services.issuer import domain as issuer_domain
from services.redeemer import domain as redeemer_domain

FRANCE = ZoneInfo("Europe/Paris")


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
        events = list(collectivite.envelope_events) + _activations_of(books, siren)
        events.sort(key=lambda item: (item[0], item[1]))
        envelope = issuer_domain.Envelope(siren)
        over_funds_reported = False
        for stream, sequence, event in events:
            envelope = issuer_domain.evolve(envelope, event)
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
        books_of = judgement.collectivites.setdefault(siren, CollectiviteBooks(siren))
        books_of.name = envelope.name
        books_of.committed_cents = envelope.committed_cents
        books_of.received_cents = envelope.received_cents
        books_of.fees_received_cents = envelope.fees_received_cents
        books_of.activated_cents = envelope.activated_cents


def _event_name(event: object, stream: str, sequence: int) -> str:
    event_id = getattr(event, "event_id", "")
    return event_id or position_placeholder(stream, sequence)


def _activations_of(books: Books, siren: str) -> list[tuple[str, int, object]]:
    """The booklet activations of a collectivité, as events for the issuer's evolve."""
    collectivite = books.collectivites[siren]
    activations = []
    for booklet_plus_one in collectivite.booklets:
        if not booklet_plus_one:
            continue
        booklet = booklet_plus_one - 1
        position = books.booklet_activation_position[booklet]
        if not position:
            continue
        framing = books.framings[books.booklet_framing[booklet]]
        stream = books.streams[position >> 40]
        event = BookletActivated.model_construct(
            event_id="", request_id="", occurred_at=datetime.min, siren=siren,
            booklet_id=f"{siren}-{books.booklet_sequence[booklet]:07d}",
            activated_cents=framing.voucher_count * framing.face_value_cents)
        activations.append((stream, position & ((1 << 40) - 1), event))
    return activations


# ------------------------------------------------------------------ venues


@dataclass(frozen=True)
class VenueTimeline:
    """(second key, status) of each change, in event-time order, and the address."""

    keys: tuple[int, ...]
    statuses: tuple[str, ...]
    address_code: str

    def status_at(self, key: int) -> str:
        index = bisect.bisect_left(self.keys, key) - 1
        return self.statuses[index] if index >= 0 else "unknown"


def venue_timelines(books: Books) -> list[VenueTimeline]:
    timelines = []
    for venue in books.venues:
        view = redeemer_domain.RedeemerView({}, {}, {})
        keys: list[int] = []
        statuses: list[str] = []
        for key, _, _, event in sorted(venue.events, key=lambda item: item[:3]):
            redeemer_domain.evolve(view, event)
            provider = view.providers.get(venue.siret)
            if provider is not None:
                micros, phase = divmod(key, 4)
                keys.append(second_key(micros // wire.MICROSECONDS - SECONDS_EPOCH + 1, phase))
                statuses.append(provider.status)
        provider = view.providers.get(venue.siret)
        timelines.append(VenueTimeline(tuple(keys), tuple(statuses),
                                       provider.address_code if provider else ""))
    return timelines


# ------------------------------------------------------------------ contested vouchers


def resolve_contested(books: Books, findings: list[Finding]) -> None:
    """Judge each voucher with several facts in event-time order and leave in its slot the
    redemption that stands (the first one; a later one is the fault)."""
    for voucher, facts in sorted(books.contested.items()):
        standing: Contest | None = None
        for fact in sorted(facts, key=lambda contest: (contest.key, contest.kind != "redeemed",
                                                       contest.event_id)):
            siren = _siren_of_voucher(books, voucher)
            if fact.kind == "redeemed":
                if standing is not None:
                    findings.append(Finding("voucher_redeemed_twice", _voucher_id(books, voucher),
                                            (standing.event_id, fact.event_id), siren))
                else:
                    standing = fact
            elif standing is not None and standing.fingerprint == fact.cancels and (
                    standing.venue == fact.venue):
                standing = None
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
    """Settlement months are French calendar months (services.redeemer.settlement)."""
    moment = datetime.fromtimestamp((hour_since_epoch * 3600), tz=timezone.utc)
    return moment.astimezone(FRANCE).strftime("%Y-%m")


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


def requests_decided_twice(books: Books) -> list[Finding]:
    """Event ids are uuid5(origin, request_id, index): a request decided twice records
    the same event ids again at new chain positions (a re-delivery keeps its position and
    was counted once). So a repeated event id means two outcomes for one request."""
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
        place = (framing_index, venue)
        inside = self.perimeter_cache.get(place)
        if inside is None:
            inside = self.perimeter_cache[place] = redeemer_domain.in_perimeter(
                books.framings[framing_index].perimeter, timeline.address_code)
        return None if inside else "redemption_outside_perimeter"


def sweep_vouchers(books: Books, judgement: Judgement, rules: VenueRules) -> None:
    """One pass over every booklet: each voucher is redeemed, blocked, inactive, expired or
    outstanding as of the as-of day, and each redemption is judged against its venue."""
    for booklet in range(len(books.booklet_framing)):
        framing_index = books.booklet_framing[booklet]
        framing = books.framings[framing_index]
        siren = framing.siren
        totals = judgement.collectivites.setdefault(siren, CollectiviteBooks(siren))
        count, value = framing.voucher_count, framing.face_value_cents
        first = books.booklet_first_voucher[booklet]
        totals.issued.add(count, count * value)
        totals.booklets_issued += 1
        flags = books.booklet_flags[booklet]
        totals.booklets_distributed += 1 if flags else 0
        seconds = books.redeemed_second[first:first + count]
        redeemed = count - seconds.count(0)
        if redeemed:
            totals.booklets_started += 1
            _judge_redemptions(books, judgement, rules, booklet, framing_index, seconds)
            totals.redeemed.add(redeemed, redeemed * value)
            if framing.target_group == "pic":
                totals.redeemed_target_group.add(redeemed, redeemed * value)
        unused = count - redeemed
        activated = books.booklet_activated_key[booklet]
        if activated:
            totals.activated.add(count, count * value)
        if booklet in books.blocked_keys:
            totals.blocked.add(unused, unused * value)
        elif not activated:
            totals.inactive.add(unused, unused * value)
        elif framing.grace_until_day < judgement.as_of_day:
            totals.expired.add(unused, unused * value)
        else:
            totals.outstanding.add(unused, unused * value)
        _add_month(judgement.issued_months, (siren, _issue_month(books, booklet)), count, value)
        year = judgement.validity_years.setdefault(
            (siren, wire.date_of_day(framing.valid_until_day).year),
            {name: Tally() for name in ("issued", "activated", "redeemed", "redeemed_pic",
                                        "unused_activated")})
        year["issued"].add(count, count * value)
        year["redeemed"].add(redeemed, redeemed * value)
        if framing.target_group == "pic":
            year["redeemed_pic"].add(redeemed, redeemed * value)
        if activated:
            year["activated"].add(count, count * value)
            year["unused_activated"].add(unused, unused * value)


def _issue_month(books: Books, booklet: int) -> str:
    activated = books.booklet_activated_key[booklet]
    if not activated:
        return "not-activated"
    return month_of_second(activated // 4 // wire.MICROSECONDS - SECONDS_EPOCH + 1)


def _judge_redemptions(books: Books, judgement: Judgement, rules: VenueRules, booklet: int,
                       framing_index: int, seconds: array) -> None:
    framing = books.framings[framing_index]
    first = books.booklet_first_voucher[booklet]
    value = framing.face_value_cents
    for position, second in enumerate(seconds):
        if not second:
            continue
        voucher = first + position
        venue = books.redeemed_venue[voucher]
        refusal = rules.refusal(books, framing_index, venue, second_key(second, PHASE_REDEMPTION))
        if refusal is not None:
            judgement.findings.append(Finding(
                refusal, f"{_voucher_id(books, voucher)} at {books.venues[venue].siret}",
                (placeholder(books.redeemed_event[voucher]),), framing.siren))
        month = month_of_second(second)
        siret = books.venues[venue].siret
        _add_month(judgement.venue_months, (siret, month), 1, value)
        _add_month(judgement.collectivite_months, (framing.siren, month), 1, value)
        tally = judgement.venues.get(siret)
        if tally is None:
            tally = judgement.venues[siret] = Tally()
        tally.add(1, value)


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
