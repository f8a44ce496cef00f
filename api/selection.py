"""Validation at the edge for the dead-letter endpoints: query filters, the selection body, the key.

Every value is checked before SQL sees it; anything malformed is a 400 problem naming the field,
never echoing the value. The body schema here and the one in the OpenAPI document are the same
rules (``openapi_console.SELECTION``): exactly one of ``ids`` or ``filter``, no other member.
"""

from __future__ import annotations

import json
import re
from typing import Any

import falcon

from runwatch.dead_letters import LetterFilters, Selection
from runwatch.queries import MAX_BIGINT

from . import params
from .errors import Problem, invalid_param

#: Longest request body read (a selection of MAX_IDS ids fits with room to spare).
MAX_BODY_BYTES = 64 * 1024
#: Most explicit letter ids in one selection.
MAX_IDS = 1000
#: Longest age filter, in seconds (100 years): beyond it PostgreSQL's intervals overflow.
MAX_AGE_SECONDS = 3_153_600_000
#: An Idempotency-Key: 1 to 200 visible ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
LETTER_PARAMS = frozenset(
    {"queue", "actor", "exception_type", "tenant_id", "min_age_seconds", "max_age_seconds", "limit", "cursor"}
)
GROUP_PARAMS = LETTER_PARAMS - {"cursor"}
_TEXT_FILTERS = ("queue", "actor", "exception_type")
_AGE_FILTERS = ("min_age_seconds", "max_age_seconds")


def _bad_body(field: str, why: str) -> Problem:
    return Problem(400, f"Body member '{field}' {why}.", parameter=field)


def _age(req: falcon.Request, name: str) -> int | None:
    value = params.integer(req, name)
    if value is not None and not 0 <= value <= MAX_AGE_SECONDS:
        raise invalid_param(name, f"must be between 0 and {MAX_AGE_SECONDS}")
    return value


def letter_filters(req: falcon.Request) -> LetterFilters:
    """The filters of a dead-letter list or groups request."""
    return LetterFilters(
        queue=params.text_value(req, "queue"),
        actor=params.text_value(req, "actor"),
        exception_type=params.text_value(req, "exception_type"),
        tenant_id=params.integer(req, "tenant_id"),
        min_age_seconds=_age(req, "min_age_seconds"),
        max_age_seconds=_age(req, "max_age_seconds"),
    )


def idempotency_key(req: falcon.Request) -> str:
    value = req.get_header("Idempotency-Key")
    if value is None:
        raise Problem(400, "This request needs an Idempotency-Key header.", parameter="Idempotency-Key")
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise Problem(
            400, "Header 'Idempotency-Key' must be 1 to 200 visible ASCII characters.", parameter="Idempotency-Key"
        )
    return value


def selection(req: falcon.Request) -> Selection:
    """The JSON body ``{"ids": [...]}`` or ``{"filter": {...}}``."""
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise Problem(400, f"The request body must be at most {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Problem(400, "The request body must be a JSON object.") from None
    return parse_selection(body)


def parse_selection(body: Any) -> Selection:
    """A selection from its JSON value (the API's body, or the console's frozen form field)."""
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object.")
    unknown = sorted(set(body) - {"ids", "filter"})
    if unknown:
        raise _bad_body(unknown[0][:100], "is not supported")
    if len(body) != 1:
        raise Problem(400, "The request body needs exactly one of 'ids' or 'filter'.")
    if "ids" in body:
        return Selection(ids=_ids(body["ids"]))
    return Selection(filters=_filter(body["filter"]))


def _ids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS:
        raise _bad_body("ids", f"must be an array of 1 to {MAX_IDS} letter ids")
    ids = tuple(i for i in (_as_int(v) for v in value) if i is not None and 1 <= i <= MAX_BIGINT)
    if len(ids) != len(value):
        raise _bad_body("ids", "must hold positive integers only")
    return ids


def _filter(value: Any) -> LetterFilters:
    if not isinstance(value, dict):
        raise _bad_body("filter", "must be an object")
    unknown = sorted(set(value) - {*_TEXT_FILTERS, *_AGE_FILTERS, "tenant_id"})
    if unknown:
        raise _bad_body("filter." + unknown[0][:100], "is not supported")
    fields: dict[str, Any] = {}
    for name in _TEXT_FILTERS:
        if name not in value:
            continue
        text = value[name]
        if not isinstance(text, str) or len(text) > params.MAX_TEXT_CHARS or "\x00" in text or not _encodable(text):
            raise _bad_body(f"filter.{name}", f"must be a string of at most {params.MAX_TEXT_CHARS} characters")
        fields[name] = text
    for name in _AGE_FILTERS:
        if name not in value:
            continue
        age = _as_int(value[name])
        if age is None or not 0 <= age <= MAX_AGE_SECONDS:
            raise _bad_body(f"filter.{name}", f"must be an integer between 0 and {MAX_AGE_SECONDS}")
        fields[name] = age
    if "tenant_id" in value:
        tenant = _as_int(value["tenant_id"])
        if tenant is None or not 1 <= tenant <= MAX_BIGINT:
            raise _bad_body("filter.tenant_id", "must be a positive integer (a tenant id)")
        fields["tenant_id"] = tenant
    return LetterFilters(**fields)


def _as_int(value: Any) -> int | None:
    """An integer as JSON Schema means it (``3`` or ``3.0``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON, not valid text)
        return False
    return True
