"""The hot event types decoded straight from the codec's bytes, without building a dict.

Every event on the log was written by the one codec (`passnum.core.codec.encode`, pydantic's
`model_dump_json`): compact JSON, fields in the order the model declares them, instants
written `...Z` in UTC or `...+01:00` with the offset they were given (a scan dated on a
venue's clock in France keeps it: offline scans, `services/redeemer/offline_scans.py`).
For the frequent types, the patterns below match exactly that
form, and only documents that are valid for the model and for the books: the exact key
set in order (so no missing, extra or repeated key), `schema_version` 1, the identifier
formats and their consistency (a voucher id is its booklet id plus a position, both under
the event's SIREN, checked by back-references), positive integer amounts, free-text
fields of printable ASCII without escapes within the lengths `wire.check_fields` allows.
A record that does not match is not judged here: it goes down the general path
(`books.apply_value`: `json`, field checks, the codec for the other types), which accepts
it, or reports it as `invalid_event`, exactly as before. So this module decides nothing on
its own: a match is a document the general path would decode to the same values, and
both paths then call the same `Books.fold_*` methods (tested on random logs:
tests/unit/test_auditor_fast_path.py).

Why: `json.loads` builds a dict of ten strings per event, about four times the cost of one
compiled pattern matched over the bytes, and the replay reads tens of millions of events.
"""

from __future__ import annotations

import re

from services.auditor import wire
from services.auditor.books import Books, make_framing
from services.auditor.wire import InvalidEvent

# A JSON string as the codec writes printable ASCII: no quote, no backslash, no control.
_TEXT = rb'[\x20\x21\x23-\x5b\x5d-\x7e]'
_HEAD = (rb'\{"schema_version":1,"request_id":"(' + _TEXT + rb'{1,128})",'
         rb'"occurred_at":"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3]):([0-5][0-9]):'
         rb'([0-5][0-9])(?:\.([0-9]{1,6}))?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])",'
         rb'"event_id":"(' + _TEXT + rb'{1,64})","type":"')
_CENTS = rb'([1-9][0-9]{0,17})'
_DATE = rb'"([0-9]{4}-[0-9]{2}-[0-9]{2})"'
# Groups 1-7 of every pattern: request_id, date, hour, minute, second, fraction, event_id.
# The offset is no group (a group would renumber the back-references below): it is read
# from the bytes before `","event_id":"` (`_offset_seconds`).
_BEFORE_EVENT_ID = len(b'","event_id":"')
VOUCHER_REDEEMED = re.compile(
    _HEAD + rb'voucher_redeemed","siret":"([0-9]{14})","siren":"([0-9]{9})",'
    rb'"booklet_id":"\9-([0-9]{7})","voucher_id":"\9-\10-([0-9]{2})",'
    rb'"face_value_cents":' + _CENTS + rb'\}')
BOOKLET_ISSUED = re.compile(
    _HEAD + rb'booklet_issued","siren":"([0-9]{9})","order_id":"(' + _TEXT + rb'*)",'
    rb'"booklet_id":"\8-([0-9]{7})","voucher_count":([1-9][0-9]?),'
    rb'"face_value_cents":' + _CENTS + rb',"target_group":"(pic|general)",'
    rb'"perimeter":\[((?:"' + _TEXT + rb'*"(?:,"' + _TEXT + rb'*")*)?)\],'
    rb'"valid_from":' + _DATE + rb',"valid_until":' + _DATE + rb',"grace_until":' + _DATE
    + rb'\}')
BOOKLET_ACTIVATED = re.compile(
    _HEAD + rb'booklet_activated","siren":"([0-9]{9})","booklet_id":"\8-([0-9]{7})",'
    rb'"activated_cents":' + _CENTS + rb'\}')
REDEMPTION_REJECTED = re.compile(
    _HEAD + rb'redemption_rejected","siret":"([0-9]{14})","voucher_id":(?:null|"' + _TEXT
    + rb'*"),"reason":"([a-z_]{1,64})","redeemed_at":(?:null|"' + _TEXT + rb'*")\}')
