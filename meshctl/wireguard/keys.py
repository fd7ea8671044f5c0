"""WireGuard keys: generation, base64/hex conversion, and 0600 key files.

Private keys are only ever read from files that nobody else can read, and
travel to wireguard-go over its UAPI socket, never on a command line.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import field

from nacl.bindings import crypto_scalarmult_base

from meshctl.errors import ConfigError
from meshctl.records import record

KEY_LEN = 32


def decode_key(text: str, what: str = "key") -> bytes:
    """Base64 (wg's format) to 32 raw bytes; ValueError naming ``what``."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"{what} must be {KEY_LEN} bytes, got {len(raw)}")
    return raw


def encode_key(raw: bytes) -> str:
    """32 raw bytes to wg's base64."""
    return base64.b64encode(raw).decode("ascii")


def key_to_hex(text: str) -> str:
    """Base64 key to the lowercase hex that UAPI wants."""
    return decode_key(text).hex()


def hex_to_key(text: str) -> str:
    """UAPI hex to base64."""
    raw = bytes.fromhex(text)
    if len(raw) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes")
    return encode_key(raw)


@record
class KeyPair:
    """A private key (never in repr) and its public key, both base64."""

    private: str = field(repr=False)
    public: str

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh X25519 key pair, the private key clamped as ``wg genkey`` writes it."""
        return cls.from_private(encode_key(clamp(os.urandom(KEY_LEN))))

    @classmethod
    def from_private(cls, private: str) -> KeyPair:
        """Derive the public key from a base64 private key (X25519 with the base point, as ``wg pubkey``)."""
        return cls(private.strip(), encode_key(crypto_scalarmult_base(decode_key(private, "private key"))))


def clamp(raw: bytes) -> bytes:
    """An X25519 private key as RFC 7748 uses it (and ``wg genkey`` stores it): the same public key either way."""
    key = bytearray(raw)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def write_private_key(path: str, keys: KeyPair) -> None:
    """Write a private key file readable by its owner only (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(keys.private + "\n")


def read_private_key(path: str, field_name: str = "private_key_file") -> KeyPair:
    """Read a private key file, refusing one that group or others can read."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot read private key file: {exc.strerror}", source=path, field=field_name) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"private key file is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
            source=path,
            field=field_name,
        )
    try:
        with open(path, "rb") as f:  # bytes, decoded here: a text file would load the ascii codec module for this
            return KeyPair.from_private(f.read().decode("ascii"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        # The message never contains the key itself.
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"bad private key file: {reason}", source=path, field=field_name) from None
