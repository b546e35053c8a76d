"""Hypothesis stateful tests of the ledger's invariants, on the pure deciders.

Each machine decides random commands with the services' own `decide` functions and folds
every event with their own `evolve`, exactly as the live processors do one batch. A second,
much simpler bookkeeping in the machine (sets and sums) is what the invariants are checked
against.

(a) issuer: per collectivité, `activated_cents <= received_cents`, activation is FIFO over
    the booklets that were not blocked before activation, no booklet is activated twice,
    and no booklet that the funds received cover is ever left waiting (after a payment,
    an order, or the blocking of the head of the queue alike).
(b) redeemer: a voucher is never redeemed twice (a cancelled redemption excepted), every
    command yields exactly one event, a check changes nothing and agrees with what a
    redemption would say, and a retried request decided again never redeems again.
"""

from __future__ import annotations

import copy
import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.base import Command, Event
from schemas.messages import (
    AccreditProvider,
    BlockBooklet,
    BookletActivated,
    BookletBlocked,
    BookletIssued,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RedeemVoucher,
    RedemptionCancelled,
    RedemptionRejected,
    RegisterCollectivite,
    VoucherChecked,
    VoucherRedeemed,
)
from passnum.ledger import booklet as booklet_rules
from passnum.ledger import envelope as envelope_rules
from passnum.ledger import voucher as voucher_rules
from services.issuer import domain as issuer
from services.redeemer import domain as redeemer

from . import IBAN, OTHER_SIREN, OTHER_SIRET, SIREN, SIRET, THIRD_SIREN, THIRD_SIRET

# Small enough to run in a few seconds, long enough to interleave every kind of step.
MACHINE_SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
START = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
SIRENS = (SIREN, OTHER_SIREN, THIRD_SIREN)
# "The same day" for a cancellation is a day at the venue, in France.
FRANCE = ZoneInfo("Europe/Paris")


# ------------------------------------------------------------------------------ (a) issuer


