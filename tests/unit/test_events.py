import math

import pytest

from runwatch import events as ev
from runwatch.errors import InvalidSummary, InvalidTenantId, ValidationError


@pytest.mark.parametrize("bad", ["7", 0, -1, 1.5, True, [7]])
def test_tenant_id_must_be_a_positive_int(bad):
    with pytest.raises(InvalidTenantId):
        ev.validate_tenant_id(bad)


def test_tenant_id_accepts_none_and_ints():
    assert ev.validate_tenant_id(None) is None
    assert ev.validate_tenant_id(42) == 42


def test_summary_rejects_unknown_keys_naming_them():
    with pytest.raises(InvalidSummary, match="bogus"):
        ev.validate_summary({"created": 1, "bogus": 2})


@pytest.mark.parametrize("bad", ["3", None, math.nan, math.inf, -1, True])
def test_summary_rejects_non_numbers(bad):
    with pytest.raises(InvalidSummary, match="created"):
        ev.validate_summary({"created": bad})


def test_summary_accepts_actor_specific_keys():
    assert ev.validate_summary({"invoices": 3}, {"invoices"}) == {"invoices": 3}


def test_reason_codes_are_dotted_lower_case():
    assert ev.validate_reason_code("tenant.not_operable") == "tenant.not_operable"
    for bad in ("Tenant.NotOperable", "nodot", "a..b", ""):
        with pytest.raises(ValidationError):
            ev.validate_reason_code(bad)


def test_sanitize_error_masks_credentials():
    text = ev.sanitize_error("cannot connect to postgresql://app:hunter2@db/x password=s3cret\nline2")
    assert "hunter2" not in text and "s3cret" not in text and "\n" not in text
    assert "postgresql://app:***@db/x" in text


def _event(**over):
    base = ev.new_event(ev.STARTED, "m1", 1.7e9, {"queue": "q", "actor": "a", "type": "t", "created_at": 1.7e9})
    return {**base, **over}


def test_validate_rejects_malformed_events_with_a_reason():
    assert ev.validate(_event())["kind"] == "started"
    for bad, why in [
        (_event(kind="exploded"), "unknown event kind"),
        (_event(at="yesterday"), "time"),
        (_event(at=1e300), "outside"),
        (_event(meta={"queue": "q", "actor": "a", "type": "t", "created_at": -5}), "created_at"),
        (_event(meta={"queue": "q"}), "meta"),
        (_event(kind="completed", outcome="pending"), "outcome"),
        (_event(kind="dead_lettered", reason_code="run.made_up"), "reason code"),
        (_event(summary={"x": "1"}), "summary"),
        # the fast paths (events.py, PERF) still meet every check
        (_event(at=True), "not a number"),
        (_event(at=float("nan")), "not a number"),
        (_event(at=float("inf")), "not a number"),
        (_event(at=946_684_799), "outside"),
        (_event(summary=None), "summary is not an object"),
        (_event(summary=[]), "summary is not an object"),
        (_event(meta=["queue"]), "meta"),
        (["not", "an", "event"], "not an object"),
    ]:
        with pytest.raises(ValidationError, match=why):
            ev.validate(bad)


def test_expand_unfolds_a_folded_start_with_a_stable_id():
    completed = ev.new_event(ev.COMPLETED, "m", 1.7e9 + 1, {"queue": "q"}, outcome="succeeded",
                             start={"at": 1.7e9, "attempt": 1, "worker_id": "w", "redis_message_id": "r"})
    first, second = list(ev.expand([completed])), list(ev.expand([completed]))
    assert [e["kind"] for e in first] == ["started", "completed"] and "start" not in first[1]
    assert first[0]["id"] == second[0]["id"] and first[0]["at"] == 1.7e9 and first[0]["worker_id"] == "w"


def test_event_ids_are_unique_uuid_shaped_hex():
    import uuid

    ids = {ev.new_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(uuid.UUID(i).hex == i for i in list(ids)[:10])


def test_validate_checks_a_folded_start():
    with pytest.raises(ValidationError, match="start time"):
        ev.validate(_event(kind="completed", outcome="succeeded", start={"at": "soon"}))
