"""The replay split by partition over worker processes, merged into one set of books.

Why it is sound. Facts about one booklet are keyed by its id on both event topics, which
have the same partition count, so they sit in partitions with the same number: issued,
activated, blocked, distributed on the issuer's topic, redeemed, cancelled, refused on the
redeemer's. A worker that reads issuer partitions N then redeemer partitions N therefore
judges each redemption as it is read against every issuer fact about its booklet, exactly
as one process reading the whole issuer topic first would. What depends on facts from
other partitions (an envelope's order, a venue's accreditation, settlement, links between
a stream's events in different partitions) is only judged at the end, on the merged books.

What would make a part's view differ from the whole's is detected, and then the whole log
is replayed in one process instead (a faulty or oddly keyed log costs a second read, a
sound one never does): a fact naming a booklet the part does not hold (`Books.partial`),
one booklet issued in two parts, one chain position read in two parts.

The merge is deterministic: parts are merged in partition order, every registry is
renumbered through the merged one, and every end judgement sorts by intrinsic keys
(tests/unit/test_auditor_parallel.py: the merged report is the one-process report).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
from array import array
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from services.auditor import columns
from services.auditor.books import Books
from services.auditor.chain import ChainVerifier, StreamChain
from services.auditor.reader import collector_paused, partitions_of, read_record_batches

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, SpawnContext

logger = logging.getLogger(__name__)


class Replayer(Protocol):
    """What a part's reading needs of `services.auditor.replay.Replayer` (which imports this
    module: the class itself is handed to the worker processes, never imported here)."""

    settings: Any
    options: Any
    books: Books
    chains: ChainVerifier
    canonical: Any
    record_findings: list
    records_read: int
    invalid_count: int

    def __init__(self, settings: Any, options: Any) -> None: ...

    def topics_in_order(self) -> list[str]: ...

    def ingest_batch(self, topic: str, partition: int, records: list) -> None: ...

    def adopt(self, books: Books, chains: ChainVerifier, parts: list) -> None: ...

# Two cores here; more workers than partitions would idle.
DEFAULT_PROCESSES = max(1, min(4, os.cpu_count() or 1))


class Part:
    """What one worker read: its books, chains and counters (pickled back to the parent)."""

    def __init__(self, replayer: Replayer, ends: dict[tuple[str, int], int]) -> None:
        self.books, self.chains = replayer.books, replayer.chains
        self.records_read, self.invalid_count = replayer.records_read, replayer.invalid_count
        self.record_findings = replayer.record_findings
        self.ends = ends


def split_places(issuer_places: list[tuple[str, int]], redeemer_places: list[tuple[str, int]],
                 processes: int) -> list[list[tuple[str, int]]] | None:
    """Per worker: issuer partitions then redeemer partitions with the same numbers; None
    when the two topics are not partitioned alike (then one process reads everything)."""
    numbers = sorted(number for _, number in issuer_places)
    if numbers != sorted(number for _, number in redeemer_places) or len(numbers) < 2:
        return None
    issuer, redeemer = issuer_places[0][0], redeemer_places[0][0]
    workers = min(processes, len(numbers))
    return [[(issuer, n) for n in numbers[k::workers]] + [(redeemer, n) for n in
                                                          numbers[k::workers]]
            for k in range(workers)]


def read_in_parts(replayer: Replayer, processes: int) -> bool:
    """Read the issuer's and the redeemer's topics in worker processes and merge the parts
    into `replayer`; False (and `replayer` untouched) when the log must be read whole."""
    issuer, redeemer = replayer.topics_in_order()[:2]
    places = partitions_of(replayer.settings, [issuer, redeemer])
    plan = split_places([p for p in places if p[0] == issuer],
                        [p for p in places if p[0] == redeemer], processes)
    if plan is None:
        return False
    parts = _run_workers(replayer, plan)
    if any(part.books.needs_whole_log for part in parts):
        logger.info("a fact names a booklet of another partition: replaying in one process")
        return False
    merged = merge_parts(parts, replayer.chains.key)
    if merged is None:
        logger.info("parts overlap (a booklet or chain position in two partitions): "
                    "replaying in one process")
        return False
    books, chains = merged
    replayer.adopt(books, chains, parts)
    return True


def _run_workers(replayer: Replayer, plan: list[list[tuple[str, int]]]) -> list[Part]:
    # fork is cheapest, but only safe while this process runs no other thread
    method = "fork" if threading.active_count() == 1 else "spawn"
    # a fork or spawn context (both have Process): get_context of any str is typed BaseContext
    context = cast("ForkContext | SpawnContext", multiprocessing.get_context(method))
    pipes, workers = [], []
    for places in plan:
        receiving, sending = context.Pipe(duplex=False)
        worker = context.Process(target=_worker, name="audit-part", daemon=True, args=(
            sending, type(replayer), replayer.settings, replayer.options, replayer.chains.key,
            replayer.chains.sequence_limit, places))
        worker.start()
        sending.close()
        pipes.append(receiving)
        workers.append(worker)
    parts = []
    try:
        for receiving in pipes:
            outcome = pickle.loads(receiving.recv_bytes())
            if isinstance(outcome, BaseException):
                raise outcome
            parts.append(outcome)
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return parts


def _worker(sending: Any, replayer_class: type[Replayer], settings: Any, options: Any, key: int,
            sequence_limit: int, places: list[tuple[str, int]]) -> None:
    try:
        with collector_paused():
            payload = _read_part(replayer_class, settings, options, key, sequence_limit,
                                     places)
    except BaseException as error:  # noqa: BLE001 (handed to the parent, raised there)
        payload = pickle.dumps(error)
    sending.send_bytes(payload)
    sending.close()


def _read_part(replayer_class: type[Replayer], settings: Any, options: Any, key: int,
               sequence_limit: int, places: list[tuple[str, int]]) -> bytes:
    replayer = replayer_class(settings, options)
    replayer.chains = ChainVerifier(key)
    replayer.chains.sequence_limit = sequence_limit
    replayer.books.partial = True
    ends: dict[tuple[str, int], int] = {}
    for topic in dict.fromkeys(topic for topic, _ in places):
        mine = [place for place in places if place[0] == topic]
        for name, partition, records in read_record_batches(settings, [topic],
                                                            partitions=mine, ends=ends):
            replayer.ingest_batch(name, partition, records)
            if replayer.books.needs_whole_log:
                break
        if replayer.books.needs_whole_log:
            break
    replayer.canonical = None  # type: ignore[assignment]  # caches, not state
    return pickle.dumps(Part(replayer, ends), protocol=pickle.HIGHEST_PROTOCOL)


# ------------------------------------------------------------------ merging


def merge_parts(parts: list[Part], key: int) -> tuple[Books, ChainVerifier] | None:
    books = Books()
    chains = ChainVerifier(key)
    chains.sequence_limit = max(part.chains.sequence_limit for part in parts)
    for part in parts:
        if not _merge_books(books, part.books) or not _merge_chains(chains, part.chains):
            return None
    chains.slots = sum(len(chain.hashes) for chain in chains.streams.values())
    chains.sequence_limit = max(chains.sequence_limit, chains.slots)
    return books, chains


def _merge_books(merged: Books, part: Books) -> bool:
    collectivites = [merged.collectivite(siren).number for siren in part.collectivite_sirens]
    framings = [merged.framing(framing) for framing in part.framings]
    venues = [merged.venue(venue.siret) for venue in part.venues] or [0]
    streams = [merged.stream_number(name) for name in part.streams] or [0]
    if max(len(merged.collectivite_sirens), len(merged.framings), len(merged.streams)) > 65_535:
        merged._widen()
    booklet_offset, voucher_offset = len(merged.booklet_framing), merged.voucher_total
    if not _merge_booklet_tables(merged, part, booklet_offset):
        return False
    _extend_renumbered(merged.booklet_collectivite, part.booklet_collectivite, collectivites)
    _extend_renumbered(merged.booklet_framing, part.booklet_framing, framings)
    _extend_renumbered(merged.booklet_activation_stream, part.booklet_activation_stream,
                       streams)
    merged.booklet_sequence.extend(part.booklet_sequence)
    _extend_with(merged.booklet_first_voucher,
                 columns.numbers(part.booklet_first_voucher, len(part.booklet_first_voucher))
                 .astype(np.int64) + voucher_offset)
    merged.booklet_activated_key.extend(part.booklet_activated_key)
    merged.booklet_activation_sequence.extend(part.booklet_activation_sequence)
    merged.booklet_flags.extend(part.booklet_flags)
    merged.blocked_keys.update((booklet + booklet_offset, key)
                               for booklet, key in part.blocked_keys.items())
    merged.applied_blocks.update(booklet + booklet_offset for booklet in part.applied_blocks)
    merged.unreported_blocks.update((booklet + booklet_offset, named)
                                    for booklet, named in part.unreported_blocks.items())
    _merge_vouchers(merged, part, venues)
    merged.contested.update(
        (voucher + voucher_offset, [replace(fact, venue=venues[fact.venue]) for fact in facts])
        for voucher, facts in part.contested.items())
    for number, venue in enumerate(part.venues):
        target = venues[number]
        merged.venues[target].events.extend(venue.events)
        merged.venue_first_second[target] = min(merged.venue_first_second[target],
                                                part.venue_first_second[number])
    for bucket, more in zip(merged.event_fingerprints, part.event_fingerprints):
        bucket.extend(more)
    _merge_lists_and_counts(merged, part)
    return True


def _as_array(typecode: str, values: NDArray) -> array:
    """A numpy result as an `array` column of the books (their type)."""
    column = array(typecode)
    column.frombytes(values.astype(typecode).tobytes())
    return column


def _extend_with(column: array, values: NDArray) -> None:
    column.frombytes(values.astype(column.typecode).tobytes())


def _extend_renumbered(column: array, numbers: array, renumbering: list[int]) -> None:
    """`column` extended by `renumbering[n]` of each n of `numbers` (a part's registry
    numbers turned into the merged registry's)."""
    _extend_with(column, np.array(renumbering, dtype=np.int64)[
        columns.numbers(numbers, len(numbers))])


def _merge_booklet_tables(merged: Books, part: Books, booklet_offset: int) -> bool:
    for siren, collectivite in part.collectivites.items():
        target = merged.collectivites[siren]
        table, into = collectivite.booklets, target.booklets
        if len(into) < len(table):
            into.frombytes(bytes(4 * (len(table) - len(into))))
        theirs = columns.numbers(table, len(table)).astype(np.int64)
        ours = columns.numbers(into, len(into)).astype(np.int64)
        issued = theirs != 0
        if np.any(ours[:len(theirs)][issued] != 0):
            return False  # one booklet issued in two parts
        ours[:len(theirs)][issued] = theirs[issued] + booklet_offset
        into[:] = array(into.typecode, ours.astype(into.typecode).tobytes())
        target.envelope_events.extend(collectivite.envelope_events)
        target.redeemed_vouchers_recorded += collectivite.redeemed_vouchers_recorded
        target.redeemed_cents_recorded += collectivite.redeemed_cents_recorded
    return True


def _merge_vouchers(merged: Books, part: Books, venues: list[int]) -> None:
    total = merged.voucher_total
    for name in ("redeemed_second", "redeemed_venue", "redeemed_event"):
        column = getattr(merged, name)
        del column[total:]  # the unused capacity of the chunks
    count = part.voucher_total
    merged.redeemed_second.extend(part.redeemed_second[:count])
    if max(venues) > 65_535 and merged.redeemed_venue.typecode == "H":
        merged.redeemed_venue = array("I", merged.redeemed_venue)
    _extend_renumbered(merged.redeemed_venue, part.redeemed_venue[:count], venues)
    merged.redeemed_event.extend(part.redeemed_event[:count])
    merged.voucher_total = total + count


def _merge_lists_and_counts(merged: Books, part: Books) -> None:
    for name in ("statements", "closings", "checkpoints", "credit_notes", "findings",
                 "orphan_redemptions"):
        getattr(merged, name).extend(getattr(part, name))
    for name in ("event_count", "events_after_until", "events_of_other_collectivites"):
        setattr(merged, name, getattr(merged, name) + getattr(part, name))
    for name in ("counts_by_type", "rejections_by_reason"):
        table = getattr(merged, name)
        for label, count in getattr(part, name).items():
            table[label] = table.get(label, 0) + count
    merged.latest_micros = max(merged.latest_micros, part.latest_micros)


def _merge_chains(merged: ChainVerifier, part: ChainVerifier) -> bool:
    merged.findings.extend(part.findings)
    merged.duplicates += part.duplicates
    topics = np.array([merged.place(topic, 0, 0) >> 56 for topic in part.topics] or [0],
                      dtype=np.uint64)
    for name, chain in part.streams.items():
        places = columns.numbers(chain.pending_places, len(chain.pending_places))
        # (a place's topic number in its top 8 bits, renumbered through the merged topics)
        chain.pending_places = _as_array("Q", (topics[places >> np.uint64(56)] << np.uint64(56))
                                         | (places & np.uint64((1 << 56) - 1)))
        target = merged.streams.get(name)
        if target is None:
            merged.streams[name] = chain
            merged.by_raw_name[name.encode()] = chain
            continue
        if not _merge_stream(target, chain):
            return False
    for place, heads in part.partition_heads.items():
        into = merged.partition_heads.setdefault(place, {})
        for chain, sequence in heads.items():
            stream = merged.streams[chain.name]
            into[stream] = max(into.get(stream, 0), sequence)
    return True


def _merge_stream(target: StreamChain, chain: StreamChain) -> bool:
    ours, theirs = target.hashes, chain.hashes
    if len(ours) < len(theirs):
        ours.frombytes(bytes(4 * (len(theirs) - len(ours))))
    elif len(theirs) < len(ours):
        theirs = theirs + array("I", bytes(4 * (len(ours) - len(theirs))))
    mine, other = columns.numbers(ours, len(ours)), columns.numbers(theirs, len(theirs))
    if np.any((mine != 0) & (other != 0)):
        return False  # one chain position read in two parts
    target.hashes = _as_array("I", mine | other)
    target.pending_sequences.extend(chain.pending_sequences)
    target.pending_previous.extend(chain.pending_previous)
    target.pending_places.extend(chain.pending_places)
    if chain.highest > target.highest:
        target.highest, target.head_raw = chain.highest, chain.head_raw
    target.signed_through = max(target.signed_through, chain.signed_through)
    for month, first in chain.month_firsts.items():
        known = target.month_firsts.get(month)
        if known is None or first[0] < known[0]:
            target.month_firsts[month] = first
    return True


# ------------------------------------------------------------------ the end judgement


class Forked:
    """A pure function of the books run in a forked child while this process goes on: the
    child sees the books as they are at the fork (copy-on-write, nothing to send) and
    pickles its result back. Inline when forking is not safe (another thread runs, as in
    `--follow`) or not available."""

    def __init__(self, function: Any, *arguments: Any) -> None:
        self.result: Any = None
        self.reader: int | None = None
        self.child = 0
        if not hasattr(os, "fork") or threading.active_count() > 1:
            self.result = function(*arguments)
            return
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            os.close(reader)
            try:
                payload = pickle.dumps(function(*arguments), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as error:  # noqa: BLE001 (raised in the parent)
                payload = pickle.dumps(error)
            with os.fdopen(writer, "wb") as channel:
                channel.write(payload)
            os._exit(0)
        os.close(writer)
        self.reader, self.child = reader, child

    def get(self) -> Any:
        if self.reader is not None:
            with os.fdopen(self.reader, "rb") as channel:
                payload = channel.read()
            os.waitpid(self.child, 0)
            self.reader = None
            self.result = pickle.loads(payload)
            if isinstance(self.result, BaseException):
                raise self.result
        return self.result
