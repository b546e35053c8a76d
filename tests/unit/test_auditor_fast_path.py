"""The replay's fast paths against their references, on random logs (Hypothesis).

- canonical decoding (`services.auditor.canonical`) against the general path (`json`, field
  checks, the codec): same books, same report, byte for byte, on logs that mix canonical
  bytes, other valid encodings of the same events, and invalid ones;
- the books against the ledger's `evolve`: which voucher each redemption event
  leaves redeemed, at which venue, by which event, and which booklets are activated or
  blocked, are what folding the same events with `passnum.ledger.voucher.evolve` and
  `passnum.ledger.booklet.evolve_booklet` gives;
- the envelope fold, which folds a run of activations as one event, against folding each
  event with `passnum.ledger.envelope.evolve`;
- the voucher sweep, which counts in C, against a per-voucher reference written here;
- the settlement check with one index against the one built a sixteenth at a time.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passnum.core.codec import encode

from passnum.ledger.identity import event_id_for
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import (
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    BookletsOrdered,
    CollectiviteRegistered,
    EnvelopeFunded,
    FundsReceived,
    ProviderAccredited,
    ProviderStatusChanged,
    RedemptionCancelled,
    RedemptionRejected,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherChecked,
    VoucherRedeemed,
)
from services.auditor import invariants, settlement_checks, wire
from services.auditor.canonical import CanonicalDecoder
from services.auditor.compiled import StandingIndex
from services.auditor.invariants import Judgement, VenueRules, venue_timelines
from services.auditor.replay import Replayer, ReplayOptions
from passnum.ledger import booklet as booklet_rules
from passnum.ledger import envelope as envelope_rules
from passnum.ledger import voucher as voucher_rules
from tests.support.chained_log import ChainedLogWriter, ChainedRecord, in_read_order

SETTINGS = Settings()
TOPOLOGY = topology_for(SETTINGS)
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
SIRENS = ("123456782", "234567891")
SIRETS = ("73282932000074", "41816609600069", "55203253400646")
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ random logs


@st.composite
def ledgers(draw: st.DrawFn) -> list:  # type: ignore[type-arg]
    """Events in decision order: onboarding, issues, activations (some beyond the funds),
    blocks, accreditations and suspensions, redemptions (some twice, some of unknown or
    inactive vouchers, some before or after their validity), rejections, checks,
    cancellations, a redemption cancelled and redeemed again within one second (judged in
    log order), statements. Instants are drawn so that ties and month edges happen."""
    events: list = []
    counter = iter(range(1, 10_000))

    def ids(origin: str = "issuer") -> dict:
        request = f"r{next(counter)}"
        return {"event_id": event_id_for(origin, request, 0), "request_id": request}

    def at(hours: int) -> datetime:
        return START + timedelta(hours=hours, seconds=draw(st.sampled_from([0, 0, 1, 59])),
                                 microseconds=draw(st.sampled_from([0, 0, 250_000])))

    booklets: list[tuple[str, str, int]] = []
    for siren in SIRENS[:draw(st.integers(1, 2))]:
        size = draw(st.sampled_from([5, 10]))
        count = draw(st.integers(1, 4))
        paid = draw(st.integers(0, count))
        when = at(0)
        perimeter = draw(st.sampled_from([(), (), ("75",), ("69",)]))
        events += [
            CollectiviteRegistered(**ids(), occurred_at=when, siren=siren, name=f"C {siren}",
                                   default_vouchers_per_booklet=size,
                                   default_face_value_cents=1000),
            EnvelopeFunded(**ids(), occurred_at=when, siren=siren,
                           committed_cents=count * size * 1000,
                           total_committed_cents=count * size * 1000),
            BookletsOrdered(**ids(), occurred_at=when, siren=siren, order_id=f"{siren}-o1",
                            booklet_count=count, vouchers_per_booklet=size,
                            face_value_cents=1000, target_group="pic",
                            perimeter=perimeter,
                            valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31),
                            grace_until=date(2027, 1, 31))]
        if paid:
            events.append(FundsReceived(**ids(), occurred_at=when, siren=siren,
                                        face_value_cents=paid * size * 1000, fees_cents=0,
                                        payment_reference="p",
                                        total_received_cents=paid * size * 1000))
        for sequence in range(1, count + 1):
            booklet_id = f"{siren}-{sequence:07d}"
            events.append(BookletIssued(
                **ids(), occurred_at=when, siren=siren, order_id=f"{siren}-o1",
                booklet_id=booklet_id, voucher_count=size, face_value_cents=1000,
                target_group="pic", perimeter=perimeter, valid_from=date(2026, 1, 1),
                valid_until=date(2026, 12, 31), grace_until=date(2027, 1, 31)))
            booklets.append((siren, booklet_id, size))
        for sequence in range(1, draw(st.integers(0, count)) + 1):
            events.append(BookletActivated(**ids(), occurred_at=at(draw(st.integers(0, 48))),
                                           siren=siren, booklet_id=f"{siren}-{sequence:07d}",
                                           activated_cents=size * 1000))
    for siren, booklet_id, _ in draw(st.lists(st.sampled_from(booklets), max_size=2)):
        events.append(BookletBlocked(**ids(), occurred_at=at(draw(st.integers(0, 200))),
                                     siren=siren, booklet_id=booklet_id, reason="lost"))
    for siret in SIRETS[:draw(st.integers(1, 3))]:
        events.append(ProviderAccredited(**ids("redeemer"), occurred_at=at(1), siret=siret,
                                         name="V", iban="FR76", address_code="75056",
                                         services=()))
        if draw(st.booleans()):
            events.append(ProviderStatusChanged(
                **ids("redeemer"), occurred_at=at(draw(st.integers(1, 300))), siret=siret,
                status=draw(st.sampled_from(["suspended", "revoked", "accredited"])),
                reason="r"))
    venues = [e.siret for e in events if isinstance(e, ProviderAccredited)]
    redemptions: list[VoucherRedeemed] = []
    for _ in range(draw(st.integers(0, 25))):
        siren, booklet_id, size = draw(st.sampled_from(booklets))
        position = draw(st.integers(1, size + 1))
        # -200 h is before the validity (1 Jan 2026), 9,600 h after the grace (31 Jan 2027)
        hours = draw(st.one_of(st.integers(-200, 9600), st.sampled_from([-150, 9500])))
        event = VoucherRedeemed(**ids("redeemer"), occurred_at=at(hours),
                                siret=draw(st.sampled_from(venues)), siren=siren,
                                booklet_id=booklet_id, voucher_id=f"{booklet_id}-{position:02d}",
                                face_value_cents=draw(st.sampled_from([1000, 1000, 500])))
        events.append(event)
        redemptions.append(event)
        kind = draw(st.sampled_from(["none", "none", "rejected", "checked", "cancelled",
                                     "redone"]))
        later = event.occurred_at + timedelta(minutes=5)
        if kind == "redone":  # cancelled and redeemed again within the same second
            later = event.occurred_at + timedelta(microseconds=draw(st.sampled_from([0, 1])))
        if kind == "rejected":
            events.append(RedemptionRejected(**ids("redeemer"), occurred_at=later,
                                             siret=event.siret, voucher_id=event.voucher_id,
                                             reason="already_redeemed",
                                             redeemed_at=event.occurred_at.isoformat()))
        elif kind == "checked":
            events.append(VoucherChecked(**ids("redeemer"), occurred_at=later, siret=event.siret,
                                         voucher_id=None, valid=False, reason="forged_code"))
        elif kind in ("cancelled", "redone"):
            events.append(RedemptionCancelled(
                **ids("redeemer"), occurred_at=later, siret=event.siret, siren=siren,
                booklet_id=booklet_id, voucher_id=event.voucher_id, face_value_cents=1000,
                redemption_event_id=event.event_id))
        if kind == "redone":
            again = event.model_copy(update={**ids("redeemer"), "occurred_at": later})
            events.append(again)
            redemptions.append(again)
    if redemptions and draw(st.booleans()):
        listed = draw(st.lists(st.sampled_from(redemptions), max_size=6))
        siret = listed[0].siret if listed else venues[0]
        events.append(SettlementStatementIssued(
            **ids("redeemer"), occurred_at=at(9500), siret=siret, month="2026-01",
            voucher_count=len(listed), face_value_cents=1000 * len(listed),
            redemption_event_ids=tuple(r.event_id for r in listed)))
        events.append(SettlementMonthClosed(
            **ids("redeemer"), occurred_at=at(9500), month="2026-01", statement_count=1,
            voucher_count=len(listed), face_value_cents=1000 * len(listed)))
    return events


OFFSETS = {"offset": timezone(timedelta(hours=2)), "offset_zero": timezone(timedelta(0)),
           "offset_east": timezone(timedelta(hours=13, minutes=45)),
           "offset_west": timezone(-timedelta(hours=9, minutes=30))}


def other_encoding(value: bytes, how: str) -> bytes:
    """The same event in other bytes: forms the canonical patterns do not take (valid or
    not), or its instant on another clock, which they take."""
    document = json.loads(value)
    if how == "spaced":
        return json.dumps(document, indent=1).encode()
    if how == "reordered":
        return json.dumps(dict(reversed(list(document.items())))).encode()
    if how in OFFSETS and document["occurred_at"].endswith("Z"):
        # The same instant on another clock: canonical bytes still (the codec writes an
        # offset it is given), folded by the patterns, whose UTC instant, UTC month and
        # day as written must be the general path's. Far offsets move the date as written
        # off the UTC date (and the month, near a month's end).
        moment = datetime.fromisoformat(document["occurred_at"].replace("Z", "+00:00"))
        document["occurred_at"] = moment.astimezone(OFFSETS[how]).isoformat()
        return json.dumps(document, separators=(",", ":")).encode()
    if how == "escaped":
        document["request_id"] = document["request_id"] + "\u00e9"
        return json.dumps(document, separators=(",", ":")).encode()
    if how == "extra":
        document["extra"] = 1
        return json.dumps(document, separators=(",", ":")).encode()
    if how == "bad_siren" and "siren" in document:
        document["siren"] = document["siren"][:8] + "X"
        return json.dumps(document, separators=(",", ":")).encode()
    return value


def chained(events: list, encodings: list[str]) -> list[ChainedRecord]:
    writer = ChainedLogWriter(TOPOLOGY)
    records = []
    for index, event in enumerate(events):
        value = other_encoding(encode(event), encodings[index % len(encodings)])
        processor = "issuer" if event.event_id == event_id_for(
            "issuer", event.request_id, 0) else "redeemer"
        key = (getattr(event, "siren", None) if processor == "issuer" else
               getattr(event, "booklet_id", None) or getattr(event, "siret", "x")).encode()
        records.append(writer.record(processor, key, value, key))
    return records


def replay(records: list[ChainedRecord], canonical: bool) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.canonical.enabled = canonical
    # The Python paths, compared here with each other: every event must pass through the
    # `noting` hook below, which the compiled fold (its own tests) does not call.
    replayer.compiled = False
    # every event as it is noted (type, id, instant to the microsecond), in reading order
    noted: list[tuple[str, str, int]] = []
    note_event = replayer.books.note_event

    def noting(event_type: str, event_id: str, micros: int) -> None:
        noted.append((event_type, event_id, micros))
        note_event(event_type, event_id, micros)

    replayer.books.note_event = noting  # type: ignore[method-assign]
    replayer.noted = noted  # type: ignore[attr-defined]
    messages = in_read_order(records, replayer.topics_in_order())
    replayer.ingest(messages)
    return replayer


def book_columns(replayer: Replayer) -> dict:
    books = replayer.books
    columns = {name: getattr(books, name) for name in (
        "booklet_collectivite", "booklet_sequence", "booklet_framing", "booklet_first_voucher",
        "booklet_activated_key", "booklet_activation_stream",
        "booklet_activation_sequence", "booklet_flags",
        "blocked_keys", "voucher_total", "contested", "framings", "collectivite_sirens",
        "streams", "event_count", "counts_by_type", "rejections_by_reason",
        "orphan_redemptions", "latest_micros", "findings", "venue_first_second")}
    columns["vouchers"] = (books.redeemed_second[:books.voucher_total].tolist(),
                           books.redeemed_venue[:books.voucher_total].tolist(),
                           books.redeemed_event[:books.voucher_total].tolist())
    columns["venues"] = [venue.siret for venue in books.venues]
    columns["fingerprints"] = [bucket.tolist() for bucket in books.event_fingerprints]
    columns["months"] = {name: chain.month_firsts for name, chain in
                         replayer.chains.streams.items()}
    columns["record_findings"] = replayer.record_findings
    columns["noted"] = getattr(replayer, "noted", None)
    return columns


# ------------------------------------------------------------------ canonical decoding


@FAST
@given(ledgers())
def test_every_hot_type_written_by_the_codec_is_canonical(events) -> None:  # type: ignore[no-untyped-def]
    events = [e for e in events if e.type in wire.HOT_TYPES]
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    decoder = CanonicalDecoder(replayer.books)
    for event in events:
        assert decoder.fold(encode(event), "s", 1) is not None, encode(event)
        # Dated on a clock in France (an offline scan keeps the venue's offset): canonical.
        in_france = encode(event.model_copy(update={
            "occurred_at": event.occurred_at.astimezone(ZoneInfo("Europe/Paris"))}))
        assert decoder.fold(in_france, "s", 1) is not None, in_france


@FAST
@given(ledgers(), st.lists(st.sampled_from(
    ["canonical", "canonical", "spaced", "reordered", *OFFSETS, "escaped", "extra",
     "bad_siren"]), min_size=1, max_size=5))
def test_canonical_decoding_folds_exactly_like_the_general_path(events, encodings) -> None:  # type: ignore[no-untyped-def]
    records = chained(events, encodings)
    fast, general = replay(records, canonical=True), replay(records, canonical=False)
    assert book_columns(fast) == book_columns(general)
    assert fast.judge().to_json() == general.judge().to_json()


def test_a_canonical_event_refused_by_the_books_is_invalid_on_both_paths() -> None:
    from tests.support.chained_log import sample_ledger

    ledger = sample_ledger(TOPOLOGY)
    document = next(json.loads(r.value) for r in ledger.records
                    if b'"voucher_redeemed"' in r.value)
    ancient = VoucherRedeemed(**{**document, "occurred_at": datetime(1999, 12, 31, 23, 0,
                                                                     tzinfo=timezone.utc),
                                 "event_id": "ancient", "request_id": "ancient"})
    records = ledger.records + ledger.writer.redeemer(document["booklet_id"].encode(),
                                                      [ancient])
    fast, general = replay(records, canonical=True), replay(records, canonical=False)
    assert [f.code for f in fast.record_findings] == ["invalid_event"]
    assert book_columns(fast) == book_columns(general)
    assert fast.judge().to_json() == general.judge().to_json()


def test_booklet_copy_lines_are_the_rows() -> None:
    from services.auditor.projections import booklet_lines, booklet_rows
    from tests.support.chained_log import sample_ledger

    books = replay(sample_ledger(TOPOLOGY).records, canonical=True).books
    books.framings[0] = replace(books.framings[0], order_id="tab\there\\and\nline")
    def text(value: object) -> str:
        if isinstance(value, bool):
            return "t" if value else "f"
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    rendered = ["\t".join(map(text, row)) + "\n" for row in booklet_rows(books)]
    assert list(booklet_lines(books)) == rendered


# ------------------------------------------------------------------ against evolve


@FAST
@given(ledgers())
def test_the_books_agree_with_the_services_evolve(events) -> None:  # type: ignore[no-untyped-def]
    """Redemptions, activations and blocks as the redeemer's and the issuer's own evolve
    fold them, for logs where the event-time order is the decision order and no voucher is
    redeemed twice (where the auditor's books and a blind fold differ by design: the
    auditor names the fault, evolve keeps whichever came first)."""
    events = sorted(events, key=lambda e: (e.occurred_at.replace(microsecond=0),
                                           e.type != "booklet_issued", e.event_id))
    redeemed: set[str] = set()
    kept: set[str] = set()
    once = []
    for event in events:
        if event.type == "voucher_redeemed":
            if event.voucher_id in redeemed:
                continue
            redeemed.add(event.voucher_id)
            kept.add(event.event_id)
        if event.type == "redemption_cancelled" and event.redemption_event_id not in kept:
            continue
        once.append(event)
    events = once
    replayer = replay(chained(events, ["canonical"]), canonical=True)
    replayer.judge()  # resolves vouchers with several facts, as the end of a replay does
    books = replayer.books
    view = voucher_rules.RedeemerView({}, {}, {})
    booklets: dict[str, booklet_rules.Booklet | None] = {}
    for event in events:
        voucher_rules.evolve(view, event)
        if hasattr(event, "booklet_id") and event.type.startswith("booklet_"):
            booklets[event.booklet_id] = booklet_rules.evolve_booklet(
                booklets.get(event.booklet_id), event)
    expected = {}
    for voucher_id, redemption in view.redemptions.items():
        booklet = view.booklets.get(redemption.booklet_id)
        position = int(voucher_id[-2:])
        if booklet is not None and position <= booklet.voucher_count:
            expected[voucher_id] = (redemption.siret, wire.event_fingerprint(redemption.event_id))
    found = {}
    for booklet in range(len(books.booklet_framing)):
        siren = books.collectivite_sirens[books.booklet_collectivite[booklet]]
        framing = books.framings[books.booklet_framing[booklet]]
        booklet_id = f"{siren}-{books.booklet_sequence[booklet]:07d}"
        state = booklets[booklet_id]
        assert bool(books.booklet_activated_key[booklet]) == state.activated  # type: ignore[union-attr]
        assert (booklet in books.blocked_keys) == (state.status == "blocked")  # type: ignore[union-attr]
        first = books.booklet_first_voucher[booklet]
        for position in range(framing.voucher_count):
            if books.redeemed_second[first + position]:
                found[f"{booklet_id}-{position + 1:02d}"] = (
                    books.venues[books.redeemed_venue[first + position]].siret,
                    books.redeemed_event[first + position])
    assert found == expected


@FAST
@given(st.lists(st.tuples(st.sampled_from(["funds", "activate", "block", "order"]),
                          st.integers(1, 6)), max_size=30))
def test_activation_runs_fold_like_each_activation(steps) -> None:  # type: ignore[no-untyped-def]
    siren = SIRENS[0]
    events: list = []
    for number, (kind, amount) in enumerate(steps):
        common = {"event_id": f"e{number}", "request_id": f"r{number}", "occurred_at": START,
                  "siren": siren}
        if kind == "funds":
            events.append(FundsReceived(**common, face_value_cents=amount * 1000,
                                        fees_cents=0, payment_reference="p",
                                        total_received_cents=0))
        elif kind == "activate":
            events.append(BookletActivated(**common, booklet_id=f"{siren}-{amount:07d}",
                                           activated_cents=amount * 1000))
        elif kind == "block":
            events.append(BookletBlocked(**common, booklet_id=f"{siren}-{amount:07d}",
                                         reason="lost"))
        else:
            events.append(BookletsOrdered(**common, order_id="o", booklet_count=amount,
                                          vouchers_per_booklet=10, face_value_cents=100,
                                          target_group="general", perimeter=(),
                                          valid_from=date(2026, 1, 1),
                                          valid_until=date(2026, 12, 31),
                                          grace_until=date(2027, 1, 31)))
    expected = envelope_rules.Envelope(siren)
    for event in events:
        expected = envelope_rules.evolve(expected, event)
    folded = envelope_rules.Envelope(siren)
    index = 0
    while index < len(events):
        end = index + 1
        if events[index].type == "booklet_activated":
            while end < len(events) and events[end].type == "booklet_activated":
                end += 1
            run = [("s", n, None, e.activated_cents, int(e.booklet_id[-7:]))
                   for n, e in enumerate(events[index:end])]
            folded = envelope_rules.evolve(folded, invariants._activation_run(siren, run))
        else:
            folded = envelope_rules.evolve(folded, events[index])
        index = end
    assert folded == expected


# ------------------------------------------------------------------ the end judgement


def reference_sweep(books, judgement: Judgement, rules: VenueRules) -> None:  # type: ignore[no-untyped-def]
    """The voucher sweep one voucher at a time (the form it had before it counted in C)."""
    for booklet in range(len(books.booklet_framing)):
        framing_index = books.booklet_framing[booklet]
        framing = books.framings[framing_index]
        siren, count, value = framing.siren, framing.voucher_count, framing.face_value_cents
        totals = judgement.collectivites.setdefault(siren, invariants.CollectiviteBooks(siren))
        first = books.booklet_first_voucher[booklet]
        totals.issued.add(count, count * value)
        totals.booklets_issued += 1
        totals.booklets_distributed += 1 if books.booklet_flags[booklet] else 0
        seconds = books.redeemed_second[first:first + count]
        redeemed = count - seconds.count(0)
        if redeemed:
            totals.booklets_started += 1
            totals.redeemed.add(redeemed, redeemed * value)
            if framing.target_group == "pic":
                totals.redeemed_target_group.add(redeemed, redeemed * value)
        for position, second in enumerate(seconds):
            if not second:
                continue
            voucher = first + position
            venue = books.redeemed_venue[voucher]
            refusal = rules.refusal(books, framing_index, venue,
                                    invariants.second_key(second, invariants.PHASE_REDEMPTION))
            if refusal is not None:
                judgement.findings.append(invariants.Finding(
                    refusal, f"{invariants._voucher_id(books, voucher)} at "
                    f"{books.venues[venue].siret}",
                    (invariants.placeholder(books.redeemed_event[voucher]),), siren))
            month = invariants.month_of_second(second)
            siret = books.venues[venue].siret
            invariants._add_month(judgement.venue_months, (siret, month), 1, value)
            invariants._add_month(judgement.collectivite_months, (siren, month), 1, value)
            judgement.venues.setdefault(siret, invariants.Tally()).add(1, value)
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
        month = (invariants.month_of_second(activated // 4 // wire.MICROSECONDS
                                            - invariants.SECONDS_EPOCH + 1)
                 if activated else "not-activated")
        invariants._add_month(judgement.issued_months, (siren, month), count, value)
        year = judgement.validity_years.setdefault(
            (siren, wire.date_of_day(framing.valid_until_day).year),
            {name: invariants.Tally() for name in ("issued", "activated", "redeemed",
                                                   "redeemed_pic", "unused_activated")})
        year["issued"].add(count, count * value)
        year["redeemed"].add(redeemed, redeemed * value)
        if framing.target_group == "pic":
            year["redeemed_pic"].add(redeemed, redeemed * value)
        if activated:
            year["activated"].add(count, count * value)
            year["unused_activated"].add(unused, unused * value)


def judged(books, sweep, as_of_day: int) -> Judgement:  # type: ignore[no-untyped-def]
    judgement = Judgement(as_of_day=as_of_day)
    sweep(books, judgement, VenueRules(venue_timelines(books)))
    judgement.findings.sort(key=lambda f: (f.code, f.detail, f.event_ids))
    return judgement


@FAST
@given(ledgers(), st.integers(20_450, 20_900))
def test_the_sweep_counts_like_one_voucher_at_a_time(events, as_of_day) -> None:  # type: ignore[no-untyped-def]
    replayer = replay(chained(events, ["canonical"]), canonical=True)
    replayer.judge()
    books = replayer.books
    assert judged(books, invariants.sweep_vouchers, as_of_day) == judged(
        books, reference_sweep, as_of_day)


@FAST
@given(ledgers())
def test_settlement_with_one_index_agrees_with_sixteen_slices(events) -> None:  # type: ignore[no-untyped-def]
    replayer = replay(chained(events, ["canonical"]), canonical=True)
    replayer.judge()
    books = replayer.books
    whole, sliced = Judgement(as_of_day=0), Judgement(as_of_day=0)
    settlement_checks.check_settlement(books, whole)
    settlement_checks._check_settlement_by_slices(books, sliced)
    settlement_checks._check_closings(books, sliced)
    assert sorted(whole.findings, key=repr) == sorted(sliced.findings, key=repr)
    for use_c in (True, False):  # the C table and the dictionary it is tested against
        index = StandingIndex(books.redeemed_event, books.voucher_total, use_c)
        assert invariants.requests_decided_twice(books, index) == \
            invariants.requests_decided_twice(books)


def test_a_statement_listing_a_redemption_twice_is_found_by_both(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.support.chained_log import sample_ledger

    ledger = sample_ledger(TOPOLOGY)
    records = ledger.records
    redemptions = [VoucherRedeemed(**json.loads(r.value)) for r in records
                   if json.loads(r.value)["type"] == "voucher_redeemed"]
    statement = SettlementStatementIssued(
        event_id="s1", request_id="s1", occurred_at=START + timedelta(days=400),
        siret=redemptions[0].siret, month="2027-01", voucher_count=2, face_value_cents=2000,
        redemption_event_ids=(redemptions[0].event_id, redemptions[0].event_id))
    replayer = replay(records + ledger.writer.redeemer(b"2027-01", [statement]),
                      canonical=True)
    monkeypatch.setattr(settlement_checks, "WHOLE_INDEX_REDEMPTIONS", 0)
    sliced = {f.code for f in replayer.judge().findings}
    monkeypatch.undo()
    whole = {f.code for f in replayer.judge().findings}
    assert sliced == whole and "redemption_paid_twice" in whole


def test_the_standing_index_is_built_past_the_dictionarys_bound(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The C table (32 bytes a redemption) has a bound of its own, far above the
    dictionary's (about 100): a log with more redemptions than the dictionary may hold
    keeps the sound check in C instead of falling back to the check by slices."""
    from tests.support.chained_log import sample_ledger

    books = replay(sample_ledger(TOPOLOGY).records, canonical=True).books
    monkeypatch.setattr(settlement_checks, "WHOLE_INDEX_REDEMPTIONS", 0)
    assert settlement_checks.redemption_index(books) is None
    assert settlement_checks.standing_index(books) is not None
    monkeypatch.setattr(settlement_checks, "STANDING_INDEX_REDEMPTIONS", 0)
    assert settlement_checks.standing_index(books) is None
