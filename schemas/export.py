"""Export the message contracts as JSON Schema files, for producers that are not Python.

`python -m schemas.export` rewrites `schemas/json/`: one `<type>.json` per message class
(pydantic's `model_json_schema()`) and an `index.json` of type -> class name, schema
version and kind. The files are committed; a unit test fails when they are stale.

This is a build tool: it writes files only when called, never at import, so `schemas`
stays a package of contracts without I/O for everything that imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.base import Command, Message
from schemas.messages import MESSAGE_TYPES

JSON_DIRECTORY = Path(__file__).resolve().parent / "json"
INDEX_NAME = "index.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Each schema's `$id`: a name, not an address (nothing is served there), stable for a type
# and its version, so that a registry or a validator can tell the contracts apart.
SCHEMA_ID_PREFIX = "urn:passnum:schema:"


def message_type(message_class: type[Message]) -> str:
    default = message_class.model_fields["type"].default
    assert isinstance(default, str), f"{message_class.__name__} has no type discriminator"
    return default


def schema_id(message_class: type[Message]) -> str:
    """`urn:passnum:schema:<type>:<schema version>`."""
    version = message_class.model_fields["schema_version"].default
    return f"{SCHEMA_ID_PREFIX}{message_type(message_class)}:{version}"


def schema_of(message_class: type[Message]) -> dict[str, Any]:
    """The JSON Schema of one message class, naming the dialect pydantic writes.

    `type` has a default in Python, so pydantic leaves it out of `required`; but on the wire
    it is the discriminator the codec chooses the class by, and a document without it is
    refused. The exported contract says so, rather than accept what the ledger refuses."""
    schema = message_class.model_json_schema()
    schema["required"] = ["type", *(name for name in schema["required"] if name != "type")]
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(message_class), **schema}


def index_of(message_classes: tuple[type[Message], ...]) -> dict[str, dict[str, Any]]:
    return {
        message_type(message_class): {
            "class_name": message_class.__name__,
            "schema_version": message_class.model_fields["schema_version"].default,
            "kind": "command" if issubclass(message_class, Command) else "event",
        }
        for message_class in message_classes
    }


def render(document: dict[str, Any]) -> str:
    """Stable text: the same contracts always give the same bytes, so a diff means a
    change of contract and nothing else."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def rendered_files(message_classes: tuple[type[Message], ...] = MESSAGE_TYPES) -> dict[str, str]:
    """File name -> content of every file of the export."""
    files = {f"{message_type(cls)}.json": render(schema_of(cls)) for cls in message_classes}
    assert len(files) == len(message_classes), "two message classes share a type"
    assert INDEX_NAME not in files, "a message type is called 'index'"
    files[INDEX_NAME] = render(index_of(message_classes))
    return files


def export_json_schemas(directory: Path = JSON_DIRECTORY) -> list[Path]:
    """Write the export into `directory` and return the paths written, sorted. A `.json`
    file of the directory that the export no longer produces (a type that was renamed)
    is removed, so that the directory is exactly the current contracts."""
    directory.mkdir(parents=True, exist_ok=True)
    files = rendered_files()
    for stale in sorted(directory.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in sorted(files.items()):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in export_json_schemas():
        print(written_path)
