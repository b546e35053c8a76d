"""The venue aggregate: a training venue's accreditation, suspension, reinstatement and
revocation, and since when it has been accredited without a break.

A scan is judged against the venue as it stood at the scan's instant: accredited now, and
accredited since before the scan (`accredited_since`). Revocation is final.

When a status change takes effect (`effective_instant`): scans of one venue are decided on
many partitions, its status changes on one, so a scan decided just before a suspension may
be dated after the suspension's own date. A change therefore never takes effect before the
venue's previous change, and a restriction never before a scan the venue already had
accepted (the redeemer holds the scans of every other partition back while it decides the
change: `services.redeemer.store.lock_venue_statuses`). So the dates in the log say what the
redeemer decided: a scan accepted before the suspension is dated no later than it, and the
auditor, judging each scan at its instant against the venue's changes in their order,
reaches the redeemer's verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Mapping

from passnum.ledger.identity import decided_event
from schemas.base import Event
from schemas.messages import (
    AccreditProvider,
    ChangeProviderStatus,
    ProviderAccredited,
    ProviderStatusChanged,
    RedeemerCommandRejected,
)

ORIGIN = "redeemer"


@dataclass(frozen=True)
class Provider:
    siret: str
    name: str
    iban: str
    address_code: str
    status: str  # accredited | suspended | revoked
    # since when the venue has been accredited without a break (None: not kept then)
    accredited_since: datetime | None = None
    # when its status last changed (accreditation included; None: not kept then)
    changed_at: datetime | None = None


def evolve_venue(provider: Provider | None, event: Event) -> Provider | None:
    if isinstance(event, ProviderAccredited):
        return Provider(event.siret, event.name, event.iban, event.address_code, "accredited",
                        event.occurred_at, event.occurred_at)
    if isinstance(event, ProviderStatusChanged) and provider is not None \
            and provider.status != "revoked":
        since = provider.accredited_since
        if event.status == "accredited" and provider.status != "accredited":
            since = event.occurred_at  # reinstated: scans before it are not covered
        return replace(provider, status=event.status, accredited_since=since,
                       changed_at=event.occurred_at)
    return provider


def accreditation_refusal(provider: Provider | None, scanned_at: datetime) -> str | None:
    """Why this venue may not take a scan made at `scanned_at`, or None."""
    if provider is None or provider.status != "accredited":
        return "provider_not_accredited"
    if provider.accredited_since is not None and scanned_at < provider.accredited_since:
        return "venue_not_accredited_at_scan_time"
    return None


def decide_accredit(providers: Mapping[str, Provider], command: AccreditProvider) -> list[Event]:
    from stdnum import iban as stdnum_iban
    from stdnum.fr import siret as stdnum_siret

    reason = None
    if not stdnum_siret.is_valid(command.siret):
        reason = "invalid_siret"
    elif not stdnum_iban.is_valid(command.iban):
        reason = "invalid_iban"
    elif command.siret in providers:
        reason = "already_accredited"
    if reason:
        return [decided_event(ORIGIN, command, RedeemerCommandRejected,
                              command_type=command.type, reason=reason)]
    return [decided_event(ORIGIN, command, ProviderAccredited, siret=command.siret,
                          name=command.name, iban=command.iban,
                          address_code=command.address_code, services=command.services)]


RESTRICTING_STATUSES = frozenset({"suspended", "revoked"})


def effective_instant(provider: Provider, command: ChangeProviderStatus,
                      latest_scan_at: datetime | None) -> datetime:
    """The command's date, moved later when needed: never before the venue's previous
    change (the changes of one venue stay in the order they were decided) and, for a
    suspension or a revocation, never before `latest_scan_at`, the latest scan the venue
    had accepted when this change was decided (those scans stay valid)."""
    instant = command.occurred_at
    if provider.changed_at is not None:
        instant = max(instant, provider.changed_at)
    if command.status in RESTRICTING_STATUSES and latest_scan_at is not None:
        instant = max(instant, latest_scan_at)
    return instant


def decide_provider_status(providers: Mapping[str, Provider], command: ChangeProviderStatus,
                           latest_scan_at: datetime | None = None) -> list[Event]:
    """`latest_scan_at`: the latest instant of a scan this venue had accepted when the change
    is decided (None: none), which a restriction may not precede (`effective_instant`)."""
    provider = providers.get(command.siret)
    if provider is None:
        reason = "unknown_provider"
    elif provider.status == "revoked":
        reason = "provider_revoked"
    else:
        return [decided_event(ORIGIN, command, ProviderStatusChanged, siret=command.siret,
                              status=command.status, reason=command.reason,
                              occurred_at=effective_instant(provider, command, latest_scan_at))]
    return [decided_event(ORIGIN, command, RedeemerCommandRejected, command_type=command.type,
                          reason=reason)]
