"""Stable hashes shared by the demo and the capture library.

A run's ``config_hash`` is the cohort key of the warehouse: runs that differ only by their
seed must hash alike, on any machine and Python version. Hence a canonical JSON encoding
(sorted keys, no whitespace, no NaN) hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

SEED_KEY = "seed"


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, compact, UTF-8, no NaN or infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes | str) -> str:
    """The hex SHA-256 of ``data`` (text is encoded as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config`` without its top-level ``seed``.

    Runs of one cohort (same configuration, different seeds) share this hash.
    """
    return sha256_hex(canonical_json({k: v for k, v in config.items() if k != SEED_KEY}))


def checksum(data: bytes) -> str:
    """The checksum written to ``probe_captures_index.checksum``: ``sha256:<hex>``."""
    return "sha256:" + sha256_hex(data)
