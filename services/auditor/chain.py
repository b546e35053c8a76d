"""Hash-chain verification, pure: which records are new facts, which are re-deliveries, and
where the chain of a stream was modified, cut, reordered or added to.

Each processor input partition is a stream `processor/topic/partition`; its events carry
`stream|sequence|previous_hash|sha256(previous_hash || value bytes)` (docs/processing.md).
One stream's events are spread over several output partitions, so they arrive here in any
order: a link is checked as soon as both of its ends have been seen.

Memory: per stream, the 64-bit prefix of every link hash, indexed by sequence (8 bytes per
event). That prefix is the event's compact identity: a record whose (stream, sequence) was
already seen is a re-delivery when its hash is the same (its bytes are then the same, hence
its event_id), and a finding otherwise. No set of event ids is needed to de-duplicate.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass, field

from passnum.codec import GENESIS_HASH

NEW = 0
DUPLICATE = 1
REJECTED = 2

_GROWTH = 65_536
_ZEROS = array("Q", bytes(8 * _GROWTH))


def fingerprint(hex_digest: str) -> int:
    """64-bit prefix of a hex digest; never 0, which marks "not seen"."""
    return int(hex_digest[:16], 16) | 1


GENESIS_FINGERPRINT = fingerprint(GENESIS_HASH)


@dataclass(frozen=True)
class ChainFinding:
    code: str
    detail: str
    event_ids: tuple[str, ...] = ()


@dataclass
class StreamChain:
    name: str
    hashes: array = field(default_factory=lambda: array("Q"))
    # sequence -> (fingerprint of its previous_hash, where it was read): links whose earlier
    # end has not arrived yet. What is left at the end names a missing event.
    pending_links: dict[int, tuple[int, str]] = field(default_factory=dict)
    highest: int = 0
    # Per month (UTC, of occurred_at): the lowest sequence dated in it and that event's
    # previous_hash, i.e. the head of the chain just before it (see `cut_before`).
    month_firsts: dict[str, tuple[int, str]] = field(default_factory=dict)
    # The last full hash of the stream, for the live comparison with processor positions.
    head_hash: str = GENESIS_HASH


class ChainVerifier:
    def __init__(self) -> None:
        self.streams: dict[str, StreamChain] = {}
        self.findings: list[ChainFinding] = []
        self.duplicates = 0
        # (stream, topic, partition) -> highest sequence read there: within one output
        # partition a stream's events are published in sequence order (outbox id order),
        # re-publications aside, so a lower sequence that is new is a reordered record.
        self.partition_heads: dict[tuple[str, str, int], int] = {}

    def admit(self, stream_name: str, sequence: int, previous_hash: str, digest: str,
              value: bytes, topic: str, partition: int, offset: int) -> int:
        """NEW, DUPLICATE or REJECTED (with a finding) for one record's chain link."""
        where = f"{topic}[{partition}]@{offset}"
        if hashlib.sha256(previous_hash.encode() + value).hexdigest() != digest:
            self.findings.append(ChainFinding(
                "altered_event", f"{where} {stream_name}#{sequence}: the value does not "
                "hash to its chain link (modified payload or forged link)"))
            return REJECTED
        chain = self.streams.get(stream_name)
        if chain is None:
            chain = self.streams[stream_name] = StreamChain(stream_name)
        hashes = chain.hashes
        index = sequence - 1
        if index < 0:
            self.findings.append(ChainFinding("broken_link", f"{where}: sequence {sequence}"))
            return REJECTED
        while index >= len(hashes):
            hashes.extend(_ZEROS)
        current = fingerprint(digest)
        known = hashes[index]
        if known:
            if known == current:
                self.duplicates += 1
                return DUPLICATE
            self.findings.append(ChainFinding(
                "conflicting_events", f"{where}: a second, different event claims "
                f"{stream_name}#{sequence} (injected or replaced)"))
            return REJECTED
        hashes[index] = current
        self._link(chain, sequence, fingerprint(previous_hash), current, where)
        if sequence > chain.highest:
            chain.highest = sequence
            chain.head_hash = digest
        self._check_partition_order(stream_name, sequence, topic, partition, where)
        return NEW

    def _link(self, chain: StreamChain, sequence: int, previous: int, current: int,
              where: str) -> None:
        if sequence == 1:
            if previous != GENESIS_FINGERPRINT:
                self.findings.append(ChainFinding(
                    "broken_link", f"{where} {chain.name}#1 does not start from genesis"))
        else:
            before = chain.hashes[sequence - 2]
            if before == 0:
                chain.pending_links[sequence] = (previous, where)
            elif before != previous:
                self.findings.append(ChainFinding(
                    "broken_link", f"{where} {chain.name}#{sequence}: previous_hash is not "
                    f"the hash of #{sequence - 1}"))
        waiting = chain.pending_links.pop(sequence + 1, None)
        if waiting is not None and waiting[0] != current:
            self.findings.append(ChainFinding(
                "broken_link", f"{waiting[1]} {chain.name}#{sequence + 1}: previous_hash is "
                f"not the hash of #{sequence} ({where})"))

    def _check_partition_order(self, stream_name: str, sequence: int, topic: str,
                               partition: int, where: str) -> None:
        place = (stream_name, topic, partition)
        highest = self.partition_heads.get(place, 0)
        if sequence < highest:
            self.findings.append(ChainFinding(
                "reordered_event", f"{where} {stream_name}#{sequence} comes after "
                f"#{highest} in the same partition"))
        else:
            self.partition_heads[place] = sequence

    def note_month(self, stream_name: str, sequence: int, month: str,
                   previous_hash: str) -> None:
        chain = self.streams[stream_name]
        first = chain.month_firsts.get(month)
        if first is None or sequence < first[0]:
            chain.month_firsts[month] = (sequence, previous_hash)

    def finish(self) -> list[ChainFinding]:
        """Every finding so far, plus those about events that have not arrived: gaps, and
        links left waiting. Does not change the verifier (a follower calls it each cycle)."""
        missing: list[ChainFinding] = []
        for name in sorted(self.streams):
            chain = self.streams[name]
            for sequence, (_, where) in sorted(chain.pending_links.items()):
                missing.append(ChainFinding(
                    "missing_event", f"{chain.name}#{sequence - 1} is missing: "
                    f"#{sequence} ({where}) links to an event that is not in the log"))
            self._report_gaps(chain, missing)
        return self.findings + missing

    def _report_gaps(self, chain: StreamChain, missing: list[ChainFinding]) -> None:
        hashes = chain.hashes
        start = 0
        while True:
            try:
                gap = hashes.index(0, start, chain.highest)
            except ValueError:
                return
            end = gap
            while end < chain.highest and hashes[end] == 0:
                end += 1
            # The last missing sequence of a gap was already named by its waiting link.
            last = end - 1 if (end + 1) in chain.pending_links else end
            if last > gap:
                missing.append(ChainFinding(
                    "missing_event", f"{chain.name}#{gap + 1}..#{last} missing"))
            start = end

    def heads(self) -> dict[str, tuple[int, str]]:
        return {name: (chain.highest, chain.head_hash)
                for name, chain in sorted(self.streams.items())}

    def memory_bytes(self) -> int:
        return sum(chain.hashes.buffer_info()[1] * 8 for chain in self.streams.values())


def cut_before(chain: StreamChain, month: str) -> tuple[int, str]:
    """(sequence, hash) of the chain prefix that a checkpoint of `month` covers: every event
    before the first one dated after the month (the whole chain if none is). A prefix, so
    that events dated in the month but appended later fall in the next checkpoint, and a
    signed root never changes once every stream has moved past the month."""
    later = [first for first_month, first in chain.month_firsts.items() if first_month > month]
    if later:
        sequence, previous_hash = min(later)
        return sequence - 1, previous_hash
    return chain.highest, chain.head_hash
