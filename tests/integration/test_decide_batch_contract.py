"""The batch transaction (passnum.core.processing.decide_batch) on the real PostgreSQL, with a fake
handler that records what it is asked to decide: re-delivery, a duplicate inside a batch, a
reused request id, dead letters, a command of another service, the digest that ties a
position to its log, a poison record and the operator's skip."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import psycopg
import pytest

from passnum.core.codec import encode, unpack_outcome

from passnum.ledger.identity import event_id_for
from passnum.core.processing import (
    Decision,
    InputRecord,
    LogMismatch,
    SkipRefused,
    dead_letter_record,
    decide_batch,
    skip_record,
    stored_positions,
)
from schemas.base import Command, Event
from schemas.messages import (
    ISSUER_COMMANDS,
    CollectiviteRegistered,
    RedeemVoucher,
    RegisterCollectivite,
)
from tests.integration.helpers import MARCH

pytestmark = pytest.mark.integration
TOPIC, EVENTS, DEAD = "contract.commands", "contract.events", "contract.dead-letters"


@dataclass
class FakeHandler:
    """Registers every collectivité it is asked to; remembers the request ids it saw."""

    processor: str = "contract"
    command_topics: frozenset[str] = frozenset({TOPIC})
    event_topics: frozenset[str] = frozenset()
    dead_letter_topic: str = DEAD
    command_classes: tuple[type[Command], ...] = ISSUER_COMMANDS
    decided: list[str] = field(default_factory=list)

    def decide_commands(self, connection: psycopg.Connection, commands: Sequence[Command]
                        ) -> list[Decision]:
        decisions = []
        for command in commands:
            self.decided.append(command.request_id)
            assert isinstance(command, RegisterCollectivite)
            event = CollectiviteRegistered(
                request_id=command.request_id, occurred_at=command.occurred_at,
                event_id=event_id_for("contract", command.request_id, 0), siren=command.siren,
                name=command.name, default_vouchers_per_booklet=10,
                default_face_value_cents=1000)
            decisions.append(Decision(command, [(EVENTS, command.siren.encode(), event)]))
        return decisions

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None:
        raise AssertionError("no event input")


def _register(request_id: str, siren: str = "213105554") -> bytes:
    return encode(RegisterCollectivite(request_id=request_id, occurred_at=MARCH, siren=siren,
                                       name="Commune"))


def _record(offset: int, value: bytes, partition: int = 0) -> InputRecord:
    return InputRecord(TOPIC, partition, offset, b"k", value)


@pytest.fixture
def connection(ledger):
    with psycopg.connect(ledger.database_url) as opened:
        yield opened


def _outbox_events(result) -> list[tuple[str, bytes]]:
    return [(event.topic, event.payload) for row in result.outbox for event in row.events]


def test_redelivery_duplicate_and_reused_request_id(connection) -> None:
    handler = FakeHandler()
    first = decide_batch(connection, handler, [_record(0, _register("a")),
                                               _record(1, _register("a")),
                                               _record(2, _register("b"))])
    assert handler.decided == ["a", "b"]  # the duplicate inside the batch is not decided
    assert len(_outbox_events(first)) == 2
    again = decide_batch(connection, handler, [_record(0, _register("a")),
                                               _record(2, _register("b"))])
    assert again.outbox == [] and handler.decided == ["a", "b"]  # re-delivered: no-op
    retried = decide_batch(connection, handler, [_record(3, _register("a"))])
    assert handler.decided == ["a", "b"]  # a retry is answered from the recorded outcome,
    assert retried.outbox == [] and retried.outcomes == {}  # and nothing is appended
    assert stored_positions(connection, "contract", [(TOPIC, 0)]) == {(TOPIC, 0): 4}
    recorded = connection.execute("SELECT outcome FROM request_outcomes WHERE request_id = 'a'"
                                  ).fetchone()
    assert [topic for topic, _, _, _ in unpack_outcome(recorded[0])] == [EVENTS]


def test_dead_letters_and_commands_of_another_service(connection) -> None:
    handler = FakeHandler()
    redeem = encode(RedeemVoucher(request_id="r", occurred_at=MARCH, code="ABCD",
                                  siret="73282932000074"))
    result = decide_batch(connection, handler, [_record(0, b"\xff\xfe"), _record(1, redeem),
                                                _record(2, b"[" * 100_000),
                                                _record(3, _register("ok"))])
    letters = [payload for topic, payload in _outbox_events(result) if topic == DEAD]
    reasons = [json.loads(letter)["reason"] for letter in letters]
    assert reasons == ["not_utf8", "command_for_another_service", "too_deeply_nested"]
    assert handler.decided == ["ok"]


def test_a_position_knows_its_log(connection) -> None:
    handler = FakeHandler()
    decide_batch(connection, handler, [_record(0, _register("a")), _record(1, _register("b"))])
    # The same record at the same offset: a re-delivery, fine.
    decide_batch(connection, handler, [_record(1, _register("b"))])
    # Another record where the last decided one was: another log.
    with pytest.raises(LogMismatch):
        decide_batch(connection, handler, [_record(1, _register("other"))])
    assert stored_positions(connection, "contract", [(TOPIC, 0)]) == {(TOPIC, 0): 2}


def test_a_poison_record_and_the_operators_skip(connection) -> None:
    handler = FakeHandler()
    poison = _record(0, _register("poison"))
    result = dead_letter_record(connection, handler, poison, "processing_failed",
                                "OverflowError: date value out of range")
    assert result.older_rows_pending and handler.decided == []
    assert stored_positions(connection, "contract", [(TOPIC, 0)]) == {(TOPIC, 0): 1}
    # Dead-lettering it again (a re-delivery) changes nothing.
    assert dead_letter_record(connection, handler, poison, "processing_failed", "x").outbox == []
    # The operator's skip is refused anywhere but where the partition stands.
    with pytest.raises(SkipRefused):
        skip_record(connection, handler, _record(5, _register("x")), "note", [])
    row = skip_record(connection, handler, _record(1, _register("stuck")), "note", [])
    assert row > 0
    assert stored_positions(connection, "contract", [(TOPIC, 0)]) == {(TOPIC, 0): 2}
    decide_batch(connection, handler, [_record(1, _register("stuck")),
                                       _record(2, _register("after"))])
    assert handler.decided == ["after"]


@dataclass
class PrefacingHandler(FakeHandler):
    """Records a fact of its own before each decision (like the redeemer's
    `BookletBlockApplied`): chained and published, not the request's answer."""

    def decide_commands(self, connection: psycopg.Connection, commands: Sequence[Command]
                        ) -> list[Decision]:
        decisions = super().decide_commands(connection, commands)
        return [Decision(decision.command, decision.events, decision.final, [
            (EVENTS, b"preface", decision.events[0][2].model_copy(update={
                "event_id": event_id_for("contract", f"preface-{decision.command.request_id}",
                                         0), "request_id": "preface"}))])
            for decision in decisions]


def test_a_preface_is_chained_and_published_but_never_the_answer(connection) -> None:
    handler = PrefacingHandler()
    result = decide_batch(connection, handler, [_record(0, _register("a"))])
    published = [event for row in result.outbox for event in row.events]
    assert [event.key for event in published] == [b"preface", b"213105554"]
    # Both chained, one after the other in the input partition's stream.
    sequences = [int(event.chain_link.split(b"|")[1]) for event in published]
    assert sequences == [1, 2]
    (outcome,) = result.outcomes.values()
    assert [key for _, key, _, _ in unpack_outcome(outcome[1])] == [b"213105554"]
    # A retry is answered from the recorded outcome: nothing is appended, no preface either.
    retried = decide_batch(connection, handler, [_record(1, _register("a"))])
    assert retried.outbox == []
