"""How every passnum process logs: one JSON object a line (python-json-logger) or plain text,
passnum's own loggers at `settings.log_level`, the Kafka clients and faust's machinery at
WARNING, and their repeated warnings and errors let through once a minute at most.

Why: a worker logged about 540 lines for an 18-second demo, nearly all Kafka client chatter,
and about 38,000 ERROR lines in four minutes with the broker down (aiokafka logs every failed
reconnection). Decisions log their request id and event ids as fields (`extra=`), which a
log collector can search without parsing sentences.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from typing import Any, Iterator

from passnum.core.settings import Settings

# Loggers of libraries that talk to the broker or run the worker: useful only when something
# is wrong, so WARNING and above.
QUIET_LOGGERS = ("aiokafka", "kafka", "faust", "mode", "aiohttp.access", "asyncio")
# A warning or error of these libraries repeated (same logger, same message template) is let
# through once per window; the next one says how many were left out.
REPEAT_WINDOW_SECONDS = 60.0
REPEAT_KEYS_MAX = 1_000
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# The id of the HTTP request being served (set by passnum.core.health.http_middleware): every log
# record written while it is served carries it as `request_id`, unless it names its own.
request_id_variable: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "passnum_request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_variable.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class RepeatFilter(logging.Filter):
    """Lets the first record of each (logger, template) from the quiet libraries through, then
    at most one per `window_seconds`, counting the ones left out. passnum's own records always
    pass: they are few and each one says something."""

    def __init__(self, window_seconds: float = REPEAT_WINDOW_SECONDS,
                 clock: Any = time.monotonic) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self.clock = clock
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(QUIET_LOGGERS):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        last, suppressed = self.seen.get(key, (float("-inf"), 0))
        if now - last < self.window_seconds:
            self.seen[key] = (last, suppressed + 1)
            return False
        if len(self.seen) >= REPEAT_KEYS_MAX:
            self.seen.clear()
        self.seen[key] = (now, 0)
        if suppressed:
            record.suppressed_repeats = suppressed
            record.msg = f"{record.msg} ({suppressed} similar records left out)"
        return True


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: what `configure_logging` installs, and what the
    faust workers receive as `logging_config` (faust installs it in place of its own)."""
    if settings.log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FORMAT,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"repeats": {"()": RepeatFilter}, "request_id": {"()": RequestIdFilter}},
        "formatters": {"passnum": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "passnum", "filters": ["repeats", "request_id"]}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
            # kafka-python's selector warns whenever one of its tasks held the loop over
            # 100 ms: on a loaded machine that is every few seconds and says nothing an
            # operator can act on (and it broke the one-line errors of the CLI).
            "kafka.net.selector": {"level": "ERROR"},
            "passnum": {"level": settings.log_level},
            "services": {"level": settings.log_level},
        },
    }


def configure_logging(settings: Settings) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(settings))


@contextlib.contextmanager
def silenced(*names: str) -> Iterator[None]:
    """Loggers `names` say nothing below CRITICAL inside the block: for probes whose failures
    are expected and reported otherwise (the broker conformance check's verdicts)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def one_line_error(message: str) -> None:
    """What a command line prints for an operating error: one line on stderr."""
    print(f"passnum: {message}", file=sys.stderr)
