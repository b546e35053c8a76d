"""The HTTP fuzzer: requests drawn from both OpenAPI documents (schemathesis) against real
issuer and redeemer workers, the real broker and PostgreSQL. Whatever the request, valid or
not, the answer is never a 5xx, its status is one the document lists for the operation, and
its body and media type are the ones the document gives for that status. Requests the
document calls invalid are refused with a 4xx.

Bounded here (a few examples per operation and mode); `bench/http_fuzz.py` runs the same
fuzzer for longer (HTTP_FUZZ_EXAMPLES examples per operation and mode).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from passnum.core.settings import Settings
from passnum.edge.client import LedgerClient
from passnum.edge.http import issue_token
from passnum.ledger.partners import collectivites, venues
from passnum.tools.scenario import accreditations, onboarding

pytestmark = pytest.mark.integration

DOCUMENTS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES_VARIABLE = "HTTP_FUZZ_EXAMPLES"
# Per operation and generation mode: about 25 operations x 2 modes x 4 examples keeps the
# suite's run near 30 s here; the bench raises it.
DEFAULT_EXAMPLES = 4
REQUEST_TIMEOUT_SECONDS = 30
OPERATOR_PREFIX = "/v1/operator"

POSITIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]
# An invalid body drawn past the route's byte limit is refused 413 (`body_too_large`, in
# both documents) before it is read: a rejection as good as schemathesis's default list.
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]}}})


def fuzz_examples() -> int:
    return int(os.environ.get(EXAMPLES_VARIABLE, DEFAULT_EXAMPLES))


def fuzz_world(ledger: Settings, start_worker: Any) -> dict[str, Any]:
    """Both workers, a collectivité with booklets (some paid for), an accredited venue, and
    a token for each kind of tenant, so that requests reach the deciders, not only the
    authentication."""
    start_worker("issuer")
    start_worker("redeemer")
    partner = collectivites(1)[0]
    venue = venues(1)[0]
    now = datetime.now(timezone.utc)
    commands = [*onboarding(partner, 3, now, funded_booklets=2, tag="fuzz"),
                *accreditations([venue], now, tag="fuzz")]
    client = LedgerClient(ledger)
    try:
        client.send(commands)
        client.wait_for([command.request_id for command in commands], timeout_seconds=90)
    finally:
        client.close()
    with psycopg.connect(ledger.database_url) as connection:
        tokens = {"collectivite": issue_token(connection, "collectivite", partner.siren),
                  "venue": issue_token(connection, "venue", venue.siret),
                  "operator": issue_token(connection, "operator", "fuzzer")}
    return {"tokens": tokens,
            "issuer": f"http://127.0.0.1:{ledger.web_port_issuer}",
            "redeemer": f"http://127.0.0.1:{ledger.web_port_redeemer}"}


def fuzz_document(document: Path, base_url: str, tokens: dict[str, str], tenant: str,
                  examples: int) -> list[str]:
    """Every operation of the document, in both generation modes: the failures found, one
    line each (an empty list when every answer held)."""
    schema = schemathesis.openapi.from_path(document, config=CONFIG)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        kind = "operator" if operation.path.startswith(OPERATOR_PREFIX) else tenant
        headers = {"Authorization": f"Bearer {tokens[kind]}"}
        for mode, checks in ((GenerationMode.POSITIVE, POSITIVE_CHECKS),
                             (GenerationMode.NEGATIVE, NEGATIVE_CHECKS)):
            try:
                _fuzz_operation(operation, mode, checks, base_url, headers, examples)
            except (Exception, BaseExceptionGroup) as error:  # reported with its operation
                failures.append(f"{operation.label} [{mode.value}]: "
                                f"{str(error).strip()[:2000]}")
    return failures


def _fuzz_operation(operation: Any, mode: GenerationMode, checks: list[Any], base_url: str,
                    headers: dict[str, str], examples: int) -> None:
    @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck), print_blob=False)
    # The token is given to the strategy, not added to the request: a negative case is then
    # never "a request without its token" that the token added afterwards makes valid.
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    def exchange(case: Any) -> None:
        case.call_and_validate(base_url=base_url, checks=checks,
                               timeout=REQUEST_TIMEOUT_SECONDS)

    try:
        exchange()
    except Unsatisfiable:
        # Nothing of the operation can be made invalid (GET /openapi.json has no parameter
        # and its token is given): no negative case exists, which is not a failure.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_no_request_drawn_from_the_documents_gets_a_5xx_or_an_undocumented_answer(
        ledger: Settings, start_worker: Any) -> None:
    world = fuzz_world(ledger, start_worker)
    examples = fuzz_examples()

    failures = [
        *fuzz_document(DOCUMENTS / "openapi-issuer.json", world["issuer"], world["tokens"],
                       "collectivite", examples),
        *fuzz_document(DOCUMENTS / "openapi-redeemer.json", world["redeemer"],
                       world["tokens"], "venue", examples),
    ]

    assert not failures, "\n\n".join(failures)
