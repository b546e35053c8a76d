"""The replay's batch path: one partition's record batch checked and folded column by
column, with the per-record work done by C loops (`map` over `operator` functions,
`hashlib`, one regular expression over the joined values) instead of Python statements.

It decides nothing of its own. Each step either proves that every record of the batch (or
of a run of it) is the plain case of the per-record path, and then does exactly what that
path would do for each, or hands the records to the per-record path
(`Replayer.ingest_one_by_one`, `Replayer.fold_one`), which finds and names whatever is not
plain. The steps:

- links: every record carries one well-formed `passnum-chain` header and a value that
  hashes to it (SHA-256 of each, compared as one tuple); otherwise the whole batch goes one
  by one;
- admission: a run of one stream's records continuing its chain where it stands is
  admitted at once (`ChainVerifier.admit_run`); anything else per record, without hashing
  again (`ChainVerifier.admit_hashed`);
- fold: the values are joined by newlines (when none holds one) and matched by one pattern
  (`canonical.REDEEMED_LINES`): each run of canonical `VoucherRedeemed` is folded at once
  when it is plain (`books.plan_redemptions`), every other record one at a time.

Tested: tests/unit/test_auditor_bulk.py (the batch path and the per-record path give the
same report on clean and on tampered logs) and every tamper test, which go through it.
"""

from __future__ import annotations

from binascii import hexlify
from hashlib import sha256
from itertools import compress, groupby, repeat
from operator import add, and_, attrgetter, itemgetter, methodcaller, mul, or_, rshift
from typing import TYPE_CHECKING

from passnum.codec import CHAIN_HEADER
from services.auditor.canonical import REDEEMED_LINES, REDEEMED_TYPE
from services.auditor.chain import NEW, REJECTED, StreamChain

if TYPE_CHECKING:
    from services.auditor.replay import Replayer

_HEADERS = attrgetter("headers")
_VALUE = attrgetter("value")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_PREFIX = itemgetter(slice(0, 16))
_SPLIT = methodcaller("split", b"|")
_DIGEST = methodcaller("digest")
_MASK_64 = (1 << 64) - 1


class Links:
    """The chain links of a batch, as columns (one entry per record, in offset order)."""

    __slots__ = ("streams", "sequences", "previous", "digests", "values", "currents")

    def __init__(self, streams: tuple[bytes, ...], sequences: list[int],
                 previous: tuple[bytes, ...], digests: tuple[bytes, ...],
                 values: list[bytes], currents: list[int]) -> None:
        self.streams, self.sequences, self.previous = streams, sequences, previous
        self.digests, self.values, self.currents = digests, values, currents


def parse_links(records: list, key: int) -> Links | None:
    """The links of a batch whose every record has exactly one `passnum-chain` header, of
    the form the per-record path takes (ASCII, four fields, a decimal sequence, two
    64-character hashes), and a value that hashes to its link; None otherwise."""
    count = len(records)
    headers = list(map(_HEADERS, records))
    if not count or set(map(len, headers)) != {1}:
        return None
    pairs = list(map(_FIRST, headers))
    if list(map(_FIRST, pairs)).count(CHAIN_HEADER) != count:
        return None
    raws = list(map(_SECOND, pairs))
    values = list(map(_VALUE, records))
    if (set(map(type, raws)) != {bytes} or set(map(type, values)) != {bytes}
            or not all(map(bytes.isascii, raws))):
        return None
    parts = list(map(_SPLIT, raws))
    if set(map(len, parts)) != {4}:
        return None
    streams, sequence_texts, previous, digests = zip(*parts)
    if (set(map(len, previous)) != {64} or set(map(len, digests)) != {64}
            or not all(map(bytes.isdigit, sequence_texts))):
        return None
    if tuple(map(hexlify, map(_DIGEST, map(sha256, map(add, previous, values))))) != digests:
        return None  # an altered record: the per-record path names it
    try:
        currents = list(map(or_, map(rshift, map(and_, map(mul, map(
            int, map(_PREFIX, digests), repeat(16)), repeat(key)), repeat(_MASK_64)),
            repeat(32)), repeat(1)))
    except ValueError:  # a link that is not hexadecimal: the per-record path decides
        return None
    return Links(streams, list(map(int, sequence_texts)), previous, digests, values, currents)


