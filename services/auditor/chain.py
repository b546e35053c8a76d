"""Hash-chain verification, pure: which records are new facts, which are re-deliveries, and
where the chain of a stream was modified, cut, reordered or added to.

Each processor input partition is a stream `processor/topic/partition`; its events carry
`stream|sequence|previous_hash|sha256(previous_hash || value bytes)` (docs/processing.md).
One stream's events are spread over several output partitions, so they arrive here in any
order: a link is checked as soon as both of its ends have been seen.

Memory: per stream, a 32-bit keyed fingerprint of every link hash, indexed by sequence
(4 bytes per event). That fingerprint is the event's compact identity: a record whose
(stream, sequence) was already seen is a re-delivery when its fingerprint is the same (its
bytes are then the same, hence its event_id), and a finding otherwise; a link holds when
the fingerprint of its previous_hash is the one stored at the sequence before. No set of
event ids is needed to de-duplicate.

Why 32 bits are enough here: fingerprints are only ever compared at one sequence of one
stream (never searched among millions, so no birthday bound), and they are keyed:
multiply-shift hashing (Dietzfelbinger) of the hash's leading 64 bits by a random odd
multiplier drawn for each replay. The log is written before the key exists, so whoever
forged a record cannot aim at a collision: for any two different link hashes, the chance
that their fingerprints agree is at most 2^-31, per forged record, instead of the 2^-32
an unkeyed 32-bit prefix would give to random records only (a forger could grind those).
"""

from __future__ import annotations

import secrets
from array import array
from binascii import hexlify
from dataclasses import dataclass, field
from hashlib import sha256

from passnum.core.codec import GENESIS_HASH

NEW = 0
DUPLICATE = 1
REJECTED = 2
UNCHAINED = 3  # no valid `passnum-chain` header

_GROWTH = 16_384
# Chain positions (over all streams) allowed before the log's size is known: 64 MB.
DEFAULT_SEQUENCE_LIMIT = 1 << 24
SEQUENCE_MARGIN = 1 << 20
_MASK_64 = (1 << 64) - 1


@dataclass(frozen=True)
class ChainFinding:
    code: str
    detail: str
    event_ids: tuple[str, ...] = ()


@dataclass(eq=False)  # hashed by identity: a key of the partition heads
class StreamChain:
    name: str
    hashes: array = field(default_factory=lambda: array("I"))
    # Links whose earlier end had not arrived when they were read: sequence, fingerprint of
    # its previous_hash, where it was read (see `ChainVerifier.place`), 16 bytes each.
    # Checked when the verifier settles them; what is left then names a missing event.
    pending_sequences: array = field(default_factory=lambda: array("I"))
    pending_previous: array = field(default_factory=lambda: array("I"))
    pending_places: array = field(default_factory=lambda: array("Q"))
    highest: int = 0
    # Per month (UTC, of occurred_at): the lowest sequence dated in it and that event's
    # previous_hash, i.e. the head of the chain just before it (see `cut_before`).
    month_firsts: dict[str, tuple[int, str]] = field(default_factory=dict)
    # The last full hash of the stream (ASCII bytes of the header), for the live comparison
    # with processor positions and the checkpoints.
    head_raw: bytes = GENESIS_HASH.encode()
    # The highest sequence whose head signature verified (passnum.core.head_signatures); the
    # events after it were not signed by a processor's key.
    signed_through: int = 0

    @property
    def head_hash(self) -> str:
        return self.head_raw.decode()


