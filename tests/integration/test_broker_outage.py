"""While the broker is down, the HTTP APIs answer within a bound: 503 `log_unavailable`
(retry later, same key) instead of hanging past 25 s and ending in a 500; readiness says
unready meanwhile. Once the broker is back, the same request with the same key is decided
once."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from passnum.core.database import connect
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites
from schemas.messages import FundEnvelope, RegisterCollectivite
from tests.integration.helpers import MARCH, private_broker

pytestmark = pytest.mark.integration


def _call(url: str, token: str, key: str, body: dict) -> tuple[int, dict, float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Idempotency-Key": key,
                                              "Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), time.monotonic() - started


def _readiness(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_broker_outage_gets_bounded_503_answers(ledger, tmp_path: Path) -> None:
    with private_broker(ledger, tmp_path) as (settings, broker, [worker]):
        partner = collectivites(1)[0]
        client = LedgerClient(settings)
        setup = [RegisterCollectivite(request_id="reg", occurred_at=MARCH, siren=partner.siren,
                                      name=partner.name),
                 FundEnvelope(request_id="env", occurred_at=MARCH, siren=partner.siren,
                              committed_cents=1_000_000)]
        client.send(setup)
        client.wait_for(["reg", "env"])
        client.close()
        with connect(settings.database_url) as connection:
            token = issue_token(connection, "collectivite", partner.siren)
        url = f"http://127.0.0.1:{settings.web_port_issuer}/v1/orders"

        broker.stop()
        status, body, seconds = _call(url, token, "order-during-outage", {"booklet_count": 1})
        assert status == 503, body
        assert body["code"] == "log_unavailable"
        assert seconds < settings.log_send_timeout_seconds + 5
        assert _readiness(settings.web_port_issuer) == 503  # and readiness says so
        assert worker.running()  # an outage is no reason to exit
