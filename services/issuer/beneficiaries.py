"""Beneficiaries' pseudonymous references: personal data stops at the edge.

A distributor knows the citizen by a personal identifier (a social security number, a CAF
file number, an e-mail address...). The log is immutable and replayed by auditors, so the
identifier itself must never enter it (GDPR). The edge (HTTP API, CLI) derives instead

    reference = hex(HMAC-SHA256(secret of the collectivité, normalised identifier))[:32]

- keyed: without the secret, nobody can test a guessed identifier against the log (a plain
  hash of a 13-digit NIR could be brute-forced in hours);
- one secret per collectivité: the same person helped by two collectivités gets two
  unrelated references, so tenants cannot join their files through the log;
- deterministic for a given secret: the same person handed a second booklet by the same
  collectivité gets the same reference, which is what lets a funder see repeat hand-outs;
- destroying the secret (`store.destroy_beneficiary_secret`) makes every reference already
  in the log unlinkable for good: the right to erasure without editing the log.

This module is pure: the secret is passed in. Reading and creating secrets is `store.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

SECRET_BYTES = 32
REFERENCE_HEX_DIGITS = 32  # 128 bits: no collision in any realistic population
IDENTIFIER_MAX_CHARACTERS = 256

_WHITESPACE = re.compile(r"\s+")


class InvalidIdentifier(ValueError):
    """An identifier that is empty, or too long, once normalised."""


def normalise_identifier(identifier: str) -> str:
    """The form the reference is computed from.

    The same person typed twice must give the same reference: compatibility forms are
    folded (NFKC turns a full-width digit into a digit), case is folded, and every space is
    removed, because identifiers are printed with spaces ("1 85 05 78 006 084 36") and
    typed without."""
    normalised = _WHITESPACE.sub("", unicodedata.normalize("NFKC", identifier)).casefold()
    if not normalised:
        raise InvalidIdentifier("the beneficiary identifier is empty")
    if len(normalised) > IDENTIFIER_MAX_CHARACTERS:
        raise InvalidIdentifier(
            f"the beneficiary identifier is longer than {IDENTIFIER_MAX_CHARACTERS} characters")
    return normalised


def beneficiary_reference(secret: bytes, identifier: str) -> str:
    """32 lower-case hexadecimal digits: the only trace of the person that the log keeps."""
    assert len(secret) == SECRET_BYTES, "a beneficiary secret is 32 bytes"
    digest = hmac.new(secret, normalise_identifier(identifier).encode(), hashlib.sha256)
    return digest.hexdigest()[:REFERENCE_HEX_DIGITS]
