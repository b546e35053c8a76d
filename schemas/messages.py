"""Every command and event of the pass numérique ledger, version 1.

A released class is never edited: a change is a new class (or `schema_version`) plus an
upcaster in `passnum.core.codec`. Amounts are integer cents; personal data never appears
(beneficiaries are pseudonymous references).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Union

from pydantic import Field, Strict, StringConstraints

from schemas.base import (
    BookletId,
    Cents,
    Command,
    Event,
    EventId,
    LedgerDate,
    LedgerMonth,
    PlainText,
    PositiveCents,
    ReasonCode,
    Siren,
    Siret,
    StrictCents,
    StrictPositiveCents,
    VoucherId,
)

TargetGroup = Literal["pic", "general"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
InseeCode = Annotated[str, StringConstraints(pattern=r"^([0-9]{2}|2A|2B|97[0-9]|[0-9]{5}|2[AB][0-9]{3})$")]
Month = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
PseudonymousReference = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Iban = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")]

# Commands' own, tighter types (schemas/base.py says why events keep theirs).
CommandName = Annotated[PlainText, StringConstraints(min_length=1, max_length=200)]
CommandVoucherCode = Annotated[PlainText, StringConstraints(min_length=1, max_length=64)]
PaymentReference = Annotated[PlainText, StringConstraints(min_length=1, max_length=64)]
# A perimeter names départements or communes: at most a few hundred codes (France has 101
# départements). Every booklet of an order repeats it, so it bounds an order's events too.
PERIMETER_MAX_CODES = 300
Perimeter = Annotated[tuple[InseeCode, ...], Field(max_length=PERIMETER_MAX_CODES)]
PROVIDER_SERVICES_MAX = 50
BOOKLET_COUNT_MAX = 100_000


# ---------------------------------------------------------------- issuer: commands


class RegisterCollectivite(Command):
    type: Literal["register_collectivite"] = "register_collectivite"
    siren: Siren
    name: CommandName
    default_vouchers_per_booklet: Literal[5, 10] = 10
    default_face_value_cents: StrictPositiveCents = 1000


class FundEnvelope(Command):
    """Commit an envelope: the amount of face value the collectivité intends to fund."""

    type: Literal["fund_envelope"] = "fund_envelope"
    siren: Siren
    committed_cents: StrictPositiveCents


class RecordFundsReceived(Command):
    """The funder's payment order was received: this is what activates vouchers."""

    type: Literal["record_funds_received"] = "record_funds_received"
    siren: Siren
    face_value_cents: StrictPositiveCents
    fees_cents: StrictCents = 0
    payment_reference: PaymentReference


class OrderBooklets(Command):
    type: Literal["order_booklets"] = "order_booklets"
    siren: Siren
    booklet_count: Annotated[int, Strict(), Field(gt=0, le=BOOKLET_COUNT_MAX)]
    # None: the collectivité's defaults, recorded when it registered.
    vouchers_per_booklet: Literal[5, 10] | None = None
    face_value_cents: StrictPositiveCents | None = None
    target_group: TargetGroup = "general"
    perimeter: Perimeter = ()
    # Within the years of schemas.base: the grace date after valid_until must exist. An
    # order whose valid_until precedes valid_from is the issuer's `invalid_framing`.
    valid_from: LedgerDate | None = None
    valid_until: LedgerDate | None = None


class DistributeBooklet(Command):
    type: Literal["distribute_booklet"] = "distribute_booklet"
    siren: Siren
    booklet_id: BookletId
    distributor: CommandName
    beneficiary_reference: PseudonymousReference | None = None


class BlockBooklet(Command):
    """Lost or stolen: every unused voucher of the booklet stops being redeemable."""

    type: Literal["block_booklet"] = "block_booklet"
    siren: Siren
    booklet_id: BookletId
    reason: Literal["lost", "stolen", "cancelled"]


# ---------------------------------------------------------------- issuer: events


class CollectiviteRegistered(Event):
    type: Literal["collectivite_registered"] = "collectivite_registered"
    siren: Siren
    name: Name
    default_vouchers_per_booklet: Literal[5, 10]
    default_face_value_cents: PositiveCents


class EnvelopeFunded(Event):
    type: Literal["envelope_funded"] = "envelope_funded"
    siren: Siren
    committed_cents: PositiveCents
    total_committed_cents: Cents