class IssuerMachine(RuleBasedStateMachine):
    """A few collectivités commit envelopes, order booklets, pay and block, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = envelope_rules.Policy(cap_per_collectivite_cents=1_000_000)
        self.request_numbers = itertools.count(1)
        self.envelopes = {siren: envelope_rules.Envelope(siren) for siren in SIRENS}
        self.booklets: dict[str, booklet_rules.Booklet] = {}
        # The machine's own bookkeeping, written without the issuer's code.
        self.booklet_values: dict[str, int] = {}
        self.blocked_before_activation: set[str] = set()
        self.activated: set[str] = set()
        self.received: dict[str, int] = dict.fromkeys(SIRENS, 0)

    def decide(self, command: Command) -> list[Event]:
        siren = command.siren  # type: ignore[attr-defined]
        booklet = self.booklets.get(getattr(command, "booklet_id", ""))
        events = list(issuer.decide(self.envelopes[siren], booklet, command, self.policy))
        again = list(issuer.decide(self.envelopes[siren], booklet, command, self.policy))
        assert events == again, "deciding the same command twice gave different events"
        for event in events:
            self.observe(event)
            self.envelopes[siren] = envelope_rules.evolve(self.envelopes[siren], event)
            booklet_id = getattr(event, "booklet_id", None)
            if booklet_id:
                updated = booklet_rules.evolve_booklet(self.booklets.get(booklet_id), event)
                assert updated is not None
                self.booklets[booklet_id] = updated
        return events

    def observe(self, event: Event) -> None:
        if isinstance(event, BookletIssued):
            self.booklet_values[event.booklet_id] = event.voucher_count * event.face_value_cents
        elif isinstance(event, BookletActivated):
            assert event.booklet_id not in self.activated, "a booklet was activated twice"
            assert event.booklet_id not in self.blocked_before_activation
            assert event.activated_cents == self.booklet_values[event.booklet_id]
            self.activated.add(event.booklet_id)
        elif isinstance(event, BookletBlocked) and event.booklet_id not in self.activated:
            self.blocked_before_activation.add(event.booklet_id)

    def request(self) -> dict[str, object]:
        return {"request_id": f"issuer-{next(self.request_numbers)}", "occurred_at": START}

    @initialize()
    def register_everyone(self) -> None:
        for siren in SIRENS:
            self.decide(RegisterCollectivite(**self.request(), siren=siren, name=siren))
            self.decide(FundEnvelope(**self.request(), siren=siren, committed_cents=150_000))

    @rule(siren=st.sampled_from(SIRENS), committed_cents=st.integers(1, 200_000))
    def fund_envelope(self, siren: str, committed_cents: int) -> None:
        self.decide(FundEnvelope(**self.request(), siren=siren, committed_cents=committed_cents))

    @rule(siren=st.sampled_from(SIRENS), booklet_count=st.integers(1, 3),
          vouchers_per_booklet=st.sampled_from((5, 10)),
          face_value_cents=st.sampled_from((500, 1000, 2000)))
    def order(self, siren: str, booklet_count: int, vouchers_per_booklet: int,
              face_value_cents: int) -> None:
        self.decide(OrderBooklets(**self.request(), siren=siren, booklet_count=booklet_count,
                                  vouchers_per_booklet=vouchers_per_booklet,
                                  face_value_cents=face_value_cents))

    # Payments of exactly one booklet's value, or of any amount: the first kind is what
    # makes the queue stop at a booklet that a smaller payment cannot cover.
    @rule(siren=st.sampled_from(SIRENS), face_value_cents=st.one_of(
        st.sampled_from((2_500, 5_000, 10_000, 20_000)), st.integers(1, 25_000)))
    def receive_funds(self, siren: str, face_value_cents: int) -> None:
        events = self.decide(RecordFundsReceived(
            **self.request(), siren=siren, face_value_cents=face_value_cents,
            fees_cents=face_value_cents * 4 // 100, payment_reference="OP"))
        if events[0].type == "funds_received":
            self.received[siren] += face_value_cents

    @precondition(lambda self: self.booklets)
    @rule(data=st.data(), reason=st.sampled_from(("lost", "stolen", "cancelled")))
    def block(self, data: st.DataObject, reason: str) -> None:
        booklet_id = data.draw(st.sampled_from(sorted(self.booklets)))
        siren = booklet_id.split("-")[0]
        events = self.decide(BlockBooklet(**self.request(), siren=siren, booklet_id=booklet_id,
                                          reason=reason))
        # Blocking the unfunded head of the queue lets the funds reach the booklets behind.
        assert events[0].type in ("booklet_blocked", "issuer_command_rejected")
        assert all(isinstance(event, BookletActivated) for event in events[1:])

    @rule(siren=st.sampled_from(SIRENS))
    def block_the_head_of_the_queue(self, siren: str) -> None:
        """Lost before it was ever paid for: the booklet the queue is waiting on."""
        waiting = self.waiting(siren)
        if waiting:
            self.decide(BlockBooklet(**self.request(), siren=siren, booklet_id=waiting[0],
                                     reason="lost"))

    def waiting(self, siren: str) -> list[str]:
        return [b for b in self.sequences_of(siren)
                if b not in self.activated and b not in self.blocked_before_activation]

    def sequences_of(self, siren: str) -> list[str]:
        return sorted(b for b in self.booklets if b.startswith(siren))

    @invariant()
    def no_funded_booklet_waits(self) -> None:
        """The first booklet still waiting in each queue is one that the remaining funds
        cannot cover: vouchers are put in circulation as soon as they are paid for."""
        for siren in SIRENS:
            available = self.received[siren] - self.envelopes[siren].activated_cents
            waiting = self.waiting(siren)
            if waiting:
                assert self.booklet_values[waiting[0]] > available, (waiting[0], available)

    @invariant()
    def activated_never_exceeds_received(self) -> None:
        for siren, envelope in self.envelopes.items():
            assert envelope.received_cents == self.received[siren]
            assert envelope.activated_cents <= envelope.received_cents
            assert envelope.ordered_cents <= envelope.committed_cents
            assert envelope.committed_cents <= self.policy.cap_per_collectivite_cents

    @invariant()
    def activated_cents_are_the_activated_booklets(self) -> None:
        for siren, envelope in self.envelopes.items():
            assert envelope.activated_cents == sum(
                self.booklet_values[b] for b in self.activated if b.startswith(siren))
        assert {b for b, booklet in self.booklets.items() if booklet.activated} == self.activated

    @invariant()
    def activation_is_first_in_first_out(self) -> None:
        for siren in SIRENS:
            queue = [b for b in self.sequences_of(siren)
                     if b not in self.blocked_before_activation]
            flags = [b in self.activated for b in queue]
            assert flags == sorted(flags, reverse=True), f"activation out of order: {queue}"


TestIssuerInvariants = IssuerMachine.TestCase
# More examples here: the interesting queues (a dear booklet before cheap ones, a payment
# between their values) need several orders on one collectivité before a payment.
TestIssuerInvariants.settings = settings(MACHINE_SETTINGS, max_examples=120)


# ------------------------------------------------------------------------------ (b) redeemer

KEY = b"stateful-test-voucher-code-key!!"
BOOKLETS = {  # sequence -> perimeter
    1: (),
    2: (),
    3: ("75",),
    4: ("974",),
}
VOUCHERS_PER_BOOKLET = 3
VOUCHERS = [(sequence, position) for sequence in BOOKLETS
            for position in range(1, VOUCHERS_PER_BOOKLET + 1)]
VENUES = {SIRET: "75056", OTHER_SIRET: "97411", THIRD_SIRET: "13055"}


def _booklet_id(sequence: int) -> str:
    return f"{SIREN}-{sequence:07d}"


def _voucher_id(sequence: int, position: int) -> str:
    return f"{_booklet_id(sequence)}-{position:02d}"


class RedeemerMachine(RuleBasedStateMachine):
    """Venues scan, check and cancel; booklets get blocked; venues get suspended."""

    def __init__(self) -> None:
        super().__init__()
        self.view = redeemer.empty_view()
        self.now = START
        self.request_numbers = itertools.count(1)
        self.codes = {voucher: make_code(KEY, VoucherNumber(SIREN, *voucher))
                      for voucher in VOUCHERS}
        # The machine's own bookkeeping.
        self.holder: dict[str, tuple[str, datetime]] = {}  # voucher id -> (siret, when)
        self.redemption_counts: dict[str, int] = dict.fromkeys(
            (_voucher_id(*voucher) for voucher in VOUCHERS), 0)
        self.cancellation_counts = dict(self.redemption_counts)
        self.sent_redemptions: list[RedeemVoucher] = []
        self.blocked: set[str] = set()
        self.status = dict.fromkeys(VENUES, "accredited")

    def request(self) -> dict[str, object]:
        return {"request_id": f"redeemer-{next(self.request_numbers)}", "occurred_at": self.now}

    def decide(self, command: Command) -> Event:
        events = redeemer.decide(self.view, command, KEY)
        assert len(events) == 1, f"{command.type} gave {len(events)} events"
        event = events[0]
        assert event.request_id == command.request_id
        self.observe(event)
        voucher_rules.evolve(self.view, event)
        return event

    def observe(self, event: Event) -> None:
        if isinstance(event, VoucherRedeemed):
            assert event.voucher_id not in self.holder, f"{event.voucher_id} redeemed twice"
            assert event.booklet_id not in self.blocked
            assert self.status[event.siret] == "accredited"
            self.holder[event.voucher_id] = (event.siret, event.occurred_at)
            self.redemption_counts[event.voucher_id] += 1
        elif isinstance(event, RedemptionCancelled):
            siret, redeemed_at = self.holder.pop(event.voucher_id)
            assert siret == event.siret
            assert redeemed_at.astimezone(FRANCE).date() == (
                event.occurred_at.astimezone(FRANCE).date()), "cancelled on another day"
            self.cancellation_counts[event.voucher_id] += 1
        elif isinstance(event, RedemptionRejected) and event.reason == "already_redeemed":
            assert event.voucher_id in self.holder
            assert event.redeemed_at == self.holder[event.voucher_id][1].isoformat()

    @initialize()
    def open_for_business(self) -> None:
        for sequence, perimeter in BOOKLETS.items():
            facts = {"event_id": f"issuer-fact-{sequence}", "request_id": "issuer",
                     "occurred_at": START, "siren": SIREN, "booklet_id": _booklet_id(sequence)}
            voucher_rules.evolve(self.view, BookletIssued(
                **facts, order_id="order", voucher_count=VOUCHERS_PER_BOOKLET,
                face_value_cents=1000, target_group="general", perimeter=perimeter,
                valid_from=date(2024, 1, 1), valid_until=date(2024, 12, 31),
                grace_until=date(2025, 1, 31)))
            voucher_rules.evolve(self.view, BookletActivated(**facts, activated_cents=3000))
        for siret, address_code in VENUES.items():
            self.decide(AccreditProvider(**self.request(), siret=siret, name=siret, iban=IBAN,
                                         address_code=address_code))

    @rule(hours=st.integers(0, 30))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(voucher=st.sampled_from(VOUCHERS), siret=st.sampled_from(sorted(VENUES)))
    def redeem(self, voucher: tuple[int, int], siret: str) -> None:
        command = RedeemVoucher(**self.request(), code=self.codes[voucher], siret=siret)
        self.sent_redemptions.append(command)
        self.decide(command)

    @precondition(lambda self: self.sent_redemptions)
    @rule(data=st.data())
    def retry_a_redemption(self, data: st.DataObject) -> None:
        """A client retries a request it has no answer for; here it is decided again
        against the current state (the processing core would replay the recorded outcome,
        this is the worse case). Whatever happened since, it never redeems a redeemed
        voucher; a voucher cancelled since may legitimately be redeemed by the retry."""
        command = data.draw(st.sampled_from(self.sent_redemptions))
        self.decide(command)

    @rule(voucher=st.sampled_from(VOUCHERS), siret=st.sampled_from(sorted(VENUES)))
    def check(self, voucher: tuple[int, int], siret: str) -> None:
        before = copy.deepcopy(self.view)
        command = CheckVoucher(**self.request(), code=self.codes[voucher], siret=siret)
        would_redeem = redeemer.decide(self.view, RedeemVoucher(
            **command.model_dump(exclude={"type"})), KEY)[0]
        event = self.decide(command)
        assert isinstance(event, VoucherChecked)
        assert self.view == before, "a check changed the state"
        if isinstance(would_redeem, VoucherRedeemed):
            assert event.valid and event.reason is None
        else:
            assert isinstance(would_redeem, RedemptionRejected)
            assert (event.valid, event.reason) == (False, would_redeem.reason)

    @rule(voucher=st.sampled_from(VOUCHERS), siret=st.sampled_from(sorted(VENUES)))
    def cancel(self, voucher: tuple[int, int], siret: str) -> None:
        self.decide(CancelRedemption(**self.request(), voucher_id=_voucher_id(*voucher),
                                     siret=siret))

    @precondition(lambda self: self.holder)
    @rule(data=st.data())
    def cancel_a_redemption_at_its_venue(self, data: st.DataObject) -> None:
        voucher_id = data.draw(st.sampled_from(sorted(self.holder)))
        siret = self.holder[voucher_id][0]
        self.decide(CancelRedemption(**self.request(), voucher_id=voucher_id, siret=siret))

    @rule(sequence=st.sampled_from(sorted(BOOKLETS)), lost=st.integers(0, 2))
    def block_booklet(self, sequence: int, lost: int) -> None:
        # One draw in three: a blocked booklet refuses everything after, so blocking as
        # often as scanning would leave little to scan.
        if lost:
            return
        voucher_rules.evolve(self.view, BookletBlocked(
            event_id=f"issuer-block-{sequence}", request_id="issuer", occurred_at=self.now,
            siren=SIREN, booklet_id=_booklet_id(sequence), reason="stolen"))
        self.blocked.add(_booklet_id(sequence))

    @rule(siret=st.sampled_from(sorted(VENUES)),
          status=st.sampled_from(("suspended", "accredited", "accredited", "revoked")))
    def change_provider_status(self, siret: str, status: str) -> None:
        event = self.decide(ChangeProviderStatus(**self.request(), siret=siret, status=status))
        if event.type == "provider_status_changed":
            assert self.status[siret] != "revoked"
            self.status[siret] = status
        else:
            assert self.status[siret] == "revoked"

    @invariant()
    def never_redeemed_twice(self) -> None:
        for voucher_id, redemptions in self.redemption_counts.items():
            assert redemptions - self.cancellation_counts[voucher_id] in (0, 1)
        assert set(self.view.redemptions) == set(self.holder)
        for voucher_id, (siret, _) in self.holder.items():
            assert self.view.redemptions[voucher_id].siret == siret

    @invariant()
    def provider_statuses_agree(self) -> None:
        assert {s: p.status for s, p in self.view.providers.items()} == self.status


TestRedeemerInvariants = RedeemerMachine.TestCase
TestRedeemerInvariants.settings = MACHINE_SETTINGS
