"""The batch path (services/auditor/bulk.py) against the record-by-record path: on random
logs, clean or tampered, the books, the chains' findings and the report are the same; and a
forged chain sequence far beyond the log is a finding, never an allocation."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from passnum.codec import CHAIN_HEADER, GENESIS_HASH, next_link
from services.auditor.chain import DEFAULT_SEQUENCE_LIMIT, ChainVerifier
from services.auditor.chained_log import ChainedRecord, sample_ledger
from tests.unit.test_auditor_fast_path import (
    FAST,
    TOPOLOGY,
    book_columns,
    chained,
    ledgers,
    replay,
)

TAMPERING = ["none", "none", "drop", "duplicate", "swap", "alter", "inject", "newline"]


def tampered(records: list[ChainedRecord], how: str, at: int) -> list[ChainedRecord]:
    records = list(records)
    at %= len(records)
    if how == "drop":
        del records[at]
    elif how == "duplicate":
        records.insert(at, records[at])
    elif how == "swap":  # with the next record of the same partition: a reorder
        place = (records[at].topic, records[at].partition)
        later = [i for i in range(at + 1, len(records))
                 if (records[i].topic, records[i].partition) == place]
        if later:
            records[at], records[later[0]] = records[later[0]], records[at]
    elif how == "alter":
        records[at] = replace(records[at], value=records[at].value.replace(b"1", b"2", 1))
    elif how == "newline":  # a value holding a newline: the joined values lose their lines
        records[at] = replace(records[at], value=records[at].value + b"\n")
    elif how == "inject":  # a well-linked record of a stream no processor wrote
        value = records[at].value
        link = next_link("forger/x/0", 1, GENESIS_HASH, value)
        records.insert(at, replace(records[at], headers=((CHAIN_HEADER, link.to_header()),)))
    return records


def without_noted(columns: dict) -> dict:
    columns.pop("noted")
    return columns


@FAST
@given(ledgers(), st.lists(st.sampled_from(["canonical", "canonical", "canonical", "spaced",
                                            "extra"]), min_size=1, max_size=4),
       st.sampled_from(TAMPERING), st.integers(0, 10_000))
def test_the_batch_path_folds_like_one_record_at_a_time(events, encodings, how, at) -> None:  # type: ignore[no-untyped-def]
    records = tampered(chained(events, encodings), how, at)
    batch = replay(records, canonical=True, columnar=True)
    single = replay(records, canonical=True, columnar=False)
    assert without_noted(book_columns(batch)) == without_noted(book_columns(single))
    assert sorted(batch.chains.findings, key=repr) == sorted(single.chains.findings, key=repr)
    assert batch.judge().to_json() == single.judge().to_json()


def test_the_sample_ledger_goes_through_the_batch_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not vacuous: runs of redemptions are folded at once, and agree."""
    from services.auditor import books as books_module
    from services.auditor import canonical as canonical_module

    folded: list[int] = []
    fold = books_module.fold_redemptions

    def counting(books, run, planned, venues):  # type: ignore[no-untyped-def]
        folded.append(len(run.sirens))
        fold(books, run, planned, venues)

    monkeypatch.setattr(canonical_module, "fold_redemptions", counting)
    records = sample_ledger(TOPOLOGY).records
    batch = replay(records, canonical=True, columnar=True)
    assert sum(folded) == batch.books.counts_by_type["voucher_redeemed"] > 0
    single = replay(records, canonical=True, columnar=False)
    assert batch.judge().to_json() == single.judge().to_json()


def test_a_sequence_far_beyond_the_log_is_a_finding_not_an_allocation() -> None:
    chains = ChainVerifier(key=12345)
    value = b'{"forged":true}'
    forged = DEFAULT_SEQUENCE_LIMIT + 10_000_000  # 26.7 M positions: 107 MB if allocated
    link = next_link("forger/x/0", forged, GENESIS_HASH, value)
    header = link.to_header()
    stream, sequence, previous_hash, digest = header.split(b"|")
    verdict = chains.admit_link(stream, int(sequence), previous_hash, digest, value, "t", 0, 7)
    assert verdict != 0  # not a new fact
    assert [finding.code for finding in chains.finish()] == ["broken_link"]
    assert "beyond any sequence" in chains.findings[0].detail
    assert chains.memory_bytes() < 1_000_000


def test_the_limit_follows_the_log_size_and_holds_for_a_sound_log() -> None:
    chains = ChainVerifier(key=12345)
    chains.limit_sequences(100)  # a 100-record log: at most 2 x 100 + the margin
    value = b"{}"
    head = GENESIS_HASH
    for sequence in range(1, 101):  # a sound stream of 100 events
        link = next_link("s/x/0", sequence, head, value)
        stream, text, previous_hash, digest = link.to_header().split(b"|")
        assert chains.admit_link(stream, int(text), previous_hash, digest, value, "t", 0,
                                 sequence) == 0
        head = link.hash
    beyond = chains.sequence_limit + 1
    link = next_link("s/x/0", beyond, head, value)
    stream, text, previous_hash, digest = link.to_header().split(b"|")
    assert chains.admit_link(stream, int(text), previous_hash, digest, value, "t", 0,
                             200) != 0
    assert [finding.code for finding in chains.finish()] == ["broken_link"]