class FundsReceived(Event):
    type: Literal["funds_received"] = "funds_received"
    siren: Siren
    face_value_cents: PositiveCents
    fees_cents: Cents
    payment_reference: str
    total_received_cents: Cents


class BookletsOrdered(Event):
    type: Literal["booklets_ordered"] = "booklets_ordered"
    siren: Siren
    order_id: str
    booklet_count: int
    vouchers_per_booklet: int
    face_value_cents: PositiveCents
    target_group: TargetGroup
    perimeter: tuple[str, ...]
    valid_from: date
    valid_until: date
    grace_until: date


class BookletIssued(Event):
    """Issued inactive: a voucher is in circulation only once `BookletActivated`."""

    type: Literal["booklet_issued"] = "booklet_issued"
    siren: Siren
    order_id: str
    booklet_id: BookletId
    voucher_count: int
    face_value_cents: PositiveCents
    target_group: TargetGroup
    perimeter: tuple[str, ...]
    valid_from: date
    valid_until: date
    grace_until: date


class BookletActivated(Event):
    type: Literal["booklet_activated"] = "booklet_activated"
    siren: Siren
    booklet_id: BookletId
    activated_cents: PositiveCents


class BookletDistributed(Event):
    type: Literal["booklet_distributed"] = "booklet_distributed"
    siren: Siren
    booklet_id: BookletId
    distributor: str
    beneficiary_reference: str | None


class BookletBlocked(Event):
    type: Literal["booklet_blocked"] = "booklet_blocked"
    siren: Siren
    booklet_id: BookletId
    reason: Literal["lost", "stolen", "cancelled"]


class IssuerCommandRejected(Event):
    type: Literal["issuer_command_rejected"] = "issuer_command_rejected"
    siren: str
    command_type: str
    reason: ReasonCode
    detail: str = ""


# ---------------------------------------------------------------- redeemer: commands


class AccreditProvider(Command):
    type: Literal["accredit_provider"] = "accredit_provider"
    siret: Siret
    name: CommandName
    iban: Iban
    address_code: InseeCode
    services: Annotated[tuple[CommandName, ...], Field(max_length=PROVIDER_SERVICES_MAX)] = ()


class ChangeProviderStatus(Command):
    type: Literal["change_provider_status"] = "change_provider_status"
    siret: Siret
    status: Literal["suspended", "accredited", "revoked"]
    reason: Annotated[PlainText, StringConstraints(max_length=200)] = ""


class CheckVoucher(Command):
    """Is this code redeemable now, here? Changes nothing."""

    type: Literal["check_voucher"] = "check_voucher"
    code: CommandVoucherCode
    siret: Siret


class RedeemVoucher(Command):
    type: Literal["redeem_voucher"] = "redeem_voucher"
    code: CommandVoucherCode
    siret: Siret


class CancelRedemption(Command):
    type: Literal["cancel_redemption"] = "cancel_redemption"
    voucher_id: VoucherId
    siret: Siret


class CloseSettlementMonth(Command):
    type: Literal["close_settlement_month"] = "close_settlement_month"
    month: LedgerMonth


# ---------------------------------------------------------------- redeemer: events


class ProviderAccredited(Event):
    type: Literal["provider_accredited"] = "provider_accredited"
    siret: Siret
    name: str
    iban: str
    address_code: str
    services: tuple[str, ...]


class BookletBlockApplied(Event):
    """The redeemer applies a block the issuer reported (`BookletBlocked`). Recorded in the
    stream of the partition that decides the booklet's scans, just before the first scan
    refused for it: the scans of that booklet after it in the stream were decided knowing
    the block, those before it were not (the auditor judges them so)."""

    type: Literal["booklet_block_applied"] = "booklet_block_applied"
    siren: Siren
    booklet_id: BookletId


class ProviderStatusChanged(Event):
    type: Literal["provider_status_changed"] = "provider_status_changed"
    siret: Siret
    status: Literal["suspended", "accredited", "revoked"]
    reason: str


class VoucherChecked(Event):
    type: Literal["voucher_checked"] = "voucher_checked"
    siret: Siret
    voucher_id: str | None
    valid: bool
    reason: ReasonCode | None = None


class VoucherRedeemed(Event):
    type: Literal["voucher_redeemed"] = "voucher_redeemed"
    siret: Siret
    siren: Siren
    booklet_id: BookletId
    voucher_id: VoucherId
    face_value_cents: PositiveCents


