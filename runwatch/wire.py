"""JSON for the event stream and the ledger's batch parameters: orjson, stdlib json as fallback."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """PERF: orjson is ~15x faster than json on event batches; json handles what it refuses
    (integers beyond 64 bits), so a malformed value is rejected by validation, not by encoding."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # NOTE: e.g. integers beyond 64 bits; raises ValueError if really bad
