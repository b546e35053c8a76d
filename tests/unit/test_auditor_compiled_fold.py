"""The compiled fold of plain records (`services/auditor/_plain_records.c`) against the
Python path it replaces, on random logs, clean and tampered (Hypothesis).

Equal means: the same books (every column, counter, finding and contested voucher), the
same chain state (fingerprints, waiting links, heads, first sequences per month, findings,
duplicates), the same record findings, and the same report byte for byte. The tampering
(a modified byte, a deleted, duplicated, swapped or forged record, a link pointing
elsewhere) is where the compiled fold must stop and leave the record to the Python path.

And it must be there: in this project's environment the module is built, and a replay
folds the plain redemptions with it (a broken build fails here, not silently slower).
"""

from __future__ import annotations

import json
import random
from array import array
from datetime import datetime, timedelta, timezone
from hashlib import sha256

from hypothesis import given
from hypothesis import strategies as st

from passnum.core.codec import CHAIN_HEADER

from passnum.ledger.identity import event_id_for
from schemas.messages import BookletActivated, BookletBlocked, BookletIssued, VoucherRedeemed
from services.auditor import compiled, wire
from services.auditor.canonical import CanonicalDecoder
from services.auditor.chain import ChainVerifier
from services.auditor.replay import Replayer, ReplayOptions
from tests.support.chained_log import ReadMessage, in_read_order, sample_ledger
from tests.unit.test_auditor_fast_path import (
    FAST,
    OFFSETS,
    SETTINGS,
    START,
    TOPOLOGY,
    book_columns,
    chained,
    ledgers,
)


@st.composite
def logs(draw: st.DrawFn) -> list:  # type: ignore[type-arg]
    """Random ledgers, and as often mostly plain ones: the same with every booklet activated
    before its first redemption and none blocked, each voucher redeemed once at face value
    (the random ledgers alone are so faulty that few redemptions would reach the compiled
    fold), plus an activation fault drawn (a second activation, a wrong amount). Some of
    their redemptions are dated before or after the validity (`ledgers` draws them), of
    active vouchers: the C fold must leave those to the Python path's finding."""
    events = draw(ledgers())
    if draw(st.booleans()):
        return events
    activated = {e.booklet_id for e in events if isinstance(e, BookletActivated)}
    issued = {e.booklet_id: e for e in events if isinstance(e, BookletIssued)}
    redeemed: set[str] = set()
    plain = []
    for event in events:
        if isinstance(event, BookletBlocked):
            continue
        if isinstance(event, VoucherRedeemed):
            if event.voucher_id in redeemed or int(event.voucher_id[-2:]) > issued[
                    event.booklet_id].voucher_count:
                continue
            redeemed.add(event.voucher_id)
            event = event.model_copy(update={"face_value_cents": 1000})
        plain.append(event)
    fault = draw(st.sampled_from(["none", "twice", "amount"]))
    for booklet in issued.values():
        cents = booklet.voucher_count * booklet.face_value_cents
        if fault == "amount" and draw(st.booleans()):
            cents -= 1
        for time in ((1, 2) if fault == "twice" else (1,)):
            if booklet.booklet_id in activated and time == 1:
                continue
            request = f"activate-{booklet.booklet_id}-{time}"
            plain.append(BookletActivated(
                event_id=event_id_for("issuer", request, 0), request_id=request,
                # a month before START: redemptions before the validity are of an
                # active voucher, so that the C fold sees them (and must leave them)
                occurred_at=START - timedelta(days=31 - time), siren=booklet.siren,
                booklet_id=booklet.booklet_id, activated_cents=cents))
    return plain


TAMPERINGS = ("modify", "delete", "duplicate", "swap", "forge", "relink", "second_header",
              "empty_header", "truncate")


