"""The auditor's accelerations judge redemptions exactly as the ledger does (Hypothesis).

The auditor keeps its own, faster forms of the voucher rules: compact columns judged as
they are read (`services.auditor.books`, fed by `canonical.py` and `apply_value`), the
compiled fold of plain records (`_plain_records.c`, through `compiled.py`), which folds a
redemption only when it would raise no finding, and the end judgement
(`services.auditor.invariants`). Here random histories, valid and invalid, are judged twice:

- by the auditor, replaying the chained log with the compiled fold and without it;
- by a reference written from the ledger alone: every event folded in log order with the
  ledger's `evolve` functions and, for each `VoucherRedeemed`, the service's own decider
  (`passnum.ledger.voucher.decide_redeem`, which asks `voucher_refusal` in
  `REDEMPTION_PRECEDENCE`) asked at the redemption's instant, against the facts as they
  stood then, whether it could have decided that event; for each `RedemptionCancelled`,
  `decide_cancel`.

Both must name the same findings, by (code, event ids). The histories contain redemptions
outside the validity (before, after the grace period, at its edges in other UTC offsets),
of unissued, inactive, not-yet-active and blocked booklets (a block applied before the scan
or not yet, and applied without a report), at the wrong amount, by venues
never accredited, not yet accredited, suspended or revoked, outside the booklet's
perimeter, dated in the future, of a voucher redeemed before, cancellations of unknown
redemptions, and redeem-cancel-redeem within one second; instants tie with the facts they
are judged against.

What the reference takes from the auditor's documentation (docs/auditor.md, "Event time,
and the tiebreak"), and nothing else:
- which facts stood at an instant: an activation at the same instant as the scan stood; a
  block stood if the redeemer had applied it (`BookletBlockApplied`) before the scan in the
  booklet's stream, whatever the instants; the venue's accreditation is judged to the
  second (per-voucher instants are kept to the second), so its facts are taken with their
  instants truncated to the second, and of the scan's own second only the enabling ones
  (a tie is never counted against a venue);
- issuance is timeless (the redeemer keeps no issue instant: a scan before the issue is
  before the activation anyway);
- which findings are reported for which redemption: the issuer's facts (issued, amount,
  active, blocked, validity) for every redemption read; the venue's (accreditation, else
  perimeter) and the date in the future for the redemption that stands at the end, one per
  voucher; a later redemption of a standing voucher is `voucher_redeemed_twice`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from passnum.ledger import voucher as voucher_rules
from passnum.ledger.identity import event_id_for
from passnum.ledger.time import same_local_day, scan_in_the_future
from passnum.ledger.venue import Provider
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.messages import (
    BookletActivated,
    BookletBlockApplied,
    BookletBlocked,
    BookletIssued,
    BookletsOrdered,
    CancelRedemption,
    CollectiviteRegistered,
    EnvelopeFunded,
    FundsReceived,
    ProviderAccredited,
    ProviderStatusChanged,
    RedeemVoucher,
    RedemptionCancelled,
    VoucherRedeemed,
)
from services.auditor import wire
from services.auditor.books import Books
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import in_read_order
from tests.unit.test_auditor_compiled_fold import warm_caches
from tests.unit.test_auditor_fast_path import SETTINGS, chained

CODE_KEY = b"ledger-accelerations-code-key"
TOLERANCE = timedelta(seconds=SETTINGS.scan_clock_tolerance_seconds)
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
AS_OF = datetime(2026, 3, 16, 12, 0, tzinfo=timezone.utc)  # the audit's instant
SIRENS = ("123456782", "234567891")
# siret -> commune code; the last venue is never accredited
VENUES = {"73282932000074": "75056", "41816609600069": "69123", "55203253400646": "97411",
          "44306184100047": "75056"}
OFFSETS = (timezone.utc, timezone.utc, timezone(timedelta(hours=1)),
           timezone(timedelta(hours=-2)))
# (face value, vouchers, perimeter, valid_from, valid_until, grace_until): a short validity
# around START, one over the first quarter, one long enough for scans dated after AS_OF
FRAMINGS = (
    (1000, 5, (), date(2026, 1, 3), date(2026, 1, 6), date(2026, 1, 8)),
    (500, 5, ("75",), date(2026, 1, 1), date(2026, 1, 31), date(2026, 2, 28)),
    (1000, 10, ("69123", "974"), date(2026, 1, 4), date(2026, 12, 31), date(2027, 1, 31)),
)
# The findings about redemptions and cancellations: what the voucher rules decide.
RULE_CODES = frozenset({
    "redemption_of_unissued_voucher", "redemption_amount_mismatch",
    "redemption_of_inactive_voucher", "redemption_of_blocked_voucher",
    "redemption_outside_validity", "redemption_by_unaccredited_venue",
    "redemption_outside_perimeter", "redemption_in_the_future", "voucher_redeemed_twice",
    "cancellation_of_unknown_redemption", "cancellation_too_late",
    "block_applied_without_report"})
# The ledger's refusals, as the auditor names them.
ISSUER_SIDE = {"booklet_not_activated": "redemption_of_inactive_voucher",
               "booklet_not_activated_at_scan_time": "redemption_of_inactive_voucher",
               "booklet_blocked": "redemption_of_blocked_voucher",
               "outside_validity": "redemption_outside_validity"}
VENUE_SIDE = {"provider_not_accredited": "redemption_by_unaccredited_venue",
              "venue_not_accredited_at_scan_time": "redemption_by_unaccredited_venue",
              "outside_perimeter": "redemption_outside_perimeter"}
EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Finding = tuple[str, tuple[str, ...]]  # (code, event ids sorted)


# ------------------------------------------------------------------ random histories


@st.composite
def histories(draw: st.DrawFn) -> list:  # type: ignore[type-arg]
    """Issuer and redeemer events in log order (each booklet's redeemer events on its own
    stream, as the redeemer decides them), valid and invalid."""
    events: list = []
    numbers = iter(range(1, 100_000))
    # Mostly plain histories too (every booklet active early, none blocked, amounts right,
    # scans inside the validity): only a plain redemption reaches the compiled fold, and a
    # plain one's neighbours are where a check missing in C would show.
    plain = draw(st.booleans())
    ties: list[datetime] = []  # instants of the facts a scan is judged against

    def ids(origin: str) -> dict:
        request = f"r{next(numbers)}"
        return {"event_id": event_id_for(origin, request, 0), "request_id": request}

    def moment(low: int, high: int) -> datetime:
        return START + timedelta(hours=draw(st.integers(low, high)),
                                 seconds=draw(st.sampled_from([0, 0, 1, 59])),
                                 microseconds=draw(st.sampled_from([0, 0, 250_000])))

    booklets: dict[str, tuple] = {}  # booklet id -> (siren, framing)
    activations: dict[str, datetime] = {}
    for siren in SIRENS[:draw(st.integers(1, 2))]:
        framing = draw(st.sampled_from(FRAMINGS))
        face, size, perimeter, valid_from, valid_until, grace_until = framing
        count = draw(st.integers(1, 3))
        when = START - timedelta(days=10)
        order = {"order_id": f"{siren}-o1", "face_value_cents": face, "target_group": "pic",
                 "perimeter": perimeter, "valid_from": valid_from,
                 "valid_until": valid_until, "grace_until": grace_until}
        worth = count * size * face
        events += [
            CollectiviteRegistered(**ids("issuer"), occurred_at=when, siren=siren,
                                   name=f"C {siren}", default_vouchers_per_booklet=size,
                                   default_face_value_cents=face),
            EnvelopeFunded(**ids("issuer"), occurred_at=when, siren=siren,
                           committed_cents=worth, total_committed_cents=worth),
            BookletsOrdered(**ids("issuer"), occurred_at=when, siren=siren,
                            booklet_count=count, vouchers_per_booklet=size, **order),
            FundsReceived(**ids("issuer"), occurred_at=when, siren=siren,
                          face_value_cents=worth, fees_cents=0, payment_reference="p",
                          total_received_cents=worth)]
        for sequence in range(1, count + 1):
            booklet_id = f"{siren}-{sequence:07d}"
            events.append(BookletIssued(**ids("issuer"), occurred_at=when, siren=siren,
                                        booklet_id=booklet_id, voucher_count=size, **order))
            booklets[booklet_id] = (siren, framing)
        for sequence in range(1, count + 1):
            if plain or draw(st.integers(0, 3)):  # most booklets are activated, some never
                activated_at = moment(-150, -140) if plain else moment(-120, 60)
                ties.append(activated_at)
                activations[f"{siren}-{sequence:07d}"] = activated_at
                events.append(BookletActivated(
                    **ids("issuer"), occurred_at=activated_at, siren=siren,
                    booklet_id=f"{siren}-{sequence:07d}", activated_cents=size * face))
    # Blocks the collectivité reports, applied by the redeemer at some point among the
    # booklet's scans (or not yet), and, in some invalid histories, an application of a
    # block never reported.
    to_apply: list[str] = []
    for booklet_id in draw(st.lists(st.sampled_from(sorted(booklets)),
                                    max_size=0 if plain else 2, unique=True)):
        blocked_at = moment(-24, 120)
        ties.append(blocked_at)
        events.append(BookletBlocked(**ids("issuer"), occurred_at=blocked_at,
                                     siren=booklets[booklet_id][0], booklet_id=booklet_id,
                                     reason="lost"))
        to_apply.append(booklet_id)
    if not plain and draw(st.integers(0, 5)) == 0:
        unreported = draw(st.sampled_from(sorted(booklets)))
        if unreported not in to_apply:
            to_apply.append(unreported)
    for siret in list(VENUES)[:draw(st.integers(1, 3))]:
        # a venue's changes in increasing time, as one stream decides them
        changes = sorted(moment(-120, 150) for _ in range(draw(st.integers(1, 3))))
        ties += changes
        events.append(ProviderAccredited(**ids("redeemer"), occurred_at=changes[0],
                                         siret=siret, name="V", iban="FR76",
                                         address_code=VENUES[siret], services=()))
        for changed_at in changes[1:]:
            events.append(ProviderStatusChanged(
                **ids("redeemer"), occurred_at=changed_at, siret=siret,
                status=draw(st.sampled_from(["suspended", "revoked", "accredited"])),
                reason="r"))

    def scan_instant(booklet_id: str, framing: tuple) -> datetime:
        kind = draw(st.sampled_from(["inside", "inside", "inside", "usual", "usual", "tie",
                                     "tie", "edge", "future"] + ["inside"] * 6 * plain))
        activated_at = activations.get(booklet_id)
        if kind == "inside" and activated_at is not None:  # what the redeemer accepts
            first = datetime.combine(framing[3], time(0, 0), timezone.utc)
            inside = max(first, activated_at) + timedelta(
                hours=draw(st.integers(0, 30)), seconds=draw(st.sampled_from([0, 1, 59])))
            if inside.date() <= framing[5]:
                return inside
        if kind == "tie" and ties:
            return draw(st.sampled_from(ties)) + timedelta(microseconds=draw(st.sampled_from(
                [0, 0, 1, -1, 250_000, -250_000, 1_000_000])))
        if kind == "edge":  # the first and last valid days, and the days around them
            offset = draw(st.sampled_from(OFFSETS))
            first = datetime.combine(framing[3], time(0, 0), offset)
            last = datetime.combine(framing[5], time(23, 59, 59), offset)
            return draw(st.sampled_from([first, first - timedelta(seconds=1), last,
                                         last + timedelta(seconds=1)]))
        if kind == "future":  # on whole seconds: the audit keeps instants to the second
            return AS_OF + TOLERANCE + timedelta(seconds=draw(st.sampled_from([0, 1, 3600])))
        return moment(-150, 200).astimezone(draw(st.sampled_from(OFFSETS)))

    def voucher() -> tuple[str, str, int]:
        """(siren, booklet id, position): sometimes not issued (beyond the booklet, or a
        booklet never issued)."""
        booklet_id = draw(st.sampled_from(sorted(booklets)))
        siren, framing = booklets[booklet_id]
        if draw(st.integers(0, 9)) == 0:
            booklet_id = f"{siren}-0000009"
        return siren, booklet_id, draw(st.integers(1, framing[1] + 1))

    latest: dict[str, VoucherRedeemed] = {}  # voucher -> its last redemption written

    def redeem(siren: str, booklet_id: str, position: int, siret: str,
               scanned_at: datetime, face: int) -> None:
        event = VoucherRedeemed(**ids("redeemer"), occurred_at=scanned_at, siret=siret,
                                siren=siren, booklet_id=booklet_id,
                                voucher_id=f"{booklet_id}-{position:02d}", face_value_cents=face)
        events.append(event)
        latest[event.voucher_id] = event

    def cancel(redemption: VoucherRedeemed, siret: str, named: str, later: datetime) -> None:
        events.append(RedemptionCancelled(
            **ids("redeemer"), occurred_at=later, siret=siret, siren=redemption.siren,
            booklet_id=redemption.booklet_id, voucher_id=redemption.voucher_id,
            face_value_cents=redemption.face_value_cents, redemption_event_id=named))

    def same_day_after(instant: datetime) -> datetime:
        later = instant + timedelta(microseconds=draw(st.sampled_from([0, 1, 30_000_000])))
        return later if same_local_day(instant, later) else instant

    for _ in range(draw(st.integers(1, 20))):
        action = draw(st.sampled_from(["redeem", "redeem", "redeem", "redeem", "again",
                                       "cancel", "cancel_unknown", "redo", "cancel_late",
                                       "apply_block"]))
        if action == "apply_block" and to_apply:
            booklet_id = to_apply.pop(draw(st.integers(0, len(to_apply) - 1)))
            events.append(BookletBlockApplied(**ids("redeemer"), occurred_at=moment(-24, 150),
                                              siren=booklets[booklet_id][0],
                                              booklet_id=booklet_id))
            continue
        if action in ("again", "cancel", "redo", "cancel_late") and latest:
            redemption = latest[draw(st.sampled_from(sorted(latest)))]
            if action == "again":  # the same voucher, anywhere, any time
                redeem(redemption.siren, redemption.booklet_id, int(redemption.voucher_id[-2:]),
                       draw(st.sampled_from(list(VENUES))),
                       scan_instant(redemption.booklet_id,
                                    booklets.get(redemption.booklet_id, (0, FRAMINGS[0]))[1]),
                       redemption.face_value_cents)
                continue
            if action == "cancel_late":  # at the same venue, another day in France
                cancel(redemption, redemption.siret, redemption.event_id,
                       redemption.occurred_at + timedelta(days=draw(st.integers(1, 3))))
                continue
            later = same_day_after(redemption.occurred_at)
            cancel(redemption, redemption.siret, redemption.event_id, later)
            if action == "redo":  # and redeemed again within the same second
                redeem(redemption.siren, redemption.booklet_id,
                       int(redemption.voucher_id[-2:]), redemption.siret, later,
                       redemption.face_value_cents)
            continue
        siren, booklet_id, position = voucher()
        framing = booklets.get(booklet_id, (siren, FRAMINGS[0]))[1]
        if action == "cancel_unknown":
            # a cancellation naming no standing redemption: of a voucher never redeemed,
            # naming another event, or at another venue
            named = latest.get(f"{booklet_id}-{position:02d}")
            siret = draw(st.sampled_from(list(VENUES)))
            stand_in = VoucherRedeemed(
                **ids("redeemer"), occurred_at=moment(-150, 200), siret=siret, siren=siren,
                booklet_id=booklet_id, voucher_id=f"{booklet_id}-{position:02d}",
                face_value_cents=framing[0])
            if named is not None and draw(st.booleans()):
                cancel(named, draw(st.sampled_from([s for s in VENUES if s != named.siret])),
                       named.event_id, same_day_after(named.occurred_at))
            else:
                cancel(stand_in, siret, stand_in.event_id, stand_in.occurred_at)
            continue
        face = framing[0] if plain or draw(st.integers(0, 5)) else framing[0] + 100
        redeem(siren, booklet_id, position, draw(st.sampled_from(list(VENUES))),
               scan_instant(booklet_id, framing), face)
    return events


# ------------------------------------------------------------------ the ledger's verdict


def truncated_to_the_second(event: ProviderAccredited | ProviderStatusChanged
                            ) -> ProviderAccredited | ProviderStatusChanged:
    return event.model_copy(update={"occurred_at": event.occurred_at.replace(microsecond=0)})


def standing_at(events: list, scanned_at: datetime, applied_blocks: set[str]
                ) -> voucher_rules.RedeemerView:
    """The issuer's and the venues' facts as they stood at `scanned_at`, folded with the
    ledger's evolve: every issue and activation (the booklet keeps its earliest activation
    instant, which the ledger judges a back-dated scan against), the blocks the redeemer
    had applied before the scan in the booklet's stream (`applied_blocks`: in log order,
    whatever their instants), venue facts of an earlier second, or of the same second if
    enabling, in their order."""
    view = voucher_rules.RedeemerView({}, {}, {})
    scan_second = scanned_at.replace(microsecond=0)
    for event in events:
        if isinstance(event, (BookletIssued, BookletActivated)):
            voucher_rules.evolve(view, event)
            if event.booklet_id in applied_blocks:
                view.booklets[event.booklet_id] = replace(view.booklets[event.booklet_id],
                                                          blocked=True)
        elif isinstance(event, (ProviderAccredited, ProviderStatusChanged)):
            venue_fact = truncated_to_the_second(event)
            enabling = getattr(event, "status", "accredited") == "accredited"
            if venue_fact.occurred_at < scan_second or (
                    venue_fact.occurred_at == scan_second and enabling):
                voucher_rules.evolve(view, venue_fact)
    return view


def lifted(view: voucher_rules.RedeemerView, reason: str, voucher_id: str, siret: str
           ) -> voucher_rules.RedeemerView:
    """The view without the fact behind `reason`, so that the decider names the next."""
    booklet_id = voucher_id.rsplit("-", 1)[0]
    booklets, providers = dict(view.booklets), dict(view.providers)
    redemptions = dict(view.redemptions)
    booklet = booklets[booklet_id]
    if reason in ("booklet_not_activated", "booklet_not_activated_at_scan_time"):
        booklets[booklet_id] = replace(booklet, activated=True, activated_at=None)
    elif reason == "booklet_blocked":
        booklets[booklet_id] = replace(booklet, blocked=False)
    elif reason == "outside_validity":
        booklets[booklet_id] = replace(booklet, valid_from=date.min, grace_until=date.max)
    elif reason == "outside_perimeter":
        booklets[booklet_id] = replace(booklet, perimeter=())
    elif reason in VENUE_SIDE:
        known = providers.get(siret)
        providers[siret] = Provider(siret, "", "", known.address_code if known else "",
                                    "accredited")
    elif reason == "already_redeemed":
        del redemptions[voucher_id]
    else:
        raise AssertionError(f"a reason the reference does not lift: {reason}")
    return voucher_rules.RedeemerView(booklets, redemptions, providers)


def ledger_reasons(view: voucher_rules.RedeemerView, event: VoucherRedeemed
                   ) -> tuple[list[str], bool]:
    """Every reason the redeemer's decider refuses this scan for (asked again with each
    reason's fact lifted, since it answers with the first only), and whether the event it
    decides matches the one recorded (amount, collectivité, booklet)."""
    booklet_id, position = event.voucher_id.rsplit("-", 1)
    code = make_code(CODE_KEY, VoucherNumber(event.siren, int(booklet_id[-7:]), int(position)))
    command = RedeemVoucher(request_id="reference", code=code, siret=event.siret,
                            occurred_at=event.occurred_at)
    reasons: list[str] = []
    while True:
        decided = voucher_rules.decide_redeem(view, command, CODE_KEY)[0]
        if isinstance(decided, VoucherRedeemed):
            same = (decided.face_value_cents, decided.siren, decided.booklet_id) == (
                event.face_value_cents, event.siren, event.booklet_id)
            return reasons, same
        reason = decided.reason  # type: ignore[attr-defined]
        reasons.append(reason)
        if reason == "unknown_voucher":
            return reasons, False
        view = lifted(view, reason, event.voucher_id, event.siret)


def reference_findings(events: list, as_of: datetime = AS_OF) -> list[Finding]:
    """The findings the ledger's rules give, by code and event ids, events in log order."""
    facts = [e for e in events if isinstance(e, (BookletIssued, BookletActivated,
                                                 ProviderAccredited, ProviderStatusChanged))]
    reported = {e.booklet_id for e in events if isinstance(e, BookletBlocked)}
    applied: set[str] = set()
    redemptions: dict[str, voucher_rules.Redemption] = {}  # in log order, as decided
    # redemption event id -> the codes judged at the end, if it is the one that stands
    venue_and_future: dict[str, list[str]] = {}
    findings: list[Finding] = []
    for event in events:
        if isinstance(event, BookletBlockApplied):
            # applied, reported or not: the redeemer refused the booklet's scans after it
            applied.add(event.booklet_id)
            if event.booklet_id not in reported:
                findings.append(("block_applied_without_report", (event.event_id,)))
        elif isinstance(event, VoucherRedeemed):
            view = standing_at(facts, event.occurred_at, applied)
            view.redemptions = redemptions
            reasons, same = ledger_reasons(view, event)
            if reasons == ["unknown_voucher"]:
                findings.append(("redemption_of_unissued_voucher", (event.event_id,)))
                continue  # nothing stands on a voucher that does not exist
            codes = {ISSUER_SIDE[r] for r in reasons if r in ISSUER_SIDE}
            if not same:
                codes.add("redemption_amount_mismatch")
            findings += [(code, (event.event_id,)) for code in sorted(codes)]
            venue = {VENUE_SIDE[r] for r in reasons if r in VENUE_SIDE}
            if "redemption_by_unaccredited_venue" in venue:  # it names one: this, else
                venue = {"redemption_by_unaccredited_venue"}  # the perimeter
            # the redeemer's clock bound, with the audit's instant as the clock (the audit
            # runs after every decision it reads), on the instant kept to the second
            if scan_in_the_future(event.occurred_at.replace(microsecond=0), as_of, TOLERANCE):
                venue.add("redemption_in_the_future")
            venue_and_future[event.event_id] = sorted(venue)
            if event.voucher_id in redemptions:
                findings.append(("voucher_redeemed_twice", tuple(sorted(
                    (redemptions[event.voucher_id].event_id, event.event_id)))))
            voucher_rules.evolve(voucher_rules.RedeemerView({}, redemptions, {}), event)
        elif isinstance(event, RedemptionCancelled):
            command = CancelRedemption(request_id="reference", voucher_id=event.voucher_id,
                                       siret=event.siret, occurred_at=event.occurred_at)
            decided = voucher_rules.decide_cancel(
                voucher_rules.RedeemerView({}, redemptions, {}), command)[0]
            if getattr(decided, "redemption_event_id", None) == event.redemption_event_id:
                voucher_rules.evolve(voucher_rules.RedeemerView({}, redemptions, {}), event)
            elif getattr(decided, "reason", None) == "cancellation_too_late" and \
                    redemptions[event.voucher_id].event_id == event.redemption_event_id:
                findings.append(("cancellation_too_late", (event.event_id,)))
            else:
                findings.append(("cancellation_of_unknown_redemption", (event.event_id,)))
    for redemption in redemptions.values():
        findings += [(code, (redemption.event_id,))
                     for code in venue_and_future[redemption.event_id]]
    return sorted(findings)


