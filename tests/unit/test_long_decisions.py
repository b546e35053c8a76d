"""Batches decided off the event loop however few their records: a settlement close
(passnum.core.processing.holds_a_long_decision, RedeemerHandler.long_decision)."""

from __future__ import annotations

from datetime import datetime, timezone

from passnum.core.codec import encode
from passnum.core.processing import InputRecord, holds_a_long_decision
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import CancelRedemption, CloseSettlementMonth
from services.issuer.handler import IssuerHandler
from passnum.ledger.envelope import Policy
from services.redeemer.handler import RedeemerHandler

AT = datetime(2026, 3, 1, tzinfo=timezone.utc)
TOPOLOGY = topology_for(Settings())
REDEEMER = RedeemerHandler(TOPOLOGY, b"key")


def command(offset: int, value: bytes, topic: str = TOPOLOGY.redeemer_commands.name
            ) -> InputRecord:
    return InputRecord(topic, 0, offset, b"k", value)


CLOSE = encode(CloseSettlementMonth(request_id="close", occurred_at=AT, month="2026-02"))
CANCEL = encode(CancelRedemption(request_id="cancel", occurred_at=AT,
                                 voucher_id="552100554-0000001-01", siret="73282932000074"))


def test_a_close_among_few_commands_is_a_long_decision() -> None:
    assert holds_a_long_decision(REDEEMER, [command(0, CANCEL), command(1, CLOSE)])


def test_redemptions_and_undecodable_records_are_not() -> None:
    assert not holds_a_long_decision(REDEEMER, [command(0, CANCEL), command(1, b"\xff")])


def test_a_close_on_an_event_topic_is_not_a_command_to_decide() -> None:
    assert not holds_a_long_decision(
        REDEEMER, [command(0, CLOSE, topic=TOPOLOGY.issuer_events.name)])


def test_a_handler_without_the_hook_has_no_long_decisions() -> None:
    issuer = IssuerHandler(TOPOLOGY, Policy(grace_days_after_year_end=31))
    assert not holds_a_long_decision(issuer, [command(0, CLOSE)])


def test_a_batch_without_a_close_is_not_decoded_to_tell(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Asked of every small batch on the event loop: only a record naming the close's type
    is decoded (the decision decodes every command anyway)."""
    from services.redeemer import handler as handler_module

    decoded: list[bytes] = []
    real = handler_module.decode_command
    monkeypatch.setattr(handler_module, "decode_command",
                        lambda value: decoded.append(value) or real(value))
    assert not holds_a_long_decision(REDEEMER, [command(n, CANCEL) for n in range(32)])
    assert decoded == []
    assert holds_a_long_decision(REDEEMER, [command(0, CANCEL), command(1, CLOSE)])
    assert decoded == [CLOSE]
