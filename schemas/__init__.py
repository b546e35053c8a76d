"""Contracts of passnum: every command and event, version 1. No I/O lives here."""

from schemas.base import Command, Event, Message
from schemas.messages import (
    ANY_COMMAND,
    ANY_EVENT,
    ANY_MESSAGE,
    COMMAND_TYPES,
    EVENT_TYPES,
    MESSAGE_TYPES,
)

__all__ = [
    "ANY_COMMAND",
    "ANY_EVENT",
    "ANY_MESSAGE",
    "COMMAND_TYPES",
    "Command",
    "EVENT_TYPES",
    "Event",
    "MESSAGE_TYPES",
    "Message",
]