def tampered(messages: list[ReadMessage], tamperings: list[tuple[str, int]]) -> list:
    """The messages with each tampering applied at a position (modulo their number)."""
    messages = list(messages)
    for how, where in tamperings:
        if not messages:
            break
        at = where % len(messages)
        message = messages[at]
        header = next((raw for name, raw in message.headers if name == CHAIN_HEADER and raw),
                      b"")
        link = header.decode().split("|")
        if how == "modify":  # one byte of the value: the link no longer holds
            value = bytearray(message.value)
            value[len(value) // 2] ^= 1
            messages[at] = message._replace(value=bytes(value))
        elif how == "delete":
            del messages[at]
        elif how == "duplicate":  # a re-delivery, later in the same partition
            messages.insert(min(at + 3, len(messages)), message)
        elif how == "swap" and at + 1 < len(messages):
            messages[at], messages[at + 1] = messages[at + 1], message
        elif how in ("forge", "relink") and len(link) == 4:  # re-hashed under a link it chose
            stream, sequence, previous, _ = link
            value = message.value.replace(b'"face_value_cents":1000', b'"face_value_cents":900')
            claimed = int(sequence) + (0 if how == "forge" else 2)
            link = f"{stream}|{claimed}|{previous}|" + sha256(previous.encode() + value).hexdigest()
            messages.insert(at, message._replace(value=value,
                                                 headers=[(CHAIN_HEADER, link.encode())]))
        elif how == "second_header":
            messages[at] = message._replace(headers=[("other", b"x")] + list(message.headers))
        elif how == "empty_header":
            messages[at] = message._replace(headers=[(CHAIN_HEADER, b"")])
        elif how == "truncate":
            messages[at] = message._replace(value=message.value[:-1])
    return messages


def replay(messages: list, compiled_fold: bool, key: int, warm: bool = False) -> Replayer:
    replayer = Replayer(SETTINGS, ReplayOptions(resolve_names=False))
    replayer.chains = ChainVerifier(key=key)
    replayer.compiled = compiled_fold
    if warm:
        warm_caches(replayer)
    replayer.ingest(messages)
    return replayer


def warm_caches(replayer: Replayer) -> None:
    """The canonical decoder's cache of days filled beforehand (a pure cache, the books
    are untouched), as it is after the first minutes of a real log: the random logs draw
    a new day for almost every redemption, and a day first seen goes the Python way, so
    without this few of their redemptions would reach the C path."""
    decoder = replayer.canonical
    for day in range(20_400, 20_900):  # 2025-11 to 2027-03
        decoder._day(wire.date_of_day(day).isoformat().encode())


def chain_state(replayer: Replayer) -> dict:
    chains = replayer.chains
    streams = {name: (chain.hashes.tolist(), chain.pending_sequences.tolist(),
                      chain.pending_previous.tolist(), chain.pending_places.tolist(),
                      chain.highest, chain.head_raw, chain.month_firsts)
               for name, chain in chains.streams.items()}
    heads = {place: {chain.name: sequence for chain, sequence in heads.items()}
             for place, heads in chains.partition_heads.items()}
    return {"streams": streams, "heads": heads, "findings": list(chains.findings),
            "duplicates": chains.duplicates, "slots": chains.slots}


def collectivite_state(replayer: Replayer) -> dict:
    """Each collectivité's table of booklet sequences (the C fold numbers issued booklets
    in it) and its recorded redemptions."""
    return {siren: (collectivite.number, collectivite.booklets.tolist(),
                    collectivite.redeemed_vouchers_recorded,
                    collectivite.redeemed_cents_recorded)
            for siren, collectivite in replayer.books.collectivites.items()}


def assert_same(messages: list, key: int, warm: bool) -> None:
    fast, reference = replay(messages, True, key, warm), replay(messages, False, key, warm)
    assert book_columns(fast) == book_columns(reference)
    assert collectivite_state(fast) == collectivite_state(reference)
    assert chain_state(fast) == chain_state(reference)
    assert fast.records_read == reference.records_read
    assert fast.invalid_count == reference.invalid_count
    assert fast.judge().to_json() == reference.judge().to_json()


def test_the_compiled_fold_is_built_and_folds_the_plain_records(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert compiled.fold_records is not None, "services/auditor/_plain_records.c was not " \
        "built: run ./scripts/bootstrap (setup.py builds it)"
    messages = in_read_order(sample_ledger(TOPOLOGY).records, Replayer(SETTINGS).topics_in_order())
    redemptions = sum(b'"type":"voucher_redeemed"' in m.value for m in messages)
    activations = sum(b'"type":"booklet_activated"' in m.value for m in messages)
    issues = sum(b'"type":"booklet_issued"' in m.value for m in messages)
    in_python: dict[str, list] = {"records": [], "redemptions": [], "activations": [],
                                  "issues": []}
    ingest_record, redeemed = Replayer.ingest_record, CanonicalDecoder._redeemed
    activated, issued = CanonicalDecoder._activated, CanonicalDecoder._issued

    def counting_records(self, topic, partition, record, heads, signed_topic):  # type: ignore[no-untyped-def]
        in_python["records"].append(record)
        ingest_record(self, topic, partition, record, heads, signed_topic)

    def counting_redemptions(self, match, stream, sequence):  # type: ignore[no-untyped-def]
        in_python["redemptions"].append(match)
        return redeemed(self, match, stream, sequence)

    def counting_activations(self, match, stream, sequence):  # type: ignore[no-untyped-def]
        in_python["activations"].append(match)
        return activated(self, match, stream, sequence)

    monkeypatch.setattr(Replayer, "ingest_record", counting_records)
    monkeypatch.setattr(CanonicalDecoder, "_redeemed", counting_redemptions)
    def counting_issues(self, match, value):  # type: ignore[no-untyped-def]
        in_python["issues"].append(match)
        return issued(self, match, value)

    monkeypatch.setattr(CanonicalDecoder, "_activated", counting_activations)
    monkeypatch.setattr(CanonicalDecoder, "_issued", counting_issues)
    replayer = replay(messages, True, key=12345)
    # In Python: the first record read of each of the 4 streams (the Python path creates
    # the chain; issuer/...3#4, read first, waits for #3 and numbers its topic for the
    # places of waiting links); the other 20 links are admitted in C, issuer/...3#8 and
    # issuer/...1#7 left waiting there. The first
    # redemption fills the canonical decoder's cache of venues in Python; the three others
    # are folded in C, and so are the activations whose link is admitted in C.
    assert len(replayer.chains.streams) == 4 and len(messages) == 24
    assert len(in_python["records"]) == 4
    assert redemptions == 4 and len(in_python["redemptions"]) == 1
    assert activations == 4 and len(in_python["activations"]) <= 2
    # The first booklet of each order interns its framing in Python; the others are
    # folded in C when their link is admitted there.
    assert issues == 6 and len(in_python["issues"]) == 2
    monkeypatch.undo()
    assert_same(messages, 12345, warm=False)  # two issuer streams: activation streams 0 and 1
    assert replayer.books.counts_by_type["voucher_redeemed"] == redemptions


def test_without_the_module_the_replay_folds_in_python_and_says_so(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(compiled, "fold_records", None)
    monkeypatch.setattr(compiled, "_reported", False)
    messages = in_read_order(sample_ledger(TOPOLOGY).records, Replayer(SETTINGS).topics_in_order())
    with caplog.at_level("WARNING", logger="services.auditor.compiled"):
        fallback = replay(messages, True, key=7)
    assert "compiled fold not built" in caplog.text
    assert fallback._compiled_fold("topic", 0, {}) is None
    assert fallback.judge().to_json() == replay(messages, False, key=7).judge().to_json()


@FAST
@given(logs(), st.lists(st.sampled_from(["canonical", "canonical", "canonical", "spaced",
                                            "escaped", "extra", "bad_siren", *OFFSETS]),
                           min_size=1, max_size=4),
       st.integers(1, 2**64 - 1), st.booleans())
def test_the_compiled_fold_folds_like_the_python_path(events, encodings, key, warm) -> None:  # type: ignore[no-untyped-def]
    messages = in_read_order(chained(events, encodings), Replayer(SETTINGS).topics_in_order())
    assert_same(messages, key, warm)


@FAST
@given(logs(), st.lists(st.tuples(st.sampled_from(TAMPERINGS), st.integers(0, 10_000)),
                           min_size=1, max_size=4),
       st.integers(1, 2**64 - 1), st.booleans())
def test_the_compiled_fold_finds_tampering_like_the_python_path(events, tamperings, key, warm) -> None:  # type: ignore[no-untyped-def]
    messages = in_read_order(chained(events, ["canonical"]), Replayer(SETTINGS).topics_in_order())
    assert_same(tampered(messages, tamperings), key, warm)


@FAST
@given(logs(), st.randoms(use_true_random=False), st.integers(1, 2**64 - 1),
       st.booleans())
def test_the_compiled_fold_takes_links_in_any_order_like_the_python_path(  # type: ignore[no-untyped-def]
        events, shuffler: random.Random, key, warm) -> None:
    """Records of one stream delivered out of order (waiting links, links whose earlier
    end came first, re-deliveries): the order within each partition shuffled."""
    messages = in_read_order(chained(events, ["canonical"]), Replayer(SETTINGS).topics_in_order())
    shuffler.shuffle(messages)
    assert_same(messages, key, warm)


UUID_LIKE = st.text(alphabet="0123456789abcdefABCDEF-_+ g\u00e9\u0663", min_size=36,
                    max_size=36).map(lambda text: text[:8] + "-" + text[9:])


@FAST
@given(st.lists(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                          UUID_LIKE, st.text(max_size=40)), max_size=30))
def test_statement_fingerprints_are_the_python_ones(event_ids) -> None:  # type: ignore[no-untyped-def]
    """The ids a settlement statement lists, fingerprinted in C: UUIDs, upper case, and
    anything `int(..., 16)` might still read (signs, underscores, spaces, other digits),
    which go to `wire.event_fingerprint` itself."""
    assert outcome(compiled.event_fingerprints, event_ids) == outcome(
        lambda ids: array("Q", (wire.event_fingerprint(event_id) for event_id in ids)),
        event_ids)


def outcome(fingerprints, event_ids: list[str]) -> object:  # type: ignore[no-untyped-def]
    try:
        return fingerprints(tuple(event_ids)).tolist()
    except OverflowError as error:
        return type(error)


def test_a_redemption_dated_on_a_clock_whose_utc_month_differs_folds_like_the_python_path() -> None:
    """An offset can move the date as written into the next or the previous UTC month (a
    scan at 00:30 on 1 April in Paris is at 22:30 UTC on 31 March). The day as written
    stays the validity day; the instant and the month the chain notes are UTC, on both
    paths (the compiled fold leaves such a record to Python, which computes the month)."""
    ledger = sample_ledger(TOPOLOGY)
    document = next(json.loads(r.value) for r in ledger.records
                    if b'"voucher_redeemed"' in r.value)
    booklet_id = document["booklet_id"]
    instants = {7: datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))),
                8: datetime(2026, 3, 31, 20, 0, tzinfo=timezone(-timedelta(hours=5))),
                9: datetime(2026, 4, 2, 9, 15, tzinfo=timezone(timedelta(hours=2)))}
    redemptions = [VoucherRedeemed(**{**document, "voucher_id": f"{booklet_id}-{position:02d}",
                                      "event_id": event_id_for("redeemer", f"offset-{position}", 0),
                                      "request_id": f"offset-{position}", "occurred_at": at})
                   for position, at in instants.items()]
    written = ledger.writer.redeemer(booklet_id.encode(), redemptions)
    messages = in_read_order(ledger.records + written, Replayer(SETTINGS).topics_in_order())
    assert_same(messages, 12345, warm=True)
    # The chain notes each month's first sequence by UTC month: April begins with the
    # scan written on 31 March at -05:00, not with the one written on 1 April at +02:00
    # (March's, at 22:30 UTC). Both paths above agree; this says which month is right.
    stream, sequences = None, []
    for record in written:
        stream, sequence = record.headers[0][1].decode().split("|")[:2]
        sequences.append(int(sequence))
    chain = replay(messages, True, 12345, warm=True).chains.streams[stream]
    assert chain.month_firsts["2026-04"][0] == sequences[1]
    assert chain.month_firsts["2026-03"][0] < sequences[0]
