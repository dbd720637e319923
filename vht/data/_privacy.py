"""Pseudonyms and private files: what keeps a patient's identity out of vht's outputs.

- ``Pseudonymizer`` replaces each identifier by a keyed HMAC-SHA256 pseudonym
  (``"s-"`` and 16 hex digits, 64 bits: collisions are negligible below millions of subjects).
  The same key gives the same pseudonym in every run, so records ingested on different days
  join; without the key a pseudonym cannot be reversed or recomputed from a guessed name. The
  key comes from an environment variable or a key file, never from the data, and is never
  written anywhere by vht.
- ``private_open`` creates output files readable and writable by their owner only (mode 0600),
  whatever the process's umask.

Source: HMAC, RFC 2104; pseudonymisation as a safeguard, GDPR article 4(5) and recital 26
(pseudonymised data remain personal data: the key holder can re-identify).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
from pathlib import Path

from ._errors import DataError

KEY_ENVIRONMENT_VARIABLE = "VHT_PSEUDONYM_KEY"
MINIMUM_KEY_BYTES = 16
PSEUDONYM_PREFIX = "s-"


class PrivacyError(DataError):
    """A missing or weak pseudonym key, or a key kept where the data are."""


class Pseudonymizer:
    """Keyed pseudonyms for subject identifiers.

    ``Pseudonymizer.from_environment()`` reads ``VHT_PSEUDONYM_KEY``; ``from_file(path)`` reads
    a key file (which should be readable by its owner only). Keys shorter than 16 bytes are
    refused. The object never shows its key (``repr`` prints a fingerprint-free placeholder).
    """

    def __init__(self, key: bytes | str):
        key = key.encode() if isinstance(key, str) else bytes(key)
        key = key.strip()
        if len(key) < MINIMUM_KEY_BYTES:
            raise PrivacyError(f"a pseudonym key needs at least {MINIMUM_KEY_BYTES} bytes "
                               f"(got {len(key)}); generate one with "
                               "`python -c 'import secrets; print(secrets.token_hex(32))'`")
        self._key = key
        self.source = "given key"

    def __repr__(self) -> str:
        return f"Pseudonymizer(<key from {self.source}>)"

    @classmethod
    def from_environment(cls, variable: str = KEY_ENVIRONMENT_VARIABLE) -> Pseudonymizer:
        value = os.environ.get(variable)
        if not value:
            raise PrivacyError(f"no pseudonym key: set the environment variable {variable} "
                               "or pass a key file")
        out = cls(value)
        out.source = f"environment variable {variable}"
        return out

    @classmethod
    def from_file(cls, path: str | Path) -> Pseudonymizer:
        path = Path(path)
        if not path.is_file():
            raise PrivacyError(f"pseudonym key file {path} does not exist")
        out = cls(path.read_bytes())
        out.source = f"key file {path.name}"
        out.key_file = path.resolve()
        return out

    @classmethod
    def resolve(cls, key_file: str | Path | None = None) -> Pseudonymizer:
        """A key file when given, else the environment variable."""
        return cls.from_file(key_file) if key_file is not None else cls.from_environment()

    def check_not_inside(self, directory: str | Path) -> None:
        """Refuse a key file kept inside a data or output directory (the key must not travel
        with the data it protects)."""
        key_file = getattr(self, "key_file", None)
        if key_file is None:
            return
        directory = Path(directory).resolve()
        if directory == key_file.parent or directory in key_file.parents:
            raise PrivacyError(f"the pseudonym key file lies inside {directory}, with the data; "
                               "keep it elsewhere")

    def __call__(self, identifier) -> str:
        text = str(identifier).strip()
        if not text:
            raise PrivacyError("an empty subject identifier cannot be pseudonymised")
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:16]


@contextlib.contextmanager
def private_umask():
    """Within the block, files and directories are created for their owner only (files from
    libraries such as h5py and matplotlib included)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def private_open(path: str | Path, mode: str = "w", **kwargs):
    """``open`` for writing a new or replaced file with mode 0600."""
    path = Path(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)  # an existing file keeps its mode otherwise
    return os.fdopen(descriptor, mode, **kwargs)


def make_private(path: str | Path) -> None:
    """Restrict an existing file (or a directory and everything in it) to its owner."""
    path = Path(path)
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        os.chmod(target, 0o700 if target.is_dir() else 0o600)
