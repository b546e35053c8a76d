"""The auditor on the real broker: a ledger decided by the services' deciders is written to
the topics with kafka-python (chained as the processors chain), one fault at a time is
planted in the log itself, and `passnum audit` must name it; duplicate delivery is not a
fault. The clean case also runs the real workers (test_auditor_one_judge)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from passnum.ledger.identity import event_id_for
from passnum.core.log import make_producer
from passnum.core.topology import topology_for
from schemas.messages import VoucherRedeemed
from services.auditor.replay import ReplayOptions, replay
from tests.support.chained_log import (
    ChainedRecord,
    rechained,
    sample_ledger,
    send_with_kafka_python,
)

pytestmark = pytest.mark.integration


def write(settings, records: list[ChainedRecord]) -> None:  # type: ignore[no-untyped-def]
    producer = make_producer(settings)
    try:
        send_with_kafka_python(producer, records)
    finally:
        producer.close()


def kinds(records: list[ChainedRecord], event_type: str) -> list[int]:
    return [i for i, r in enumerate(records) if json.loads(r.value)["type"] == event_type]


def test_a_clean_log_passes_and_a_duplicate_delivery_is_no_finding(ledger) -> None:  # type: ignore[no-untyped-def]
    sample = sample_ledger(topology_for(ledger))
    redemption = sample.records[kinds(sample.records, "voucher_redeemed")[0]]
    write(ledger, sample.records + [redemption])
    report = replay(ledger)
    assert report.sound, report.findings
    assert report.duplicate_count == 1
    assert sum(t.redeemed_vouchers for t in report.totals.values()) == 4


def test_each_planted_fault_is_named(ledger) -> None:  # type: ignore[no-untyped-def]
    sample = sample_ledger(topology_for(ledger))
    records = list(sample.records)
    redeemed = kinds(records, "voucher_redeemed")
    # altered payload: the second redemption's venue changed, link kept
    altered = records[redeemed[1]]
    records[redeemed[1]] = replace(altered, value=altered.value.replace(b'"face_value_cents":1000',
                                                                        b'"face_value_cents":10'))
    # reordered: the third and fourth redemptions swapped in their partition
    records[redeemed[2]], records[redeemed[3]] = records[redeemed[3]], records[redeemed[2]]
    first = json.loads(records[redeemed[0]].value)
    # deleted: the first booklet issued by the second collectivité
    deleted = records.pop(kinds(records, "booklet_issued")[3])
    # double redemption, decided by a "buggy" redeemer, properly chained
    again = VoucherRedeemed(**{**first, "request_id": "buggy", "occurred_at":
                               first["occurred_at"].replace("T11", "T15"),
                               "event_id": event_id_for("redeemer", "buggy", 0)})
    records += sample.writer.redeemer(first["booklet_id"].encode(), [again])
    # injected with a forged link
    records.append(replace(records[0], headers=(("passnum-chain", b"issuer/x/0|1|" + b"0" * 64
                                                 + b"|" + b"e" * 64),)))
    write(ledger, records)
    report = replay(ledger)
    def details(code: str) -> str:
        return "\n".join(f.detail for f in report.findings if f.code == code)

    def named(code: str) -> set[str]:
        return {e for f in report.findings if f.code == code for e in f.event_ids}

    assert json.loads(altered.value)["event_id"] in named("altered_event")
    assert "reordered_event" in details("reordered_event") or details("reordered_event")
    deleted_link = deleted.headers[0][1].decode().split("|")
    assert f"{deleted_link[0]}#{deleted_link[1]} is missing" in details("missing_event")
    assert named("voucher_redeemed_twice") == {first["event_id"], again.event_id}
    assert "issuer/x/0#1" in details("altered_event")


def test_an_over_activation_is_named_and_the_cli_exits_non_zero(ledger) -> None:  # type: ignore[no-untyped-def]
    from schemas.messages import BookletActivated

    sample = sample_ledger(topology_for(ledger))
    unpaid = json.loads(sample.records[kinds(sample.records, "booklet_issued")[2]].value)
    rogue = BookletActivated(event_id=event_id_for("issuer", "rogue", 0), request_id="rogue",
                             occurred_at=unpaid["occurred_at"], siren=unpaid["siren"],
                             booklet_id=unpaid["booklet_id"], activated_cents=10_000)
    write(ledger, sample.records + sample.writer.issuer(unpaid["siren"], [rogue]))
    environment = {**__import__("os").environ, **ledger.as_environment()}
    result = subprocess.run([sys.executable, "-m", "passnum.tools.cli", "audit", "--json",
                             "--no-database"], capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    over = [f for f in document["findings"] if f["code"] == "activated_exceeds_funds"]
    assert over and over[0]["event_ids"] == [rogue.event_id]  # named by the second read
    again = subprocess.run([sys.executable, "-m", "passnum.tools.cli", "audit", "--json",
                            "--no-database"], capture_output=True, text=True, env=environment,
                           timeout=120)
    assert again.stdout == result.stdout  # byte-identical across two replays


def test_a_signed_checkpoint_verifies_and_a_rewritten_history_does_not(ledger, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone

    from passnum.core.broker import create_topics
    from services.auditor.checkpoint import generate_key, load_private_key, month_root, sign
    from services.auditor.publish import publish_auditor_events
    from services.auditor.replay import Replayer

    sample = sample_ledger(topology_for(ledger))
    write(ledger, sample.records)
    public_key = generate_key(tmp_path / "auditor.pem")
    replayer = Replayer(ledger, ReplayOptions())
    replayer.read()
    root = month_root(replayer.chains.streams, "2026-02")  # everything is dated March
    assert root.event_count == 0
    # every stream is quiet after March: each is covered up to its head
    root = month_root(replayer.chains.streams, "2026-03")
    assert len(root.quiet_streams) == len(root.lines) > 0
    event = sign(load_private_key(tmp_path / "auditor.pem"), root,
                 datetime(2026, 4, 1, tzinfo=timezone.utc))
    publish_auditor_events(ledger, [event])
    trusted = ReplayOptions(trusted_keys=frozenset({public_key}))
    report = replay(ledger, trusted)
    assert report.sound, report.findings
    assert [c["root_hash"] for c in report.checkpoints] == [root.root_hash]
    # A perfectly chained event dated in the signed month, appended to a quiet stream: it
    # comes after the prefix the checkpoint covers, which stays as signed.
    late = json.loads(sample.records[kinds(sample.records, "voucher_redeemed")[0]].value)
    extra = VoucherRedeemed(**{**late, "voucher_id": late["voucher_id"][:-2] + "09",
                               "request_id": "late", "event_id": event_id_for("redeemer", "late", 0)})
    write(ledger, sample.writer.redeemer(late["booklet_id"].encode(), [extra]))
    report = replay(ledger, trusted)
    assert report.sound, report.findings
    untrusted = replay(ledger, ReplayOptions(trusted_keys=frozenset({"ab" * 32})))
    assert "checkpoint_untrusted_key" in {f.code for f in untrusted.findings}
    # The same history rewritten on other topics (its streams keep their names): one
    # redemption changed, every stream chained anew around it, the checkpoint copied over.
    rewritten = ledger.with_overrides(topic_prefix=ledger.topic_prefix + "r")
    create_topics(rewritten)
    index = kinds(sample.records, "voucher_redeemed")[1]
    changed = sample.records[index].value.replace(b'"request_id":"', b'"request_id":"x', 1)
    write(rewritten, rechained(sample.records, index, changed,
                               (ledger.topic_prefix, rewritten.topic_prefix)))
    publish_auditor_events(rewritten, [event])
    report = replay(rewritten, trusted)
    stream = sample.records[index].headers[0][1].split(b"|")[0].decode()
    named = [f for f in report.findings if f.code == "checkpoint_mismatch"]
    assert len(named) == 1 and named[0].event_ids == (event.event_id,), report.findings
    assert f"{stream}#" in named[0].detail and "history rewritten" in named[0].detail


def test_the_checkpoint_command_signs_a_month_over_and_refuses_the_current_one(  # type: ignore[no-untyped-def]
        ledger, tmp_path) -> None:
    from datetime import datetime, timezone

    from services.auditor.checkpoint import generate_key

    write(ledger, sample_ledger(topology_for(ledger)).records)  # dated March 2026: all quiet
    public_key = generate_key(tmp_path / "auditor.pem")
    environment = {**__import__("os").environ, **ledger.as_environment()}
    command = [sys.executable, "-m", "passnum.tools.cli", "audit", "checkpoint", "--key",
               str(tmp_path / "auditor.pem"), "--month"]
    current = datetime.now(timezone.utc).strftime("%Y-%m")
    refused = subprocess.run(command + [current], capture_output=True, text=True,
                             env=environment, timeout=120)
    assert refused.returncode == 2 and "not over yet" in refused.stderr, refused.stderr
    signed = subprocess.run(command + ["2026-03"], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert signed.returncode == 0, signed.stderr
    assert "covered to their head" in signed.stdout
    report = replay(ledger, ReplayOptions(trusted_keys=frozenset({public_key})))
    assert report.sound, report.findings
    assert [c["month"] for c in report.checkpoints] == ["2026-03"]