# ------------------------------------------------------------------ the auditor's verdict


def audited_findings(events: list, compiled: bool, encodings: Iterable[str] = ("canonical",),
                     as_of: datetime = AS_OF) -> list[Finding]:
    """The auditor's findings about the voucher rules, event ids resolved."""
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.compiled = compiled
    # Days and venues known, as after a real log's first minutes: the first redemption of a
    # day or a venue goes the Python way, and these histories are short.
    warm_caches(replayer)
    for siret in VENUES:
        replayer.canonical._venue(siret.encode())
    messages = in_read_order(chained(events, list(encodings)), replayer.topics_in_order())
    replayer.ingest(messages)
    names = {f"fingerprint:{wire.event_fingerprint(e.event_id):016x}": e.event_id
             for e in events}
    return sorted((finding.code, tuple(sorted(names.get(name, name)
                                              for name in finding.event_ids)))
                  for finding in replayer.judge(as_of=as_of).findings
                  if finding.code in RULE_CODES)


def assert_the_auditor_agrees(events: list, encodings: Iterable[str] = ("canonical",)
                              ) -> list[Finding]:
    expected = reference_findings(events)
    assert audited_findings(events, compiled=False, encodings=encodings) == expected
    assert audited_findings(events, compiled=True, encodings=encodings) == expected
    return expected


