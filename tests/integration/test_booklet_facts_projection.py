"""The redeemer's SQL projection of the issuer's facts is the ledger's fold (Hypothesis,
real PostgreSQL).

The redeemer keeps what a scan needs to know of a booklet as rows of `redeemer_booklets`,
written by `services.redeemer.store.apply_issuer_events` one consumed batch at a time (bulk
`INSERT ... ON CONFLICT DO NOTHING`, then flags that only turn on, the earliest activation
kept), and read back by `store.load_view`. The ledger says what those facts are:
`passnum.ledger.booklet.evolve_booklet_facts`, folded over the same events in delivery
order. Here random issuer logs are delivered as the redeemer's consumer gets them: the
issuer's events in log order, with re-publications (a crash's outbox sends recorded events
again, later, possibly after facts decided after them), re-activations at other instants,
blocks of blocked booklets, events the projection ignores, and cut into random batches.
The rows read back must be the fold, booklet by booklet.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passnum.core.settings import Settings
from passnum.ledger.booklet import BookletFacts, evolve_booklet_facts
from passnum.ledger.identity import event_id_for
from schemas.messages import (
    BookletActivated,
    BookletBlocked,
    BookletDistributed,
    BookletIssued,
    FundsReceived,
)
from services.redeemer import store

START = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
SIRENS = ("123456782", "234567891")
PERIMETERS = ((), ("75",), ("69123", "974"), ("2A", "2B004", "13"))
OFFSETS = (timezone.utc, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))


@st.composite
def deliveries(draw: st.DrawFn) -> list[list]:  # type: ignore[type-arg]
    """Batches of issuer events as the redeemer consumes them."""
    numbers = iter(range(1, 100_000))

    def ids() -> dict:
        request = f"r{next(numbers)}"
        return {"event_id": event_id_for("issuer", request, 0), "request_id": request}

    def instant() -> datetime:
        moment = START + timedelta(minutes=draw(st.integers(0, 3000)),
                                   microseconds=draw(st.sampled_from([0, 0, 1, 250_000])))
        return moment.astimezone(draw(st.sampled_from(OFFSETS)))

    log: list = []
    booklet_ids = []
    for siren in SIRENS[:draw(st.integers(1, 2))]:
        for sequence in range(1, draw(st.integers(1, 4)) + 1):
            booklet_id = f"{siren}-{sequence:07d}"
            booklet_ids.append((siren, booklet_id))
            valid_from = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 60)))
            log.append(BookletIssued(
                **ids(), occurred_at=START, siren=siren, order_id=f"{siren}-o{sequence % 2}",
                booklet_id=booklet_id, voucher_count=draw(st.sampled_from([5, 10])),
                face_value_cents=draw(st.sampled_from([500, 1000, 1550])),
                target_group=draw(st.sampled_from(["pic", "general"])),
                perimeter=draw(st.sampled_from(PERIMETERS)), valid_from=valid_from,
                valid_until=valid_from + timedelta(days=draw(st.integers(0, 400))),
                grace_until=valid_from + timedelta(days=draw(st.integers(400, 500)))))
    for _ in range(draw(st.integers(0, 12))):
        siren, booklet_id = draw(st.sampled_from(booklet_ids))
        kind = draw(st.sampled_from(["activated", "activated", "blocked", "distributed",
                                     "funds", "unknown_booklet"]))
        if kind == "activated":
            log.append(BookletActivated(**ids(), occurred_at=instant(), siren=siren,
                                        booklet_id=booklet_id, activated_cents=5000))
        elif kind == "blocked":
            log.append(BookletBlocked(**ids(), occurred_at=instant(), siren=siren,
                                      booklet_id=booklet_id, reason="lost"))
        elif kind == "distributed":
            log.append(BookletDistributed(**ids(), occurred_at=instant(), siren=siren,
                                          booklet_id=booklet_id, distributor="mairie",
                                          beneficiary_reference=None))
        elif kind == "funds":
            log.append(FundsReceived(**ids(), occurred_at=instant(), siren=siren,
                                     face_value_cents=100, fees_cents=0,
                                     payment_reference="p", total_received_cents=100))
        else:  # a fact about a booklet the redeemer has not learned of
            log.append(BookletActivated(**ids(), occurred_at=instant(), siren=siren,
                                        booklet_id=f"{siren}-0000099", activated_cents=5000))
    # Re-publications: a recorded event sent again, anywhere after its first delivery.
    for _ in range(draw(st.integers(0, 6))):
        if not log:
            break
        first = draw(st.integers(0, len(log) - 1))
        log.insert(draw(st.integers(first + 1, len(log))), log[first])
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(log) - 1)), max_size=5))))
    return [log[start:end] for start, end in zip([0] + cuts, cuts + [len(log)])
            if log[start:end]]


def folded(batches: list[list]) -> dict[str, BookletFacts]:
    facts: dict[str, BookletFacts] = {}
    for event in (event for batch in batches for event in batch):
        booklet_id = getattr(event, "booklet_id", None)
        if booklet_id is None:
            continue
        updated = evolve_booklet_facts(facts.get(booklet_id), event)
        if updated is not None:
            facts[booklet_id] = updated
    return facts


def test_the_projection_of_issuer_facts_is_the_ledgers_fold(ledger: Settings) -> None:
    with psycopg.connect(ledger.database_url) as connection:

        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(deliveries())
        def projected_as_folded(batches: list[list]) -> None:
            # Each example on empty tables, left as it found them.
            with connection.transaction(force_rollback=True):
                for batch in batches:
                    with connection.transaction():  # one consumed batch, one transaction
                        store.apply_issuer_events(connection, batch)
                booklet_ids = {e.booklet_id for batch in batches for e in batch
                               if hasattr(e, "booklet_id")}
                rows = store.load_view(connection, booklet_ids, [], []).booklets
            assert rows == folded(batches)

        projected_as_folded()
