"""Every limit and address in one place (TIGER_STYLE: a limit on everything).

Values come from `PASSNUM_*` environment variables, so that docker-compose, the demo and
the tests configure the same object. Nothing here connects to anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/passnum"
    # With no PostgreSQL server at database_url, start an embedded one (pgserver wheel).
    # docker-compose turns this off: there, a missing database is an error, not a fallback.
    embedded_database_fallback: bool = True
    topic_prefix: str = "passnum"
    # Four partitions per topic: enough for two workers per service on two cores; every
    # topic is created explicitly with this count (Tansu would auto-create with 4 anyway).
    partitions: int = 4
    # Tansu completes a group join in about half the session timeout: keep it short.
    session_timeout_seconds: float = 6.0
    heartbeat_interval_seconds: float = 1.0
    # One PostgreSQL transaction per batch of at most this many commands.
    batch_max_commands: int = 1000
    batch_max_wait_seconds: float = 0.05
    # ... and at most this many expected events per transaction (a handler may say that a
    # command weighs more than one: an order of N booklets is N events). Bounds the memory
    # of a batch: a thousand orders of a thousand booklets would be a million events.
    batch_max_events: int = 20_000
    # A fetch returns as soon as records arrive, or after this long. Short, because Tansu
    # answered a long poll late (75 ms with 500 ms allowed, measured): an idle worker then
    # sends a few hundred small fetches per second, a cheap price for interactive latency.
    fetch_max_wait_seconds: float = 0.01
    # How a worker takes its input: "batch" (aiokafka getmany in a service of the faust
    # worker, the default) or "stream" (a faust agent's take_events, about 4 k records/s at
    # most here: kept to measure against). See passnum/worker.py.
    consumer: str = "batch"
    # sys.setswitchinterval of the workers (Python's default is 0.005): see build_app.
    gil_switch_interval_seconds: float = 0.0005
    producer_linger_milliseconds: int = 5
    producer_max_batch_bytes: int = 1_048_576
    # Each worker vacuums the outbox this often (0: never). Every batch adds a row of about
    # 500 KB and deletes the one before: without vacuum the dead rows are never reclaimed,
    # and PostgreSQL here runs with autovacuum off (docs/database.md).
    outbox_vacuum_interval_seconds: float = 30.0
    # Infra errors (database, broker) are retried this many times, then the worker exits
    # loudly and restarts from the log.
    infra_retry_limit: int = 5
    infra_retry_backoff_seconds: float = 0.5
    # The code key signs voucher codes; it is configuration and never enters the log.
    voucher_code_key: str = "demo-only-voucher-code-key-change-me"
    # Validity tolerance after 31 December (the January grace period).
    grace_days_after_year_end: int = 31
    # The programme's account that pays the venues (the debtor of the SEPA transfer file).
    # No default: `passnum redeemer export-statements --sepa` refuses to run until the IBAN
    # and the name are configured (a placeholder account would send a bank a file it
    # rejects, or worse, one it executes). The BIC is optional under the EPC rules.
    debtor_name: str = ""
    debtor_iban: str = ""
    debtor_bic: str = ""
    # Printed booklets are set in DejaVu (fonts-dejavu-core): it carries "€", accented
    # letters and the narrow no-break space of French amounts, which PDF core fonts lack.
    print_font_directory: str = "/usr/share/fonts/truetype/dejavu"
    # How long an HTTP API trusts a token it verified before asking PostgreSQL again: the
    # longest a revoked token keeps working.
    token_cache_seconds: float = 5.0
    web_port_issuer: int = 6066
    web_port_redeemer: int = 6067
    web_port_auditor: int = 6068
    # The headless browser that prints HTML documents to PDF (the audit report), and how
    # long one print may take before it is abandoned with an error.
    chromium_binary: str = "/usr/bin/chromium"
    pdf_render_timeout_seconds: float = 60.0
    broker_binary: str = ""
    # Where the Tansu broker we start keeps its log: "memory://tansu/" (lost when it
    # stops) or "s3://<bucket>/" on an S3 endpoint (kept across broker restarts).
    broker_storage_engine: str = "memory://tansu/"
    broker_s3_endpoint: str = ""
    run_directory: str = str(Path.home() / ".passnum")
    # Refuse to start a worker when the broker fails a property the design needs.
    conformance_required: bool = True
    # Fault injection for the crash proofs: the worker SIGKILLs itself at this point of
    # its Nth batch ("after_decide": committed, nothing published; "after_publish": published,
    # outbox not yet cleared). Empty in production.
    fault_crash_point: str = ""
    fault_crash_on_batch: int = 0

    @classmethod
    def from_environment(cls, environment: dict[str, str] | None = None) -> "Settings":
        environment = dict(os.environ if environment is None else environment)
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environment.get(f"PASSNUM_{field.name.upper()}")
            if raw is None:
                continue
            default = field.default
            if isinstance(default, bool):
                values[field.name] = raw.lower() in {"1", "true", "yes"}
            elif isinstance(default, int):
                values[field.name] = int(raw)
            elif isinstance(default, float):
                values[field.name] = float(raw)
            else:
                values[field.name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_environment(self) -> dict[str, str]:
        """The inverse of `from_environment`: hand these settings to a child process."""
        return {f"PASSNUM_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}
