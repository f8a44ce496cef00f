"""The audit of operator actions: the Actions list and one action with what became of each letter."""

from __future__ import annotations

import re

import falcon

from runwatch import actions

from .. import params
from ..actions import ACTION_PARAMS, ActionResource
from ..console_store import ConsoleStore
from ..deadletters import page
from ..errors import Problem
from . import web
from .session import ConsolePage

_ACTION_ID = re.compile(r"[0-9]{1,19}")


class ActionsPage(ConsolePage[ConsoleStore]):
    """``GET /console/actions``: requeues and purges, newest first: who, when, what, how many, status."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web.drop_blank_filters(req)
        params.reject_unknown(req, ACTION_PARAMS)
        status = params.choice(req, "status", actions.STATUSES)
        kind = params.choice(req, "kind", actions.KINDS)
        limit = params.limit(req)
        filters = ("actions", status, kind)
        start = params.after(req, filters, self.store.cursor_key, issuer="console")
        # APPSEC: a scoped session sees only actions whose requester's scope lies within its own.
        rows = self.store.list_actions(req.context.principal, after=start, limit=limit + 1, status=status, kind=kind)
        rows, next_url = page(
            req, rows, limit, filters=filters, key=self.store.cursor_key(), position_of=actions.position_of
        )
        req.context.nav = "actions"
        web.render(
            req, resp, "actions.html", rows=rows, next_url=next_url, paged=start is not None,
            form={"status": status or "", "kind": kind or ""}, statuses=actions.STATUSES, kinds=actions.KINDS,
        )  # fmt: skip


class ActionPage(ConsolePage[ConsoleStore]):
    """``GET /console/actions/{action_id}``: the action, its selection, and each letter's result."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, action_id: str) -> None:
        # APPSEC: malformed, missing and another scope's action are the same 404.
        view = self.store.get_action(req.context.principal, int(action_id)) if _ACTION_ID.fullmatch(action_id) else None
        if view is None:
            raise Problem(404, ActionResource.NOT_FOUND_DETAIL)
        req.context.nav = "actions"
        open_ = view.action["status"] in (actions.PENDING, actions.RUNNING)
        web.render(
            req, resp, "action.html", action=view.action, items=view.items, truncated=view.items_truncated,
            open=open_,
        )  # fmt: skip
