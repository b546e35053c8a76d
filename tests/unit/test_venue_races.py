"""A venue's status changes racing its scans: whatever the order the redeemer decides them
in, and whatever instants they carry, the auditor finds nothing against the scans the
redeemer accepted (Hypothesis).

The redeemer decides a venue's scans on many partitions and its status changes on one, so
a scan dated after a suspension's date may be decided before the suspension, and a
suspension may carry a date earlier than scans already accepted (an operator's clock, a
request sent late). Here a random interleaving of scans (live, back-dated, a little ahead)
and status changes (suspension, reinstatement, revocation, dated anywhere around) is decided
in its order with the ledger's rules, as the handler applies them: the latest accepted scan
known to the change (`RedeemerView.latest_scans`), `decide_provider_status` and the
redemption's decider. The accepted redemptions and the venue's events are then chained
(each booklet's events on its stream, the venue's on its own) and replayed by the auditor:
no finding about the venue may name them. With the change dated by its command alone
(`effective_instant` reduced to the command's date), the property fails.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passnum.ledger import voucher as voucher_rules
from passnum.ledger.identity import event_id_for
from passnum.ledger.venue import decide_accredit, decide_provider_status
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.messages import (
    AccreditProvider,
    BookletActivated,
    BookletIssued,
    BookletsOrdered,
    ChangeProviderStatus,
    CollectiviteRegistered,
    EnvelopeFunded,
    FundsReceived,
    RedeemVoucher,
    VoucherRedeemed,
)
from tests.unit.test_ledger_accelerations import audited_findings

SIREN, SIRET, IBAN = "123456782", "73282932000074", "FR7630006000011234567890189"
CODE_KEY = b"venue-races-code-key"
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
AS_OF = datetime(2026, 3, 16, 12, 0, tzinfo=timezone.utc)
BOOKLETS, VOUCHERS = 4, 10
VENUE_CODES = ("redemption_by_unaccredited_venue", "redemption_outside_perimeter")


def issuer_history() -> list:
    """One collectivité, its booklets issued and activated well before the scans."""
    when = START - timedelta(days=10)
    worth = BOOKLETS * VOUCHERS * 1000
    order = {"order_id": f"{SIREN}-o1", "face_value_cents": 1000, "target_group": "pic",
             "perimeter": (), "valid_from": (START - timedelta(days=1)).date(),
             "valid_until": datetime(2026, 12, 31).date(),
             "grace_until": datetime(2027, 1, 31).date()}

    def ids(request: str) -> dict:
        return {"event_id": event_id_for("issuer", request, 0), "request_id": request,
                "occurred_at": when}

    events: list = [
        CollectiviteRegistered(**ids("register"), siren=SIREN, name="C",
                               default_vouchers_per_booklet=VOUCHERS,
                               default_face_value_cents=1000),
        EnvelopeFunded(**ids("fund"), siren=SIREN, committed_cents=worth,
                       total_committed_cents=worth),
        BookletsOrdered(**ids("order"), siren=SIREN, booklet_count=BOOKLETS,
                        vouchers_per_booklet=VOUCHERS, **order),
        FundsReceived(**ids("pay"), siren=SIREN, face_value_cents=worth, fees_cents=0,
                      payment_reference="p", total_received_cents=worth)]
    for sequence in range(1, BOOKLETS + 1):
        booklet_id = f"{SIREN}-{sequence:07d}"
        events.append(BookletIssued(**ids(f"issue-{sequence}"), siren=SIREN,
                                    booklet_id=booklet_id, voucher_count=VOUCHERS, **order))
        events.append(BookletActivated(**ids(f"activate-{sequence}"), siren=SIREN,
                                       booklet_id=booklet_id, activated_cents=VOUCHERS * 1000))
    return events


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[str, object, datetime]]:
    """(kind, status, instant) in the order the redeemer decides them."""
    moments = st.integers(-3600, 7200).map(lambda seconds: START + timedelta(
        seconds=seconds // 10, microseconds=(seconds % 10) * 100_000))
    steps = []
    for _ in range(draw(st.integers(1, 30))):
        if draw(st.integers(0, 3)):
            steps.append(("scan", None, draw(moments)))
        else:
            status = draw(st.sampled_from(["suspended", "suspended", "accredited", "revoked"]))
            steps.append(("status", status, draw(moments)))
    return steps


def decided(steps: list[tuple[str, object, datetime]]) -> list:
    """The redeemer's events for `steps`, decided in their order by the ledger's rules."""
    view = voucher_rules.RedeemerView({}, {}, {})
    for event in issuer_history():
        voucher_rules.evolve(view, event)
    accredit = AccreditProvider(request_id="accredit", occurred_at=START - timedelta(hours=2),
                                siret=SIRET, name="Lieu", iban=IBAN, address_code="75056")
    events = decide_accredit(view.providers, accredit)
    voucher_rules.evolve(view, events[0])
    view.latest_scans[SIRET] = None  # what the handler loads for a venue whose status changes
    numbers = iter(VoucherNumber(SIREN, sequence, position)
                   for sequence in range(1, BOOKLETS + 1) for position in range(1, VOUCHERS + 1))
    for index, (kind, status, instant) in enumerate(steps):
        if kind == "scan":
            command = RedeemVoucher(request_id=f"scan-{index}", occurred_at=instant,
                                    code=make_code(CODE_KEY, next(numbers)), siret=SIRET)
            outcome = voucher_rules.decide_redeem(view, command, CODE_KEY)
        else:
            change = ChangeProviderStatus(request_id=f"status-{index}", occurred_at=instant,
                                          siret=SIRET, status=status, reason="r")
            outcome = decide_provider_status(view.providers, change,
                                             view.latest_scans.get(SIRET))
        for event in outcome:
            voucher_rules.evolve(view, event)
        events += [event for event in outcome if event.type in (
            "voucher_redeemed", "provider_status_changed")]
    return events


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(interleavings())
def test_the_auditor_finds_nothing_against_what_the_redeemer_accepted(steps) -> None:  # type: ignore[no-untyped-def]
    redeemer_events = decided(steps)
    findings = audited_findings(issuer_history() + redeemer_events, compiled=False,
                                as_of=AS_OF)
    assert [f for f in findings if f[0] in VENUE_CODES] == []


def test_the_interleavings_do_race() -> None:
    """The property is about races only if some drawn histories hold a scan accepted and
    dated after a later-decided suspension's own date."""
    raced = 0

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(interleavings())
    def count(steps: list) -> None:
        nonlocal raced
        accepted: list[datetime] = []
        for event in decided(steps):
            if isinstance(event, VoucherRedeemed):
                accepted.append(event.occurred_at)
            elif getattr(event, "status", "accredited") != "accredited":
                requested = steps[int(event.request_id.split("-")[1])][2]
                raced += any(scan > requested for scan in accepted)

    count()
    assert raced >= 10, raced