class ChainVerifier:
    def __init__(self, key: int | None = None) -> None:
        # The fingerprint key: random per replay (see the module's docstring).
        self.key = (secrets.randbits(64) if key is None else key) | 1
        self.genesis = self.fingerprint(GENESIS_HASH.encode())
        self.streams: dict[str, StreamChain] = {}
        self.findings: list[ChainFinding] = []
        self.duplicates = 0
        # (topic, partition) -> stream -> highest sequence read there: within one output
        # partition a stream's events are published in sequence order (outbox id order),
        # re-publications aside, so a lower sequence that is new is a reordered record.
        self.partition_heads: dict[tuple[str, int], dict[StreamChain, int]] = {}
        self.by_raw_name: dict[bytes, StreamChain] = {}  # the header's bytes -> chain
        self.topics: list[str] = []
        self.topic_numbers: dict[str, int] = {}
        # Chain positions allocated over all streams (4 bytes each), and the most allowed:
        # a forged record claiming sequence 10^12 must be a finding, not an allocation.
        # The replay sets the limit from the log's size (`limit_sequences`).
        self.slots = 0
        self.sequence_limit = DEFAULT_SEQUENCE_LIMIT

    def limit_sequences(self, records_in_log: int) -> None:
        """Every event of a sound log is one record, so its streams' sequences add up to at
        most the log's record count: allow that twice over (the log may grow while it is
        read), plus a margin for small logs."""
        self.sequence_limit = max(self.slots, 2 * records_in_log + SEQUENCE_MARGIN)

    def fingerprint(self, hex_digest: bytes) -> int:
        """32 keyed bits of a link hash (ASCII hex); never 0, which marks "not seen"."""
        return (((int(hex_digest[:16], 16) * self.key) & _MASK_64) >> 32) | 1

    def admit(self, stream_name: str, sequence: int, previous_hash: str, digest: str,
              value: bytes, topic: str, partition: int, offset: int) -> int:
        """NEW, DUPLICATE or REJECTED (with a finding) for one record's chain link."""
        return self.admit_link(stream_name.encode(), sequence, previous_hash.encode(),
                               digest.encode(), value, topic, partition, offset)

    def admit_header(self, header: bytes, value: bytes, topic: str, partition: int,
                     offset: int) -> tuple[int, StreamChain | None, int, bytes]:
        """(verdict, chain, sequence, previous hash) for the raw `passnum-chain` header
        bytes; verdict UNCHAINED when the header is not a valid link."""
        parts = header.split(b"|")
        if len(parts) != 4 or not header.isascii():
            return UNCHAINED, None, 0, b""
        stream, sequence_text, previous_hash, digest = parts
        if len(previous_hash) != 64 or len(digest) != 64:
            return UNCHAINED, None, 0, b""
        try:
            sequence = int(sequence_text)
        except ValueError:
            return UNCHAINED, None, 0, b""
        verdict = self.admit_link(stream, sequence, previous_hash, digest, value, topic,
                                  partition, offset)
        return verdict, self.by_raw_name.get(stream), sequence, previous_hash

    def heads_in(self, topic: str, partition: int) -> dict[StreamChain, int]:
        """Per stream, the highest sequence read in one output partition so far."""
        place = (topic, partition)
        heads = self.partition_heads.get(place)
        if heads is None:
            heads = self.partition_heads[place] = {}
        return heads

    def admit_link(self, stream: bytes, sequence: int, previous_hash: bytes, digest: bytes,
                   value: bytes, topic: str, partition: int, offset: int,
                   heads: dict[StreamChain, int] | None = None) -> int:
        """`admit` on the header's own bytes (ASCII), without decoding them; `heads` is
        `heads_in(topic, partition)`, passed by callers that admit a partition's batch."""
        if hexlify(sha256(previous_hash + value).digest()) != digest:
            self.findings.append(ChainFinding(
                "altered_event", f"{topic}[{partition}]@{offset} {stream.decode()}#{sequence}: "
                "the value does not hash to its chain link (modified payload or forged link)"))
            return REJECTED
        chain = self.by_raw_name.get(stream) or self.chain_of(stream)
        index = sequence - 1
        if index < 0:
            self.findings.append(ChainFinding(
                "broken_link", f"{topic}[{partition}]@{offset}: sequence {sequence}"))
            return REJECTED
        hashes = chain.hashes
        if sequence > len(hashes) and not self._room_for(chain, sequence):
            self.findings.append(ChainFinding(
                "broken_link", f"{topic}[{partition}]@{offset} {chain.name}#{sequence}: "
                f"beyond any sequence this log can hold ({self.sequence_limit} chain positions "
                "in all; the link cannot lead back to the chain)"))
            return REJECTED
        current = (((int(digest[:16], 16) * self.key) & _MASK_64) >> 32) | 1
        known = hashes[index]
        if known:
            if known == current:
                self.duplicates += 1
                return DUPLICATE
            self.findings.append(ChainFinding(
                "conflicting_events", f"{topic}[{partition}]@{offset}: a second, different "
                f"event claims {chain.name}#{sequence} (injected or replaced)"))
            return REJECTED
        if sequence == chain.highest + 1 and previous_hash == chain.head_raw:
            # The common case, read in order: the link is the whole previous hash (the
            # genesis hash for #1), nothing to look up.
            hashes[index] = current
        elif not self._link(chain, sequence, previous_hash, current, topic, partition, offset):
            return REJECTED
        if sequence > chain.highest:
            chain.highest = sequence
            chain.head_raw = digest
        if heads is None:
            heads = self.heads_in(topic, partition)
        highest = heads.get(chain, 0)
        if sequence < highest:
            self.findings.append(ChainFinding(
                "reordered_event", f"{topic}[{partition}]@{offset} {chain.name}#{sequence} "
                f"comes after #{highest} in the same partition"))
        else:
            heads[chain] = sequence
        return NEW

    def chain_of(self, stream: bytes) -> StreamChain:
        chain = self.by_raw_name.get(stream)
        if chain is None:
            name = stream.decode()
            chain = self.streams.get(name)
            if chain is None:
                chain = self.streams[name] = StreamChain(name)
            self.by_raw_name[stream] = chain
        return chain

    def _room_for(self, chain: StreamChain, sequence: int) -> bool:
        """Grow the stream's fingerprints to hold `sequence`, within the slot budget; False
        (nothing allocated) for a sequence this log cannot hold (see `sequence_limit`)."""
        hashes = chain.hashes
        if sequence - len(hashes) > self.sequence_limit - self.slots:
            return False
        # The capacity is a function of the sequence alone (powers of two up to a chunk,
        # then whole chunks), so that the memory figure of the report does not depend on
        # how records were batched; a forged stream cannot make a small log allocate much.
        grown = (max(16, 1 << (sequence - 1).bit_length()) if sequence <= _GROWTH
                 else -(-sequence // _GROWTH) * _GROWTH)
        grown = min(grown, len(hashes) + self.sequence_limit - self.slots)
        self.slots += grown - len(hashes)
        hashes.frombytes(bytes(4 * (grown - len(hashes))))
        return True

    def _link(self, chain: StreamChain, sequence: int, previous_hash: bytes, current: int,
              topic: str, partition: int, offset: int) -> bool:
        """Record a new event read out of order and check (or leave waiting) its link;
        False, with a finding, when its previous_hash is not a hash at all."""
        try:
            previous = (((int(previous_hash[:16], 16) * self.key) & _MASK_64) >> 32) | 1
        except ValueError:
            self.findings.append(ChainFinding(
                "broken_link", f"{topic}[{partition}]@{offset} {chain.name}#{sequence}: "
                "previous_hash is not hexadecimal"))
            return False
        hashes = chain.hashes
        hashes[sequence - 1] = current
        if sequence == 1:
            if previous != self.genesis:
                self._broken_genesis(chain, topic, partition, offset)
        else:
            before = hashes[sequence - 2]
            if before == 0:
                chain.pending_sequences.append(sequence)
                chain.pending_previous.append(previous)
                chain.pending_places.append(self.place(topic, partition, offset))
            elif before != previous:
                self._broken_previous(chain, sequence, topic, partition, offset)
        return True

    def _broken_genesis(self, chain: StreamChain, topic: str, partition: int,
                        offset: int) -> None:
        self.findings.append(ChainFinding(
            "broken_link", f"{topic}[{partition}]@{offset} {chain.name}#1 does not start "
            "from genesis"))

    def _broken_previous(self, chain: StreamChain, sequence: int, topic: str, partition: int,
                         offset: int) -> None:
        self.findings.append(ChainFinding(
            "broken_link", f"{topic}[{partition}]@{offset} {chain.name}#{sequence}: "
            f"previous_hash is not the hash of #{sequence - 1}"))

    def place(self, topic: str, partition: int, offset: int) -> int:
        number = self.topic_numbers.get(topic)
        if number is None:
            number = self.topic_numbers[topic] = len(self.topics)
            self.topics.append(topic)
        return (number << 56) | (partition << 40) | offset

    def where(self, place: int) -> str:
        return (f"{self.topics[place >> 56]}[{(place >> 40) & 0xFFFF}]@"
                f"{place & ((1 << 40) - 1)}")

    def settle(self) -> None:
        """Check every waiting link whose earlier end has arrived since (a broken one is a
        finding); keep the others waiting."""
        for chain in self.streams.values():
            if not chain.pending_sequences:
                continue
            waiting = (array("I"), array("I"), array("Q"))
            hashes = chain.hashes
            for sequence, previous, place in zip(chain.pending_sequences,
                                                 chain.pending_previous, chain.pending_places):
                before = hashes[sequence - 2]
                if before == 0:
                    waiting[0].append(sequence)
                    waiting[1].append(previous)
                    waiting[2].append(place)
                elif before != previous:
                    self.findings.append(ChainFinding(
                        "broken_link", f"{self.where(place)} {chain.name}#{sequence}: "
                        f"previous_hash is not the hash of #{sequence - 1}"))
            chain.pending_sequences, chain.pending_previous, chain.pending_places = waiting

    def note_month(self, stream_name: str, sequence: int, month: str,
                   previous_hash: str) -> None:
        chain = self.streams[stream_name]
        first = chain.month_firsts.get(month)
        if first is None or sequence < first[0]:
            chain.month_firsts[month] = (sequence, previous_hash)

    def finish(self) -> list[ChainFinding]:
        """Every finding so far, plus those about events that have not arrived: gaps, and
        links left waiting. Settles the waiting links first; a follower calls it each cycle
        (a link is settled once, so no finding is repeated)."""
        self.settle()
        missing: list[ChainFinding] = []
        for name in sorted(self.streams):
            chain = self.streams[name]
            waiting = sorted(zip(chain.pending_sequences, chain.pending_places))
            for sequence, place in waiting:
                missing.append(ChainFinding(
                    "missing_event", f"{chain.name}#{sequence - 1} is missing: "
                    f"#{sequence} ({self.where(place)}) links to an event that is not in the "
                    "log"))
            self._report_gaps(chain, missing, {sequence for sequence, _ in waiting})
        return self.findings + missing

    def _report_gaps(self, chain: StreamChain, missing: list[ChainFinding],
                     waiting: set[int]) -> None:
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
            last = end - 1 if (end + 1) in waiting else end
            if last > gap:
                missing.append(ChainFinding(
                    "missing_event", f"{chain.name}#{gap + 1}..#{last} missing"))
            start = end

    def heads(self) -> dict[str, tuple[int, str]]:
        return {name: (chain.highest, chain.head_hash)
                for name, chain in sorted(self.streams.items())}

    def trim(self) -> None:
        """Each stream's fingerprints cut to its highest sequence (the growth's unused tail
        freed), at the end of a read: what is held between reads is what the chain holds.
        Every sequence admitted is at most `highest`, so nothing read is lost."""
        for chain in self.streams.values():
            hashes = chain.hashes
            if len(hashes) > chain.highest:
                chain.hashes = hashes[:chain.highest]  # (a slice is allocated exactly)
                self.slots -= len(hashes) - chain.highest

    def memory_bytes(self) -> int:
        return sum(column.buffer_info()[1] * column.itemsize
                   for chain in self.streams.values()
                   for column in (chain.hashes, chain.pending_sequences, chain.pending_previous,
                                  chain.pending_places))


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
