"""Command builders shared by the demo, the tests and the benchmarks: a collectivité's
onboarding (register, commit an envelope, order, pay), venue accreditations, and the codes
printed in the booklets; and the same onboarding through the operator's HTTP API (the
demo's)."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from passnum.edge.operator_client import OperatorClient, Reply
from passnum.ledger.partners import Partner, Venue
from passnum.ledger.voucher_codes import VoucherNumber, make_code
from schemas.base import Command
from schemas.messages import (
    AccreditProvider,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)

FACE_VALUE_CENTS = 1000
UPSTREAM_FEE_PERCENT = 4


def onboarding(partner: Partner, booklet_count: int, at: datetime, *,
               funded_booklets: int | None = None, tag: str = "demo") -> list[Command]:
    """Register, commit an envelope for the order, order, and pay for `funded_booklets`."""
    funded = booklet_count if funded_booklets is None else funded_booklets
    booklet_value = partner.vouchers_per_booklet * FACE_VALUE_CENTS
    commands: list[Command] = [
        RegisterCollectivite(request_id=f"{tag}-register-{partner.siren}", occurred_at=at,
                             siren=partner.siren, name=partner.name,
                             default_vouchers_per_booklet=partner.vouchers_per_booklet),
        FundEnvelope(request_id=f"{tag}-envelope-{partner.siren}", occurred_at=at,
                     siren=partner.siren, committed_cents=booklet_count * booklet_value),
        OrderBooklets(request_id=f"{tag}-order-{partner.siren}", occurred_at=at,
                      siren=partner.siren, booklet_count=booklet_count,
                      vouchers_per_booklet=partner.vouchers_per_booklet),
    ]
    if funded:
        face_value = funded * booklet_value
        commands.append(RecordFundsReceived(
            request_id=f"{tag}-payment-{partner.siren}", occurred_at=at, siren=partner.siren,
            face_value_cents=face_value, fees_cents=face_value * UPSTREAM_FEE_PERCENT // 100,
            payment_reference=f"OP-{partner.siren}"))
    return commands


def accreditations(venues: Sequence[Venue], at: datetime, tag: str = "demo") -> list[Command]:
    return [AccreditProvider(request_id=f"{tag}-accredit-{venue.siret}", occurred_at=at,
                             siret=venue.siret, name=venue.name, iban=venue.iban,
                             address_code=venue.address_code) for venue in venues]


def booklet_codes(code_key: bytes, partner: Partner, booklet_sequences: range) -> list[str]:
    return [make_code(code_key, VoucherNumber(partner.siren, sequence, position))
            for sequence in booklet_sequences
            for position in range(1, partner.vouchers_per_booklet + 1)]


class OnboardingRefused(Exception):
    pass


def onboard_through_operator_api(client: OperatorClient, partners: Sequence[Partner],
                                 venues: Sequence[Venue], booklet_count: int,
                                 funded_booklets: int, tag: str = "demo") -> dict[str, str]:
    """The cast onboarded as people would do it, over HTTP only: the operator registers
    each collectivité, commits its envelope and gives it a token; the collectivité orders
    on its own API; the operator records the funds received and accredits the venues.
    Returns each collectivité's token, by SIREN. Every request carries a key made of `tag`,
    so a second run with the same tag changes nothing."""
    tokens: dict[str, str] = {}
    for partner in partners:
        booklet_value = partner.vouchers_per_booklet * FACE_VALUE_CENTS
        _accepted(client.register_collectivite(
            partner.siren, partner.name, f"{tag}-register-{partner.siren}",
            partner.vouchers_per_booklet, FACE_VALUE_CENTS))
        _accepted(client.fund_envelope(partner.siren, booklet_count * booklet_value,
                                       f"{tag}-envelope-{partner.siren}"))
        tokens[partner.siren] = _accepted(client.call(
            "issuer", "POST", f"/v1/operator/collectivites/{partner.siren}/tokens", {},
            f"{tag}-token-{partner.siren}")).body["token"]
        _accepted(client.call("issuer", "POST", "/v1/orders", {"booklet_count": booklet_count},
                              f"{tag}-order", token=tokens[partner.siren]))
        if funded_booklets:
            face_value = funded_booklets * booklet_value
            _accepted(client.record_funds_received(
                partner.siren, face_value, face_value * UPSTREAM_FEE_PERCENT // 100,
                f"OP-{partner.siren}", f"{tag}-payment-{partner.siren}"))
    for venue in venues:
        _accepted(client.accredit_venue(venue.siret, venue.name, venue.iban,
                                        venue.address_code, (), f"{tag}-accredit-{venue.siret}"))
    return tokens


def _accepted(reply: Reply) -> Reply:
    if not reply.ok:
        raise OnboardingRefused(f"{reply.status} {reply.reason}: {reply.detail}")
    return reply
