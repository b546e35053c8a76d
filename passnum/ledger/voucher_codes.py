"""Printable voucher codes: booklet and position, a keyed check, and a typo check.

Layout (26 characters shown as 5 groups of 4, a dash, then 1 check symbol):
    12 symbols  the voucher number (SIREN, booklet sequence, position: 18 decimal digits)
     8 symbols  HMAC-SHA256(key, voucher number) truncated to 40 bits
     1 symbol   Crockford mod-37 check symbol over the 20 symbols before it

Why: incrementing or guessing the number without the key gives a wrong MAC (one chance in
2^40 per try), so a forged code is detected; a single mistyped symbol or two swapped
neighbours change the mod-37 check, so a typo is told apart from a forgery before the MAC
is even looked at. The key is configuration, never written to the log.
"""

from __future__ import annotations

import base64
import functools
import hmac
import re
from dataclasses import dataclass
from typing import Literal

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CHECK_ALPHABET = ALPHABET + "*~$=U"
_VALUES = {symbol: value for value, symbol in enumerate(ALPHABET)}
_CHECK_VALUES = {symbol: value for value, symbol in enumerate(CHECK_ALPHABET)}
# Crockford decoding forgives the look-alikes.
_NORMALISE = str.maketrans({"I": "1", "L": "1", "O": "0"})
NUMBER_SYMBOLS = 12
MAC_SYMBOLS = 8
BODY_SYMBOLS = NUMBER_SYMBOLS + MAC_SYMBOLS
_MAC_BITS = 5 * MAC_SYMBOLS
_MAC_MASK = (1 << _MAC_BITS) - 1
_BODY_PATTERN = re.compile(f"[{ALPHABET}]{{{BODY_SYMBOLS}}}")


@dataclass(frozen=True)
class VoucherNumber:
    siren: str
    booklet_sequence: int
    position: int  # 1-based position of the voucher in its booklet

    # Formatted once per number (kept in the instance's __dict__, outside the fields that
    # equality and hashing compare): a scan's decision reads each id several times.
    @functools.cached_property
    def booklet_id(self) -> str:
        return f"{self.siren}-{self.booklet_sequence:07d}"

    @functools.cached_property
    def voucher_id(self) -> str:
        return f"{self.booklet_id}-{self.position:02d}"

    def digits(self) -> str:
        return f"{self.siren}{self.booklet_sequence:07d}{self.position:02d}"


@dataclass(frozen=True)
class ParsedCode:
    outcome: Literal["valid", "malformed_code", "mistyped_code", "forged_code"]
    number: VoucherNumber | None = None


# Conversions run through C (base64, int) rather than a Python loop per symbol: every
# issued voucher gets a code and every scan parses one. RFC 4648 base32 and `int(_, 32)`
# use other alphabets of 32 symbols in the same bit order; translating them is exact.
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)
_TO_INT_DIGITS = str.maketrans(ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")


def _to_symbols(value: int, width: int) -> str:
    assert 0 <= value < 1 << (5 * width), "value does not fit the width"
    # A multiple of 5 bytes is a whole number of symbols, aligned on the last bit.
    length = 5 * -(-width // 8)
    encoded = base64.b32encode(value.to_bytes(length, "big")).decode()
    return encoded[-width:].translate(_FROM_RFC4648)


def _from_symbols(text: str) -> int:
    return int(text.translate(_TO_INT_DIGITS), 32)


def _mac_bytes(key: bytes, digits: str) -> bytes:
    """The 40 bits of HMAC-SHA256(key, the voucher number's 18 digits) a code carries."""
    return hmac.digest(key, digits.encode(), "sha256")[:5]  # one-shot: C all the way


def _mac(key: bytes, number: VoucherNumber) -> str:
    return _to_symbols(int.from_bytes(_mac_bytes(key, number.digits()), "big"), MAC_SYMBOLS)


def _check_symbol_of(value: int) -> str:
    """The mod-37 check symbol of a body read as one integer."""
    return CHECK_ALPHABET[value % 37]


def _check_symbol(body: str) -> str:
    return _check_symbol_of(_from_symbols(body))


def voucher_id_of(booklet_id: str, position: int) -> str:
    return f"{booklet_id}-{position:02d}"


def make_code(key: bytes, number: VoucherNumber) -> str:
    assert len(number.siren) == 9 and number.siren.isdigit()
    assert 0 <= number.booklet_sequence < 10_000_000 and 1 <= number.position <= 99
    body = _to_symbols(int(number.digits()), NUMBER_SYMBOLS) + _mac(key, number)
    grouped = "-".join(body[index : index + 4] for index in range(0, BODY_SYMBOLS, 4))
    return f"{grouped}-{_check_symbol(body)}"


def normalise(code: str) -> str:
    return code.upper().replace("-", "").replace(" ", "").translate(_NORMALISE)


@functools.lru_cache(maxsize=8192)
def parse_code(key: bytes, code: str) -> ParsedCode:
    """Classify a code in precedence order: malformed, mistyped, forged, valid.

    Pure, so memoised (one cache, for every caller): a batch parses each code to load its
    booklets, then to decide the scan and the block before it, and the HMAC is the dear
    part. ParsedCode is immutable, so sharing it is safe."""
    text = normalise(code)
    if len(text) != BODY_SYMBOLS + 1:
        return ParsedCode("malformed_code")
    body, check = text[:BODY_SYMBOLS], text[BODY_SYMBOLS]
    if not _BODY_PATTERN.fullmatch(body) or check not in _CHECK_VALUES:
        return ParsedCode("malformed_code")
    # The body read once as one integer: the number is its high 60 bits, the MAC its low
    # 40 (5 bits a symbol), and the check is taken over the whole of it.
    value = _from_symbols(body)
    if _check_symbol_of(value) != check:
        return ParsedCode("mistyped_code")
    digits = f"{value >> _MAC_BITS:018d}"
    if len(digits) != 18:
        return ParsedCode("forged_code")
    # Compared as the 5 bytes the symbols stand for: the same test as comparing symbols
    # (8 symbols are exactly 40 bits), without encoding the digest back to text.
    carried = (value & _MAC_MASK).to_bytes(5, "big")
    if not hmac.compare_digest(_mac_bytes(key, digits), carried):
        return ParsedCode("forged_code")
    return ParsedCode("valid", VoucherNumber(digits[:9], int(digits[9:16]), int(digits[16:])))


def parse_voucher_id(voucher_id: str) -> VoucherNumber:
    siren, sequence, position = voucher_id.split("-")
    return VoucherNumber(siren, int(sequence), int(position))


def routing_booklet_id(code: str) -> str | None:
    """The booklet a code claims to belong to, without checking it: only used to choose a
    partition, so that every claim about one booklet is decided in one place. A forged
    code lands on some partition and is rejected there."""
    text = normalise(code)
    if len(text) != BODY_SYMBOLS + 1 or any(s not in _VALUES for s in text[:NUMBER_SYMBOLS]):
        return None
    digits = f"{_from_symbols(text[:NUMBER_SYMBOLS]):018d}"
    return f"{digits[:9]}-{digits[9:16]}" if len(digits) == 18 else None


def with_recomputed_check(code: str) -> str:
    """The code with its typo check recomputed: what a forger who knows the format but not
    the key would produce after editing symbols. Used to show that the MAC still catches it."""
    body = normalise(code)[:BODY_SYMBOLS]
    grouped = "-".join(body[index : index + 4] for index in range(0, BODY_SYMBOLS, 4))
    return f"{grouped}-{_check_symbol(body)}"
