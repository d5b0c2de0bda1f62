"""`views.*`: modals opened with a trigger_id (single use, short-lived), pushed onto a stack of
at most three, updated; and what Slack does with a view_submission's answer.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from bot.sandbox.slack.blockkit import validate_view
from bot.sandbox.slack.constants import APP_ID, BOT_ID, MAX_VIEW_BYTES, MAX_VIEW_STACK, TEAM_ID
from bot.sandbox.slack.core import SandboxCore, SlackError, _short_id


class ViewsMethods(SandboxCore):
    """views.* (lock held) and the trigger_ids and submissions around them."""

    def issue_trigger_id(self, user: str = "U0PRIMARY") -> str:
        """A trigger_id as Slack puts in interactions; views.open accepts it once, for 3 s."""
        n = next(self._counter)
        trigger = f"{n}.{int(time.time())}.{_short_id(f'trigger{n}', 12).lower()}"
        with self._lock:
            self._triggers[trigger] = {"user": user, "at": time.monotonic(), "used": False}
        return trigger

    def _view_param(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._json_param(params, "view", "invalid_arguments")
        errors = validate_view(view)
        if errors:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        assert isinstance(view, dict)
        return view

    def _use_trigger(self, params: dict[str, Any]) -> str:
        trigger = str(params.get("trigger_id") or params.get("interactivity_pointer") or "")
        info = self._triggers.get(trigger)
        if info is None:
            raise SlackError("invalid_trigger_id")
        if info["used"]:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - info["at"] > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        info["used"] = True
        return str(info["user"])

    def _store_view(
        self,
        view: dict[str, Any],
        *,
        user: str,
        view_id: str | None = None,
        previous: str | None = None,
        root: str | None = None,
    ) -> dict[str, Any]:
        view_id = view_id or self._new_id("V")
        stored = {
            "type": "modal",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
        }
        stored.update(
            id=view_id,
            team_id=TEAM_ID,
            blocks=self._fill_ids(view.get("blocks"), f"{view_id}/{time.time()}"),
            state={"values": {}},
            hash=f"{int(time.time())}.{_short_id(f'{view_id}{time.time()}', 8)}",
            previous_view_id=previous,
            root_view_id=root or view_id,
            app_id=APP_ID,
            app_installed_team_id=TEAM_ID,
            bot_id=BOT_ID,
        )
        self._views[view_id] = stored
        self._view_meta[view_id] = {"user": user, "open": True}
        return {"view": copy.deepcopy(stored)}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._use_trigger(params)
        return self._store_view(self._view_param(params), user=user)

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._use_trigger(params)
        view = self._view_param(params)
        stack = [v for v in self._views.values() if self._view_meta[v["id"]]["open"]]
        stack = [v for v in stack if self._view_meta[v["id"]]["user"] == user]
        if len(stack) >= MAX_VIEW_STACK:
            raise SlackError("push_limit_reached")
        top = stack[-1] if stack else None
        return self._store_view(
            view,
            user=user,
            previous=top["id"] if top else None,
            root=top["root_view_id"] if top else None,
        )

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = str(params.get("view_id") or "")
        external_id = str(params.get("external_id") or "")
        if not view_id and external_id:
            view_id = next((v["id"] for v in self._views.values() if v.get("external_id") == external_id), "")
        current = self._views.get(view_id)
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._view_param(params)
        return self._store_view(
            view,
            user=self._view_meta[view_id]["user"],
            view_id=view_id,
            previous=current["previous_view_id"],
            root=current["root_view_id"],
        )

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        """The app's Home tab for one user: created or replaced whole (no trigger_id needed)."""
        user = str(params.get("user_id") or "")
        if user not in self._users:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["invalid `user_id`"]})
        if not self.home_tab_enabled:
            raise SlackError("not_enabled")
        view = self._view_param(params)
        if view.get("type") != "home":
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] must be home for views.publish [json-pointer:/view/type]"]},
            )
        if len(json.dumps(view)) > MAX_VIEW_BYTES:
            raise SlackError("view_too_large")
        current_id = self._home_views.get(user)
        if params.get("hash") and current_id and params["hash"] != self._views[current_id]["hash"]:
            raise SlackError("hash_conflict")
        published = self._store_view(view, user=user, view_id=current_id)
        self._home_views[user] = published["view"]["id"]
        self._view_meta[published["view"]["id"]]["open"] = False  # a tab, not a modal on the stack
        return published

    def home_view(self, user: str) -> dict[str, Any] | None:
        """The Home tab last published to `user`, as Slack holds it (None: never published)."""
        with self._lock:
            view_id = self._home_views.get(user)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    def apply_view_response(self, view_id: str, status: int, body: Any) -> None:
        """What Slack does with a view_submission's answer: close, update, push or show errors."""
        with self._lock:
            meta = self._view_meta.get(view_id)
            if meta is None or status != 200:
                return  # Slack keeps the modal open and shows a connection error
            action = body.get("response_action") if isinstance(body, dict) else None
            if action in (None, ""):
                meta["open"] = False
            elif action == "clear":
                root = self._views[view_id]["root_view_id"]
                for vid, view in self._views.items():
                    if view["root_view_id"] == root:
                        self._view_meta[vid]["open"] = False
            elif action == "update" and not validate_view(body.get("view")):
                current = self._views[view_id]
                self._store_view(
                    body["view"],
                    user=meta["user"],
                    view_id=view_id,
                    previous=current["previous_view_id"],
                    root=current["root_view_id"],
                )
            elif action == "push" and not validate_view(body.get("view")):
                current = self._views[view_id]
                self._store_view(body["view"], user=meta["user"], previous=view_id, root=current["root_view_id"])
