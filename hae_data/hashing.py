"""Deterministic choices derived from the data: every 'random' decision hashes the image id."""

from __future__ import annotations

import hashlib

__all__ = ["content_id", "unit_hash"]


def content_id(data: bytes) -> str:
    """The image id: SHA-256 of the file's bytes, hex (stable across renames and machines)."""
    return hashlib.sha256(data).hexdigest()


def unit_hash(key: str, salt: str) -> float:
    """A uniform number in [0, 1) determined by ``key`` and ``salt`` alone."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
