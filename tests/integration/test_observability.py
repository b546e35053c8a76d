"""Running passnum like a service (issue 13), on real workers, the real broker and the real
PostgreSQL: Prometheus metrics scraped and parsed during a workload, readiness that turns
503 when PostgreSQL stops answering (and back), JSON logs with request ids and no ERROR line
on a healthy start, and the command line's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from passnum.core.codec import encode
from passnum.core.database import connect
from passnum.core.log import make_producer
from passnum.core.settings import Settings
from passnum.core.topology import route_command, topology_for
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites
from passnum.tools.scenario import onboarding
from schemas.messages import FundEnvelope
from tests.integration.helpers import MARCH, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(settings: Settings) -> dict[str, Any]:
    """Every sample of the issuer's /metrics, by (name, sorted labels), parsed by
    prometheus_client's own parser."""
    status, body = get(f"http://127.0.0.1:{settings.web_port_issuer}/metrics")
    assert status == 200
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[str, Any], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_and_logs_of_a_workload(ledger, start_worker) -> None:
    """One worker start serves both (a start costs seconds): the broker conformance probe
    runs at it (it used to log an ERROR from aiokafka), then a small workload."""
    worker = start_worker("issuer", conformance_required=True, log_level="DEBUG")
    partner, stranger = collectivites(2)
    commands = onboarding(partner, 3, MARCH, funded_booklets=2, tag="metrics")
    # A collectivité that was never registered: refused with a reason.
    refused = FundEnvelope(request_id="metrics-refused", occurred_at=MARCH,
                           siren=stranger.siren, committed_cents=1000)
    client = LedgerClient(ledger)
    client.send([*commands, refused])
    client.send_raw(topology_for(ledger).issuer_commands.name, b"k", b"not a command")
    outcomes = client.wait_for([c.request_id for c in [*commands, refused]])
    client.close()
    [rejection] = outcomes[refused.request_id]
    with connect(ledger.database_url) as connection:
        token = issue_token(connection, "collectivite", partner.siren)
    base = f"http://127.0.0.1:{ledger.web_port_issuer}"
    assert get(f"{base}/v1/booklets", {"Authorization": "Bearer not-a-token"})[0] == 401
    status, _ = get(f"{base}/v1/booklets",
                    {"Authorization": f"Bearer {token}", "X-Request-Id": "trace-me-42"})
    assert status == 200

    check_metrics(ledger, commands, rejection)
    worker.stop()
    check_logs(worker.log_path, refused.request_id, rejection.event_id)


def check_metrics(ledger: Settings, commands: list[Any], rejection: Any) -> None:
    samples = wait_until(lambda: (s := scrape(ledger)) and sample(
        s, "passnum_dead_letters_total", reason="undecodable_bytes") and s,
        "the dead letter counted")
    accepted = Counter(command.type for command in commands)
    for command_type, count in accepted.items():
        assert sample(samples, "passnum_commands_decided_total", command=command_type,
                      outcome="accepted") == count
    assert sample(samples, "passnum_commands_decided_total", command="fund_envelope",
                  outcome="rejected") == 1
    assert sample(samples, "passnum_rejections_total", reason=rejection.reason) == 1
    assert sample(samples, "passnum_input_records_total") == len(commands) + 2
    assert sample(samples, "passnum_batch_seconds_count") >= 1
    assert sample(samples, "passnum_http_request_seconds_count", route="/v1/booklets",
                  method="GET", status="401") == 1
    # Lag per input partition (sampled by a timer), and the outbox backlog.
    issuer_commands = topology_for(ledger).issuer_commands.name
    lag = wait_until(lambda: [value for (name, labels), value in scrape(ledger).items()
                              if name == "passnum_consumer_lag_records"
                              and ("topic", issuer_commands) in labels],
                     "lag gauges of the issuer's command partitions")
    assert len(lag) == ledger.partitions and all(value >= 0 for value in lag)
    assert sample(samples, "passnum_outbox_backlog_rows") is not None


def check_logs(log_path: Path, request_id: str, event_id: str) -> None:
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    decisions = [r for r in records if r.get("request_id") == request_id]
    assert decisions and decisions[0]["event_ids"] == [event_id]
    assert decisions[0]["outcome"] == "rejected"
    served = [r for r in records if r.get("request_id") == "trace-me-42"]
    assert served and served[0]["status"] == 200 and served[0]["route"] == "/v1/booklets"
    # The Kafka clients and faust say only what is wrong.
    assert not [r for r in records if r["logger"].startswith(("aiokafka", "kafka", "faust"))
                and r["level"] in ("DEBUG", "INFO")]


def readiness(settings: Settings) -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://127.0.0.1:{settings.web_port_issuer}/health/ready")
    return status, json.loads(body)


