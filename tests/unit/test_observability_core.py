"""The pure parts of passnum's observability: repeated Kafka client errors are let through
once a window (a worker with the broker down wrote 38,000 ERROR lines in four minutes), the
stalled-consumer judgement of readiness, and the metrics counted from a batch's decisions."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from passnum.core.health import LagTracker
from passnum.core.logging_setup import RepeatFilter, logging_config
from passnum.core.metrics import WorkerMetrics, exposition
from passnum.core.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, Clock]]:
    """passnum's logging configuration, writing to a buffer, with a clock the test moves."""
    saved = logging.root.handlers[:], {name: logging.getLogger(name).level
                                       for name in ("aiokafka", "passnum")}
    logging.config.dictConfig(logging_config(Settings()))
    handler = logging.root.handlers[0]
    buffer = io.StringIO()
    handler.setStream(buffer)  # type: ignore[attr-defined]
    clock = Clock()
    for log_filter in handler.filters:
        if isinstance(log_filter, RepeatFilter):
            log_filter.clock = clock
    yield buffer, clock
    logging.root.handlers[:] = saved[0]
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_repeated_broker_errors_are_let_through_once_a_window(captured) -> None:
    buffer, clock = captured
    kafka = logging.getLogger("aiokafka.conn")
    for _ in range(5_000):  # a broker down: every reconnection fails
        kafka.error("Unable connect to %r: %s", "127.0.0.1:9092", "refused")
        clock.now += 0.001
    assert len(records(buffer)) == 1
    clock.now += 60
    kafka.error("Unable connect to %r: %s", "127.0.0.1:9092", "refused")
    last = records(buffer)[-1]
    assert len(records(buffer)) == 2
    assert "(4999 similar records left out)" in last["message"]
    # Kafka clients chatter below WARNING is not written at all; passnum's own records are
    # never held back.
    logging.getLogger("aiokafka.consumer").info("fetching")
    for number in range(3):
        logging.getLogger("passnum.core.worker").warning("batch %s failed", number)
    assert [r["message"] for r in records(buffer)[2:]] == [
        f"batch {number} failed" for number in range(3)]


def test_a_consumer_is_stuck_only_when_records_wait_and_its_position_does_not_move() -> None:
    tracker = LagTracker()
    partition = ("passnum.redeemer.commands", 1)
    tracker.observe({partition: (258, 50)}, now=0.0)
    tracker.observe({partition: (300, 50)}, now=29.0)
    assert tracker.stuck(now=29.0, limit_seconds=30) == []
    tracker.observe({partition: (310, 50)}, now=31.0)
    [reason] = tracker.stuck(now=31.0, limit_seconds=30)
    assert "passnum.redeemer.commands/1: position 50 has not moved for 31 s" in reason
    assert tracker.lags() == {partition: 260}
    tracker.observe({partition: (310, 60)}, now=32.0)  # it moves again: the clock restarts
    assert tracker.stuck(now=61.0, limit_seconds=30) == []
    tracker.observe({partition: (310, 310)}, now=80.0)  # caught up: nothing waits
    tracker.observe({partition: (310, 310)}, now=200.0)
    assert tracker.stuck(now=200.0, limit_seconds=30) == []


@dataclass(frozen=True)
class FakeCommand:
    request_id: str
    type: str


@dataclass(frozen=True)
class FakeEvent:
    event_id: str
    reason: str | None = None


class RedemptionRejected(FakeEvent):
    pass


@dataclass(frozen=True)
class FakeDecision:
    command: FakeCommand
    events: list[tuple[str, bytes, Any]]


