"""Signed monthly checkpoints: the auditor's word that the log's prefix up to a month is
this one, in a form anyone with the public key can check later.

The prefixes a checkpoint of month M covers, fixed when it is signed: for every stream, in
sorted name order, the line `stream|sequence|hash` of the last event covered. A stream with
an event dated after M is cut before its first such event (`chain.cut_before`); a quiet
stream (nothing dated after M yet) is covered up to its current head. The root is SHA-256
of the lines joined by "\\n", `event_count` the number of events they cover, the signature
Ed25519 over `passnum-checkpoint|M|root_hash|event_count`, and the lines travel with it
(`AuditCheckpointSigned.prefixes`), so that the signature binds each stream's sequence.

Verifying one: the lines hash to the signed root, and each listed stream has that hash at
that sequence. Any change to an event inside a covered prefix changes its chain's hashes
from there on: a replay that finds another hash has found a rewritten history, even where
the rewriter re-chained everything consistently. What a stream receives later, whatever its
date, comes after the covered sequence and changes nothing, so no stream holds a checkpoint
back. A stream the lines do not list is not covered by it, whatever its dates: a partition
whose first command comes after the checkpoint may well carry a scan dated before it (an
offline file), and nothing in the log says when a stream began. Such a stream is
authenticated like every other by the processors' head signatures (`unknown_stream`,
`unsigned_chain_tail`), which a forger without the key cannot make.

The hash at a sequence is checked against the chain's keyed 32-bit fingerprint of it
(`chain.py`), the comparison, at the same odds, by which every link of the chain is checked:
no memory beyond what the chain holds, whatever sequence a checkpoint names.

A checkpoint without lines (the older form) is verified by the date cut it was signed with:
the root recomputed from the replayed chains must be the signed one. So is one over a month
that covers no event: both checks then ask the same, that every stream starts after M.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from passnum.ledger.identity import event_id_for
from schemas.messages import AuditCheckpointSigned
from services.auditor.books import Finding
from services.auditor.chain import ChainVerifier, StreamChain, cut_before

ORIGIN = "auditor"
# Streams named in one checkpoint_mismatch finding: a rewrite can touch every stream, and
# one finding per checkpoint (with a count of the others) keeps the report readable.
PROBLEMS_NAMED = 5


@dataclass(frozen=True)
class MonthRoot:
    month: str
    root_hash: str
    event_count: int
    lines: tuple[str, ...]
    quiet_streams: tuple[str, ...]  # no event dated after the month: covered to their head


def root_of(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


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
    return MonthRoot(month, root_of(lines), count, tuple(lines), tuple(quiet))


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
    """The checkpoint of `root`, carrying its lines (a root without lines gives the older
    form, verified by the date cut)."""
    signature = key.sign(signing_message(root.month, root.root_hash, root.event_count))
    request_id = f"checkpoint-{root.month}-{root.root_hash[:16]}"
    return AuditCheckpointSigned(
        event_id=event_id_for(ORIGIN, request_id, 0), request_id=request_id, occurred_at=at,
        month=root.month, root_hash=root.root_hash, event_count=root.event_count,
        signature=signature.hex(), public_key=public_key_hex(key.public_key()),
        prefixes=root.lines)


def verify(checkpoint: AuditCheckpointSigned, chains: ChainVerifier,
           trusted_keys: frozenset[str]) -> list[Finding]:
    """Signature, key and covered prefixes of one checkpoint against the replayed chains."""
    if not signature_holds(checkpoint):
        return [Finding("checkpoint_signature_invalid", checkpoint.month,
                        (checkpoint.event_id,))]
    findings = []
    if trusted_keys and checkpoint.public_key not in trusted_keys:
        findings.append(Finding("checkpoint_untrusted_key",
                                f"{checkpoint.month}: key {checkpoint.public_key[:16]}...",
                                (checkpoint.event_id,)))
    problems = (prefix_problems(checkpoint, chains) if checkpoint.prefixes
                else date_cut_problems(checkpoint, chains.streams))
    if problems:
        named = "; ".join(problems[:PROBLEMS_NAMED])
        if len(problems) > PROBLEMS_NAMED:
            named += f"; and {len(problems) - PROBLEMS_NAMED} more"
        findings.append(Finding("checkpoint_mismatch", f"{checkpoint.month}: {named}",
                                (checkpoint.event_id,)))
    return findings


def signature_holds(checkpoint: AuditCheckpointSigned) -> bool:
    """The lines, when carried, hash to the root, and the key signed that root."""
    if checkpoint.prefixes and root_of(checkpoint.prefixes) != checkpoint.root_hash:
        return False
    try:
        public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint.public_key))
        public_key.verify(bytes.fromhex(checkpoint.signature), signing_message(
            checkpoint.month, checkpoint.root_hash, checkpoint.event_count))
    except (ValueError, InvalidSignature):
        return False
    return True


def prefix_problems(checkpoint: AuditCheckpointSigned, chains: ChainVerifier) -> list[str]:
    """What the replayed chains contradict in a checkpoint's lines, one text per stream."""
    problems, count = [], 0
    for line in checkpoint.prefixes:
        name, sequence_text, digest = line.rsplit("|", 2)
        count += int(sequence_text)
        problem = prefix_problem(chains, name, int(sequence_text), digest)
        if problem:
            problems.append(problem)
    if count != checkpoint.event_count:
        problems.append(f"its lines cover {count} events, it signs {checkpoint.event_count}")
    return problems


def prefix_problem(chains: ChainVerifier, name: str, sequence: int, digest: str) -> str:
    """Empty when the stream has the hash `digest` at `sequence` (by its fingerprint)."""
    chain = chains.streams.get(name)
    if chain is None or not chain.highest:
        return f"{name} is not in the log (signed to #{sequence})"
    if sequence > chain.highest:
        return f"{name} ends at #{chain.highest}, signed to #{sequence}"
    held = chain.hashes[sequence - 1]
    if not held:
        return f"{name}#{sequence} is missing from the log"
    if held != chains.fingerprint(digest.encode()):
        return (f"{name}#{sequence} is not the event signed (hash {digest[:16]}...): "
                "history rewritten")
    return ""


def date_cut_problems(checkpoint: AuditCheckpointSigned, streams: dict[str, StreamChain]
                      ) -> list[str]:
    """A checkpoint without lines: the date cut of the replayed chains gives its root."""
    root = month_root(streams, checkpoint.month)
    if (root.root_hash, root.event_count) == (checkpoint.root_hash, checkpoint.event_count):
        return []
    return [f"signed root {checkpoint.root_hash[:16]}... over {checkpoint.event_count} "
            f"events, the log gives {root.root_hash[:16]}... over {root.event_count}: "
            "history rewritten"]


# ------------------------------------------------------------------ in normal operation


def due_months(chains: dict[str, StreamChain], signed: set[str], current_month: str
               ) -> list[str]:
    """The months to checkpoint now: each month some event is dated in, before the current
    month, that this key has not signed yet, in order. A quiet stream holds none back: it
    is covered up to its head, and what it receives later comes after that."""
    months = sorted({month for chain in chains.values() for month in chain.month_firsts})
    return [month for month in months if month < current_month and month not in signed]


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

