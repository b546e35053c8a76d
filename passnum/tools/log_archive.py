"""Backup and handover of the source of truth: the whole log in one file.

An archive is an uncompressed tar of three members:
- `records.jsonl.gz`: every record of every ledger topic, one JSON object a line, in
  (topic, partition, offset) order: key, value and header values in base64;
- `manifest.json`: the topics with their partition counts and, per partition, the number of
  records, the first offset and a SHA-256 over the records' (offset, key, value, headers);
- `manifest.sig`: the Ed25519 signature of `manifest.json` by the operator's key, and the
  public key it verifies with.

`import_archive` restores it into a broker where those topics are empty, partition by
partition and in order, then reads everything back and checks every partition's digest: the
restored log has the same offsets, keys, values and headers. So the workers' positions (the
digest of the last record decided, passnum/core/processing.py) recognise it as their own, and the
auditor finds the same chain heads. Another operator can take the programme over from the
file alone (with the database rebuilt from the log, or the old one).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from passnum.core.log import Record, fetch_high_water_marks, make_producer, read_partitions_to_end
from passnum.core.settings import Settings
from passnum.core.topology import Topic, topology_for

ARCHIVE_FORMAT = "passnum-log-archive/1"
# Records sent before their offsets are checked, at most (bounds the memory of an import).
IMPORT_CHUNK_RECORDS = 10_000


class ArchiveRefused(Exception):
    """The archive cannot be taken as it is, or the broker cannot receive it."""


def ledger_topics(settings: Settings) -> list[Topic]:
    """Every topic the ledger writes; the conformance probe's scratch topic is not kept."""
    topology = topology_for(settings)
    return [topic for topic in topology.all_topics() if topic != topology.conformance]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def record_line(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": _b64(record.key), "value": _b64(record.value),
            "headers": [[name, _b64(value)] for name, value in record.headers],
            "timestamp_ms": record.timestamp_ms}


def line_record(line: dict[str, Any]) -> Record:
    return Record(topic=line["topic"], partition=line["partition"], offset=line["offset"],
                  key=_unb64(line["key"]), value=_unb64(line["value"]),
                  headers=tuple((name, _unb64(value) or b"") for name, value in line["headers"]),
                  timestamp_ms=line["timestamp_ms"])


@dataclass
class PartitionDigest:
    """What a partition holds, as a running SHA-256 over its records in offset order."""

    records: int = 0
    first_offset: int | None = None
    next_offset: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, record: Record) -> None:
        if self.first_offset is None:
            self.first_offset = record.offset
        elif record.offset != self.next_offset:
            raise ArchiveRefused(f"{record.topic}[{record.partition}]: offset {record.offset} "
                                 f"after {self.next_offset - 1} (a gap cannot be restored)")
        self.next_offset = record.offset + 1
        self.records += 1
        for part in (str(record.offset).encode(), record.key, record.value,
                     *(name.encode() + b"=" + value for name, value in record.headers)):
            self.digest.update(b"\x00" if part is None else b"%d:" % len(part) + part)

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "first_offset": self.first_offset or 0,
                "sha256": self.digest.hexdigest()}


