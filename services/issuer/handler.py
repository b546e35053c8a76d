"""The issuer's batch handler: decode is done by the core; here, load, decide, save."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import psycopg

from passnum.processing import Decision
from passnum.topology import Topology, booklet_key, siren_key
from schemas.base import Command, Event
from services.issuer import domain, store


@dataclass
class IssuerHandler:
    topology: Topology
    policy: domain.Policy
    processor: str = "issuer"

    @property
    def command_topics(self) -> frozenset[str]:
        return frozenset({self.topology.issuer_commands.name})

    @property
    def event_topics(self) -> frozenset[str]:
        return frozenset()

    @property
    def dead_letter_topic(self) -> str:
        return self.topology.dead_letters.name

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None:
        raise AssertionError("the issuer consumes no other service's events")

    def _route(self, event: Event) -> tuple[str, bytes, Event]:
        booklet_id = getattr(event, "booklet_id", None)
        key = booklet_key(booklet_id) if booklet_id else siren_key(event.siren)  # type: ignore[attr-defined]
        return self.topology.issuer_events.name, key, event

    def decide_commands(self, connection: psycopg.Connection,
                        commands: Sequence[Command]) -> list[Decision]:
        sirens = {command.siren for command in commands}  # type: ignore[attr-defined]
        envelopes = store.load_envelopes(connection, sirens)
        booklets = store.load_booklets(connection, [
            command.booklet_id for command in commands if hasattr(command, "booklet_id")])
        touched_envelopes: set[str] = set()
        touched_booklets: set[str] = set()
        decisions = []
        for command in commands:
            siren = command.siren  # type: ignore[attr-defined]
            envelope = envelopes.get(siren) or domain.Envelope(siren)
            booklet = booklets.get(getattr(command, "booklet_id", ""))
            events = domain.decide(envelope, booklet, command, self.policy)
            for event in events:
                envelope = domain.evolve(envelope, event)
                booklet_id = getattr(event, "booklet_id", None)
                if booklet_id:
                    updated = domain.evolve_booklet(booklets.get(booklet_id), event)
                    if updated is not None:
                        booklets[booklet_id] = updated
                        touched_booklets.add(booklet_id)
            envelopes[siren] = envelope
            touched_envelopes.add(siren)
            decisions.append(Decision(command, [self._route(event) for event in events]))
        store.save_envelopes(connection, [envelopes[s] for s in sorted(touched_envelopes)])
        store.save_booklets(connection, [booklets[b] for b in sorted(touched_booklets)])
        return decisions
