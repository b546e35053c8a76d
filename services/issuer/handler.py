"""The issuer's batch handler: decode is done by the core; here, load, decide, save."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import psycopg

from passnum.core.head_signatures import HeadSigner, signer_for
from passnum.core.processing import Decision
from passnum.core.settings import Settings
from passnum.core.topology import Topology, booklet_key, siren_key, topology_for
from schemas.base import Command, Event
from schemas.messages import ISSUER_COMMANDS, BookletActivated, OrderBooklets
from passnum.ledger.booklet import Booklet, evolve_booklet
from passnum.ledger.envelope import Envelope, Policy, evolve
from services.issuer import domain, store


@dataclass
class IssuerHandler:
    topology: Topology
    policy: Policy
    processor: str = "issuer"
    # signs the head of each stream in a batch (passnum.core.head_signatures); None: unsigned
    head_signer: HeadSigner | None = None

    @property
    def command_topics(self) -> frozenset[str]:
        return frozenset({self.topology.issuer_commands.name})

    @property
    def event_topics(self) -> frozenset[str]:
        return frozenset()

    @property
    def command_classes(self) -> tuple[type[Command], ...]:
        return ISSUER_COMMANDS

    @property
    def dead_letter_topic(self) -> str:
        return self.topology.dead_letters.name

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None:
        raise AssertionError("the issuer consumes no other service's events")

    def weight(self, command: Command) -> int:
        """Events a command may produce, for the core's transaction bound: an order issues
        one event per booklet. A payment activates what waits for funds, which the orders
        before it already weighed."""
        return command.booklet_count if isinstance(command, OrderBooklets) else 1

    def _route(self, event: Event) -> tuple[str, bytes, Event]:
        booklet_id = getattr(event, "booklet_id", None)
        siren: str = event.siren  # type: ignore[attr-defined]
        key = booklet_key(booklet_id) if booklet_id else siren_key(siren)
        return self.topology.issuer_events.name, key, event

    def decide_commands(self, connection: psycopg.Connection,
                        commands: Sequence[Command]) -> list[Decision]:
        sirens = {command.siren for command in commands}  # type: ignore[attr-defined]
        batch = _BatchState(store.load_envelopes(connection, sirens), store.load_booklets(
            connection, [c.booklet_id for c in commands if hasattr(c, "booklet_id")]))
        decisions = []
        for command in commands:
            siren = command.siren  # type: ignore[attr-defined]
            before = batch.envelopes.get(siren) or Envelope(siren)
            booklet = batch.booklets.get(getattr(command, "booklet_id", ""))
            events = domain.decide(before, booklet, command, self.policy)
            envelope = before
            for event in events:
                envelope = evolve(envelope, event)
                batch.fold_booklet_event(event)
            # A refused command changes no state: no row for a SIREN it named in vain.
            if envelope != before:
                batch.envelopes[siren] = envelope
                batch.touched_envelopes.add(siren)
            decisions.append(Decision(command, [self._route(event) for event in events]))
        batch.save(connection)
        return decisions


def handler_for(settings: Settings, topology: Topology | None = None) -> IssuerHandler:
    """The handler a worker decides with, configured from `settings` (the worker's
    composition root and the operator's log tools build it here, so they decide alike)."""
    return IssuerHandler(topology or topology_for(settings),
                         Policy(grace_days_after_year_end=settings.grace_days_after_year_end),
                         head_signer=signer_for(settings))


@dataclass
class _BatchState:
    """The state one batch loaded, and what its decisions changed."""

    envelopes: dict[str, Envelope]
    booklets: dict[str, Booklet]
    loaded: set[str] = field(default_factory=set)
    touched_envelopes: set[str] = field(default_factory=set)
    touched_booklets: set[str] = field(default_factory=set)
    # Booklets that funds activate were usually issued in an earlier batch and are not
    # loaded: only their flag changes, in one UPDATE, instead of loading each row.
    activated_elsewhere: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.loaded = set(self.booklets)

    def fold_booklet_event(self, event: Event) -> None:
        booklet_id = getattr(event, "booklet_id", None)
        if not booklet_id:
            return
        updated = evolve_booklet(self.booklets.get(booklet_id), event)
        if updated is not None:
            self.booklets[booklet_id] = updated
            self.touched_booklets.add(booklet_id)
        elif isinstance(event, BookletActivated):
            self.activated_elsewhere.add(booklet_id)
        else:
            # Issued booklets are in memory and commands' booklets were loaded: only an
            # activation can be about a booklet that is not here.
            raise AssertionError(f"{event.type} of a booklet not loaded: {booklet_id}")

    def save(self, connection: psycopg.Connection) -> None:
        store.save_envelopes(connection,
                             [self.envelopes[s] for s in sorted(self.touched_envelopes)])
        # Booklets issued by this batch are new rows (COPY); loaded ones are updated.
        issued_here = sorted(self.touched_booklets - self.loaded)
        store.insert_new_booklets(connection, [self.booklets[b] for b in issued_here])
        store.save_booklets(connection, [self.booklets[b] for b in
                                         sorted(self.touched_booklets & self.loaded)])
        store.mark_activated(connection, self.activated_elsewhere)
