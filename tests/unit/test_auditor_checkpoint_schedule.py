"""Monthly checkpoints in normal operation (`passnum audit --follow`): which months are due,
and that each is signed once with a root the replay then verifies."""

from __future__ import annotations

from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.auditor import checkpoint
from services.auditor.chain import StreamChain

HASH = "a" * 64


def chain(name: str, months: dict[str, int], highest: int) -> StreamChain:
    return StreamChain(name, month_firsts={month: (first, HASH) for month, first in
                                           months.items()}, highest=highest)


def test_a_month_is_due_once_every_stream_moved_past_it() -> None:
    chains = {"a": chain("a", {"2026-01": 1, "2026-02": 4, "2026-03": 9}, 12),
              "b": chain("b", {"2026-01": 1, "2026-02": 3}, 5)}
    # b has nothing dated after February yet: February waits, January is due
    assert checkpoint.due_months(chains, set(), "2026-04") == ["2026-01"]
    assert checkpoint.due_months(chains, {"2026-01"}, "2026-04") == []
    # the current month is never due, even when every stream moved past it
    chains["b"] = chain("b", {"2026-01": 1, "2026-02": 3, "2026-03": 6}, 8)
    assert checkpoint.due_months(chains, set(), "2026-03") == ["2026-01", "2026-02"]


def test_due_months_are_signed_once_with_the_root_a_replay_verifies() -> None:
    chains = {"a": chain("a", {"2026-01": 1, "2026-02": 4}, 6)}
    key = Ed25519PrivateKey.generate()
    signed: set[str] = set()
    now = datetime(2026, 3, 10, 8, tzinfo=timezone.utc)
    events = checkpoint.sign_due_months(chains, signed, key, now)
    assert [event.month for event in events] == ["2026-01"]
    assert checkpoint.verify(events[0], chains, frozenset()) == []
    assert checkpoint.sign_due_months(chains, signed, key, now) == []