def digest_records(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    digests: dict[str, PartitionDigest] = {}
    for record in records:
        digests.setdefault(f"{record.topic}/{record.partition}", PartitionDigest()).add(record)
    return {name: digest.summary() for name, digest in sorted(digests.items())}


def export_archive(settings: Settings, path: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Write every ledger topic to `path`; returns the manifest."""
    topics = ledger_topics(settings)
    partitions = [(topic.name, number) for topic in topics for number in range(topic.partitions)]
    digests: dict[str, PartitionDigest] = {f"{t}/{p}": PartitionDigest() for t, p in partitions}
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as records_file:
        ordered: dict[tuple[str, int], list[Record]] = {partition: [] for partition in partitions}
        for record in read_partitions_to_end(settings, partitions):
            ordered[(record.topic, record.partition)].append(record)
        for partition in partitions:
            for record in sorted(ordered[partition], key=lambda r: r.offset):
                digests[f"{partition[0]}/{partition[1]}"].add(record)
                records_file.write(json.dumps(record_line(record)).encode() + b"\n")
    manifest = {"format": ARCHIVE_FORMAT, "topic_prefix": settings.topic_prefix,
                "topics": {topic.name: topic.partitions for topic in topics},
                "partitions": {name: digest.summary() for name, digest in digests.items()}}
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
    public = key.public_key().public_bytes_raw().hex()
    signature = json.dumps({"public_key": public,
                            "signature": key.sign(manifest_bytes).hex()}).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in (("manifest.json", manifest_bytes), ("manifest.sig", signature),
                           ("records.jsonl.gz", buffer.getvalue())):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return manifest


@dataclass(frozen=True)
class Archive:
    manifest: dict[str, Any]
    public_key: str
    records_gz: bytes

    def records(self) -> Iterator[Record]:
        with gzip.GzipFile(fileobj=io.BytesIO(self.records_gz)) as lines:
            for line in lines:
                yield line_record(json.loads(line))


def open_archive(path: Path, trusted_public_keys: Iterable[str]) -> Archive:
    """Read and verify an archive: the manifest's signature by a trusted key, and every
    partition's digest against the records."""
    try:
        with tarfile.open(path, "r") as archive:
            members = {name: archive.extractfile(name) for name in
                       ("manifest.json", "manifest.sig", "records.jsonl.gz")}
            data = {name: member.read() for name, member in members.items() if member}
    except (tarfile.TarError, KeyError, OSError) as error:
        raise ArchiveRefused(f"{path}: not a passnum log archive ({error})") from None
    manifest_bytes, signature = data["manifest.json"], json.loads(data["manifest.sig"])
    if signature["public_key"] not in set(trusted_public_keys):
        raise ArchiveRefused("the archive is signed by a key that is not trusted")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(signature["public_key"])).verify(
            bytes.fromhex(signature["signature"]), manifest_bytes)
    except (InvalidSignature, ValueError):
        raise ArchiveRefused("the manifest's signature does not verify") from None
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise ArchiveRefused(f"unknown archive format {manifest.get('format')!r}")
    opened = Archive(manifest, signature["public_key"], data["records.jsonl.gz"])
    found = digest_records(opened.records())
    expected = {name: summary for name, summary in manifest["partitions"].items()
                if summary["records"]}
    if found != expected:
        raise ArchiveRefused("the records do not match the signed manifest")
    return opened


def import_archive(settings: Settings, archive: Archive) -> int:
    """Restore `archive` into the broker of `settings`, whose ledger topics must be empty
    (created here with the archive's partition counts). Returns the records written."""
    from passnum.core.broker import create_topics

    if archive.manifest["topic_prefix"] != settings.topic_prefix:
        raise ArchiveRefused(f"the archive holds the topics of {archive.manifest['topic_prefix']!r}"
                             f", this ledger is {settings.topic_prefix!r}")
    create_topics(settings)
    names = list(archive.manifest["topics"])
    non_empty = {f"{topic}/{number}": mark for (topic, number), mark in
                 fetch_high_water_marks(settings, names).items() if mark}
    if non_empty:
        raise ArchiveRefused(f"the broker's topics are not empty: {non_empty}")
    producer = make_producer(settings, enable_idempotence=False, retries=0,
                             max_in_flight_requests_per_connection=1)
    written = 0
    pending: list[tuple[Record, Any]] = []
    try:
        for record in archive.records():
            # One request in flight and no retries: records land in archive order.
            pending.append((record, producer.send(
                record.topic, key=record.key, value=record.value, partition=record.partition,
                headers=list(record.headers), timestamp_ms=record.timestamp_ms)))
            if len(pending) >= IMPORT_CHUNK_RECORDS:
                written += _check_offsets(pending)
        written += _check_offsets(pending)
    finally:
        producer.close()
    partitions = [(topic, number) for topic, count in archive.manifest["topics"].items()
                  for number in range(count)]
    restored = digest_records(read_partitions_to_end(settings, partitions))
    expected = {name: summary for name, summary in archive.manifest["partitions"].items()
                if summary["records"]}
    if restored != expected:
        raise ArchiveRefused("the restored log does not read back as the archive")
    return written


def _check_offsets(pending: list[tuple[Record, Any]]) -> int:
    """Each record must have taken its original offset; empties `pending`."""
    for record, future in pending:
        offset = future.get(timeout=60).offset
        if offset != record.offset:
            raise ArchiveRefused(f"{record.topic}[{record.partition}] took offset {offset} "
                                 f"for {record.offset}: restore stopped")
    count = len(pending)
    pending.clear()
    return count
