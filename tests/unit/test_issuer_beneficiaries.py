"""Beneficiaries' pseudonymous references: keyed, per collectivité, stable for one person,
and unlinkable once the secret is gone."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.issuer.beneficiaries import (
    IDENTIFIER_MAX_CHARACTERS,
    InvalidIdentifier,
    beneficiary_reference,
    normalise_identifier,
)

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
NIR = "1 85 05 78 006 084 36"


def test_reference_is_the_truncated_hmac_of_the_normalised_identifier() -> None:
    expected = hmac.new(SECRET, b"185057800608436", hashlib.sha256).hexdigest()[:32]
    assert beneficiary_reference(SECRET, NIR) == expected


def test_reference_is_32_lower_case_hex_digits_as_the_schema_requires() -> None:
    from schemas.messages import DistributeBooklet

    reference = beneficiary_reference(SECRET, NIR)
    assert len(reference) == 32 and set(reference) <= set("0123456789abcdef")
    DistributeBooklet(request_id="r", occurred_at="2026-03-02T10:00:00Z", siren="552100554",
                      booklet_id="552100554-0000001", distributor="CAF",
                      beneficiary_reference=reference)


@pytest.mark.parametrize("same_person", [
    "185057800608436", " 1 85 05 78 006 084 36 ", "1\t85\u00a005 78 006 084 36",
    "１８５０５７８００６０８４３６",  # full-width digits, as some forms produce
])
def test_the_same_person_typed_differently_gets_the_same_reference(same_person: str) -> None:
    assert beneficiary_reference(SECRET, same_person) == beneficiary_reference(SECRET, NIR)


def test_case_does_not_matter_for_e_mail_like_identifiers() -> None:
    assert beneficiary_reference(SECRET, "Marie.Curie@Example.org") == \
        beneficiary_reference(SECRET, "marie.curie@example.org")


def test_another_collectivite_secret_gives_an_unrelated_reference() -> None:
    assert beneficiary_reference(SECRET, NIR) != beneficiary_reference(OTHER_SECRET, NIR)


def test_the_reference_does_not_contain_the_identifier_or_its_plain_hash() -> None:
    reference = beneficiary_reference(SECRET, NIR)
    plain = hashlib.sha256(b"185057800608436").hexdigest()[:32]
    assert "1850578006" not in reference and reference != plain


@pytest.mark.parametrize("identifier", ["", "   ", "\t\n", "x" * (IDENTIFIER_MAX_CHARACTERS + 1)])
def test_empty_or_oversized_identifiers_are_refused(identifier: str) -> None:
    with pytest.raises(InvalidIdentifier):
        beneficiary_reference(SECRET, identifier)


def test_a_secret_of_the_wrong_size_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        beneficiary_reference(b"short", NIR)


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_different_normalised_identifiers_give_different_references(first: str,
                                                                   second: str) -> None:
    try:
        one, two = normalise_identifier(first), normalise_identifier(second)
    except InvalidIdentifier:
        return
    same = one == two
    assert (beneficiary_reference(SECRET, first) == beneficiary_reference(SECRET, second)) == same
