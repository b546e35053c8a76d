"""`passnum audit --follow` and `passnum audit year-end` on the real broker, run as the
command line runs them (a subprocess with the ledger's environment), on a chained sample
ledger written straight to the topics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from passnum.core.topology import topology_for
from tests.integration.test_auditor_tamper import kinds, write
from tests.support.chained_log import sample_ledger

pytestmark = pytest.mark.integration
AUDIT = [sys.executable, "-m", "passnum.tools.cli", "audit"]


def environment(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**os.environ, **settings.as_environment()}


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2) as answer:
            return {"http": answer.status, **json.loads(answer.read())}
    except urllib.error.HTTPError as error:
        return {"http": error.code, **json.loads(error.read() or b"{}")}
    except (urllib.error.URLError, ConnectionError):
        return {"http": 0}


def wait_for_health(port: int, process: subprocess.Popen, condition,  # type: ignore[no-untyped-def,type-arg]
                    timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        state = health(port)
        if state.get("http") and condition(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"health never reached the condition: {state}")


def test_follow_tails_the_log_and_reports_on_health(ledger) -> None:  # type: ignore[no-untyped-def]
    sample = sample_ledger(topology_for(ledger))
    records = sample.records
    redeemed = kinds(records, "voucher_redeemed")
    first_part = records[:redeemed[2]]
    write(ledger, first_part)
    # Each month the log has events dated in (before the current one) is signed by the
    # first cycle that reads it, and the checkpoint read back by the next: one record more.
    signed = len({json.loads(record.value)["occurred_at"][:7] for record in first_part})
    months = len({json.loads(record.value)["occurred_at"][:7] for record in records})
    process = subprocess.Popen(AUDIT + ["--follow", "--interval", "0.2", "--no-database"],
                               env=environment(ledger), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    port = ledger.web_port_auditor
    try:
        state = wait_for_health(port, process,
                                lambda s: s.get("records_read") == len(first_part) + signed)
        assert state["http"] == 200 and state["status"] == "ok" and state["sound"] is True
        # The rest of the log arrives: the next cycles read only the new records. Its events
        # are dated in the month already signed, on its streams: after the signed prefixes,
        # so the checkpoint still verifies.
        write(ledger, records[redeemed[2]:])
        state = wait_for_health(port, process,
                                lambda s: s.get("records_read") == len(records) + months)
        assert state["sound"] is True and state["findings"] == {}
        # A forged record (a redemption's value altered, its link kept) is found live.
        altered = records[redeemed[0]]
        write(ledger, [replace(altered, value=altered.value.replace(b'"face_value_cents":1000',
                                                                    b'"face_value_cents":10'))])
        state = wait_for_health(port, process, lambda s: s.get("sound") is False)
        assert state["findings"] == {"altered_event": 1}
        assert state["records_read"] == len(records) + months + 1
        # The cycle itself succeeded ("ok"), but an unsound ledger makes the follower unready:
        # its health check is the operator's alarm (issue 13).
        assert state["http"] == 503
        assert health(port)["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_year_end_statements_follow_from_the_books(ledger) -> None:  # type: ignore[no-untyped-def]
    sample = sample_ledger(topology_for(ledger))
    write(ledger, sample.records)
    result = subprocess.run(AUDIT + ["year-end", "--year", "2026", "--json"],
                            env=environment(ledger), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    statements = json.loads(result.stdout)
    assert statements["year"] == 2026 and statements["sound"] is True
    collectivites = statements["collectivites"]
    assert len(collectivites) == 2  # the sample's two collectivités, booklets valid in 2026
    used = 0
    for statement in collectivites.values():
        joint, credit, claim = (statement["joint_statement"], statement["credit_note"],
                                statement["co_financing"])
        # 3 booklets ordered, 2 paid for and activated, 10 vouchers of 10 € each
        assert joint["issued"]["vouchers"] == 30
        assert joint["activated"]["vouchers"] == 20
        assert credit["unused_voucher_count"] == 20 - joint["redeemed"]["vouchers"]
        assert credit["face_value_cents"] == credit["unused_voucher_count"] * 1000
        assert claim["state_share_cents"] == claim["used_cents"] // 2
        assert claim["vouchers_used"] == joint["redeemed"]["vouchers"]
        used += claim["vouchers_used"]
    assert used == 4  # the sample redeems four vouchers
    # A year with no booklet valid in it has no statement; a missing --year is refused.
    empty = subprocess.run(AUDIT + ["year-end", "--year", "2025", "--json"],
                           env=environment(ledger), capture_output=True, timeout=120)
    assert empty.returncode == 0 and json.loads(empty.stdout)["collectivites"] == {}
    refused = subprocess.run(AUDIT + ["year-end"], env=environment(ledger),
                             capture_output=True, timeout=120)
    assert refused.returncode == 2
