"""The processors' key for chain heads: who holds what, and the two operations.

Threat model (docs/auditor.md, "Forgery costs a key"): the processors (issuer, redeemer)
hold an Ed25519 private key, never written to the log; the auditor holds only public keys
(`Settings.chain_public_keys`). Each batch signs, per stream, the link of its last event
(`passnum.core.codec.SIGNATURE_HEADER`). Someone who can write to the topics but does not hold
the key can append well-linked events (SHA-256 is unkeyed) but cannot sign them: a stream
whose tail runs past its last signed head, or a stream no processor signed, is a finding.

Key file: `Settings.chain_signing_key_file`, PEM PKCS#8; empty means
`<run_directory>/chain-signing-key.pem`, generated at first start (the embedded demo's key:
a real deployment provisions its own and gives the auditor the public half).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from passnum.core.codec import CHAIN_HEADER, SIGNATURE_HEADER, signed_head_message
from passnum.core.settings import Settings

DEFAULT_KEY_NAME = "chain-signing-key.pem"
HeadSigner = Callable[[bytes], bytes]


def key_path(settings: Settings) -> Path:
    return Path(settings.chain_signing_key_file or Path(settings.run_directory) / DEFAULT_KEY_NAME)


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path`, created there first if absent. Two processors starting at once
    agree on one: the file is written aside and linked into place, which fails for the
    second (who then reads the first one's key)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
        try:
            os.fchmod(descriptor, 0o600)
            os.write(descriptor, pem)
            os.close(descriptor)
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def signer_for(settings: Settings) -> HeadSigner:
    """What a processor signs its heads with: chain header -> signature in hex (ASCII)."""
    key = load_or_create_private_key(key_path(settings))
    return lambda header: key.sign(signed_head_message(header)).hex().encode()


def public_key_hex(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def trusted_head_keys(settings: Settings) -> tuple[bytes, ...]:
    """The public keys the auditor verifies heads with: `chain_public_keys` (hex, comma
    separated); if none is configured, the public half of the processors' key file when
    it exists on this machine (the demo); else none (heads are then not checked)."""
    listed = [text.strip() for text in settings.chain_public_keys.split(",") if text.strip()]
    if listed:
        return tuple(bytes.fromhex(text) for text in listed)
    path = key_path(settings)
    if path.exists():
        return (bytes.fromhex(public_key_hex(load_or_create_private_key(path))),)
    return ()


def verify_head(keys: Iterable[bytes], chain_header: bytes, signature_hex: bytes) -> bool:
    try:
        signature = bytes.fromhex(signature_hex.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    message = signed_head_message(chain_header)
    for raw in keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def sign_batch_heads(outbox: list, signer: HeadSigner | None) -> None:
    """Give the last chained event of each stream in a batch's outbox entries
    (input topic, input partition, topic, key, payload, chain header) its signature: the
    header becomes `chain header` + newline + signature, which `OutboxEvent.headers` sends
    as two Kafka headers."""
    if signer is None:
        return
    last: dict[tuple[str, int], int] = {}
    for index, entry in enumerate(outbox):
        if entry[5]:
            last[(entry[0], entry[1])] = index
    for index in last.values():
        entry = outbox[index]
        outbox[index] = (*entry[:5], entry[5] + b"\n" + signer(entry[5]))


def split_link(chain_link: bytes) -> list[tuple[str, bytes]]:
    """The Kafka headers of an outbox event's stored link (see `sign_batch_heads`)."""
    link, _, signature = chain_link.partition(b"\n")
    headers = [(CHAIN_HEADER, link)]
    if signature:
        headers.append((SIGNATURE_HEADER, signature))
    return headers
