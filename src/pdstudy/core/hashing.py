"""Stable hashes and seeds: the same inputs give the same digest and seed on every machine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings, e.g. ``(seed, "shuffle", epoch)``."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of a JSON-serialisable object (keys sorted), for cache keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
