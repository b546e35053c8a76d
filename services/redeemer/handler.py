"""The redeemer's batch handler: applies the issuer's booklet facts, decides commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import psycopg

from passnum.processing import Decision
from passnum.topology import Topology, booklet_key, siret_key
from schemas.base import Command, Event
from services.redeemer import domain, store


@dataclass
class RedeemerHandler:
    topology: Topology
    code_key: bytes
    processor: str = "redeemer"

    @property
    def command_topics(self) -> frozenset[str]:
        return frozenset({self.topology.redeemer_commands.name})

    @property
    def event_topics(self) -> frozenset[str]:
        return frozenset({self.topology.issuer_events.name})

    @property
    def dead_letter_topic(self) -> str:
        return self.topology.dead_letters.name

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None:
        store.apply_issuer_events(connection, events)

    def _route(self, event: Event) -> tuple[str, bytes, Event]:
        booklet_id = getattr(event, "booklet_id", None)
        voucher_id = getattr(event, "voucher_id", None)
        if booklet_id is None and voucher_id:
            booklet_id = voucher_id.rsplit("-", 1)[0]
        key = booklet_key(booklet_id) if booklet_id else siret_key(getattr(event, "siret", ""))
        return self.topology.redeemer_events.name, key, event

    def decide_commands(self, connection: psycopg.Connection,
                        commands: Sequence[Command]) -> list[Decision]:
        sirets = {getattr(command, "siret", "") for command in commands}
        view = store.load_view(connection, domain.booklet_ids_of(commands, self.code_key),
                               sirets)
        before = domain.RedeemerView(dict(view.booklets), dict(view.redemptions),
                                     dict(view.providers))
        decisions = []
        touched_providers: set[str] = set()
        for command in commands:
            events = domain.decide(view, command, self.code_key)
            for event in events:
                domain.evolve(view, event)
                if hasattr(event, "siret") and event.type.startswith("provider_"):
                    touched_providers.add(event.siret)  # type: ignore[attr-defined]
            decisions.append(Decision(command, [self._route(event) for event in events]))
        store.save_view_changes(connection, before, dict(view.redemptions),
                                [view.providers[siret] for siret in sorted(touched_providers)])
        return decisions
