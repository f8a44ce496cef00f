"""The served OpenAPI document must never contradict the monitoring contract.

Loads the vendored copy (``api/contract/``) and, when present, the shared original
(``../shared/contract/``), and checks that every path, method, parameter (name, location,
schema), response status and schema of the contract is in the served document unchanged:
same types (``nullable: true`` is the 3.0 spelling of ``[T, "null"]``), same enums, formats
and ``additionalProperties``, every required field still required, every property present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = [
    ROOT / "api" / "contract" / "operation-run-lifecycle.openapi.yaml",
    ROOT.parent / "shared" / "contract" / "operation-run-lifecycle.openapi.yaml",
]


def resolve(doc: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    found = set(declared) if isinstance(declared, list) else {declared}
    if schema.get("nullable") is True:
        found.add("null")
    return found


def contradictions(contract: dict, served: dict, c: Any, s: Any, where: str) -> list[str]:
    """Every way ``s`` (served) fails to honour ``c`` (contract)."""
    c, s = resolve(contract, c), resolve(served, s)
    if not isinstance(c, dict):
        return [] if c == s else [f"{where}: {s!r} != {c!r}"]
    if not isinstance(s, dict):
        return [f"{where}: missing"]
    found = []
    if types(c) is not None and types(c) != types(s):
        found.append(f"{where}: type {types(s)} != {types(c)}")
    for key in ("enum", "format"):
        if key in c and c[key] != s.get(key):
            found.append(f"{where}: {key} {s.get(key)!r} != {c[key]!r}")
    missing_required = set(c.get("required", [])) - set(s.get("required", []))
    if missing_required:
        found.append(f"{where}: no longer requires {sorted(missing_required)}")
    for name, sub in c.get("properties", {}).items():
        found += contradictions(contract, served, sub, s.get("properties", {}).get(name), f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if key in c:
            found += contradictions(contract, served, c[key], s.get(key), f"{where}.{key}")
    if "allOf" in c:
        if len(c["allOf"]) != len(s.get("allOf", [])):
            found.append(f"{where}: allOf has {len(s.get('allOf', []))} parts, contract {len(c['allOf'])}")
        else:
            for i, (cp, sp) in enumerate(zip(c["allOf"], s["allOf"], strict=True)):
                found += contradictions(contract, served, cp, sp, f"{where}.allOf[{i}]")
    return found


def contract_violations(contract: dict, served: dict) -> list[str]:
    found = []
    for path, methods in contract["paths"].items():
        for method, c_op in methods.items():
            s_op = served["paths"].get(path, {}).get(method)
            where = f"{method.upper()} {path}"
            if s_op is None:
                found.append(f"{where}: not served")
                continue
            if c_op.get("operationId") != s_op.get("operationId"):
                found.append(f"{where}: operationId {s_op.get('operationId')!r}")
            s_params = {(p["name"], p["in"]): p for p in s_op.get("parameters", [])}
            for c_param in c_op.get("parameters", []):
                key = (c_param["name"], c_param["in"])
                s_param = s_params.get(key)
                if s_param is None:
                    found.append(f"{where}: parameter {key} missing")
                    continue
                if bool(c_param.get("required")) != bool(s_param.get("required")):
                    found.append(f"{where}: parameter {key} required differs")
                if resolve(contract, c_param["schema"]) != resolve(served, s_param["schema"]):
                    found.append(f"{where}: parameter {key} schema {s_param['schema']} != {c_param['schema']}")
            for status, c_resp in c_op["responses"].items():
                s_resp = s_op["responses"].get(status)
                if s_resp is None:
                    found.append(f"{where}: response {status} missing")
                    continue
                for media, c_media in c_resp.get("content", {}).items():
                    s_media = s_resp.get("content", {}).get(media)
                    if s_media is None:
                        found.append(f"{where} {status}: {media} missing")
                        continue
                    found += contradictions(contract, served, c_media["schema"], s_media["schema"], f"{where} {status}")
    for name, schema in contract["components"]["schemas"].items():
        found += contradictions(contract, served, schema, served["components"]["schemas"].get(name), name)
    return found


@pytest.fixture(scope="module")
def served() -> dict:
    import falcon.testing
    from runwatch.api.app import create_app
    from runwatch.api.store import Store

    # The document route touches no database: a store that could never connect is enough.
    client = falcon.testing.TestClient(create_app(Store("postgresql://nobody@127.0.0.1:1/none")))
    result = client.simulate_get("/api/openapi.json")
    assert result.status_code == 200 and result.headers["content-type"].startswith("application/json")
    return result.json


@pytest.mark.parametrize("path", CONTRACTS, ids=["vendored", "shared"])
def test_served_document_is_a_superset_of_the_contract(served, path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    contract = yaml.safe_load(path.read_text())
    assert contract_violations(contract, served) == []


def test_vendored_contract_matches_the_shared_one():
    vendored, shared = CONTRACTS
    if not shared.exists():
        pytest.skip("shared contract not present")
    assert yaml.safe_load(vendored.read_text()) == yaml.safe_load(shared.read_text())


#: Each contradiction and what it must be reported as: (where, what) for every place it shows.
BREAKS = {
    "a status value dropped": (
        lambda doc: doc["paths"]["/api/admin/operations"]["get"]["parameters"][0]["schema"]["enum"].pop(),
        [("GET /api/admin/operations", "parameter ('status', 'query') schema")],
    ),
    "a required field no longer required": (
        lambda doc: doc["components"]["schemas"]["OperationRunListItem"]["required"].remove("freshness_state"),
        [(where, "no longer requires ['freshness_state']") for where in (
            "GET /api/admin/operations 200.data.items", "GET /api/admin/operations/{operationRun} 200.allOf[0]",
            "OperationRunListItem", "OperationRunDetail.allOf[0]")],
    ),
    "a nullable field made non-null": (
        lambda doc: doc["components"]["schemas"]["OperationRunListItem"]["properties"]["tenant_id"].update(
            type="integer"
        ),
        [(where, "type {'integer'} != ") for where in (
            "GET /api/admin/operations 200.data.items.tenant_id",
            "GET /api/admin/operations/{operationRun} 200.allOf[0].tenant_id",
            "OperationRunListItem.tenant_id", "OperationRunDetail.allOf[0].tenant_id")],
    ),
    "a documented response dropped": (
        lambda doc: doc["paths"]["/api/admin/operations/{operationRun}"]["get"]["responses"].pop("404"),
        [("GET /api/admin/operations/{operationRun}", "response 404 missing")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_the_checker_catches_each_contradiction(served, name):
    """Each contradiction alone is reported wherever it shows (list, detail, schemas), and nothing else is."""
    contract = yaml.safe_load(CONTRACTS[0].read_text())
    broken = yaml.safe_load(yaml.safe_dump(served))
    mutate, expected = BREAKS[name]
    mutate(broken)
    problems = contract_violations(contract, broken)
    assert len(problems) == len(expected), problems
    for where, what in expected:
        assert [p for p in problems if p.startswith(f"{where}: {what}")], (where, what, problems)


def test_every_answered_status_is_documented(served):
    ops = served["paths"]
    for path in ("/api/admin/operations", "/api/admin/operations/{operationRun}"):
        assert {"200", "400", "401", "500", "503"} <= set(ops[path]["get"]["responses"])
    assert "404" in ops["/api/admin/operations/{operationRun}"]["get"]["responses"]
    assert "503" in ops["/health/ready"]["get"]["responses"]
    assert served["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert all(ops[p]["get"]["security"] == [] for p in ("/health/live", "/health/ready", "/metrics"))
