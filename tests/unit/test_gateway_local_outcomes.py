"""The HTTP gateway answers a waiting request from the outcomes its own worker just
committed (passnum.core.worker.BatchRunner.outcome_listeners), without the database: pure code
around futures, so no broker and no PostgreSQL here."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from passnum.core.codec import encode, pack_outcome, request_fingerprint
from passnum.core.settings import Settings
from passnum.edge.http import BatchedCommandGateway
from schemas.messages import RedeemVoucher, VoucherRedeemed

WHEN = datetime(2026, 3, 10, 10, 0, tzinfo=timezone.utc)


def _command(request_id: str) -> RedeemVoucher:
    return RedeemVoucher(request_id=request_id, occurred_at=WHEN,
                         code="0000-0000-0000-0000-0000-0", siret="73282932000074")


def _recorded(command: RedeemVoucher) -> tuple[str, bytes]:
    event = VoucherRedeemed(
        event_id="8f6f1f6e-5a56-4f0b-9d7c-7d1a9f2c0b11", request_id=command.request_id,
        occurred_at=WHEN, siret=command.siret, siren="552100554",
        booklet_id="552100554-0000001", voucher_id="552100554-0000001-03",
        face_value_cents=1000)
    packed = pack_outcome([("passnum.redeemer.events", b"552100554-0000001", encode(event),
                            None)])
    return request_fingerprint(command), packed


def test_a_waiting_request_is_answered_from_the_committed_outcomes() -> None:
    async def scenario() -> None:
        gateway = BatchedCommandGateway(Settings(), "redeemer")
        loop = asyncio.get_running_loop()
        waiting, other = _command("venue-1"), _command("venue-2")
        gateway.waiting["venue-1"] = (waiting, loop.create_future())
        gateway.waiting["venue-2"] = (other, loop.create_future())
        future = gateway.waiting["venue-1"][1]
        # An outcome nobody waits for (decided for another process's request) is ignored.
        gateway.resolve_decided({"venue-1": _recorded(waiting),
                                 "elsewhere": _recorded(_command("elsewhere"))})
        assert future.done()
        outcome = future.result()
        assert outcome.fingerprint_matches
        assert [event.type for event in outcome.events] == ["voucher_redeemed"]
        assert "venue-1" not in gateway.waiting
        assert not gateway.waiting["venue-2"][1].done()  # still waits for its own

    asyncio.run(scenario())


def test_a_reused_request_id_with_another_body_is_told_so() -> None:
    async def scenario() -> None:
        gateway = BatchedCommandGateway(Settings(), "redeemer")
        first, second = _command("venue-1"), _command("venue-1").model_copy(
            update={"siret": "35600000000048"})
        gateway.waiting["venue-1"] = (second, asyncio.get_running_loop().create_future())
        future = gateway.waiting["venue-1"][1]
        gateway.resolve_decided({"venue-1": _recorded(first)})
        assert future.done() and not future.result().fingerprint_matches

    asyncio.run(scenario())
