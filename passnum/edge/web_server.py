"""An HTTP API (`passnum.edge.web_api.TenantApi`) served by a process of its own: a plain
aiohttp application, with no faust and no batch consumer in it.

Why a process of its own: served by the worker's web server, the API shared one event loop
with the consumer, the decisions and the publication, and requests queued behind batches
and the reverse (docs/redeemer.md, "HTTP latency"). Here the API submits its commands to
the log through its gateway. The worker that started it hands it the outcomes of every
batch it commits through a pipe (`OutcomeFeed`), as its runner handed them to an API in its
own process: no lookup for them, and the answers that are never recorded (a check) reach
it too. Outcomes decided by another worker process, or replayed, are found as any process
finds them: at the commit notification (`NOTIFY passnum_outcomes`), one lookup for every
waiting request.

The worker keeps its own web server for its health and metrics, on a Unix socket only this
host reaches; the API process answers `/health/...` and `/metrics` for both (`Operations`),
so that probes, `passnum status` and Prometheus keep asking one port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import IO, Any, Iterable

from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from passnum.edge.openapi import OPENAPI_PATH
from passnum.edge.problems import PROBLEM_MEDIA_TYPE, is_problem
from passnum.edge.web_api import Answer, RequestHandler, TenantApi

logger = logging.getLogger(__name__)

# The paths the worker answers and the API process relays (passnum.core.health's own).
OPERATIONS_PATHS = ("/health/", "/health/ready", "/health/live", "/metrics")
# A bound on each relayed request: a worker stuck longer than this is reported unready.
OPERATIONS_TIMEOUT_SECONDS = 5.0
# The histogram the worker's web server keeps for its own requests: the API process keeps
# it for the API's, and the relayed exposition carries this process's one instead.
HTTP_HISTOGRAM = "passnum_http_request_seconds"


def json_response(answer: Answer) -> web.Response:
    """An API answer as faust's `View.json` wrote it (text, so `charset=utf-8`); error
    answers are RFC 9457 problem details, with their own media type."""
    content_type = PROBLEM_MEDIA_TYPE if is_problem(answer.body) else "application/json"
    return web.Response(text=json.dumps(answer.body, separators=(",", ":")), status=answer.status,
                        headers=answer.headers or None, content_type=content_type)


def add_api(app: web.Application, api: TenantApi, document: dict[str, Any] | None) -> None:
    """Serve every route of `api` with its handler, open its connections when the
    application starts and close them when it stops; `document` at OPENAPI_PATH (None: a
    second API of the same process, whose routes the first one's document describes)."""
    for route, handler in api.routed_handlers():
        app.router.add_route(route.method.upper(), route.path, _view(api, handler),
                             name=f"{api.processor}:{route.operation_id}")
    if document is not None:
        app.router.add_get(OPENAPI_PATH, _document_view(document))

    async def start(_: web.Application) -> None:
        await api.start()

    async def stop(_: web.Application) -> None:
        await api.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def _view(api: TenantApi, handler: RequestHandler) -> Any:
    async def view(request: web.Request) -> web.Response:
        return json_response(await api.respond(request, handler))

    return view


def _document_view(document: dict[str, Any]) -> Any:
    text = json.dumps(document, separators=(",", ":"))

    async def view(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/json")

    return view


class ApiMetrics:
    """What `passnum.core.health.http_middleware` needs: the HTTP histogram, here in a
    registry of the API process's own."""

    def __init__(self) -> None:
        from passnum.core.metrics import HTTP_BUCKETS

        self.registry = CollectorRegistry(auto_describe=True)
        self.http_seconds = Histogram(HTTP_HISTOGRAM, "HTTP requests served, by route, "
                                      "method and status", ["route", "method", "status"],
                                      buckets=HTTP_BUCKETS, registry=self.registry)


class Operations:
    """`/health/...` and `/metrics` of the API process and of the worker behind it.

    Readiness is the worker's (database, broker, group, lag) and the API's own: its
    connections open (unready until then, whatever the worker says). Liveness is the
    worker's, relayed. `/metrics` is the worker's exposition, with the HTTP
    histogram of this process in place of the worker's (which counts only these relays)."""

    def __init__(self, worker_socket: str, apis: list[TenantApi], metrics: ApiMetrics) -> None:
        self.worker_socket = worker_socket
        self.apis = apis
        self.metrics = metrics
        self.session: ClientSession | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/health/", self.readiness)
        app.router.add_get("/health/ready", self.readiness)
        app.router.add_get("/health/live", self.liveness)
        app.router.add_get("/metrics", self.scrape)
        app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def _worker(self, path: str) -> tuple[int, bytes, str]:
        if self.session is None or self.session.closed:
            self.session = ClientSession(
                connector=UnixConnector(path=self.worker_socket),
                timeout=ClientTimeout(total=OPERATIONS_TIMEOUT_SECONDS))
        async with self.session.get(f"http://worker{path}") as answer:
            return answer.status, await answer.read(), answer.headers.get(
                "Content-Type", "application/json")

    async def readiness(self, request: web.Request) -> web.Response:
        unready = [api.processor for api in self.apis if not api.ready.is_set()]
        try:
            status, body, _ = await self._worker("/health/ready")
            document = json.loads(body)
        except (ClientError, OSError, asyncio.TimeoutError, ValueError) as error:
            status, document = 503, {"status": "unready", "checks": {"worker": {
                "ok": False, "detail": f"the worker does not answer: {error!r}"[:300]}}}
        checks = document.setdefault("checks", {})
        checks["api"] = {"ok": not unready, "detail": (
            f"{len(self.apis)} API(s) with connections open, in process of their own"
            if not unready else f"not ready yet: {', '.join(unready)}")}
        ok = status == 200 and not unready
        document["status"] = "ready" if ok else "unready"
        return web.json_response(document, status=200 if ok else 503)

    async def liveness(self, request: web.Request) -> web.Response:
        """The worker's liveness (how late its loop's last tick was); that this process
        relays it proves that its own loop turns."""
        try:
            status, body, content_type = await self._worker("/health/live")
        except (ClientError, OSError, asyncio.TimeoutError) as error:
            return web.json_response({"status": "dead", "detail": f"the worker does not "
                                      f"answer: {error!r}"[:300]}, status=503)
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    async def scrape(self, request: web.Request) -> web.Response:
        own = generate_latest(self.metrics.registry)
        try:
            status, body, content_type = await self._worker("/metrics")
        except (ClientError, OSError, asyncio.TimeoutError) as error:
            logger.warning("the worker's metrics are unavailable: %r", error)
            return web.Response(body=own, status=503,
                                headers={"Content-Type": "text/plain; version=0.0.4"})
        worker = b"\n".join(line for line in body.split(b"\n")
                            if HTTP_HISTOGRAM.encode() not in line)
        return web.Response(body=worker.rstrip(b"\n") + b"\n" + own, status=status,
                            headers={"Content-Type": content_type})


# ---------------------------------------------------------------------- outcomes by pipe

# A frame: its length, then per outcome the lengths of its request id, fingerprint and
# packed events, then those bytes.
_FRAME = struct.Struct(">I")
_ENTRY = struct.Struct(">III")


def encode_outcomes(outcomes: dict[str, tuple[str, bytes]]) -> bytes:
    """One batch's outcomes ({request id: (fingerprint, packed events)}) as one frame."""
    parts = []
    for request_id, (fingerprint, packed) in outcomes.items():
        identifier, printed = request_id.encode(), fingerprint.encode()
        parts += [_ENTRY.pack(len(identifier), len(printed), len(packed)), identifier,
                  printed, packed]
    body = b"".join(parts)
    return _FRAME.pack(len(body)) + body


def decode_outcomes(body: bytes) -> dict[str, tuple[str, bytes]]:
    outcomes = {}
    offset = 0
    while offset < len(body):
        identifier, printed, packed = _ENTRY.unpack_from(body, offset)
        offset += _ENTRY.size
        request_id = body[offset:offset + identifier].decode()
        offset += identifier
        fingerprint = body[offset:offset + printed].decode()
        offset += printed
        outcomes[request_id] = (fingerprint, body[offset:offset + packed])
        offset += packed
    return outcomes


class OutcomeFeed:
    """In the API process: reads the frames the worker writes to this process's standard
    input (`encode_outcomes`) and hands each batch's outcomes to every API's gateway."""

    def __init__(self, apis: Iterable[TenantApi], pipe: IO[bytes]) -> None:
        self.apis = list(apis)
        self.pipe = pipe
        self.task: asyncio.Task[None] | None = None

    def add_to(self, app: web.Application) -> None:
        app.on_startup.append(lambda _: self.start())
        app.on_cleanup.append(lambda _: self.stop())

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._read_forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self.pipe)
        while True:
            try:
                header = await reader.readexactly(_FRAME.size)
                body = await reader.readexactly(_FRAME.unpack(header)[0])
            except asyncio.IncompleteReadError:
                # The worker ended (the kernel ends this process with it).
                logger.warning("the worker's outcome feed ended")
                return
            outcomes = decode_outcomes(body)
            for api in self.apis:
                if api.gateway is not None:
                    api.gateway.resolve_decided(outcomes)
