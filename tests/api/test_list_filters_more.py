"""The list's extension filters: several values per filter, queue, actor, reason code, message id."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.api_client import get
from tests.support.seed import newest_first

LIST = "/api/admin/operations"


def listed(client, token, **params) -> list[int]:
    result = get(client, LIST, token, limit="200", **params)
    assert result.status_code == 200, result.text
    return [r["id"] for r in result.json["data"]]


def test_several_statuses_outcomes_and_types_match_any(client, tokens, world):
    live = [r for r in world if r.status in ("queued", "running")]
    assert listed(client, tokens.all, status="queued,running") == newest_first(live)
    done = [r for r in world if r.outcome in ("blocked", "succeeded")]
    assert listed(client, tokens.all, outcome="succeeded,blocked") == newest_first(done)
    assert listed(client, tokens.all, outcome="pending,failed") == newest_first(
        [r for r in world if r.outcome in ("pending", "failed")]
    )
    both = listed(client, tokens.all, type="invoices.sync,reports.render")
    assert both == newest_first(world)
    assert listed(client, tokens.t1, status="queued,completed", type="reports.render") == newest_first(
        [r for r in world if r.tenant_id == 1 and r.type == "reports.render" and r.status in ("queued", "completed")]
    )


def test_queue_actor_reason_code_and_message_id(client, tokens, world, engine):
    with engine.begin() as conn:
        conn.execute(text("UPDATE operation_runs SET queue_name = 'reports' WHERE type = 'reports.render'"))
        message_id = conn.execute(text("SELECT message_id FROM operation_runs WHERE id = :id"), {"id": world[2].id})
        message_id = message_id.scalar_one()
    reports = [r for r in world if r.type == "reports.render"]
    assert listed(client, tokens.all, queue_name="reports") == newest_first(reports)
    assert listed(client, tokens.all, actor_name="reports.render") == newest_first(reports)
    assert listed(client, tokens.all, reason_code="run.adapter_out_of_sync") == newest_first(
        [r for r in world if r.source == "adapter_reconciler"]
    )
    assert listed(client, tokens.all, message_id=message_id) == [world[2].id]
    other_tenant = next(r for r in world if r.tenant_id == 2)
    with engine.connect() as conn:
        theirs = conn.execute(text("SELECT message_id FROM operation_runs WHERE id = :id"), {"id": other_tenant.id})
        theirs = theirs.scalar_one()
    assert listed(client, tokens.t1, message_id=theirs) == []  # APPSEC: a lookup never crosses tenants


@pytest.mark.parametrize(
    "query",
    [
        {"status": "queued,bogus"},
        {"outcome": ","},
        {"reason_code": "run.nope"},
        {"status": ",".join(["queued"] * 21)},
    ],
)
def test_malformed_extension_values_are_400(client, tokens, query):
    result = get(client, LIST, tokens.all, **query)
    assert result.status_code == 400 and result.json["parameter"] == next(iter(query))


def test_repeating_a_filter_is_still_400(client, tokens):
    result = client.simulate_get(LIST, query_string="type=a&type=b", headers={"Authorization": f"Bearer {tokens.all}"})
    assert result.status_code == 400 and result.json["parameter"] == "type"


def test_cursor_pages_with_several_values(client, tokens, world):
    seen, params = [], {"status": "queued,running", "limit": "3"}
    while True:
        body = get(client, LIST, tokens.all, **params).json
        seen += [r["id"] for r in body["data"]]
        if not body["links"]["next"]:
            break
        params["cursor"] = body["links"]["next"].split("cursor=")[1]
    assert seen == newest_first([r for r in world if r.status in ("queued", "running")])


def test_the_served_document_lists_the_new_filters(client):
    names = {p["name"] for p in client.simulate_get("/api/openapi.json").json["paths"][LIST]["get"]["parameters"]}
    assert {"queue_name", "actor_name", "reason_code", "message_id"} <= names
