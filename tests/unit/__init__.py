"""Fast unit tests: pure deciders, codec, voucher codes, contracts. No broker, no database.

This package also holds the few builders that more than one unit test module needs: valid
identifiers (checked with python-stdnum, like the code under test checks them) and one
sample of every message type, for the codec and JSON Schema tests.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from schemas.base import Message
from schemas.messages import (
    AccreditProvider,
    AuditCheckpointSigned,
    BlockBooklet,
    BookletActivated,
    BookletBlockApplied,
    BookletBlocked,
    BookletDistributed,
    BookletIssued,
    BookletsOrdered,
    CancelRedemption,
    ChangeProviderStatus,
    CheckVoucher,
    CloseSettlementMonth,
    CollectiviteRegistered,
    CreditNoteIssued,
    DistributeBooklet,
    EnvelopeFunded,
    FundEnvelope,
    FundsReceived,
    IssuerCommandRejected,
    OrderBooklets,
    ProviderAccredited,
    ProviderStatusChanged,
    RecordFundsReceived,
    RedeemerCommandRejected,
    RedeemVoucher,
    RedemptionCancelled,
    RedemptionRejected,
    RegisterCollectivite,
    SettlementMonthClosed,
    SettlementStatementIssued,
    VoucherChecked,
    VoucherRedeemed,
)

# SIRENs with a valid Luhn digit, and one without.
SIREN = "552100554"
OTHER_SIREN = "732829320"
THIRD_SIREN = "130025265"
INVALID_SIREN = "552100555"
# SIRETs (14 digits, Luhn over all of them), and one that fails the check.
SIRET = "55210055400104"
OTHER_SIRET = "73282932000207"
THIRD_SIRET = "13002526500302"
INVALID_SIRET = "55210055400105"
IBAN = "FR7630006000011234567890189"
INVALID_IBAN = "FR7630006000011234567890188"  # the same with a wrong check

BOOKLET_ID = f"{SIREN}-0000001"
VOUCHER_ID = f"{BOOKLET_ID}-01"
BENEFICIARY = "0123456789abcdef0123456789abcdef"
MORNING = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def sample_messages() -> list[Message]:
    """One valid instance of every message type, with every optional field filled in so
    that a field lost by the codec or missing from a schema shows up."""
    common = {"request_id": "sample-request", "occurred_at": MORNING}
    event = {**common, "event_id": "sample-event"}
    framing = {"face_value_cents": 1000, "target_group": "pic", "perimeter": ("75", "97411"),
               "valid_from": date(2024, 3, 1), "valid_until": date(2024, 12, 31),
               "grace_until": date(2025, 1, 31)}
    return [
        RegisterCollectivite(**common, siren=SIREN, name="Ville de Paris",
                             default_vouchers_per_booklet=5, default_face_value_cents=1000),
        FundEnvelope(**common, siren=SIREN, committed_cents=2_000_000),
        RecordFundsReceived(**common, siren=SIREN, face_value_cents=1_000_000,
                            fees_cents=40_000, payment_reference="OP-2024-0001"),
        OrderBooklets(**common, siren=SIREN, booklet_count=3, vouchers_per_booklet=5,
                      face_value_cents=1000, target_group="pic", perimeter=("75", "2A004"),
                      valid_from=date(2024, 3, 1), valid_until=date(2024, 12, 31)),
        DistributeBooklet(**common, siren=SIREN, booklet_id=BOOKLET_ID,
                          distributor="Mairie du 11e", beneficiary_reference=BENEFICIARY),
        BlockBooklet(**common, siren=SIREN, booklet_id=BOOKLET_ID, reason="stolen"),
        AccreditProvider(**common, siret=SIRET, name="Fabrique numérique", iban=IBAN,
                         address_code="97411", services=("atelier e-mail", "démarches")),
        ChangeProviderStatus(**common, siret=SIRET, status="suspended", reason="audit"),
        CheckVoucher(**common, code="FABM-GXCQ-ES35-4MVG-17GT-=", siret=SIRET),
        RedeemVoucher(**common, code="FABM-GXCQ-ES35-4MVG-17GT-=", siret=SIRET),
        CancelRedemption(**common, voucher_id=VOUCHER_ID, siret=SIRET),
        CloseSettlementMonth(**common, month="2024-03"),
        CollectiviteRegistered(**event, siren=SIREN, name="Ville de Paris",
                               default_vouchers_per_booklet=10, default_face_value_cents=1000),
        EnvelopeFunded(**event, siren=SIREN, committed_cents=1000, total_committed_cents=5000),
        FundsReceived(**event, siren=SIREN, face_value_cents=1000, fees_cents=40,
                      payment_reference="OP-1", total_received_cents=3000),
        BookletsOrdered(**event, siren=SIREN, order_id=f"{SIREN}-order-00001", booklet_count=2,
                        vouchers_per_booklet=10, **framing),
        BookletIssued(**event, siren=SIREN, order_id=f"{SIREN}-order-00001",
                      booklet_id=BOOKLET_ID, voucher_count=10, **framing),
        BookletActivated(**event, siren=SIREN, booklet_id=BOOKLET_ID, activated_cents=10_000),
        BookletDistributed(**event, siren=SIREN, booklet_id=BOOKLET_ID, distributor="CAF",
                           beneficiary_reference=BENEFICIARY),
        BookletBlocked(**event, siren=SIREN, booklet_id=BOOKLET_ID, reason="lost"),
        IssuerCommandRejected(**event, siren=SIREN, command_type="order_booklets",
                              reason="over_envelope", detail="ordered 0 + 10 > 5"),
        ProviderAccredited(**event, siret=SIRET, name="Fabrique", iban=IBAN,
                           address_code="75056", services=("atelier",)),
        ProviderStatusChanged(**event, siret=SIRET, status="revoked", reason="fraud"),
        BookletBlockApplied(**event, siren=SIREN, booklet_id=BOOKLET_ID),
        VoucherChecked(**event, siret=SIRET, voucher_id=VOUCHER_ID, valid=False,
                       reason="booklet_blocked"),
        VoucherRedeemed(**event, siret=SIRET, siren=SIREN, booklet_id=BOOKLET_ID,
                        voucher_id=VOUCHER_ID, face_value_cents=1000),
        RedemptionRejected(**event, siret=SIRET, voucher_id=VOUCHER_ID,
                           reason="already_redeemed", redeemed_at=MORNING.isoformat()),
        RedemptionCancelled(**event, siret=SIRET, siren=SIREN, booklet_id=BOOKLET_ID,
                            voucher_id=VOUCHER_ID, face_value_cents=1000,
                            redemption_event_id="earlier-event"),
        RedeemerCommandRejected(**event, command_type="cancel_redemption",
                                reason="not_redeemed_here", detail="no"),
        SettlementStatementIssued(**event, siret=SIRET, month="2024-03", voucher_count=2,
                                  face_value_cents=2000, redemption_event_ids=("e1", "e2")),
        SettlementMonthClosed(**event, month="2024-03", statement_count=1, voucher_count=2,
                              face_value_cents=2000),
        CreditNoteIssued(**event, siren=SIREN, year=2024, unused_voucher_count=7,
                         face_value_cents=7000),
        AuditCheckpointSigned(**event, month="2024-03", root_hash="ab" * 32, event_count=12,
                              signature="c2lnbmF0dXJl", public_key="cHVibGlj"),
    ]
