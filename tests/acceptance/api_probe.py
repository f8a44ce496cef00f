"""What a monitoring client asks the API under load, each answer judged: one API request check each.

``probe`` takes the HTTP call as a function, so test_scenario_checks.py can feed it a server that
misbehaves in each way the checks must catch (a 5xx, a tenant leak, a repeated or unordered page,
a malformed query answered with anything but a 400 problem).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

Result = tuple[str, bool, str]  # invariant, ok, detail
Get = Callable[[str, str | None], tuple[int, dict[str, str], bytes]]  # path, token -> status, headers, body
BAD_QUERIES = ("limit=abc", "cursor=not-a-cursor", "status=sideways", "unknown=1")
MISSING_RUN_ID = 10**12
PAGES_PER_WALK = 6


def probe(
    http_get: Get, everyone: str, tenant1: str, other_tenant_runs: Sequence[int], rnd: random.Random, out: list[Result]
) -> None:
    """One round of requests: ``tenant1`` is scoped to tenant 1, ``other_tenant_runs`` ids of other tenants' runs."""

    def get(path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = http_get(path, token)
        out.append(("api_no_5xx", status < 500, f"{path}: {status} {body[:200]!r}"))
        return status, headers, body

    # APPSEC: a scoped token sees only its tenant, in the list and in the detail.
    status, _, body = get("/api/admin/operations?limit=20", tenant1)
    page = json.loads(body)["data"] if status == 200 else []
    leaked = [r["id"] for r in page if r["tenant_id"] != 1]
    out.append(("api_tenant_scope", status == 200 and not leaked, f"list: {status}, other tenants' runs {leaked}"))
    other = rnd.choice(other_tenant_runs)
    hidden = get(f"/api/admin/operations/{other}", tenant1)
    missing = get(f"/api/admin/operations/{MISSING_RUN_ID}", tenant1)
    out.append((
        "api_tenant_scope",
        hidden[0] == 404 and missing[0] == 404 and hidden[2] == missing[2],
        f"other tenant's run {other}: {hidden[0]} {hidden[2][:100]!r}; missing run: {missing[0]} {missing[2][:100]!r}",
    ))  # fmt: skip
    _walk(get, everyone, rnd, out)
    # Malformed input is a 400 problem, never a 500.
    for bad in BAD_QUERIES:
        status, headers, _ = get(f"/api/admin/operations?{bad}", everyone)
        kind = headers.get("Content-Type", headers.get("content-type", ""))
        out.append(("api_bad_input_400", status == 400 and "problem+json" in kind, f"{bad}: {status} {kind}"))


def _walk(get: Get, token: str, rnd: random.Random, out: list[Result]) -> None:
    """Walking the pages while runs are written: no run twice, newest first throughout."""
    path, seen, keys = f"/api/admin/operations?limit={rnd.randint(3, 9)}", [], []
    for _ in range(PAGES_PER_WALK):
        status, _, body = get(path, token)
        if status != 200:
            out.append(("api_pagination", False, f"{path}: {status}"))
            return
        doc = json.loads(body)
        seen += [r["id"] for r in doc["data"]]
        keys += [(r["created_at"], r["id"]) for r in doc["data"]]
        if not doc["links"].get("next"):
            break
        split = urlsplit(doc["links"]["next"])
        path = f"{split.path}?{split.query}"
    ordered = all(later(a, b) for a, b in zip(keys, keys[1:], strict=False))
    out.append(("api_pagination", bool(seen) and len(seen) == len(set(seen)) and ordered, f"walk {keys}"))


def later(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Newest first: ``a`` (created_at, id) sorts strictly after ``b``."""
    ta, tb = datetime.fromisoformat(a[0]), datetime.fromisoformat(b[0])
    return (ta, a[1]) > (tb, b[1])