def test_decisions_are_counted_by_type_outcome_and_reason() -> None:
    metrics = WorkerMetrics("unit")
    decisions = [
        FakeDecision(FakeCommand("a", "redeem_voucher"), [("t", b"k", FakeEvent("e1"))]),
        FakeDecision(FakeCommand("b", "redeem_voucher"),
                     [("t", b"k", RedemptionRejected("e2", "already_redeemed"))]),
        FakeDecision(FakeCommand("c", "redeem_voucher"),
                     [("t", b"k", RedemptionRejected("e3", "already_redeemed"))]),
    ]
    metrics.observe_decisions(decisions)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(exposition(metrics.registry).decode())
               for s in family.samples}
    key = "passnum_commands_decided_total"
    assert samples[(key, (("command", "redeem_voucher"), ("outcome", "accepted")))] == 1
    assert samples[(key, (("command", "redeem_voucher"), ("outcome", "rejected")))] == 2
    assert samples[("passnum_rejections_total", (("reason", "already_redeemed"),))] == 2


def test_the_auditor_follower_serves_its_metrics_and_is_unready_when_unsound() -> None:
    import urllib.error
    import urllib.request

    from passnum.core.metrics import AuditMetrics
    from services.auditor.follow import Health, serve_health
    from tests.conftest import free_port

    health, metrics, port = Health(), AuditMetrics(), free_port()
    server = serve_health(port, health, metrics)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    try:
        state = {"status": "ok", "sound": False, "records_read": 42,
                 "findings": {"altered_event": 2, "double_redemption": 1}}
        health.update(**state)
        metrics.observe_cycle(0.5, state)
        assert get("/health/")[0] == 503 and get("/health/ready")[0] == 503
        assert get("/health/live")[0] == 200
        status, body = get("/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(body.decode())
                   for s in family.samples}
        assert samples[("passnum_audit_findings", (("code", "altered_event"),))] == 2
        assert samples[("passnum_audit_sound", ())] == 0
        assert samples[("passnum_audit_records_read", ())] == 42
        # Sound again: ready, and a code no longer found goes back to zero.
        state = {"status": "ok", "sound": True, "records_read": 50, "findings": {}}
        health.update(**state)
        metrics.observe_cycle(0.5, state)
        assert get("/health/")[0] == 200
        body = get("/metrics")[1].decode()
        assert 'passnum_audit_findings{code="altered_event"} 0.0' in body
    finally:
        server.shutdown()


def test_liveness_reports_how_late_the_event_loop_is() -> None:
    import asyncio
    import time

    from passnum.core.health import WorkerHealth

    async def blocked_loop() -> float:
        health = WorkerHealth("unit", "issuer", Settings(), WorkerMetrics("unit"))
        ticker = asyncio.get_running_loop().create_task(health.tick_forever())
        await asyncio.sleep(0.05)
        assert health.live()[1]["loop_late_seconds"] == 0
        time.sleep(1.5)  # a blocking call on the loop: no tick meanwhile
        late = float(health.live()[1]["loop_late_seconds"])
        ticker.cancel()
        return late

    assert asyncio.run(blocked_loop()) >= 0.9


def test_sampling_skips_a_partition_revoked_while_it_samples_another() -> None:
    """A rebalance that revokes a partition while the sampler awaits another one's position
    must not reach aiokafka's `highwater` (which asserts, and the worker died of it)."""
    import asyncio

    from aiokafka import TopicPartition

    from passnum.core.health import WorkerHealth

    class RevokingConsumer:
        """aiokafka's contract for the calls the sampler makes: `highwater` of a partition
        not assigned is an AssertionError. The first `position` asked revokes every other
        partition (a rebalance during the await), whichever the set yields first."""

        def __init__(self) -> None:
            self.assigned = {TopicPartition("t", 0), TopicPartition("t", 1)}

        def assignment(self) -> set[TopicPartition]:
            return set(self.assigned)

        def highwater(self, partition: Any) -> int:
            assert partition in self.assigned, "Partition is not assigned"
            return 10

        async def position(self, partition: Any) -> int:
            self.assigned &= {partition}
            return 4

    async def sample() -> WorkerHealth:
        health = WorkerHealth("unit", "redeemer", Settings(), WorkerMetrics("unit"))
        health.consumer = RevokingConsumer()

        async def no_database(*_: object) -> None:
            raise asyncio.TimeoutError

        health._query = no_database  # type: ignore[method-assign]
        await health.refresh()
        return health

    health = asyncio.run(sample())
    assert len(health.lag.lags()) == 1  # the partition sampled first; the revoked one skipped
