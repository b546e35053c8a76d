"""`passnum log ...`: the operator's tools on the log itself.

`skip-record` is the way out for a record no rule foresaw. A record that fails the same
way each time is found and dead-lettered by the worker itself (passnum.core.worker); what is
left is a record that kills the worker before it can answer anything (a crash of the
interpreter, a memory blow-up). The operator names that record; the skip is a recorded
decision like any other: a dead letter with the operator's note, the position past the
record, and a rejection event (`skipped_by_operator`) on the processor's own stream, so
that the audit counts every intervention. See docs/processing.md, "Poison records".
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from pathlib import Path

import typer

from passnum.ledger.identity import event_id_for
from passnum.core.database import connect
from passnum.core.head_signatures import load_or_create_private_key, public_key_hex
from passnum.core.log import read_partitions_to_end
from passnum.core.processing import Handler, InputRecord, SkipRefused, skip_record
from passnum.core.settings import Settings
from passnum.core.topology import Topology, topology_for
from passnum.tools.log_archive import ArchiveRefused, export_archive, import_archive, open_archive
from schemas.base import Event
from schemas.messages import IssuerCommandRejected, RedeemerCommandRejected

log_app = typer.Typer(no_args_is_help=True, help="The log: the operator's tools")
EXIT_REFUSED = 4


class Processor(str, enum.Enum):
    issuer = "issuer"
    redeemer = "redeemer"


def _handler(processor: Processor, settings: Settings, topology: Topology) -> Handler:
    if processor is Processor.issuer:
        from services.issuer.handler import handler_for as issuer_handler_for

        return issuer_handler_for(settings, topology)
    from services.redeemer.handler import handler_for as redeemer_handler_for

    return redeemer_handler_for(settings, topology)


def skip_event(processor: Processor, topology: Topology, record: InputRecord, note: str,
               at: datetime) -> tuple[str, bytes, Event]:
    """The rejection that records the skip on the processor's stream (pure)."""
    request_id = f"skip:{record.topic}:{record.partition}:{record.offset}"
    detail = f"{record.topic}[{record.partition}]@{record.offset} skipped: {note}"[:1000]
    event_id = event_id_for(processor.value, request_id, 0)
    event: Event
    if processor is Processor.issuer:
        event = IssuerCommandRejected(request_id=request_id, occurred_at=at, event_id=event_id,
                                      siren="", command_type="input_record",
                                      reason="skipped_by_operator", detail=detail)
        return topology.issuer_events.name, record.topic.encode(), event
    event = RedeemerCommandRejected(request_id=request_id, occurred_at=at, event_id=event_id,
                                    command_type="input_record", reason="skipped_by_operator",
                                    detail=detail)
    return topology.redeemer_events.name, record.topic.encode(), event


def _read_record(settings: Settings, topic: str, partition: int, offset: int) -> InputRecord:
    for record in read_partitions_to_end(settings, [(topic, partition)],
                                         start_offsets={(topic, partition): offset}):
        if record.offset == offset:
            return InputRecord(topic, partition, offset, record.key, record.value)
        break
    raise SkipRefused(f"{topic}[{partition}] holds no record at offset {offset}")


@log_app.command("skip-record")
def skip_record_command(
        processor: Processor = typer.Argument(..., help="the processor that is stuck"),
        topic: str = typer.Argument(..., help="the input topic of the record"),
        partition: int = typer.Argument(..., min=0),
        offset: int = typer.Argument(..., min=0),
        reason: str = typer.Option(..., "--reason", help="why, kept with the dead letter"),
        operator: str = typer.Option(..., "--operator", help="who decides the skip"),
) -> None:
    """Move a processor past one named record (to the dead-letter topic), as a recorded
    decision the audit sees. Refused (exit 4) unless the partition stands at that record."""
    settings = Settings.from_environment()
    topology = topology_for(settings)
    handler = _handler(processor, settings, topology)
    if topic not in handler.command_topics | handler.event_topics:
        typer.echo(f"refusé : {topic} n'est pas une entrée du {processor.value}", err=True)
        raise typer.Exit(EXIT_REFUSED)
    note = f"{reason} (operator: {operator})"
    try:
        record = _read_record(settings, topic, partition, offset)
        event = skip_event(processor, topology, record, note, datetime.now(timezone.utc))
        with connect(settings.database_url) as connection:
            row = skip_record(connection, handler, record, note, [event])
    except SkipRefused as refusal:
        typer.echo(f"refusé : {refusal}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"{topic}[{partition}]@{offset} écarté vers les lettres mortes "
               f"(ligne d'outbox {row}, publiée par le {processor.value} qui tient la partition)")


def _operator_key_path(settings: Settings, key: Path | None) -> Path:
    return key or Path(settings.run_directory) / "operator-key.pem"


@log_app.command("export")
def export_command(
        path: Path = typer.Argument(..., help="the archive to write"),
        key: Path = typer.Option(None, "--key", help="the operator's Ed25519 key (PEM); "
                                 "default <run directory>/operator-key.pem, made if absent"),
) -> None:
    """Write every topic of the ledger (partitions, offsets, keys, headers, values) to one
    file with a manifest of hashes signed by the operator's key."""
    settings = Settings.from_environment()
    private = load_or_create_private_key(_operator_key_path(settings, key))
    manifest = export_archive(settings, path, private)
    records = sum(summary["records"] for summary in manifest["partitions"].values())
    typer.echo(f"{records} enregistrements de {len(manifest['topics'])} sujets écrits dans "
               f"{path} (clé publique de l'opérateur : {public_key_hex(private)})")


@log_app.command("import")
def import_command(
        path: Path = typer.Argument(..., exists=True, dir_okay=False),
        trusted_key: list[str] = typer.Option(
            None, "--trusted-key", help="public key (hex) the manifest must be signed with; "
            "default: the public half of the local operator key"),
        key: Path = typer.Option(None, "--key", help="the local operator key (PEM)"),
) -> None:
    """Restore an archive into a broker whose ledger topics are empty, with the same
    offsets: the workers recognise the log as their own, and the audit finds the same
    chain heads. Refused (exit 4) on a bad signature, a changed record or a non-empty
    broker."""
    settings = Settings.from_environment()
    trusted = list(trusted_key or [])
    if not trusted:
        local = _operator_key_path(settings, key)
        if not local.exists():
            typer.echo("refusé : aucune clé de confiance (--trusted-key)", err=True)
            raise typer.Exit(EXIT_REFUSED)
        trusted = [public_key_hex(load_or_create_private_key(local))]
    try:
        written = import_archive(settings, open_archive(path, trusted))
    except ArchiveRefused as refusal:
        typer.echo(f"refusé : {refusal}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"{written} enregistrements restaurés depuis {path}")