VOUCHER_CHECKED = re.compile(
    _HEAD + rb'voucher_checked","siret":"([0-9]{14})","voucher_id":(?:null|"' + _TEXT
    + rb'*"),"valid":(?:true|false),"reason":(?:null|"([a-z_]{1,64})")\}')
_TYPE_FIELD = b'","type":"'
AMOUNTS_CACHED = 1_024
# "00" to "99" -> 0 to 99: hours, minutes, seconds and positions without int() each time.
_TWO_DIGITS = {f"{number:02d}".encode(): number for number in range(100)}


class CanonicalDecoder:
    """Folds canonical hot events into `books`; `fold` answers None for anything else."""

    def __init__(self, books: Books) -> None:
        self.books = books
        self.days: dict[bytes, int] = {}
        self.months: dict[bytes, str] = {}  # date -> its month
        self.venues: dict[bytes, int] = {}
        self.sirens: dict[bytes, str] = {}
        self.amounts: dict[bytes, int] = {}
        self.framings: dict[tuple[bytes, bytes, bytes], int] = {}
        # Outside the filtered books (--until, --collectivite) the general path decides.
        self.enabled = books.until_micros is None and books.only_siren is None

    def fold(self, value: bytes, stream: str, sequence: int) -> str | None:
        """The UTC month ("YYYY-MM") of the event folded, or None: not canonical (or a
        type decoded elsewhere), nothing done, the general path must take it."""
        if not self.enabled or type(value) is not bytes:
            return None
        # Which pattern to try: the type name after the first `","type":"` (a wrong guess,
        # possible only in a non-canonical document, matches nothing).
        at = value.find(_TYPE_FIELD) + len(_TYPE_FIELD)
        if value.startswith(b'voucher_redeemed"', at):
            match = VOUCHER_REDEEMED.fullmatch(value)
            return None if match is None else self._redeemed(match, stream, sequence)
        if value.startswith(b'booklet_issued"', at):
            match = BOOKLET_ISSUED.fullmatch(value)
            return None if match is None else self._issued(match, value)
        if value.startswith(b'booklet_activated"', at):
            match = BOOKLET_ACTIVATED.fullmatch(value)
            return None if match is None else self._activated(match, stream, sequence)
        if value.startswith(b'redemption_rejected"', at):
            match = REDEMPTION_REJECTED.fullmatch(value)
            return None if match is None else self._outcome(match, "redemption_rejected")
        if value.startswith(b'voucher_checked"', at):
            match = VOUCHER_CHECKED.fullmatch(value)
            return None if match is None else self._outcome(match, "voucher_checked")
        return None

    def _instant(self, match: re.Match) -> tuple[int, str, int] | None:
        """(microseconds since the epoch, UTC month, day number as written) of groups 2-6
        and the offset, None if no such day. The day stays the date as written: the day the
        redeemer judged a scan's validity on; the instant and the month are UTC."""
        date, hour, minute, second, fraction = match.group(2, 3, 4, 5, 6)
        day = self.days.get(date)
        if day is None:
            day = self._day(date)
            if day is None:
                return None
        two_digits = _TWO_DIGITS
        micros = (day * 86_400 + two_digits[hour] * 3_600 + two_digits[minute] * 60
                  + two_digits[second]) * 1_000_000
        if fraction is not None:
            micros += int(fraction.ljust(6, b"0"))
        offset = _offset_seconds(match)
        if offset:
            micros -= offset * 1_000_000
            return micros, wire.utc_month(micros), day
        return micros, self.months[date], day

    def _day(self, date: bytes) -> int | None:
        try:
            day = self.days[date] = wire.day_number(date.decode())
        except ValueError:
            return None
        self.months[date] = date[:7].decode()
        return day

    def _venue(self, siret: bytes) -> int:
        venue = self.venues.get(siret)
        if venue is None:
            venue = self.venues[siret] = self.books.venue(siret.decode())
        return venue

    def _redeemed(self, match: re.Match, stream: str, sequence: int) -> str | None:
        instant = self._instant(match)
        if instant is None:
            return None
        micros, month, day = instant
        event_id, siret, siren, booklet, position, cents = match.group(7, 8, 9, 10, 11, 12)
        amount = self.amounts.get(cents)
        if amount is None:
            amount = int(cents)
            if len(self.amounts) < AMOUNTS_CACHED:  # face values are few; a bound anyway
                self.amounts[cents] = amount
        venue = self.venues.get(siret)
        if venue is None:
            venue = self._venue(siret)
        siren_text = self.sirens.get(siren)
        if siren_text is None:
            siren_text = self.sirens[siren] = siren.decode()
        books = self.books
        event_text = event_id.decode()
        fingerprint = 0
        if len(event_id) == 36 and event_id[8] == 45:  # a UUID: wire.event_fingerprint
            try:
                fingerprint = int(event_id[:8] + event_id[9:13] + event_id[14:18], 16) | 1
            except ValueError:
                fingerprint = 0
        books.note_event("voucher_redeemed", event_text, micros)
        books.fold_redemption(siren_text, int(booklet), _TWO_DIGITS[position], venue, amount,
                              micros, day, event_text, fingerprint, stream, sequence)
        return month

    def _issued(self, match: re.Match, value: bytes) -> str | None:
        instant = self._instant(match)
        if instant is None:
            return None
        siren = match.group(8)
        key = (siren, match.group(9), value[match.start(11):])
        framing = self.framings.get(key)
        if framing is None:
            framing = self._framing(match)
            if framing is None:
                return None
            self.framings[key] = framing
        books = self.books
        event_id = match.group(7).decode()
        books.note_event("booklet_issued", event_id, instant[0])
        books.fold_booklet_issued(siren.decode(), int(match.group(10)), framing, event_id)
        return instant[1]

    def _framing(self, match: re.Match) -> int | None:
        listed = match.group(14)
        perimeter = [code.decode() for code in listed[1:-1].split(b'","')] if listed else []
        try:
            framing = make_framing(
                match.group(8).decode(), match.group(9).decode(), int(match.group(11)),
                int(match.group(12)), match.group(13).decode(), perimeter,
                match.group(15).decode(), match.group(16).decode(), match.group(17).decode())
        except (InvalidEvent, ValueError):
            return None
        return self.books.framing(framing)

    def _activated(self, match: re.Match, stream: str, sequence: int) -> str | None:
        instant = self._instant(match)
        if instant is None:
            return None
        books = self.books
        event_id = match.group(7).decode()
        books.note_event("booklet_activated", event_id, instant[0])
        books.fold_booklet_activated(match.group(8).decode(), int(match.group(9)),
                                     int(match.group(10)), instant[0], event_id, stream,
                                     sequence)
        return instant[1]

    def _outcome(self, match: re.Match, event_type: str) -> str | None:
        instant = self._instant(match)
        if instant is None:
            return None
        books = self.books
        books.note_event(event_type, match.group(7).decode(), instant[0])
        self._venue(match.group(8))
        reason = match.group(9)
        books.count_outcome(event_type, reason.decode() if reason is not None else None)
        return instant[1]


def _offset_seconds(match: re.Match) -> int:
    """The instant's offset from UTC in seconds (east positive): 0 for `Z`, else its
    `+HH:MM` or `-HH:MM`, the six bytes before `","event_id":"`."""
    end = match.start(7) - _BEFORE_EVENT_ID
    text = match.string
    if text[end - 1] == 90:  # b"Z"
        return 0
    seconds = (_TWO_DIGITS[text[end - 5:end - 3]] * 3_600 + _TWO_DIGITS[text[end - 2:end]] * 60)
    return -seconds if text[end - 6] == 45 else seconds  # b"-"
