"""A forged chain sequence far beyond the log (10^12, say) is a `broken_link` finding, never
an allocation: the chain positions of all streams together are capped by the log's size
(`ChainVerifier.limit_sequences`, set by the replay from the high-water marks)."""

from __future__ import annotations

from passnum.core.codec import CHAIN_HEADER, GENESIS_HASH, next_link
from passnum.core.settings import Settings
from services.auditor.chain import DEFAULT_SEQUENCE_LIMIT, NEW, ChainVerifier
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ChainedRecord, in_read_order, sample_ledger

VALUE = b'{"forged":true}'


def admit(chains: ChainVerifier, stream: str, sequence: int, previous_hash: str,
          value: bytes = VALUE) -> tuple[int, str]:
    link = next_link(stream, sequence, previous_hash, value)
    name, text, previous, digest = link.to_header().split(b"|")
    return chains.admit_link(name, int(text), previous, digest, value, "t", 0, sequence), link.hash


def test_a_sequence_far_beyond_the_log_is_a_finding_not_an_allocation() -> None:
    chains = ChainVerifier(key=12345)
    # 26.7 million positions: 107 MB if it were allocated (10^12 would exhaust memory)
    verdict, _ = admit(chains, "forger/x/0", DEFAULT_SEQUENCE_LIMIT + 10_000_000, GENESIS_HASH)
    assert verdict != NEW
    assert [finding.code for finding in chains.finish()] == ["broken_link"]
    assert "beyond any sequence" in chains.findings[0].detail
    assert chains.memory_bytes() < 1_000_000


def test_the_limit_follows_the_log_size_and_a_sound_chain_fits() -> None:
    chains = ChainVerifier(key=12345)
    chains.limit_sequences(100)  # a 100-record log
    head = GENESIS_HASH
    for sequence in range(1, 101):  # a sound stream of 100 events
        verdict, head = admit(chains, "s/x/0", sequence, head)
        assert verdict == NEW
    verdict, _ = admit(chains, "s/x/0", chains.sequence_limit + 1, head)
    assert verdict != NEW
    assert [finding.code for finding in chains.finish()] == ["broken_link"]


def test_many_forged_streams_share_one_budget() -> None:
    """Each stream may hold a sound log's worth, but not all of them together."""
    chains = ChainVerifier(key=12345)
    chains.limit_sequences(1_000)
    budget = chains.sequence_limit
    verdicts = [admit(chains, f"forger/x/{n}", budget // 2, GENESIS_HASH)[0] for n in range(8)]
    assert verdicts.count(NEW) <= 2
    assert chains.slots <= budget
    assert chains.memory_bytes() <= 4 * budget + 1024


def test_a_replay_names_the_forged_record_and_judges_the_rest() -> None:
    settings = Settings()
    replayer = Replayer(settings, ReplayOptions(resolve_names=False))
    records = sample_ledger(replayer.topology).records
    forged_value = records[-1].value
    link = next_link("redeemer/x/0", 10**12, GENESIS_HASH, forged_value)
    last = records[-1]
    forged = ChainedRecord(last.topic, last.partition, last.key, forged_value,
                           ((CHAIN_HEADER, link.to_header()),))
    messages = in_read_order([*records, forged], replayer.topics_in_order())
    replayer.ingest(messages)
    report = replayer.judge()
    assert report.findings_by_code == {"broken_link": 1}
    assert replayer.chains.memory_bytes() < 1_000_000
