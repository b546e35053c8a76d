"""Signed monthly checkpoints: the auditor's word that the log's prefix up to a month is
this one, in a form anyone with the public key can check later.

Root hash of a month M: for every stream, in sorted name order, the line
`stream|sequence|hash` of the last event of the chain prefix that M covers (the events
before the stream's first event dated after M, see `chain.cut_before`), joined by "\\n",
then SHA-256. `event_count` is the number of events those prefixes hold. The signature is
Ed25519 over `passnum-checkpoint|M|root_hash|event_count`.

Any change to any event inside a covered prefix changes its chain's hashes from there on,
so it changes the root: a replay that recomputes another root for a signed month has found
a rewritten history, even where the rewriter re-chained everything consistently.
A checkpoint is stable once every stream has an event dated after M; the command refuses
months that some stream has not moved past yet (unless told to), because events dated in
M appended later to such a stream would extend its covered prefix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from passnum.ledger.identity import event_id_for
from schemas.messages import AuditCheckpointSigned
from services.auditor.books import Finding
from services.auditor.chain import StreamChain, cut_before

ORIGIN = "auditor"


@dataclass(frozen=True)
class MonthRoot:
    month: str
    root_hash: str
    event_count: int
    lines: tuple[str, ...]
    quiet_streams: tuple[str, ...]  # streams with no event dated after the month


def month_root(chains: dict[str, StreamChain], month: str) -> MonthRoot:
    lines, quiet, count = [], [], 0
    for name in sorted(chains):
        chain = chains[name]
        sequence, digest = cut_before(chain, month)
        if not any(first_month > month for first_month in chain.month_firsts):
            quiet.append(name)
        if sequence > 0:
            lines.append(f"{name}|{sequence}|{digest}")
            count += sequence
    root = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return MonthRoot(month, root, count, tuple(lines), tuple(quiet))


def signing_message(month: str, root_hash: str, event_count: int) -> bytes:
    return f"passnum-checkpoint|{month}|{root_hash}|{event_count}".encode()


def public_key_hex(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.Raw,
                                   serialization.PublicFormat.Raw).hex()


def generate_key(path: Path) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600); return the public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(pem)
    return public_key_hex(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def sign(key: Ed25519PrivateKey, root: MonthRoot, at: datetime) -> AuditCheckpointSigned:
    signature = key.sign(signing_message(root.month, root.root_hash, root.event_count))
    request_id = f"checkpoint-{root.month}-{root.root_hash[:16]}"
    return AuditCheckpointSigned(
        event_id=event_id_for(ORIGIN, request_id, 0), request_id=request_id, occurred_at=at,
        month=root.month, root_hash=root.root_hash, event_count=root.event_count,
        signature=signature.hex(), public_key=public_key_hex(key.public_key()))


def verify(checkpoint: AuditCheckpointSigned, chains: dict[str, StreamChain],
           trusted_keys: frozenset[str]) -> list[Finding]:
    """Signature, key and root of one checkpoint against the replayed chains."""
    findings = []
    try:
        public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint.public_key))
        public_key.verify(bytes.fromhex(checkpoint.signature), signing_message(
            checkpoint.month, checkpoint.root_hash, checkpoint.event_count))
    except (ValueError, InvalidSignature):
        return [Finding("checkpoint_signature_invalid", checkpoint.month,
                        (checkpoint.event_id,))]
    if trusted_keys and checkpoint.public_key not in trusted_keys:
        findings.append(Finding("checkpoint_untrusted_key",
                                f"{checkpoint.month}: key {checkpoint.public_key[:16]}...",
                                (checkpoint.event_id,)))
    root = month_root(chains, checkpoint.month)
    if (root.root_hash, root.event_count) != (checkpoint.root_hash, checkpoint.event_count):
        findings.append(Finding(
            "checkpoint_mismatch", f"{checkpoint.month}: signed root "
            f"{checkpoint.root_hash[:16]}... over {checkpoint.event_count} events, the log "
            f"gives {root.root_hash[:16]}... over {root.event_count}: history rewritten",
            (checkpoint.event_id,)))
    return findings


# ------------------------------------------------------------------ in normal operation


def due_months(chains: dict[str, StreamChain], signed: set[str], current_month: str
               ) -> list[str]:
    """The months to checkpoint now: before the current month, not signed yet, and moved
    past by every stream (a stream with no event dated after the month could still receive
    one dated in it, which would change the root). In order, stopping at the first month
    that waits: a later month covers an earlier one's prefixes."""
    months = sorted({month for chain in chains.values() for month in chain.month_firsts})
    due = []
    for month in months:
        if month >= current_month:
            break
        if month in signed:
            continue
        if month_root(chains, month).quiet_streams:
            break
        due.append(month)
    return due


def checkpoint_key_path(run_directory: str, configured: str) -> Path:
    return Path(configured) if configured else Path(run_directory) / "auditor-checkpoint-key.pem"


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The follower's key: `Settings.auditor_checkpoint_key_file`, created on first use
    (the demo's; a deployment provisions its own and lists the public half in
    `PASSNUM_AUDITOR_TRUSTED_KEYS`)."""
    if not path.exists():
        generate_key(path)
    return load_private_key(path)


def sign_due_months(chains: dict[str, StreamChain], signed: set[str], key: Ed25519PrivateKey,
                    now: datetime) -> list[AuditCheckpointSigned]:
    """Checkpoints for every due month (`signed` grows with them)."""
    events = []
    for month in due_months(chains, signed, now.strftime("%Y-%m")):
        events.append(sign(key, month_root(chains, month), now.replace(microsecond=0)))
        signed.add(month)
    return events

