"""What a worker's health routes check, and the lag it watches.

- `/health/live`: the process is up and its event loop turns (the answer itself proves it;
  it also says how late the last loop tick was).
- `/health/ready` (and `/health/`, kept for the tools that wait on it): PostgreSQL answers
  `SELECT 1` within `health_database_timeout_seconds`; the broker answers a metadata request
  within the same bound and the batch consumer has joined its group; the HTTP API has
  opened its connections; and no input partition is stuck: records wait (Fetch high-water
  mark above the position) while the position has not moved for
  `health_lag_stuck_seconds`, nor has the batch in hand been in progress that long.
  Unready answers 503 with every check and why, in JSON.

The lag is sampled by a timer (`refresh`), never on the batch's path; the same samples feed
the `passnum_consumer_lag_records` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from passnum.core.database import SESSION_OPTIONS
from passnum.core.metrics import WorkerMetrics
from passnum.core.settings import Settings

logger = logging.getLogger(__name__)

# The operator's routes every worker serves besides its API (not in the API's OpenAPI
# document: they are for probes and Prometheus, not for tenants).
OPERATIONS_PATHS = frozenset({"/health/", "/health/ready", "/health/live", "/metrics"})
# How often the lag and the outbox backlog are sampled.
REFRESH_INTERVAL_SECONDS = 2.0
# A loop tick later than this (the event loop blocked) is reported by the liveness answer.
LOOP_TICK_SECONDS = 0.5


@dataclass
class PartitionProgress:
    high_water: int
    position: int
    # Monotonic time since which records have waited with the position unchanged (None:
    # nothing waits, or the position just moved).
    waiting_since: float | None = None


@dataclass
class LagTracker:
    """Per input partition: the last high-water mark and position seen, and since when the
    position has not moved while records wait."""

    partitions: dict[tuple[str, int], PartitionProgress] = field(default_factory=dict)

    def observe(self, samples: dict[tuple[str, int], tuple[int, int]], now: float) -> None:
        """`samples`: (high-water mark, position) per assigned partition."""
        self.partitions = {key: self._next(self.partitions.get(key), high_water, position, now)
                           for key, (high_water, position) in samples.items()}

    @staticmethod
    def _next(before: PartitionProgress | None, high_water: int, position: int,
              now: float) -> PartitionProgress:
        if high_water <= position:
            return PartitionProgress(high_water, position, None)
        if before is None or before.position != position or before.waiting_since is None:
            return PartitionProgress(high_water, position, now)
        return PartitionProgress(high_water, position, before.waiting_since)

    def lags(self) -> dict[tuple[str, int], int]:
        return {key: max(0, p.high_water - p.position) for key, p in self.partitions.items()}

    def stuck(self, now: float, limit_seconds: float) -> list[str]:
        return [f"{topic}/{partition}: position {p.position} has not moved for "
                f"{now - p.waiting_since:.0f} s while the high-water mark is {p.high_water}"
                for (topic, partition), p in sorted(self.partitions.items())
                if p.waiting_since is not None and now - p.waiting_since >= limit_seconds]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


class WorkerHealth:
    """The checks of one worker. The batch consumer registers itself (`consumer`), the API
    its readiness (`api_ready`); the worker's timer calls `refresh`."""

    def __init__(self, app_id: str, processor: str, settings: Settings,
                 metrics: WorkerMetrics) -> None:
        self.app_id = app_id
        self.processor = processor
        self.settings = settings
        self.metrics = metrics
        self.consumer: Any = None  # aiokafka.AIOKafkaConsumer once the batch consumer started
        self.runner: Any = None  # passnum.core.worker.BatchRunner: since when a batch is in hand
        self.api_ready: list[asyncio.Event] = []  # one per HTTP API mounted
        self.lag = LagTracker()
        self.connection: psycopg.AsyncConnection | None = None
        self.connection_lock = asyncio.Lock()
        self.last_tick: float | None = None  # until the ticking task starts

    # ------------------------------------------------------------------ liveness

    def live(self) -> tuple[bool, dict[str, Any]]:
        last = time.monotonic() if self.last_tick is None else self.last_tick
        late = max(0.0, time.monotonic() - last - LOOP_TICK_SECONDS)
        return True, {"status": "live", "app": self.app_id, "loop_late_seconds": round(late, 3)}

    async def tick_forever(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(LOOP_TICK_SECONDS)

    # ------------------------------------------------------------------ readiness

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        checks = [await self._database(), await self._broker(), self._lag(), self._api()]
        ok = all(check.ok for check in checks)
        body = {"status": "ready" if ok else "unready", "app": self.app_id,
                "checks": {check.name: check.as_json() for check in checks},
                "lag": {f"{topic}/{partition}": lag
                        for (topic, partition), lag in sorted(self.lag.lags().items())}}
        return ok, body

    async def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        """One query on the health connection, within the bound; reconnects when needed."""
        timeout = self.settings.health_database_timeout_seconds
        async with self.connection_lock:
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = await asyncio.wait_for(psycopg.AsyncConnection.connect(
                        self.settings.database_url, autocommit=True, options=SESSION_OPTIONS,
                        connect_timeout=max(1, int(timeout))), timeout)
                cursor = await asyncio.wait_for(self.connection.execute(sql, parameters),
                                                timeout)
                return await cursor.fetchone()
            except BaseException:
                connection, self.connection = self.connection, None
                if connection is not None:
                    await _close_quietly(connection)
                raise

    async def _database(self) -> Check:
        started = time.monotonic()
        try:
            try:
                await self._query("SELECT 1")
            except psycopg.OperationalError:
                # A connection cut since the last probe (a database restart) says nothing of
                # now: ask once more on a new one.
                await self._query("SELECT 1")
        except asyncio.TimeoutError:
            return Check("database", False, "no answer to SELECT 1 within "
                         f"{self.settings.health_database_timeout_seconds} s")
        except (psycopg.Error, OSError) as error:
            return Check("database", False, f"unreachable: {_first_line(error)}")
        return Check("database", True, f"SELECT 1 in {time.monotonic() - started:.3f} s")

    async def _broker(self) -> Check:
        consumer = self.consumer
        if consumer is None:
            if self.settings.consumer == "stream":
                return Check("broker", True, "stream consumer: faust watches the broker")
            return Check("broker", False, "the batch consumer has not started")
        try:
            await asyncio.wait_for(consumer._client.fetch_all_metadata(),
                                   self.settings.health_database_timeout_seconds)
        except (asyncio.TimeoutError, Exception) as error:  # noqa: BLE001 - any failure
            return Check("broker", False, f"no metadata answer: {_first_line(error)}")
        # Joined: a known coordinator and a member id (Tansu answers generation 0 to every
        # join, so the generation tells nothing here).
        coordinator = consumer._coordinator
        if coordinator is None or coordinator.coordinator_id is None \
                or not getattr(coordinator, "member_id", ""):
            return Check("broker", False, "the consumer has not joined its group yet")
        return Check("broker", True, f"group member, {len(consumer.assignment())} "
                     "partition(s) assigned")

    def _lag(self) -> Check:
        now, limit = time.monotonic(), self.settings.health_lag_stuck_seconds
        stuck = self.lag.stuck(now, limit)
        # The position moves when records are fetched, not when they are decided: a batch
        # that hangs (a lock wait, a database that stopped answering) shows here instead.
        busy_since = getattr(self.runner, "busy_since", None)
        if busy_since is not None and now - busy_since >= limit:
            stuck.append(f"the batch in hand has been in progress for {now - busy_since:.0f} s")
        if stuck:
            return Check("lag", False, "stuck: " + "; ".join(stuck))
        return Check("lag", True, f"{sum(self.lag.lags().values())} record(s) waiting")

    def _api(self) -> Check:
        if all(ready.is_set() for ready in self.api_ready):
            return Check("api", True, f"{len(self.api_ready)} API(s) with connections open")
        return Check("api", False, "the HTTP API has not opened its connections yet")

    # ------------------------------------------------------------------ sampling

    async def refresh(self) -> None:
        """Sample each assigned partition's high-water mark and position, and the outbox
        backlog (when the database answers)."""
        consumer = self.consumer
        if consumer is not None:
            samples: dict[tuple[str, int], tuple[int, int]] = {}
            for partition in list(consumer.assignment()):
                # A rebalance can revoke the partition during the previous iteration's
                # await, and aiokafka asserts on the high-water mark of a partition it no
                # longer holds: an AssertionError that ended the sampler, and with it the
                # worker (seen under load, during a heartbeat-expiry rebalance).
                if partition not in consumer.assignment():
                    continue
                high_water = consumer.highwater(partition)
                if high_water is None:
                    continue  # no fetch answer for it yet
                try:
                    position = await asyncio.wait_for(consumer.position(partition), 1.0)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - revoked meanwhile
                    continue
                samples[(partition.topic, partition.partition)] = (high_water, position)
            self.lag.observe(samples, time.monotonic())
            self.metrics.set_lag(self.lag.lags())
        try:
            row = await self._query("SELECT count(*) FROM outbox WHERE processor = %s",
                                    (self.processor,))
        except (asyncio.TimeoutError, psycopg.Error, OSError):
            return  # readiness says why; the gauge keeps its last value
        self.metrics.outbox_backlog.set(row[0])

    async def close(self) -> None:
        if self.connection is not None:
            await _close_quietly(self.connection)


async def _close_quietly(connection: psycopg.AsyncConnection) -> None:
    try:
        await asyncio.wait_for(connection.close(), 1.0)
    except (asyncio.TimeoutError, psycopg.Error, OSError):
        pass


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------------- on the worker's web server


def mount_observability(app: Any, app_id: str, settings: Settings) -> WorkerHealth:
    """Serve /health/live, /health/ready, /health/ (readiness) and /metrics on the faust
    worker's web server, and sample lag and backlog in a service of the worker. The HTTP
    middleware (`http_middleware`) is added by the app when its web server initialises."""
    import mode

    metrics = WorkerMetrics(app_id)
    health = WorkerHealth(app_id, "", settings, metrics)

    async def readiness(view: Any, request: Any) -> Any:
        ok, body = await health.ready()
        return view.json(body, status=200 if ok else 503)

    async def liveness(view: Any, request: Any) -> Any:
        _, body = health.live()
        return view.json(body)

    async def scrape(view: Any, request: Any) -> Any:
        from aiohttp import web

        from passnum.core.metrics import CONTENT_TYPE, exposition

        return web.Response(body=exposition(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE})

    app.page("/health/", name="health")(readiness)
    app.page("/health/ready", name="health-ready")(readiness)
    app.page("/health/live", name="health-live")(liveness)
    app.page("/metrics", name="metrics")(scrape)

    class HealthSampler(mode.Service):
        @mode.Service.task
        async def _tick(self) -> None:
            await health.tick_forever()

        @mode.Service.timer(REFRESH_INTERVAL_SECONDS)
        async def _refresh(self) -> None:
            # The samples are advisory (lag, backlog): a failure to take them is logged and
            # the next tick tries again, since a crashed service ends the whole worker.
            try:
                await health.refresh()
            except Exception:  # noqa: BLE001 - see above
                logger.exception("health sampling failed")

        async def on_stop(self) -> None:
            await health.close()

    app.service(HealthSampler)
    return health


def http_middleware(metrics: WorkerMetrics) -> Any:
    """An aiohttp middleware: times every request into `passnum_http_request_seconds` by
    route pattern (bounded label values), method and status, and carries its request id
    (the client's X-Request-Id, else its Idempotency-Key, else a new one) into the log
    records written meanwhile and the answer's X-Request-Id header."""
    import uuid

    from aiohttp import web

    from passnum.core.logging_setup import request_id_variable

    access = logging.getLogger("passnum.edge.http")

    @web.middleware
    async def observe(request: Any, handler: Any) -> Any:
        request_id = (request.headers.get("X-Request-Id") or request.headers.get(
            "Idempotency-Key") or uuid.uuid4().hex)[:128]
        token = request_id_variable.set(request_id)
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            seconds = time.monotonic() - started
            route = _route_label(request)
            metrics.http_seconds.labels(route, request.method, str(status)).observe(seconds)
            # A failure of the edge itself is worth a warning; refusals, 503 "starting" and
            # 504 "outcome pending" are answers, and the health routes are polled.
            level = logging.WARNING if status == 500 else logging.DEBUG
            if access.isEnabledFor(level):
                access.log(level, "%s %s %s", request.method, route, status,
                           extra={"route": route, "method": request.method, "status": status,
                                  "seconds": round(seconds, 4)})
            request_id_variable.reset(token)

    observe.passnum = True  # type: ignore[attr-defined]
    return observe


def _route_label(request: Any) -> str:
    info = request.match_info
    resource = getattr(getattr(info, "route", None), "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return str(resource.canonical)
