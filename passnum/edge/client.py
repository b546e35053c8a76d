"""A kafka-python client of the ledger: send commands, follow their outcomes.

Used by the demo, the CLI tools and the tests. It reads outcomes from the event topics,
de-duplicated by `event_id` (an event may be published twice after a crash).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Iterable

from kafka import TopicPartition

from passnum.core.codec import DecodeFailure, decode_event, encode
from passnum.core.log import make_consumer, make_producer
from passnum.core.settings import Settings
from passnum.core.topology import route_command, topology_for
from schemas.base import Command, Event


class LedgerClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = topology_for(settings)
        self.producer = make_producer(settings)
        self.consumer = make_consumer(settings)
        topics = [topic.name for topic in self.topology.event_topics()]
        partitions = [TopicPartition(topic, number) for topic in topics
                      for number in sorted(self.consumer.partitions_for_topic(topic) or ())]
        self.consumer.assign(partitions)
        for partition in partitions:
            self.consumer.seek(partition, 0)
        self.events_by_request: dict[str, list[Event]] = defaultdict(list)
        self.seen_event_ids: set[str] = set()
        self.duplicates = 0

    def send(self, commands: Iterable[Command]) -> None:
        for command in commands:
            topic, key = route_command(self.topology, command)
            self.producer.send(topic, key=key, value=encode(command))
        self.producer.flush()

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.producer.send(topic, key=key, value=value)
        self.producer.flush()

    def poll(self, timeout_seconds: float = 0.5) -> int:
        batches = self.consumer.poll(timeout_ms=int(timeout_seconds * 1000), max_records=50_000)
        count = 0
        for records in batches.values():
            for record in records:
                event = decode_event(record.value)
                if isinstance(event, DecodeFailure):
                    continue
                if event.event_id in self.seen_event_ids:
                    self.duplicates += 1
                    continue
                self.seen_event_ids.add(event.event_id)
                self.events_by_request[event.request_id].append(event)
                count += 1
        return count

    def wait_for(self, request_ids: Iterable[str], timeout_seconds: float = 60.0
                 ) -> dict[str, list[Event]]:
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout_seconds
        while True:
            missing = wanted - self.events_by_request.keys()
            if not missing:
                return {request_id: self.events_by_request[request_id] for request_id in wanted}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} requests without outcome, "
                                   f"e.g. {sorted(missing)[:3]}")
            self.poll()

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()
