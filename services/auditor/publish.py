"""Publishing the auditor's own events (signed checkpoints, credit notes) on its topic."""

from __future__ import annotations

from typing import Iterable

from passnum.core.codec import encode
from passnum.core.log import make_producer
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from schemas.base import Event

PUBLISH_TIMEOUT_SECONDS = 30.0


def publish_auditor_events(settings: Settings, events: Iterable[Event]) -> int:
    topic = topology_for(settings).auditor_events
    producer = make_producer(settings)
    count = 0
    try:
        for event in events:
            key = getattr(event, "month", None) or str(getattr(event, "year", "auditor"))
            future = producer.send(topic.name, key=key.encode(), value=encode(event))
            future.get(timeout=PUBLISH_TIMEOUT_SECONDS)
            count += 1
    finally:
        producer.close(timeout=PUBLISH_TIMEOUT_SECONDS)
    return count