# ------------------------------------------------------------------ the property


@EXAMPLES
@given(histories(), st.sampled_from([("canonical",), ("canonical",), ("canonical", "spaced"),
                                     ("canonical", "canonical", "reordered")]))
def test_the_auditor_judges_redemptions_as_the_ledger_does(events, encodings) -> None:  # type: ignore[no-untyped-def]
    assert_the_auditor_agrees(events, encodings)


@pytest.mark.parametrize("code", sorted(RULE_CODES))
def test_every_rule_code_is_reached_and_agreed(code: str) -> None:
    """The property above reaches every finding of these rules: a history where the ledger
    expects `code` is found (deterministically), and the auditor agrees on it."""
    events = find(histories(), lambda events: code in {c for c, _ in reference_findings(events)},
                  settings=settings(max_examples=2_000, deadline=None, derandomize=True,
                                    database=None, phases=[Phase.generate],
                                    suppress_health_check=list(HealthCheck)))
    assert code in {c for c, _ in assert_the_auditor_agrees(events)}


def test_redemptions_reach_the_compiled_fold(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The equality with `compiled=True` is about the C fold only if it folds redemptions:
    of the histories drawn, most redemptions are not plain, yet some are folded in C."""
    folded_in_python = []
    fold_redemption = Books.fold_redemption

    def counting(self, *arguments):  # type: ignore[no-untyped-def]
        folded_in_python.append(arguments)
        return fold_redemption(self, *arguments)

    monkeypatch.setattr(Books, "fold_redemption", counting)
    totals = {"redemptions": 0, "in_python": 0}

    @settings(EXAMPLES, max_examples=40)
    @given(histories())
    def count(events: list) -> None:
        folded_in_python.clear()
        audited_findings(events, compiled=True)
        totals["redemptions"] += sum(isinstance(e, VoucherRedeemed) for e in events)
        totals["in_python"] += len(folded_in_python)

    count()
    assert totals["in_python"] <= totals["redemptions"] - 10, totals


def one_redemption(redeemed_at: datetime) -> tuple[list, VoucherRedeemed]:
    """An active booklet, an accredited venue and one valid redemption."""
    siren, booklet_id, siret = SIRENS[0], f"{SIRENS[0]}-0000001", "73282932000074"
    face, size, perimeter, valid_from, valid_until, grace_until = FRAMINGS[2]
    when = START - timedelta(days=10)
    order = {"order_id": "o1", "face_value_cents": face, "target_group": "pic",
             "perimeter": perimeter, "valid_from": valid_from, "valid_until": valid_until,
             "grace_until": grace_until}

    def ids(origin: str, request: str) -> dict:
        return {"event_id": event_id_for(origin, request, 0), "request_id": request,
                "occurred_at": when}

    redemption = VoucherRedeemed(**{**ids("redeemer", "redeem"), "occurred_at": redeemed_at},
                                 siret=siret, siren=siren, booklet_id=booklet_id,
                                 voucher_id=f"{booklet_id}-01", face_value_cents=face)
    return [
        CollectiviteRegistered(**ids("issuer", "register"), siren=siren, name="C",
                               default_vouchers_per_booklet=size, default_face_value_cents=face),
        EnvelopeFunded(**ids("issuer", "fund"), siren=siren, committed_cents=size * face,
                       total_committed_cents=size * face),
        BookletsOrdered(**ids("issuer", "order"), siren=siren, booklet_count=1,
                        vouchers_per_booklet=size, **order),
        FundsReceived(**ids("issuer", "pay"), siren=siren, face_value_cents=size * face,
                      fees_cents=0, payment_reference="p", total_received_cents=size * face),
        BookletIssued(**ids("issuer", "issue"), siren=siren, booklet_id=booklet_id,
                      voucher_count=size, **order),
        BookletActivated(**ids("issuer", "activate"), siren=siren, booklet_id=booklet_id,
                         activated_cents=size * face),
        ProviderAccredited(**ids("redeemer", "accredit"), siret=siret, name="V", iban="FR76",
                           address_code="69123", services=()),
        redemption], redemption


def test_a_cancellation_the_redeemer_refuses_as_too_late_is_named() -> None:
    events, redemption = one_redemption(START)
    late = RedemptionCancelled(
        event_id=event_id_for("redeemer", "cancel", 0), request_id="cancel",
        occurred_at=START + timedelta(days=3), siret=redemption.siret, siren=redemption.siren,
        booklet_id=redemption.booklet_id, voucher_id=redemption.voucher_id,
        face_value_cents=redemption.face_value_cents, redemption_event_id=redemption.event_id)
    assert reference_findings(events + [late]) == [("cancellation_too_late", (late.event_id,))]
    assert_the_auditor_agrees(events + [late])
