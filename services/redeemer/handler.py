"""The redeemer's batch handler: applies the issuer's booklet facts, decides commands.

A batch is decided in log order. Vouchers and venues are decided against a view loaded once
for the run of commands between two settlement closes; a close is decided against the
database itself, after the redemptions decided before it in the batch were written, so
that "before the close in the log" means "on this statement" (see `decide_commands`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import psycopg

from passnum.ledger.identity import event_id_for
from passnum.core.head_signatures import HeadSigner, signer_for
from passnum.core.codec import decode_command
from passnum.core.processing import Decision
from passnum.core.settings import Settings
from passnum.core.topology import Topology, booklet_key, route_command, siret_key, topology_for
from passnum.ledger import settlement_month as settlement
from schemas.base import Command, Event
from schemas.messages import (
    REDEEMER_COMMANDS,
    CheckVoucher,
    CloseSettlementMonth,
    RedeemVoucher,
)
from passnum.ledger.time import DEFAULT_SCAN_CLOCK_TOLERANCE
from passnum.ledger.voucher import ORIGIN, RedeemerView, evolve
from services.redeemer import domain, store

# The close's type as its encoding names it (the cheap test of `long_decision`).
CLOSE_TYPE = CloseSettlementMonth.model_fields["type"].default.encode()


@dataclass
class RedeemerHandler:
    topology: Topology
    code_key: bytes
    processor: str = "redeemer"
    # signs the head of each stream in a batch (passnum.core.head_signatures); None: unsigned
    head_signer: HeadSigner | None = None
    # how far ahead of this clock a scan may be dated (Settings.scan_clock_tolerance_seconds)
    scan_clock_tolerance: timedelta = DEFAULT_SCAN_CLOCK_TOLERANCE
    # redemptions a close reads or marks per call to PostgreSQL (Settings.close_rows_per_call)
    close_rows_per_call: int = Settings.close_rows_per_call

    @property
    def command_topics(self) -> frozenset[str]:
        return frozenset({self.topology.redeemer_commands.name})

    @property
    def event_topics(self) -> frozenset[str]:
        return frozenset({self.topology.issuer_events.name})

    @property
    def command_classes(self) -> tuple[type[Command], ...]:
        return REDEEMER_COMMANDS

    @property
    def dead_letter_topic(self) -> str:
        return self.topology.dead_letters.name

    def apply_events(self, connection: psycopg.Connection, events: Sequence[Event]) -> None:
        store.apply_issuer_events(connection, events)

    def _route(self, command: Command, event: Event) -> tuple[str, bytes, Event]:
        """Keyed by booklet when the event is about a voucher, else by venue, else like the
        command that caused it (a month, for settlement)."""
        booklet_id = getattr(event, "booklet_id", None)
        voucher_id = getattr(event, "voucher_id", None)
        if booklet_id is None and voucher_id:
            booklet_id = voucher_id.rsplit("-", 1)[0]
        if booklet_id:
            key = booklet_key(booklet_id)
        elif getattr(event, "siret", None):
            key = siret_key(event.siret)  # type: ignore[attr-defined]
        else:
            key = route_command(self.topology, command)[1]
        return self.topology.redeemer_events.name, key, event

    def long_decision(self, value: bytes) -> bool:
        """A month's close locks and pays every redemption not paid yet: 9 to 12 s for a
        month of 340,000 at a quarter of national scale. Decided on the event loop, it
        stopped the consumer group's heartbeats (6 s) and the group expired the worker.
        Only a record naming the close's type is decoded to make sure (a scan or a
        cancellation is not decoded twice)."""
        return CLOSE_TYPE in value and isinstance(decode_command(value), CloseSettlementMonth)

    def decide_commands(self, connection: psycopg.Connection,
                        commands: Sequence[Command]) -> list[Decision]:
        # Venue status changes and redemptions of other partitions, in one order
        # (`store.lock_venue_statuses`), taken first: before the settlement's lock. With the
        # first run's loads (one round trip), unless the batch starts with a close.
        venue_lock: bool | None = None  # exclusive, shared, or none
        if domain.restricting_venues(commands):
            venue_lock = True
        elif any(isinstance(command, RedeemVoucher) for command in commands):
            venue_lock = False
        if venue_lock is not None and isinstance(commands[0], CloseSettlementMonth):
            store.lock_venue_statuses(connection, exclusive=venue_lock)
            venue_lock = None
        decisions: list[Decision] = []
        run: list[Command] = []
        for command in commands:
            if isinstance(command, CloseSettlementMonth):
                # Write what was decided so far, so that the close sees it.
                decisions += self._decide_vouchers_and_venues(connection, run, venue_lock)
                run, venue_lock = [], None
                decisions.append(self._decide_close(connection, command))
            else:
                run.append(command)
        decisions += self._decide_vouchers_and_venues(connection, run, venue_lock)
        return decisions

    def _decide_vouchers_and_venues(self, connection: psycopg.Connection,
                                    commands: Sequence[Command],
                                    venue_lock: bool | None = None) -> list[Decision]:
        if not commands:
            return []
        sirets = {getattr(command, "siret", "") for command in commands}
        booklet_ids, voucher_ids = domain.touched_by(commands, self.code_key)
        view = store.load_view(connection, booklet_ids, voucher_ids, sirets,
                               domain.restricting_venues(commands), venue_lock)
        before = RedeemerView(dict(view.booklets), dict(view.redemptions),
                                     dict(view.providers))
        decisions = []
        touched_providers: set[str] = set()
        decided_at = datetime.now(timezone.utc)  # recorded with the outcome, never re-read
        for command in commands:
            preface = domain.preface(view, command, self.code_key, decided_at)
            for fact in preface:
                evolve(view, fact)
            events = domain.decide(view, command, self.code_key, decided_at,
                                   self.scan_clock_tolerance)
            for event in events:
                evolve(view, event)
                if hasattr(event, "siret") and event.type.startswith("provider_"):
                    touched_providers.add(event.siret)  # type: ignore[attr-defined]
            decisions.append(self._decision(command, events, decided_at,
                                            final=not isinstance(command, CheckVoucher),
                                            preface=preface))
        store.save_view_changes(connection, before, dict(view.redemptions),
                                [view.providers[siret] for siret in sorted(touched_providers)],
                                view.booklets)
        return decisions

    def _decide_close(self, connection: psycopg.Connection,
                      command: CloseSettlementMonth) -> Decision:
        store.lock_settlement(connection)
        book = store.load_settlement_book(connection)
        unsettled = []
        if settlement.close_refusal(book, command) is None:
            unsettled = store.load_unsettled(connection, settlement.month_end(command.month),
                                             self.close_rows_per_call)
        events = settlement.decide_close_month(book, command, unsettled)
        store.record_settlement(connection, events, unsettled, self.close_rows_per_call)
        # A month not ended yet is refused until it ends: that refusal does not bind the
        # request id (`close-2026-12` closes the month when sent again in January).
        transient = getattr(events[0], "reason", None) in settlement.REFUSALS_TIME_LIFTS
        return self._decision(command, events, datetime.now(timezone.utc), final=not transient)

    def _decision(self, command: Command, events: list[Event], decided_at: datetime,
                  final: bool, preface: Sequence[Event] = ()) -> Decision:
        """A decision not final (a check: a question answered from the present state; a
        refusal time lifts) is not recorded as the request's outcome, so the same request
        id may be decided again: its events are then named by the request and the instant
        of this decision, so that two answers never share an event id."""
        if not final:
            salt = f"{command.request_id}@{decided_at.isoformat()}"
            events = [event.model_copy(update={"event_id": event_id_for(
                ORIGIN, salt, index)}) for index, event in enumerate(events)]
        return Decision(command, [self._route(command, event) for event in events], final,
                        [self._route(command, fact) for fact in preface])


def handler_for(settings: Settings, topology: Topology | None = None) -> RedeemerHandler:
    """The handler a worker decides with, configured from `settings` (the worker's
    composition root and the operator's log tools build it here, so they decide alike)."""
    return RedeemerHandler(topology or topology_for(settings),
                           settings.voucher_code_key.encode(),
                           scan_clock_tolerance=timedelta(
                               seconds=settings.scan_clock_tolerance_seconds),
                           head_signer=signer_for(settings),
                           close_rows_per_call=settings.close_rows_per_call)
