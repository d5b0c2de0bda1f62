"""`api.test` and `auth.test`: the methods that say who the token is."""

from __future__ import annotations

from typing import Any

from bot.sandbox.slack.constants import BOT_ID, BOT_NAME, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID, TEAM_NAME
from bot.sandbox.slack.core import SandboxCore, SlackError


class AuthMethods(SandboxCore):
    """api.* and auth.* (lock held)."""

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        if "error" in params:
            raise SlackError(str(params["error"]), args=params)
        return {"args": params}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }
