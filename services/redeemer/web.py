"""The redeemer's HTTP surface, served by a process of its own (passnum/edge/web_server.py):
the venues' API (services/redeemer/api.py), the operator's routes
(services/redeemer/operator_api.py), the counter page (services/redeemer/counter), the
OpenAPI document, and the worker's health and metrics, relayed.

    python -m services.redeemer.web --port 6067 --worker-socket PATH

The redeemer worker starts it (`attach_api_process`, wired in services/redeemer/app.py)
with the worker's own settings and the port the worker was given, starts it again if it
ends, and takes it down with it: the kernel kills it when the worker dies, even by SIGKILL
(a worker restarted after a crash starts a new one). A crash of the API process loses
nothing: a command is in the log (its outcome is recorded and a retry with the same key
answers it) or its request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from aiohttp import web

from passnum.core.health import http_middleware
from passnum.core.processes import tune_garbage_collection
from passnum.core.settings import Settings
from passnum.edge.web_server import ApiMetrics, Operations, OutcomeFeed, add_api, encode_outcomes
from services.redeemer.api import RedeemerApi
from services.redeemer.counter import attach_counter
from services.redeemer.openapi import openapi_document
from services.redeemer.operator_api import operator_api

logger = logging.getLogger(__name__)

# After an unexpected end of the API process, the pause before it is started again.
RESTART_PAUSE_SECONDS = 1.0
# How long a stopping API process is given (its requests in flight end) before SIGKILL.
STOP_TIMEOUT_SECONDS = 10.0
# The outcomes written to the API process and not read yet, at most: past it (the API
# process is stuck), a batch's outcomes are not written and its requests answer 504.
FEED_BUFFER_MAX_BYTES = 64 * 1024 * 1024
# Linux's prctl(2) option: the signal this process gets when its parent ends.
_PR_SET_PDEATHSIG = 1


def build_web_app(settings: Settings, worker_socket: str, worker_tag: str | None = None,
                  outcomes: IO[bytes] | None = None) -> web.Application:
    """The tenants' API and the operator's routes (one OpenAPI document for both; a token
    the operator rotates or revokes here stops working at once in this process's tenant
    API), the counter page on the tenants' API, and the worker's operations routes.
    `outcomes`: the pipe on which the worker tagged `worker_tag` hands over the outcomes it
    commits (without it, every outcome is looked up at its notification)."""
    metrics = ApiMetrics()
    app = web.Application(middlewares=[http_middleware(metrics)])  # type: ignore[arg-type]
    api = RedeemerApi(settings)
    operator = operator_api(settings, (api.tokens,))
    if outcomes is not None:
        api.feeding_process = operator.feeding_process = worker_tag
        OutcomeFeed([api, operator], outcomes).add_to(app)
    add_api(app, api, openapi_document())
    add_api(app, operator, None)
    attach_counter(app, api)
    Operations(worker_socket, [api, operator], metrics).add_routes(app)
    return app


def worker_socket_path(tag: str) -> str:
    """Where the worker's own web server listens (a Unix socket: its health and metrics,
    relayed by the API process). `tag` names the worker process (passnum.core.processing.
    process_tag), so a worker started again after a crash never meets a stale socket."""
    return str(Path(tempfile.gettempdir()) / f"passnum-redeemer-{tag}.sock")


def remove_stale_sockets() -> None:
    """The sockets of workers that ended without cleaning up (killed): their process id,
    the tag's first part, names no process any more."""
    for path in Path(tempfile.gettempdir()).glob("passnum-redeemer-*.sock"):
        pid = path.name.removeprefix("passnum-redeemer-").split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    from passnum.core.logging_setup import configure_logging

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None, help="default: the setting web_host")
    parser.add_argument("--port", type=int, default=None,
                        help="default: the setting web_port_redeemer")
    parser.add_argument("--worker-socket", required=True,
                        help="the worker's web server (its health and metrics)")
    parser.add_argument("--worker-tag", default=None,
                        help="the worker's process tag: it writes its outcomes to stdin")
    arguments = parser.parse_args(argv)
    settings = Settings.from_environment_or_exit()
    configure_logging(settings)
    app = build_web_app(settings, arguments.worker_socket, arguments.worker_tag,
                        sys.stdin.buffer if arguments.worker_tag else None)
    tune_garbage_collection()
    web.run_app(app, host=arguments.host or settings.web_host,
                port=arguments.port or settings.web_port_redeemer, access_log=None,
                print=None, shutdown_timeout=STOP_TIMEOUT_SECONDS / 2)


# ---------------------------------------------------------------------- in the worker


def attach_api_process(app: Any, settings: Settings, worker_socket: str, runner: Any) -> None:
    """Run the API process beside the faust worker `app`, for as long as the worker runs, on
    the port and address the worker was told (`--web-port`, `--web-bind`), while the worker's
    own web server listens on `worker_socket`; hand it the outcomes of every batch that
    `runner` (passnum.core.worker.BatchRunner) commits."""
    import mode

    from passnum.core.processing import process_tag

    class ApiProcess(mode.Service):
        process: asyncio.subprocess.Process | None = None

        def _command(self) -> list[str]:
            return [sys.executable, "-m", "services.redeemer.web",
                    "--host", str(app.conf.web_bind), "--port", str(app.conf.web_port),
                    "--worker-socket", worker_socket, "--worker-tag", process_tag()]

        async def _spawn(self) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                *self._command(), env={**os.environ, **settings.as_environment()},
                stdin=asyncio.subprocess.PIPE, preexec_fn=_dies_with(os.getpid()))

        def feed(self, outcomes: dict[str, tuple[str, bytes]]) -> None:
            """A listener of the runner: never raises (the batch is committed; an API
            process that misses these answers 504 and the client's retry gets them)."""
            process = self.process
            if process is None or process.returncode is not None or process.stdin is None:
                return
            pipe = process.stdin
            if pipe.is_closing():
                return
            if pipe.transport.get_write_buffer_size() > FEED_BUFFER_MAX_BYTES:
                logger.warning("the API process does not read its outcomes: %s dropped",
                               len(outcomes))
                return
            pipe.write(encode_outcomes(outcomes))

        async def on_start(self) -> None:
            remove_stale_sockets()

        @mode.Service.task
        async def _supervise(self) -> None:
            while not self.should_stop:
                self.process = await self._spawn()
                code = await self.process.wait()
                if self.should_stop:
                    return
                logger.error("the redeemer's API process ended (exit code %s); started "
                             "again in %s s", code, RESTART_PAUSE_SECONDS)
                await self.sleep(RESTART_PAUSE_SECONDS)

        async def on_stop(self) -> None:
            process = self.process
            if process is not None and process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
                except asyncio.TimeoutError:
                    process.kill()
                    await process.wait()
            Path(worker_socket).unlink(missing_ok=True)

    service = ApiProcess()
    runner.outcome_listeners.append(service.feed)
    app.service(service)  # type: ignore[arg-type]


def _dies_with(parent: int) -> Callable[[], None]:
    """Run in the child before it executes: the kernel sends it SIGKILL when the worker
    ends, however it ends (a worker killed by SIGKILL runs no clean-up of its own)."""
    def set_parent_death_signal() -> None:
        if sys.platform.startswith("linux"):  # prctl(2) is Linux's; the images run Linux
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker ended before the call
            os._exit(1)

    return set_parent_death_signal


if __name__ == "__main__":
    main()
