"""Ed25519 signatures for published models: the publisher keeps the private key, every
subscriber needs only the public one, so a subscriber can verify but never forge."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kennel.errors import ConfigError
from kennel.fsutil import write_atomic

PRIVATE = "feed-ed25519.pem"
PUBLIC = "feed-ed25519.pub"
MAX_KEY_BYTES = 64 * 1024


def load_or_create(folder: Path) -> Ed25519PrivateKey:
    """The project's signing key, created (mode 0600) on first use; a file there that is not
    an unencrypted Ed25519 private key in PEM is a ``ConfigError`` (nothing is replaced)."""
    path = folder / PRIVATE
    if path.exists():
        try:
            key = serialization.load_pem_private_key(_read(path, "private"), password=None)
        except TypeError:  # cryptography's word for a key that needs a password
            raise ConfigError(
                f"{path} is encrypted: kennel signs with an unencrypted key"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(f"{path} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem)
    os.chmod(path, 0o600)
    write_atomic(folder / PUBLIC, public_pem(key.public_key()))
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(path: Path) -> Ed25519PublicKey:
    """The publisher's key from a PEM file; a missing file, or one that is not an Ed25519
    public key in PEM (a private key, another algorithm, anything else), is a ``ConfigError``."""
    if not path.exists():
        raise ConfigError(f"public key {path} not found (copy {PUBLIC} from the publisher)")
    try:
        key = serialization.load_pem_public_key(_read(path, "public"))
    except (ValueError, UnsupportedAlgorithm):  # cryptography's words name no file: ours do
        raise ConfigError(
            f"{path} is not a PEM public key (copy {PUBLIC} from the publisher)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return key


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise ConfigError(f"{what} key {path} is not a file")
    if path.stat().st_size > MAX_KEY_BYTES:  # a key is a few hundred bytes
        raise ConfigError(f"{path} is not a PEM {what} key: {path.stat().st_size} bytes")
    return path.read_bytes()


def verify(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True
