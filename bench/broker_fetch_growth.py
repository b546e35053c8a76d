"""The broker's CPU over time at a constant produce rate, with and without a consumer that
follows the topic: does a request cost more as the partitions it touches grow?

    .venv/bin/python bench/broker_fetch_growth.py                 # 60 s at 1,000 messages/s
    .venv/bin/python bench/broker_fetch_growth.py --seconds 30 --rate 500

Plain aiokafka clients, nothing of passnum's in between, each phase on a fresh topic of 12
partitions on the broker at PASSNUM_BOOTSTRAP_SERVERS (started if none answers):
1. baseline: a producer alone (4 ms linger, acks=all), 300-byte messages at `--rate`;
2. the same producer and a consumer following the topic (long polls of 10 ms, as the
   redeemer's workers fetch their commands).
The broker's CPU (user + system, from /proc) is read every 10 s. Reported: the CPU per
message in each window, and the last window's against the first (1.0: a request costs the
same however long the log). Findings in docs/broker.md; the topics are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from passnum.core.broker import ManagedBroker  # noqa: E402
from passnum.core.settings import Settings  # noqa: E402

PARTITIONS = 12
MESSAGE_BYTES = 300
WINDOW_SECONDS = 10.0


def broker_cpu_seconds() -> float:
    """CPU time used so far by the broker's processes (Tansu), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"tansu" not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def phase(servers: str, seconds: float, rate: float, follow: bool) -> list[float]:
    """Broker CPU microseconds per message produced, per window of WINDOW_SECONDS."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"fetch-growth-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=4, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await producer.start()
    if follow:
        await consumer.start()

    async def follow_topic() -> None:
        while True:
            await consumer.getmany(timeout_ms=100)

    following = asyncio.create_task(follow_topic()) if follow else None
    value = b"x" * MESSAGE_BYTES
    windows: list[float] = []
    start = time.monotonic()
    window_start, window_sent, cpu = start, 0, broker_cpu_seconds()
    sent = 0
    try:
        while time.monotonic() - start < seconds:
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, value, key=str(sent).encode())
            sent += 1
            if time.monotonic() - window_start >= WINDOW_SECONDS:
                now_cpu = broker_cpu_seconds()
                windows.append(round((now_cpu - cpu) / (sent - window_sent) * 1e6, 1))
                window_start, window_sent, cpu = time.monotonic(), sent, now_cpu
    finally:
        if following is not None:
            following.cancel()
        await producer.stop()
        if follow:
            await consumer.stop()
        await admin.delete_topics([topic])
        await admin.close()
    return windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    arguments = parser.parse_args()
    settings = Settings.from_environment()
    with ManagedBroker(settings):
        load_before = os.getloadavg()
        produce_only = asyncio.run(phase(settings.bootstrap_servers, arguments.seconds,
                                         arguments.rate, follow=False))
        followed = asyncio.run(phase(settings.bootstrap_servers, arguments.seconds,
                                     arguments.rate, follow=True))
    print(json.dumps({
        "rate_per_second": arguments.rate, "seconds": arguments.seconds,
        "broker_cpu_microseconds_per_message_by_10_seconds": {
            "produce_only": produce_only, "produce_and_follow": followed},
        "last_window_over_first": {
            "produce_only": round(produce_only[-1] / produce_only[0], 2) if produce_only else None,
            "produce_and_follow": round(followed[-1] / followed[0], 2) if followed else None},
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
