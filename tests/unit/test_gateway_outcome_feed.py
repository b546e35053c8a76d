"""The redeemer's API process learns the outcomes its worker commits through a pipe
(passnum.edge.web_server.OutcomeFeed): frames round-trip, a waiting request is answered from
them (an answer that is never recorded, a check, has no other way to reach it), and the
gateway then skips the lookup for that worker's own notifications, not for another's. Pure
code around futures and an OS pipe: no broker, no PostgreSQL."""

from __future__ import annotations

import asyncio
import os

from passnum.core.settings import Settings
from passnum.edge.http import BatchedCommandGateway
from passnum.edge.web_server import OutcomeFeed, decode_outcomes, encode_outcomes
from tests.unit.test_gateway_local_outcomes import _command, _recorded

WORKER = "4242-0123456789ab"


def test_frames_round_trip() -> None:
    outcomes = {"http:73282932000074:key-é": ("f" * 64, b"\x00\x01packed"),
                "auto-2": ("", b"")}
    frame = encode_outcomes(outcomes)
    assert decode_outcomes(frame[4:]) == outcomes
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_outcomes(encode_outcomes({})[4:]) == {}


class _Api:
    """What the feed uses of a TenantApi: its gateway."""

    def __init__(self, gateway: BatchedCommandGateway) -> None:
        self.gateway = gateway


def test_the_feed_answers_waiting_requests_from_the_pipe() -> None:
    async def scenario() -> None:
        gateway = BatchedCommandGateway(Settings(), "redeemer")
        gateway.feeding_process = WORKER
        loop = asyncio.get_running_loop()
        waiting = _command("venue-1")
        gateway.waiting["venue-1"] = (waiting, loop.create_future())
        # Before any frame, the worker's own notifications are looked up like any other.
        assert gateway._worth_a_lookup(f"redeemer {WORKER} decided")
        read_end, write_end = os.pipe()
        with open(read_end, "rb", buffering=0) as pipe:
            feed = OutcomeFeed([_Api(gateway)], pipe)  # type: ignore[list-item]
            await feed.start()
            # Two frames in one write, the second cut in two: each is read whole.
            second = encode_outcomes({"venue-9": _recorded(_command("venue-9"))})
            os.write(write_end, encode_outcomes({"venue-1": _recorded(waiting)}) + second[:7])
            outcome = await asyncio.wait_for(gateway.waiting["venue-1"][1], 5)
            assert [event.type for event in outcome.events] == ["voucher_redeemed"]
            os.write(write_end, second[7:])
            os.close(write_end)
            await asyncio.wait_for(feed.task, 5)  # type: ignore[arg-type]
            await feed.stop()
        # Fed: the feeding worker's decisions need no lookup; replays and other processes'
        # decisions still do.
        assert not gateway._worth_a_lookup(f"redeemer {WORKER} decided")
        assert gateway._worth_a_lookup(f"redeemer {WORKER} replayed")
        assert gateway._worth_a_lookup("redeemer 77-ffffffffffff decided")
        assert not gateway._worth_a_lookup("issuer 77-ffffffffffff decided")

    asyncio.run(scenario())
