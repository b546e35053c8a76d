"""Every limit and address in one place (TIGER_STYLE: a limit on everything).

Values come from `PASSNUM_*` environment variables, so that docker-compose, the demo and
the tests configure the same object. Nothing here connects to anything.

The environment is read and checked at start-up by a pydantic-settings model built from the
dataclass below (its fields, types and constraints): a value of the wrong type, or a
`PASSNUM_` variable that names no setting (a typo would otherwise leave the default in force
without a word), stops the program with one line naming the variable (`SettingsError`).
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import Field, ValidationError, create_model
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "PASSNUM_"
# Variables with the prefix that are not settings, each read where it is documented: the
# bootstrap script's interpreter, the redeemer's profiler, the auditor's trusted keys, and the
# operator's token of `passnum operator ...` (passnum/tools/operator_cli.py). The SEPA debtor
# account is settings (debtor_name, debtor_iban, debtor_bic): the PASSNUM_SEPA_* names it
# once had are refused as unknown, so that a configuration still using them is told. The
# last two are read by docker-compose on the operator's host (docker-compose.yml), in the
# shell that also runs `passnum status`.
OTHER_VARIABLES = frozenset({
    "PASSNUM_PYTHON", "PASSNUM_REDEEMER_PROFILE", "PASSNUM_AUDITOR_TRUSTED_KEYS",
    "PASSNUM_OPERATOR_TOKEN", "PASSNUM_DATABASE_PASSWORD", "PASSNUM_CHAIN_SIGNING_KEY",
})
Port = Annotated[int, Field(ge=1, le=65_535)]
Positive = Annotated[int, Field(ge=1)]
PositiveSeconds = Annotated[float, Field(gt=0)]


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
    partitions: Annotated[int, Field(ge=1, le=1000)] = 4
    # Tansu completes a group join in about half the session timeout: keep it short.
    session_timeout_seconds: PositiveSeconds = 6.0
    heartbeat_interval_seconds: PositiveSeconds = 1.0
    # One PostgreSQL transaction per batch of at most this many commands.
    batch_max_commands: Positive = 1000
    batch_max_wait_seconds: float = 0.05
    # ... and at most this many expected events per transaction (a handler may say that a
    # command weighs more than one: an order of N booklets is N events). Bounds the memory
    # of a batch: a thousand orders of a thousand booklets would be a million events.
    batch_max_events: Positive = 20_000
    # A month's close reads and marks its redemptions (1.37 million a month at national
    # size) this many per call to PostgreSQL: psycopg converts a result and dumps an array
    # in C without releasing the GIL, so one call for the whole month stopped the worker's
    # event loop, and its consumer group's heartbeats, while the close was decided in a
    # thread: the longest stall of a national month's close is 1.15 s in one call and
    # 0.30 s at 50,000 a call on the quiet machine (bench/close_stall.py, docs/redeemer.md).
    close_rows_per_call: Positive = 50_000
    # A fetch returns as soon as records arrive, or after this long. Short, because Tansu
    # answered a long poll late (75 ms with 500 ms allowed, measured): an idle worker then
    # sends a few hundred small fetches per second, a cheap price for interactive latency.
    fetch_max_wait_seconds: float = 0.01
    # How a worker takes its input: "batch" (aiokafka getmany in a service of the faust
    # worker, the default) or "stream" (a faust agent's take_events, about 4 k records/s at
    # most here: kept to measure against). See passnum/core/worker.py.
    consumer: Literal["batch", "stream"] = "batch"
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
    infra_retry_limit: Positive = 5
    infra_retry_backoff_seconds: float = 0.5
    # A record that fails alone each time it is decided goes to the dead-letter topic
    # (passnum.core.worker, _decide_alone). More than this many in a row, with no record decided
    # normally in between, is a systematic failure (a bug, a broken schema): the worker
    # exits loudly instead of dead-lettering its whole input.
    records_failed_in_a_row_max: int = 20
    # How long the HTTP APIs wait for the broker to take a command before answering 503
    # (the broker is down or unreachable): a counter must never hang on it.
    log_send_timeout_seconds: float = 5.0
    # The code key signs voucher codes; it is configuration and never enters the log.
    voucher_code_key: str = "demo-only-voucher-code-key-change-me"
    # Validity tolerance after 31 December (the January grace period).
    grace_days_after_year_end: int = 31
    # How far ahead of the redeemer's clock a scan may be dated (venues' clocks drift): a
    # scan dated later is refused (`scan_in_the_future`), and the auditor names a
    # redemption dated later than the audit's own instant by more than this.
    scan_clock_tolerance_seconds: int = 300
    # The processors' Ed25519 key for chain heads (passnum/core/head_signatures.py); empty:
    # <run_directory>/chain-signing-key.pem, generated at first start (the demo's key).
    chain_signing_key_file: str = ""
    # The public keys (hex, comma separated) the auditor verifies chain heads with; empty:
    # the public half of the key file above when it exists on this machine.
    chain_public_keys: str = ""
    # The key `passnum audit --follow` signs monthly checkpoints with (services/auditor/
    # checkpoint.py); empty: <run_directory>/auditor-checkpoint-key.pem, made on first use.
    auditor_checkpoint_key_file: str = ""
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
    # The most booklets one printed document holds (two pages each; 35 to 55 ms of CPU a
    # booklet, measured): a bigger order is refused with the reason, and printed by booklet.
    print_booklets_max: int = 500
    # How long an HTTP API trusts a token it verified before asking PostgreSQL again: the
    # longest a revoked token keeps working.
    token_cache_seconds: float = 5.0
    web_port_issuer: Port = 6066
    web_port_redeemer: Port = 6067
    web_port_auditor: Port = 6068
    # The address the workers' and the auditor's web servers listen on (never 0.0.0.0 unless
    # said here: a container sets it to reach them from the compose network).
    web_host: str = "127.0.0.1"
    # Logs: the level of passnum's own loggers, and "json" (one object a line, for log
    # collectors) or "text" (for a terminal). Kafka clients log at WARNING whatever this says.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Readiness: PostgreSQL must answer SELECT 1 within this bound...
    health_database_timeout_seconds: PositiveSeconds = 2.0
    # ... and a partition whose records wait (high-water mark above the position) without
    # the position moving for this long makes the worker unready (a stalled consumer).
    health_lag_stuck_seconds: PositiveSeconds = 30.0
    # How long a command-line tool waits for the broker or the database before it says
    # "unreachable" (exit 3) instead of retrying.
    infrastructure_timeout_seconds: PositiveSeconds = 5.0
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
    fault_crash_point: Literal["", "after_decide", "after_publish"] = ""
    fault_crash_on_batch: int = 0
    # Fault injection for the poison-record proof: a batch holding a record whose value
    # contains these bytes fails with ValueError each time it is decided (empty: never).
    fault_poison_marker: str = ""

    @classmethod
    def from_environment(cls, environment: dict[str, str] | None = None) -> "Settings":
        """The settings named by `PASSNUM_*` variables (of `os.environ` by default), checked:
        raises SettingsError (one line) for a bad value or an unknown variable."""
        environment = dict(os.environ if environment is None else environment)
        refuse_unknown_variables(environment)
        model = _environment_model()
        source = _MappingSource(model, environment)
        try:
            checked = model(**source())
        except ValidationError as error:
            raise SettingsError(_one_line(error, environment)) from None
        return cls(**{f.name: getattr(checked, f.name) for f in fields(cls)})

    @classmethod
    def from_environment_or_exit(cls) -> "Settings":
        """For composition roots run by another program (faust's CLI): a bad setting prints
        one line and exits with the usage code (2) instead of an import traceback."""
        try:
            return cls.from_environment()
        except SettingsError as error:
            print(f"passnum: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_environment(self) -> dict[str, str]:
        """The inverse of `from_environment`: hand these settings to a child process."""
        return {f"PASSNUM_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}


class SettingsError(ValueError):
    """A setting the program cannot start with; its message is one line for the operator."""


def refuse_unknown_variables(environment: dict[str, str]) -> None:
    known = {f"{PREFIX}{f.name.upper()}" for f in fields(Settings)} | OTHER_VARIABLES
    unknown = sorted(name for name in environment
                     if name.upper().startswith(PREFIX) and name.upper() not in known)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SettingsError(f"{name} is not a passnum setting{hint}; "
                            "docs/operations.md lists them")


class _EnvironmentBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, frozen=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what from_environment hands over (its mapping), never os.environ behind it.
        return (init_settings,)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping."""

    def __init__(self, settings_class: type[BaseSettings], environment: dict[str, str]) -> None:
        self.environment = environment
        super().__init__(settings_class)

    def _load_env_vars(self) -> dict[str, str | None]:
        return {name.lower(): value for name, value in self.environment.items()}


_model_cache: dict[tuple[str, ...], type[BaseSettings]] = {}


def _environment_model() -> type[BaseSettings]:
    """The pydantic-settings model of the dataclass: same names, types, defaults and
    constraints (one declaration of each setting)."""
    names = tuple(f.name for f in fields(Settings))
    if names not in _model_cache:
        hints = get_type_hints(Settings, include_extras=True)
        definitions: dict[str, Any] = {f.name: (hints[f.name], f.default)
                                       for f in fields(Settings)}
        _model_cache[names] = create_model("EnvironmentSettings", __base__=_EnvironmentBase,
                                           **definitions)
    return _model_cache[names]


EXPECTED = {"int_parsing": "an integer", "float_parsing": "a number",
            "bool_parsing": "true or false", "literal_error": "one of the listed values"}


def _one_line(error: ValidationError, environment: dict[str, str]) -> str:
    lower = {name.lower(): value for name, value in environment.items()}
    problems = []
    for problem in error.errors(include_url=False):
        name = f"{PREFIX}{str(problem['loc'][0]).upper()}" if problem["loc"] else PREFIX
        raw = lower.get(name.lower(), "")
        expected = EXPECTED.get(problem["type"])
        message = f"expects {expected}: {problem['msg']}" if expected else problem["msg"]
        problems.append(f"{name}={raw!r}: {message}")
    return "; ".join(problems)
