"""What keeping the log across `passnum stack down`/`up` costs: export and import rates.

`python bench/log_archive.py [--records 100000]` starts a broker of its own (memory storage,
port 19093), fills the redeemer's event topic with redemption-sized records (distinct
request and event ids, a chain header each), then times `passnum.tools.log_archive`:
export (read every topic, hash, compress, sign), verification of the archive, and import
into the restarted, empty broker (write at the original offsets, then read everything back
and compare). The baseline is the raw kafka-python producer writing the same records in the
same run."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from passnum.core.broker import ManagedBroker, create_topics
from passnum.core.head_signatures import load_or_create_private_key, public_key_hex
from passnum.core.log import make_producer
from passnum.core.settings import Settings
from passnum.core.topology import topology_for
from passnum.tools.log_archive import export_archive, import_archive, open_archive


def record_value(number: int) -> bytes:
    return (b'{"type":"voucher_redeemed","schema_version":1,"request_id":"r-%012d",'
            b'"occurred_at":"2026-03-02T10:00:00Z","event_id":"%036x",'
            b'"voucher_id":"123456789-%07d-01","siret":"12345678901234",'
            b'"face_value_cents":1000}' % (number, number * 7919, number % 9_999_999))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=19_093)
    arguments = parser.parse_args()
    count = arguments.records
    directory = Path(tempfile.mkdtemp(prefix="passnum-bench-archive-"))
    settings = Settings.from_environment().with_overrides(
        bootstrap_servers=f"127.0.0.1:{arguments.port}", topic_prefix=f"a{uuid.uuid4().hex[:6]}",
        run_directory=str(directory))
    broker = ManagedBroker(settings).start()
    try:
        create_topics(settings)
        topic = topology_for(settings).redeemer_events.name
        producer = make_producer(settings)
        started = time.perf_counter()
        for number in range(count):
            producer.send(topic, key=b"123456789-%07d" % (number % 5_000),
                          value=record_value(number),
                          headers=[("passnum-chain", b"redeemer/t/0:%d:" % number + b"a" * 64)])
        producer.flush()
        producer.close()
        produce_seconds = time.perf_counter() - started
        key = load_or_create_private_key(directory / "operator.pem")
        archive = directory / "log.tar"
        started = time.perf_counter()
        export_archive(settings, archive, key)
        export_seconds = time.perf_counter() - started
        broker.stop()
        broker.start()
        started = time.perf_counter()
        opened = open_archive(archive, [public_key_hex(key)])
        verify_seconds = time.perf_counter() - started
        started = time.perf_counter()
        written = import_archive(settings, opened)
        import_seconds = time.perf_counter() - started
    finally:
        broker.stop()
    assert written == count
    size = archive.stat().st_size
    print(f"records: {count:,}; archive {size / 1e6:.1f} MB ({size / count:.0f} bytes a record)")
    print(f"baseline, kafka-python producer: {count / produce_seconds:,.0f} records/s")
    print(f"export: {count / export_seconds:,.0f} records/s "
          f"(ratio {produce_seconds / export_seconds:.2f} to the producer)")
    print(f"verify: {verify_seconds:.1f} s; import with read-back: "
          f"{count / import_seconds:,.0f} records/s "
          f"(ratio {produce_seconds / import_seconds:.2f} to the producer)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