def admit(replayer: Replayer, topic: str, partition: int, records: list,
          links: Links) -> list[bool] | None:
    """Admit every link of the batch; None when all are new facts, else a flag per record
    (False: a re-delivery, or rejected with a finding naming its event)."""
    chains = replayer.chains
    heads = chains.heads_in(topic, partition)
    streams, count = links.streams, len(links.streams)
    if streams.count(streams[0]) == count and chains.admit_run(
            streams[0], links.sequences, links.previous, links.digests, links.currents, heads):
        return None
    new = [False] * count
    groups: dict[bytes, list[int]] = {}
    for index, stream in enumerate(streams):
        groups.setdefault(stream, []).append(index)
    for stream, indexes in groups.items():
        if len(indexes) > 1:
            pick = itemgetter(*indexes)
            if chains.admit_run(stream, list(pick(links.sequences)), pick(links.previous),
                                pick(links.digests), list(pick(links.currents)), heads):
                for index in indexes:
                    new[index] = True
                continue
        for index in indexes:
            verdict = chains.admit_hashed(
                stream, links.sequences[index], links.previous[index], links.digests[index],
                links.currents[index], topic, partition, records[index].offset, heads)
            if verdict == NEW:
                new[index] = True
            elif verdict == REJECTED:
                replayer.name_rejected(links.values[index])
    return new


def ingest(replayer: Replayer, topic: str, partition: int, records: list) -> bool:
    """The batch path for one partition's records in offset order; False (nothing done)
    when the batch must go one record at a time."""
    links = parse_links(records, replayer.chains.key)
    if links is None:
        return False
    replayer.records_read += len(records)
    new = admit(replayer, topic, partition, records, links)
    places = list(range(len(records))) if new is None else list(compress(range(len(records)),
                                                                         new))
    if not places:
        return True
    values = links.values if new is None else [links.values[place] for place in places]
    rows = _redeemed_rows(values)
    if rows is None:
        for place in places:
            _fold_one(replayer, topic, partition, records, links, place)
        return True
    kinds = list(map(bool, map(_FIRST, rows)))
    for redeemed, run in groupby(range(len(rows)), kinds.__getitem__):
        indexes = list(run)
        if redeemed:
            months = replayer.canonical.redeemed_run([rows[index] for index in indexes])
            if months is not None:
                _note_months(replayer, links, [places[index] for index in indexes], months,
                             in_order=new is None)
                continue
        for index in indexes:
            _fold_one(replayer, topic, partition, records, links, places[index])
    return True


def _redeemed_rows(values: list[bytes]) -> list[tuple[bytes, ...]] | None:
    """One REDEEMED_LINES row per value, or None (no redemption, or a value with a
    newline, which would make lines differ from records)."""
    joined = b"\n".join(values)
    if REDEEMED_TYPE not in joined or joined.count(b"\n") != len(values) - 1:
        return None
    rows = REDEEMED_LINES.findall(joined)
    return rows if len(rows) == len(values) else None


def _fold_one(replayer: Replayer, topic: str, partition: int, records: list, links: Links,
              place: int) -> None:
    chain = replayer.chains.by_raw_name[links.streams[place]]
    replayer.fold_one(topic, partition, records[place].offset, links.values[place], chain,
                      links.sequences[place], links.previous[place])


def _note_months(replayer: Replayer, links: Links, places: list[int], months: list[str],
                 in_order: bool) -> None:
    """Each chain's lowest sequence per month (`StreamChain.month_firsts`) for a run."""
    by_raw_name = replayer.chains.by_raw_name
    if in_order:  # one stream, sequences increasing: a month's first place is its lowest
        chain = by_raw_name[links.streams[places[0]]]
        firsts = dict(zip(reversed(months), reversed(places)))
        for month, place in firsts.items():
            _note_month(chain, month, links.sequences[place], links.previous[place])
        return
    for place, month in zip(places, months):
        _note_month(by_raw_name[links.streams[place]], month, links.sequences[place],
                    links.previous[place])


def _note_month(chain: StreamChain, month: str, sequence: int, previous_hash: bytes) -> None:
    first = chain.month_firsts.get(month)
    if first is None or sequence < first[0]:
        chain.month_firsts[month] = (sequence, previous_hash.decode())
