"""The Dead letters page: groups and a filtered list, then preview -> confirm -> the action's page.

Works without JavaScript: the list is a form whose checkboxes (or "all matching the filter") post
to the preview, which shows the count and first rows and freezes the selection, the kind and an
idempotency key made when the preview is rendered into the confirmation form. Confirming writes
one pending operator action (a double submit finds the same one) and redirects to it; the bridge's
maintenance pass executes it later. Validation is the JSON API's own (``selection``, ``params``).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode

import falcon

from runwatch import actions, dead_letters
from runwatch.actions import IdempotencyConflict, SelectionTooLarge
from runwatch.dead_letters import Selection

from .. import params, selection
from ..auth import require_operator
from ..console_store import ConsoleStore
from ..deadletters import page
from ..errors import Problem
from . import web
from .session import ConsolePage, read_form_lists, require_csrf

#: The list's filters, as the JSON list names them (and as the form and its URL carry them).
FILTER_NAMES = ("queue", "actor", "exception_type", "tenant_id", "min_age_seconds", "max_age_seconds")
_INTEGER_FILTERS = ("tenant_id", "min_age_seconds", "max_age_seconds")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
#: Groups shown above the list (largest first).
MAX_GROUPS = 100


def _first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _number(value: str) -> int | str:
    """A form's digits as an integer; anything else stays text for the validator to refuse."""
    return int(value) if _INTEGER.fullmatch(value) else value


def form_selection(form: dict[str, list[str]]) -> Selection:
    """The checked letters (``scope=ids``) or every letter the carried filter matches (``scope=filter``)."""
    scope = _first(form, "scope")
    if scope == "ids":
        chosen = [v for v in form.get("id", []) if v]
        if not chosen:
            raise Problem(400, "Select at least one letter, or preview all the letters that match the filter.")
        return selection.parse_selection({"ids": [_number(v) for v in chosen]})
    if scope == "filter":
        wanted: dict[str, Any] = {}
        for name in FILTER_NAMES:
            value = _first(form, name)
            if value:
                wanted[name] = _number(value) if name in _INTEGER_FILTERS else value
        return selection.parse_selection({"filter": wanted})
    raise Problem(400, "Form field 'scope' must be 'ids' or 'filter'.", parameter="scope")


def _kind(form: dict[str, list[str]]) -> str:
    kind = _first(form, "kind")
    if kind not in actions.KINDS:
        raise Problem(400, "Form field 'kind' must be one of " + ", ".join(actions.KINDS) + ".", parameter="kind")
    return kind


def _acting_form(req: falcon.Request) -> dict[str, list[str]]:
    """The posted form of a state-changing step: CSRF first, then the operator role (viewer: 403)."""
    form = read_form_lists(req, selection.MAX_BODY_BYTES)
    require_csrf(req, {"csrf": _first(form, "csrf")})
    require_operator(req)
    return form


class DeadLettersPage(ConsolePage[ConsoleStore]):
    """``GET /console/dead-letters``: groups by queue, actor and exception type; the filtered list."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web.drop_blank_filters(req)
        params.reject_unknown(req, selection.LETTER_PARAMS)
        filters = selection.letter_filters(req)
        limit = params.limit(req)
        start = params.after(req, filters, self.store.cursor_key, issuer="console")
        principal = req.context.principal
        # APPSEC: both reads scope to the session's tenants in SQL, exactly as the JSON API does.
        groups = self.store.letter_groups(principal, filters, limit=MAX_GROUPS)
        rows = self.store.list_letters(principal, filters, after=start, limit=limit + 1)
        rows, next_url = page(
            req, rows, limit, filters=filters, key=self.store.cursor_key(), position_of=dead_letters.position_of
        )
        for group in groups:  # a group's link: the list narrowed to it (a missing actor/type is no filter)
            named = {"queue": "queue_name", "actor": "actor_name", "exception_type": "exception_type"}
            query = {k: v for k, v in req.params.items() if k in FILTER_NAMES}
            query.update({k: group[column] for k, column in named.items() if group[column] is not None})
            group["query"] = query
        form = {name: req.params.get(name, "") for name in FILTER_NAMES}
        here = {k: v for k, v in req.params.items() if k != "cursor"}
        req.context.nav = "dead-letters"
        web.render(
            req, resp, "dead_letters.html", groups=groups, rows=rows, form=form, filters=filters.as_dict(),
            next_url=next_url, paged=start is not None, kinds=actions.KINDS,
            first_url="/console/dead-letters" + ("?" + urlencode(here) if here else ""),
        )  # fmt: skip


class PreviewResource(ConsolePage[ConsoleStore]):
    """``POST /console/dead-letters/preview``: the count and first rows, and the confirmation form."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _acting_form(req)
        kind = _kind(form)
        chosen = form_selection(form)
        matched, rows = self.store.preview(req.context.principal, chosen)
        req.context.nav = "dead-letters"
        web.render(
            req, resp, "dead_letters_preview.html", kind=kind, matched=matched, rows=rows,
            chosen=chosen.as_dict(), frozen=json.dumps(chosen.as_dict(), separators=(",", ":")),
            # The key is made now, once per preview: confirming twice names the same action.
            key=secrets.token_urlsafe(24), too_many=matched > self.store.max_action_letters,
            max_letters=self.store.max_action_letters,
        )  # fmt: skip


class ConfirmResource(ConsolePage[ConsoleStore]):
    """``POST /console/dead-letters/confirm``: write the pending action, then 303 to its page."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _acting_form(req)
        kind = _kind(form)
        key = _first(form, "key")
        if not selection.IDEMPOTENCY_KEY.fullmatch(key):
            raise Problem(400, "Form field 'key' is missing or malformed; preview the action again.", parameter="key")
        try:
            frozen = json.loads(_first(form, "selection"))
        except (ValueError, RecursionError):
            raise Problem(400, "Form field 'selection' is not a selection; preview the action again.") from None
        chosen = selection.parse_selection(frozen)
        try:
            action, _created = self.store.request_action(
                req.context.principal, kind=kind, selection=chosen, idempotency_key=key
            )
        except IdempotencyConflict:
            raise Problem(409, "This confirmation was already used for a different action; preview again.") from None
        except SelectionTooLarge as exc:
            raise Problem(400, f"{str(exc).capitalize()}; narrow the selection or act in parts.") from None
        raise falcon.HTTPSeeOther(f"/console/actions/{action['id']}")
