"""`users.*` and `usergroups.*`: look people up by id or email, list user groups and their members."""

from __future__ import annotations

from typing import Any

from bot.sandbox.slack.core import SandboxCore, SlackError, _truthy


class UsersMethods(SandboxCore):
    """users.* and usergroups.* (lock held)."""

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user.to_api()}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email") or "").strip().lower()
        for user in self._users.values():
            # Slack: "If the user has been deactivated, users_not_found will be returned".
            if user.email and user.email.lower() == email and not user.deleted:
                return {"user": user.to_api()}
        raise SlackError("users_not_found")

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every user group in one answer (the method does not page); disabled ones on request."""
        include_disabled = _truthy(params.get("include_disabled"))
        groups = [g for g in self._usergroups.values() if include_disabled or not g.disabled_at]
        return {
            "usergroups": [
                g.to_api(_truthy(params.get("include_users")), _truthy(params.get("include_count"))) for g in groups
            ]
        }

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group_id = str(params.get("usergroup") or "")
        if not group_id:
            raise SlackError("invalid_arguments")
        group = self._usergroups.get(group_id)
        # A disabled group is answered as missing unless asked for (Slack does the same).
        if group is None or (group.disabled_at and not _truthy(params.get("include_disabled"))):
            raise SlackError("no_such_subteam")
        return {"users": list(group.users)}
