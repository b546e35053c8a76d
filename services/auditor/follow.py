"""`passnum audit --follow`: keep tailing the log and re-checking, and answer on
`settings.web_host`:`settings.web_port_auditor`:
- GET /health/ and /health/ready: 200 while the cycles succeed and the books are sound, 503
  when a cycle fails or the books are not sound (docker-compose health-checks it: an unsound
  ledger is an alarm, not a healthy service);
- GET /health/live: 200 while the process serves;
- GET /metrics: passnum_audit_* (findings by code, soundness, records read, cycle times).

Each cycle reads every topic from where the last one stopped to its current end (the same
chain verifier and books, so the work per cycle is the new records plus the end
judgements), judges, and loads the read models. Waits are bounded: `interval_seconds`
between cycles, the reader's own stall and time limits inside one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from passnum.core.metrics import CONTENT_TYPE, AuditMetrics, exposition
from passnum.core.settings import Settings
from services.auditor.replay import Replayer, ReplayOptions

logger = logging.getLogger(__name__)
# After this many consecutive failed cycles (broker or database down) the process exits
# loudly, and its supervisor restarts it from offset 0.
MAX_FAILED_CYCLES = 12


class Health:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[str, object] = {"status": "starting"}

    def update(self, **values: object) -> None:
        with self.lock:
            self.state.update(values)

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            return dict(self.state)


def ready(state: dict[str, object]) -> bool:
    """Starting, or the last cycle succeeded and found the books sound."""
    if state.get("status") == "starting":
        return True
    return state.get("status") == "ok" and state.get("sound") is not False


def serve_health(port: int, health: Health, metrics: AuditMetrics | None = None,
                 host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.rstrip("/")
            if path == "/metrics" and metrics is not None:
                self._send(200, CONTENT_TYPE, exposition(metrics.registry))
            elif path == "/health/live":
                self._send(200, "application/json", b'{"status": "live"}')
            elif path in ("/health", "/health/ready"):
                state = health.snapshot()
                self._send(200 if ready(state) else 503, "application/json",
                           json.dumps(state, sort_keys=True).encode())
            else:
                self.send_error(404)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *arguments: object) -> None:
            return  # health checks every 10 s would drown the log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="health").start()
    return server


def follow_cycle(replayer: Replayer, settings: Settings, use_database: bool) -> dict[str, object]:
    read = replayer.read(trim=False)  # (the next cycle would grow the columns again)
    _checkpoint_due_months(replayer, settings)
    report = replayer.judge()
    if use_database:
        from services.auditor.live import agree_with_database

        report = agree_with_database(settings, replayer, report)
    return {"status": "ok", "sound": report.sound, "records_read": replayer.records_read,
            "new_records": read, "findings": dict(report.findings_by_code),
            "as_of": report.as_of}


def _checkpoint_due_months(replayer: Replayer, settings: Settings) -> None:
    """Monthly checkpoints in normal operation: each month before the current one is signed
    once, over the prefixes it covers now, and published (read back, and verified, by the
    next cycle)."""
    from datetime import datetime, timezone

    from services.auditor import checkpoint
    from services.auditor.publish import publish_auditor_events

    if replayer.options.until is not None or replayer.options.collectivite is not None:
        return
    key = checkpoint.load_or_create_key(checkpoint.checkpoint_key_path(
        settings.run_directory, settings.auditor_checkpoint_key_file))
    ours = checkpoint.public_key_hex(key.public_key())  # another key's (forged?) do not count
    signed = {event.month for event in replayer.books.checkpoints if event.public_key == ours}
    signed |= getattr(replayer, "months_signed", set())
    events = checkpoint.sign_due_months(replayer.chains.streams, signed, key,
                                        datetime.now(timezone.utc))
    if events:
        publish_auditor_events(settings, events)
        logger.info("checkpoints signed: %s", ", ".join(event.month for event in events))
    replayer.months_signed = signed  # type: ignore[attr-defined]


def follow_forever(settings: Settings, options: ReplayOptions, *, interval_seconds: float,
                   use_database: bool, max_cycles: int | None = None) -> None:
    health = Health()
    metrics = AuditMetrics()
    server = serve_health(settings.web_port_auditor, health, metrics, settings.web_host)
    replayer = Replayer(settings, options)
    failures, cycles = 0, 0
    try:
        while max_cycles is None or cycles < max_cycles:
            cycles += 1
            started = time.monotonic()
            try:
                state = follow_cycle(replayer, settings, use_database)
                health.update(**state, checked_at=time.time())
                metrics.observe_cycle(time.monotonic() - started, state)
                failures = 0
            except Exception as error:  # an infra error: bounded retries, then exit loudly
                metrics.observe_failure()
                failures += 1
                health.update(status="failing", error=str(error)[:300])
                logger.warning("audit cycle failed (%d/%d): %s", failures, MAX_FAILED_CYCLES,
                               error)
                if failures >= MAX_FAILED_CYCLES:
                    raise
            time.sleep(min(max(interval_seconds, 0.1), 300.0))
    finally:
        server.shutdown()