class RedemptionRejected(Event):
    type: Literal["redemption_rejected"] = "redemption_rejected"
    siret: str
    voucher_id: str | None
    reason: ReasonCode
    redeemed_at: str | None = None


class RedemptionCancelled(Event):
    type: Literal["redemption_cancelled"] = "redemption_cancelled"
    siret: Siret
    siren: Siren
    booklet_id: BookletId
    voucher_id: VoucherId
    face_value_cents: PositiveCents
    redemption_event_id: EventId


class RedeemerCommandRejected(Event):
    type: Literal["redeemer_command_rejected"] = "redeemer_command_rejected"
    command_type: str
    reason: ReasonCode
    detail: str = ""


class SettlementStatementIssued(Event):
    type: Literal["settlement_statement_issued"] = "settlement_statement_issued"
    siret: Siret
    month: Month
    voucher_count: int
    face_value_cents: Cents
    redemption_event_ids: tuple[EventId, ...]


class SettlementMonthClosed(Event):
    """A settlement month was closed: the statements issued by the same request precede
    this event. Recorded even when no venue redeemed anything, so that the closed months
    (and `month_already_closed`) can be rebuilt from the log alone."""

    type: Literal["settlement_month_closed"] = "settlement_month_closed"
    month: Month
    statement_count: int
    voucher_count: int
    face_value_cents: Cents


# ---------------------------------------------------------------- auditor: events


class CreditNoteIssued(Event):
    type: Literal["credit_note_issued"] = "credit_note_issued"
    siren: Siren
    year: int
    unused_voucher_count: int
    face_value_cents: Cents


class AuditCheckpointSigned(Event):
    """The auditor's signature over the chain prefixes a month covers (root_hash: SHA-256 of
    the `stream|sequence|hash` lines joined by newlines). `prefixes` carries those lines,
    sorted by stream, so that a verifier checks each stream at its own sequence. Older
    checkpoints carry none (the default keeps them valid as they are) and are verified by
    the month's date cut (`services.auditor.checkpoint`)."""

    type: Literal["audit_checkpoint_signed"] = "audit_checkpoint_signed"
    month: Month
    root_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    event_count: int
    signature: str
    public_key: str
    prefixes: tuple[Annotated[str, StringConstraints(
        pattern=r"^[^|\n]+\|[1-9][0-9]*\|[0-9a-f]{64}$")], ...] = ()


ISSUER_COMMANDS = (
    RegisterCollectivite,
    FundEnvelope,
    RecordFundsReceived,
    OrderBooklets,
    DistributeBooklet,
    BlockBooklet,
)
REDEEMER_COMMANDS = (
    AccreditProvider,
    ChangeProviderStatus,
    CheckVoucher,
    RedeemVoucher,
    CancelRedemption,
    CloseSettlementMonth,
)
ISSUER_EVENTS = (
    CollectiviteRegistered,
    EnvelopeFunded,
    FundsReceived,
    BookletsOrdered,
    BookletIssued,
    BookletActivated,
    BookletDistributed,
    BookletBlocked,
    IssuerCommandRejected,
)
REDEEMER_EVENTS = (
    ProviderAccredited,
    ProviderStatusChanged,
    BookletBlockApplied,
    VoucherChecked,
    VoucherRedeemed,
    RedemptionRejected,
    RedemptionCancelled,
    RedeemerCommandRejected,
    SettlementStatementIssued,
    SettlementMonthClosed,
)
AUDITOR_EVENTS = (CreditNoteIssued, AuditCheckpointSigned)

COMMAND_TYPES = ISSUER_COMMANDS + REDEEMER_COMMANDS
EVENT_TYPES = ISSUER_EVENTS + REDEEMER_EVENTS + AUDITOR_EVENTS
MESSAGE_TYPES = COMMAND_TYPES + EVENT_TYPES

AnyIssuerCommand = Annotated[Union[ISSUER_COMMANDS], Field(discriminator="type")]  # type: ignore[valid-type]
AnyRedeemerCommand = Annotated[Union[REDEEMER_COMMANDS], Field(discriminator="type")]  # type: ignore[valid-type]
ANY_COMMAND = Annotated[Union[COMMAND_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]
ANY_EVENT = Annotated[Union[EVENT_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]
ANY_MESSAGE = Annotated[Union[MESSAGE_TYPES], Field(discriminator="type")]  # type: ignore[valid-type]

__all__ = [cls.__name__ for cls in MESSAGE_TYPES] + ["EventId"]
