"""Beneficiary secrets in PostgreSQL: created once per collectivité on first use, shared by
concurrent callers, and destroyed for good, after which the same person gets a reference
that cannot be matched with the old ones."""

from __future__ import annotations

import threading

import pytest

from passnum.core.database import connect
from services.issuer import store
from services.issuer.beneficiaries import beneficiary_reference

pytestmark = pytest.mark.integration

SIREN, OTHER_SIREN = "552100554", "732829320"
NIR = "1 85 05 78 006 084 36"


def test_secret_is_created_once_and_is_per_collectivite(ledger) -> None:
    with connect(ledger.database_url) as connection:
        first = store.beneficiary_secret(connection, SIREN)
        assert store.beneficiary_secret(connection, SIREN) == first
        assert len(first) == 32
        assert store.beneficiary_secret(connection, OTHER_SIREN) != first


def test_concurrent_first_uses_agree_on_one_secret(ledger) -> None:
    secrets: list[bytes] = []
    barrier = threading.Barrier(6)

    def first_use() -> None:
        with connect(ledger.database_url) as connection:
            barrier.wait(timeout=10)
            secrets.append(store.beneficiary_secret(connection, SIREN))

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(secrets) == 6 and len(set(secrets)) == 1


def test_destroying_the_secret_makes_references_unlinkable(ledger) -> None:
    with connect(ledger.database_url) as connection:
        old_secret = store.beneficiary_secret(connection, SIREN)
        other_secret = store.beneficiary_secret(connection, OTHER_SIREN)
        old_reference = beneficiary_reference(old_secret, NIR)

        assert store.destroy_beneficiary_secret(connection, SIREN, "dpo@example.org")
        assert not store.destroy_beneficiary_secret(connection, SIREN, "dpo@example.org")
        remaining = connection.execute(
            "SELECT count(*) FROM issuer_beneficiary_secrets WHERE secret = %s",
            (old_secret,)).fetchone()[0]
        destructions = connection.execute(
            "SELECT siren, requested_by FROM issuer_beneficiary_secret_destructions"
            ).fetchall()
        connection.commit()
        new_secret = store.beneficiary_secret(connection, SIREN)
        assert store.beneficiary_secret(connection, OTHER_SIREN) == other_secret

    assert remaining == 0
    assert destructions == [(SIREN, "dpo@example.org")]
    assert new_secret != old_secret
    assert beneficiary_reference(new_secret, NIR) != old_reference
