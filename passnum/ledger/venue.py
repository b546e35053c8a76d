"""The venue aggregate: a training venue's accreditation, suspension, reinstatement and
revocation, and since when it has been accredited without a break.

A scan is judged against the venue as it stood at the scan's instant: accredited now, and
accredited since before the scan (`accredited_at`). Revocation is final.
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


def evolve_venue(provider: Provider | None, event: Event) -> Provider | None:
    if isinstance(event, ProviderAccredited):
        return Provider(event.siret, event.name, event.iban, event.address_code, "accredited",
                        event.occurred_at)
    if isinstance(event, ProviderStatusChanged) and provider is not None \
            and provider.status != "revoked":
        since = provider.accredited_since
        if event.status == "accredited" and provider.status != "accredited":
            since = event.occurred_at  # reinstated: scans before it are not covered
        return replace(provider, status=event.status, accredited_since=since)
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


def decide_provider_status(providers: Mapping[str, Provider],
                           command: ChangeProviderStatus) -> list[Event]:
    provider = providers.get(command.siret)
    if provider is None:
        reason = "unknown_provider"
    elif provider.status == "revoked":
        reason = "provider_revoked"
    else:
        return [decided_event(ORIGIN, command, ProviderStatusChanged, siret=command.siret,
                              status=command.status, reason=command.reason)]
    return [decided_event(ORIGIN, command, RedeemerCommandRejected, command_type=command.type,
                          reason=reason)]
