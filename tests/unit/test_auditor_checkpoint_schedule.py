"""Monthly checkpoints: which months are due in normal operation (`passnum audit --follow`),
the prefixes each one signs, and what verifying them against a replayed log finds. The
chains are built event by event through the replay's own chain verifier."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from passnum.core.codec import GENESIS_HASH, decode_event, encode, next_link
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.messages import AuditCheckpointSigned, VoucherRedeemed
from services.auditor import checkpoint
from services.auditor.books import Finding
from services.auditor.chain import NEW, ChainVerifier, StreamChain
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import (
    ChainedRecord,
    in_read_order,
    rechained,
    sample_ledger,
)

HASH = "a" * 64
KEY = Ed25519PrivateKey.generate()
AT = datetime(2026, 4, 2, 8, tzinfo=timezone.utc)
# Names that are not substrings of one another, as the findings name streams in text.
FIRST, SECOND, THIRD = "issuer/commands/0", "redeemer/commands/1", "redeemer/commands/2"


def chain(name: str, months: dict[str, int], highest: int) -> StreamChain:
    return StreamChain(name, month_firsts={month: (first, HASH) for month, first in
                                           months.items()}, highest=highest)


class Log:
    """Streams chained as the processors chain them, read in order by a chain verifier (the
    replay's), each event noted in the month it is dated in."""

    def __init__(self) -> None:
        self.chains = ChainVerifier()
        self.offset = 0

    def append(self, stream: str, month: str, value: bytes | None = None) -> None:
        known = self.chains.streams.get(stream)
        sequence = known.highest + 1 if known else 1
        previous = known.head_hash if known else GENESIS_HASH
        value = value or f"{stream}#{sequence}".encode()
        link = next_link(stream, sequence, previous, value)
        assert self.chains.admit(stream, sequence, previous, link.hash, value, "events", 0,
                                 self.offset) == NEW
        self.offset += 1
        self.chains.note_month(stream, sequence, month, previous)

    def extend(self, stream: str, months: list[str]) -> Log:
        for month in months:
            self.append(stream, month)
        return self


def two_streams(changed: bytes | None = None) -> Log:
    """FIRST: three events in January, two in February (its second one `changed`, when
    given); SECOND: two in January, then quiet."""
    log = Log().extend(FIRST, ["2026-01"] * 3)
    log.append(FIRST, "2026-02", changed)
    log.append(FIRST, "2026-02")
    return log.extend(SECOND, ["2026-01"] * 2)


def signed_february(log: Log) -> AuditCheckpointSigned:
    return checkpoint.sign(KEY, checkpoint.month_root(log.chains.streams, "2026-02"), AT)


def mismatch(findings: list[Finding]) -> str:
    """The detail of the one checkpoint_mismatch among `findings`."""
    assert [finding.code for finding in findings] == ["checkpoint_mismatch"], findings
    return findings[0].detail


# ------------------------------------------------------------------ which months are due


def test_a_quiet_stream_no_longer_holds_back_a_month() -> None:
    chains = {"a": chain("a", {"2026-01": 1, "2026-02": 4, "2026-03": 9}, 12),
              "b": chain("b", {"2026-01": 1, "2026-02": 3}, 5)}
    # b has nothing dated after February: February and March are due all the same
    assert checkpoint.due_months(chains, set(), "2026-04") == ["2026-01", "2026-02", "2026-03"]
    assert checkpoint.due_months(chains, {"2026-01", "2026-03"}, "2026-04") == ["2026-02"]
    # the current month is never due
    assert checkpoint.due_months(chains, set(), "2026-03") == ["2026-01", "2026-02"]


def test_due_months_are_signed_once_over_prefixes_a_replay_verifies() -> None:
    log = two_streams()
    signed: set[str] = set()
    now = datetime(2026, 3, 10, 8, tzinfo=timezone.utc)
    events = checkpoint.sign_due_months(log.chains.streams, signed, KEY, now)
    assert [event.month for event in events] == ["2026-01", "2026-02"]
    january, february = events
    first, second = log.chains.streams[FIRST], log.chains.streams[SECOND]
    # FIRST is cut before February; SECOND, quiet, is covered up to its head
    assert january.prefixes == (f"{FIRST}|3|{first.month_firsts['2026-02'][1]}",
                                f"{SECOND}|2|{second.head_hash}")
    assert february.prefixes == (f"{FIRST}|5|{first.head_hash}",
                                 f"{SECOND}|2|{second.head_hash}")
    assert (january.event_count, february.event_count) == (5, 7)
    assert february.root_hash == checkpoint.root_of(february.prefixes)
    for event in events:
        assert checkpoint.verify(event, log.chains, frozenset()) == []
    assert checkpoint.sign_due_months(log.chains.streams, signed, KEY, now) == []


# ------------------------------------------------------------------ verifying the prefixes


def test_a_quiet_stream_receiving_an_event_dated_in_the_signed_month_changes_nothing() -> None:
    log = two_streams()
    february = signed_february(log)
    log.extend(SECOND, ["2026-02", "2026-02", "2026-03"])  # late, then moving on
    log.extend(FIRST, ["2026-02", "2026-03"])  # dated in February after March had begun
    assert checkpoint.verify(february, log.chains, frozenset()) == []


def test_a_changed_event_inside_a_covered_prefix_is_a_mismatch_naming_its_stream() -> None:
    february = signed_february(two_streams())
    # the same log, FIRST#4 changed and everything after it re-chained consistently
    rewritten = two_streams(changed=b"another payload")
    detail = mismatch(checkpoint.verify(february, rewritten.chains, frozenset()))
    assert f"{FIRST}#5 is not the event signed" in detail and SECOND not in detail
    # a change after the covered sequence is none of the checkpoint's business
    january = checkpoint.sign(KEY, checkpoint.month_root(
        two_streams().chains.streams, "2026-01"), AT)
    assert checkpoint.verify(january, rewritten.chains, frozenset()) == []


def test_a_stream_shorter_than_its_line_or_gone_from_the_log_is_a_mismatch() -> None:
    february = signed_february(two_streams())
    cut = Log().extend(FIRST, ["2026-01"] * 3 + ["2026-02"]).extend(SECOND, ["2026-01"] * 2)
    assert f"{FIRST} ends at #4, signed to #5" in mismatch(
        checkpoint.verify(february, cut.chains, frozenset()))
    gone = Log().extend(FIRST, ["2026-01"] * 3 + ["2026-02"] * 2)
    assert f"{SECOND} is not in the log" in mismatch(
        checkpoint.verify(february, gone.chains, frozenset()))


def test_a_stream_that_starts_after_the_checkpoint_is_not_covered_by_it() -> None:
    """A partition's first command may come after a month was signed and carry a scan
    dated in that month (an offline file): its stream is not the checkpoint's to judge."""
    log = two_streams()
    february = signed_february(log)
    log.extend(THIRD, ["2026-02", "2026-03"])  # began after the signature, back-dated
    assert checkpoint.verify(february, log.chains, frozenset()) == []


def test_lines_that_are_not_the_signed_root_make_an_invalid_signature() -> None:
    log = two_streams()
    february = signed_february(log)
    first = log.chains.streams[FIRST]
    shorter = february.model_copy(update={"prefixes": (
        f"{FIRST}|3|{first.month_firsts['2026-02'][1]}", february.prefixes[1])})
    assert [f.code for f in checkpoint.verify(shorter, log.chains, frozenset())] == [
        "checkpoint_signature_invalid"]


# ------------------------------------------------------------------ the older form


def test_a_checkpoint_without_prefixes_verifies_by_the_date_cut_as_before() -> None:
    log = two_streams()
    old = checkpoint.sign(KEY, replace(checkpoint.month_root(log.chains.streams, "2026-02"),
                                       lines=()), AT)
    # as written before the prefixes were carried: the JSON has no such field
    document = json.loads(encode(old))
    del document["prefixes"]
    read_back = decode_event(json.dumps(document).encode())
    assert isinstance(read_back, AuditCheckpointSigned) and read_back.prefixes == ()
    assert checkpoint.verify(read_back, log.chains, frozenset()) == []
    log.append(SECOND, "2026-02")  # the quiet stream's late event moves the date cut
    assert "history rewritten" in mismatch(checkpoint.verify(read_back, log.chains,
                                                             frozenset()))


# ------------------------------------------------------------------ through the replay

SETTINGS = Settings()
TOPOLOGY = topology_for(SETTINGS)


def test_the_replay_verifies_a_checkpoint_after_a_late_event_on_a_quiet_stream() -> None:
    sample = sample_ledger(TOPOLOGY)  # everything is dated March 2026: every stream quiet
    replayer = replay(sample.records)
    march = checkpoint.sign(KEY, checkpoint.month_root(replayer.chains.streams, "2026-03"),
                            AT)
    assert {line.split("|")[0] for line in march.prefixes} == set(replayer.chains.streams)
    published = ChainedRecord(TOPOLOGY.auditor_events.name, 0, b"", encode(march), ())
    redeemed = next(json.loads(r.value) for r in sample.records
                    if json.loads(r.value)["type"] == "voucher_redeemed")
    late = VoucherRedeemed(**{**redeemed, "voucher_id": redeemed["voucher_id"][:-2] + "09",
                              "request_id": "late", "event_id": "late-redemption"})
    records = sample.records + sample.writer.redeemer(redeemed["booklet_id"].encode(), [late])
    report = replay(records + [published]).judge()
    assert report.sound, report.findings
    assert [c["root_hash"] for c in report.checkpoints] == [march.root_hash]


def test_the_replay_names_the_stream_of_a_rewritten_event_under_a_checkpoint() -> None:
    sample = sample_ledger(TOPOLOGY)
    march = checkpoint.sign(KEY, checkpoint.month_root(replay(sample.records).chains.streams,
                                                       "2026-03"), AT)
    published = ChainedRecord(TOPOLOGY.auditor_events.name, 0, b"", encode(march), ())
    index = next(i for i, r in enumerate(sample.records)
                 if json.loads(r.value)["type"] == "voucher_redeemed")
    stream = sample.records[index].headers[0][1].split(b"|")[0].decode()
    rewritten = rechained(sample.records, index, sample.records[index].value.replace(
        b'"request_id":"', b'"request_id":"x', 1))
    report = replay(rewritten + [published]).judge()
    named = [f for f in report.findings if f.code == "checkpoint_mismatch"]
    assert len(named) == 1 and named[0].event_ids == (march.event_id,), report.findings
    assert f"{stream}#" in named[0].detail and "history rewritten" in named[0].detail
    assert not {"altered_event", "broken_link"} & {f.code for f in report.findings}


def replay(records: list[ChainedRecord]) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.ingest(in_read_order(records, replayer.topics_in_order()))
    return replayer
