"""The replay's state after a read holds what the books and chains hold, not the unused
tail of the chunks they grow by (`Books.trim`, `ChainVerifier.trim`): the figure
`report.memory` gives per voucher is then what is held between reads. Trimming changes
nothing judged, and a read after it grows the columns again as before."""

from __future__ import annotations

import json

from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import in_read_order, sample_ledger
from tests.unit.test_auditor_fast_path import SETTINGS, TOPOLOGY, book_columns


def replayed(messages: list) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.ingest(messages)
    return replayer


def judged(replayer: Replayer) -> dict:
    """The report but for its memory figures."""
    report = json.loads(replayer.judge().to_json())
    report.pop("memory")
    return report


def test_trimming_frees_the_unused_tails_and_changes_nothing_judged() -> None:
    messages = in_read_order(sample_ledger(TOPOLOGY).records,
                             Replayer(SETTINGS).topics_in_order())
    replayer, reference = replayed(messages), replayed(messages)
    books, chains = replayer.books, replayer.chains
    assert len(books.redeemed_event) > books.voucher_total  # a chunk, mostly unused
    before = books.memory_bytes()["vouchers"] + chains.memory_bytes()

    books.trim()
    chains.trim()

    for column in (books.redeemed_second, books.redeemed_venue, books.redeemed_event):
        assert len(column) == books.voucher_total
    for collectivite in books.collectivites.values():
        assert collectivite.booklets[-1] != 0  # its last issued booklet
    for chain in chains.streams.values():
        assert len(chain.hashes) == chain.highest
    assert chains.slots == sum(len(chain.hashes) for chain in chains.streams.values())
    assert books.memory_bytes()["vouchers"] + chains.memory_bytes() < before / 10
    assert book_columns(replayer) == book_columns(reference)
    assert judged(replayer) == judged(reference)


def test_a_read_after_trimming_folds_like_one_without() -> None:
    messages = in_read_order(sample_ledger(TOPOLOGY).records,
                             Replayer(SETTINGS).topics_in_order())
    middle = len(messages) // 2
    replayer, reference = replayed(messages[:middle]), replayed(messages[:middle])
    replayer.books.trim()
    replayer.chains.trim()
    replayer.ingest(messages[middle:])
    reference.ingest(messages[middle:])
    assert book_columns(replayer) == book_columns(reference)
    assert judged(replayer) == judged(reference)
