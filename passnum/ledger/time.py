"""Time, written once: France's time zone, the calendar day a validity is judged on, and how
far ahead of the deciding clock a scan may be dated.

An instant is judged as it is written: a scan carries its own UTC offset (the venue's), and
its calendar day is the day of those digits (`venue_day`); the auditor reads the same digits
from the log. "The same day" for a cancellation and month boundaries for settlement are days
in France (`FRANCE`), whatever offset each timestamp is written with.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

FRANCE = ZoneInfo("Europe/Paris")

# How far a scan may be dated after the decider's clock
# (passnum.core.settings.Settings.scan_clock_tolerance_seconds overrides it).
DEFAULT_SCAN_CLOCK_TOLERANCE = timedelta(seconds=300)


def venue_day(instant: datetime) -> date:
    """The calendar day a voucher's validity is judged on: the day of the instant as it is
    written (its own offset; the auditor reads the same digits, `wire.local_day`)."""
    return instant.date()


def within_validity(day: date, valid_from: date, grace_until: date) -> bool:
    """A voucher is good from its first valid day through the end of its grace period."""
    return valid_from <= day <= grace_until


def scan_in_the_future(scanned_at: datetime, now: datetime, tolerance: timedelta) -> bool:
    """A scan dated later than `now` by more than the clock tolerance: a venue's clock or
    file is wrong, and such a date would move the books' "as of" for everyone."""
    return scanned_at > now + tolerance


def same_local_day(earlier: datetime, later: datetime) -> bool:
    """"The same day" is a day at the venue, in France: judged on the instants, whatever
    UTC offset each timestamp happens to be written with."""
    return earlier.astimezone(FRANCE).date() == later.astimezone(FRANCE).date()