def set_connections_allowed(settings: Settings, allowed: bool) -> None:
    """Make the ledger's database refuse new connections and cut the open ones (the shared
    PostgreSQL server itself keeps running for the other tests)."""
    root, name = settings.database_url.rsplit("/", 1)
    with psycopg.connect(f"{root}/postgres", autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allowed}')
        if not allowed:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def test_readiness_turns_503_when_postgresql_stops_answering(ledger, start_worker) -> None:
    start_worker("issuer", health_lag_stuck_seconds=3.0)
    status, body = readiness(ledger)
    assert (status, body["status"]) == (200, "ready"), body
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    check_exposure(ledger)
    check_status_screen(ledger)
    set_connections_allowed(ledger, False)
    try:
        status, body = wait_until(lambda: (answer := readiness(ledger))[0] == 503 and answer,
                                  "unready without the database")
        assert body["status"] == "unready"
        assert body["checks"]["database"]["ok"] is False
        assert "is not currently accepting connections" in body["checks"]["database"]["detail"]
        assert body["checks"]["broker"]["ok"] is True  # says which part fails
        # Alive all the same: restarting it would not bring the database back.
        live_status, _ = get(f"http://127.0.0.1:{ledger.web_port_issuer}/health/live")
        assert live_status == 200
        # /health/ (what the tools wait on) answers readiness too.
        assert get(f"http://127.0.0.1:{ledger.web_port_issuer}/health/")[0] == 503
    finally:
        set_connections_allowed(ledger, True)
    wait_until(lambda: readiness(ledger)[0] == 200, "ready again with the database back")
    check_a_hanging_batch_is_no_progress(ledger)


def check_a_hanging_batch_is_no_progress(ledger: Settings) -> None:
    """A batch that waits for a lock does not move the position's lag (its records were
    fetched) but makes no progress: unready after health_lag_stuck_seconds, ready once it
    is decided. Forty commands for one collectivité (one partition): a batch big enough to
    be decided off the event loop (passnum.core.worker.INLINE_DECISION_MAX_RECORDS); a small one
    blocks the loop itself, and then /health/live stops answering."""
    siren = collectivites(1)[0].siren
    commands = [FundEnvelope(request_id=f"stuck-{number}", occurred_at=MARCH, siren=siren,
                             committed_cents=1000) for number in range(40)]
    client = LedgerClient(ledger)
    # One record batch: a producer that lingers long enough to gather all forty.
    producer = make_producer(ledger, linger_ms=1000)
    with psycopg.connect(ledger.database_url) as blocker:
        blocker.execute("LOCK TABLE request_outcomes IN ACCESS EXCLUSIVE MODE")
        for command in commands:
            topic, key = route_command(topology_for(ledger), command)
            producer.send(topic, key=key, value=encode(command))
        producer.flush()
        producer.close()
        status, body = wait_until(lambda: (answer := readiness(ledger))[0] == 503 and answer,
                                  "unready while the batch hangs")
        assert "the batch in hand has been in progress for" in body["checks"]["lag"]["detail"]
        assert body["checks"]["database"]["ok"] is True
    client.wait_for([command.request_id for command in commands])  # the lock is gone
    client.close()
    wait_until(lambda: readiness(ledger)[0] == 200, "ready again once the batch is decided")


def check_exposure(ledger: Settings) -> None:
    """Faust's debugging pages are off, and the worker listens on the configured address
    only: 127.0.0.2 reaches this machine too, and would answer if it listened on 0.0.0.0."""
    for path in ("/router/", "/table/", "/graph/"):
        assert get(f"http://127.0.0.1:{ledger.web_port_issuer}{path}")[0] == 404, path
    with pytest.raises(urllib.error.URLError):
        get(f"http://127.0.0.2:{ledger.web_port_issuer}/health/live")


def check_status_screen(ledger: Settings) -> None:
    """`passnum status` asks each worker's readiness: the issuer runs, the redeemer does not
    (exit 3); no audit has run on this ledger."""
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("PASSNUM_")},
                   **ledger.as_environment(), "COLUMNS": "250"}
    finished, _ = passnum_command("status", environment=environment)
    assert finished.returncode == 3, finished.stderr
    rows = {line.split("│")[1].strip(): line for line in finished.stdout.splitlines()
            if line.count("│") >= 4}
    assert "prêt" in rows["worker issuer"] and "0" in rows["worker issuer"]
    assert "injoignable" in rows["worker redeemer"]
    assert "aucun audit" in rows["dernier audit"]
    assert "non vérifiée" in rows["broker"]


def passnum_command(*arguments: str, environment: dict[str, str]
                    ) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-m", "passnum.tools.cli", *arguments], cwd=ROOT,
                              env=environment, capture_output=True, text=True, timeout=120)
    return finished, time.monotonic() - started


def test_exit_codes_of_the_command_line(base_settings, unused_tcp_port_address) -> None:
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("PASSNUM_")},
                   **base_settings.with_overrides(bootstrap_servers=unused_tcp_port_address,
                                           infrastructure_timeout_seconds=2.0).as_environment()}
    finished, seconds = passnum_command("audit", "--no-database", environment=environment)
    assert finished.returncode == 3, finished.stderr
    assert finished.stderr.strip().splitlines() == [
        f"passnum: no broker answers at {unused_tcp_port_address} "
        f"({unused_tcp_port_address}: Connection refused)"]
    assert seconds < 25  # a Kafka client alone waits 30 s before giving up
    finished, _ = passnum_command("worker", "isuer", environment=environment)
    assert finished.returncode == 2
    assert "'isuer' is not one of" in finished.stderr


@pytest.fixture
def unused_tcp_port_address() -> str:
    from tests.conftest import free_port

    return f"127.0.0.1:{free_port()}"
