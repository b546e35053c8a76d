"""The issuer's decisions: each command goes to its rule in the ledger
(`passnum.ledger.envelope` and `passnum.ledger.booklet`); this module only routes."""

from __future__ import annotations

from typing import Sequence

from passnum.ledger.booklet import Booklet, decide_block, decide_distribute
from passnum.ledger.envelope import (
    Envelope,
    Policy,
    decide_fund_envelope,
    decide_funds_received,
    decide_order,
    decide_register,
)
from schemas.base import Event
from schemas.messages import (
    BlockBooklet,
    DistributeBooklet,
    FundEnvelope,
    OrderBooklets,
    RecordFundsReceived,
    RegisterCollectivite,
)


def decide(envelope: Envelope, booklet: Booklet | None, command: object,
           policy: Policy) -> Sequence[Event]:
    """Route a decoded issuer command to its decider."""
    if isinstance(command, RegisterCollectivite):
        return decide_register(envelope, command)
    if isinstance(command, FundEnvelope):
        return decide_fund_envelope(envelope, command, policy)
    if isinstance(command, RecordFundsReceived):
        return decide_funds_received(envelope, command)
    if isinstance(command, OrderBooklets):
        return decide_order(envelope, command, policy)
    if isinstance(command, DistributeBooklet):
        return decide_distribute(envelope, booklet, command)
    if isinstance(command, BlockBooklet):
        return decide_block(envelope, booklet, command)
    raise AssertionError(f"not an issuer command: {type(command).__name__}")
