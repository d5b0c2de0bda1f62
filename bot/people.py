"""Who a name in the config means: role names, user IDs and emails resolved to Slack users."""

from __future__ import annotations

import re

from slack_sdk.errors import SlackApiError

from bot import text
from bot.config import INCIDENT_ROLES, Config
from bot.incidents import Incident
from bot.slack import SlackGateway, error_code

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class PeopleError(Exception):
    """A name that does not lead to a Slack user; the message says which and why."""


def mentioned_user(token: str) -> str | None:
    """The user an argument names (a mention Slack made, `U123`): see `bot.text.mentioned_user`."""
    return text.mentioned_user(token)


class Directory:
    def __init__(self, config: Config, slack: SlackGateway) -> None:
        self.config = config
        self.slack = slack

    def is_known(self, ref: str) -> bool:
        return bool(
            ref in self.config.people
            or ref in INCIDENT_ROLES
            or ref.removeprefix("incident_") in INCIDENT_ROLES
            or _USER_ID.match(ref)
            or "@" in ref
        )

    def users(self, ref: str, incident: Incident | None = None) -> list[str]:
        """Slack user IDs for a role name, an incident role, a user ID or an email.

        A role whose holders resolve only in part gives the ones that do: one departed holder
        must not stop the others being paged. It raises only when nobody can be reached.
        """
        users, problems = self.resolve(ref, incident)
        if not users:
            raise PeopleError("; ".join(problems) or f"nobody holds the role {ref}")
        return users

    def resolve(self, ref: str, incident: Incident | None = None) -> tuple[list[str], list[str]]:
        """(Slack user IDs reached, problems with the holders that could not be)."""
        if ref not in self.config.people:
            try:
                return self._one(ref, incident), []
            except PeopleError as exc:
                return [], [str(exc)]
        users: list[str] = []
        problems: list[str] = []
        for holder in self.config.people[ref]:
            try:
                users.extend(self._one(holder, incident))
            except PeopleError as exc:
                problems.append(str(exc))
        if not self.config.people[ref]:
            problems.append(f"nobody holds the role {ref} (see `people` in the config)")
        return list(dict.fromkeys(users)), problems

    def _one(self, ref: str, incident: Incident | None) -> list[str]:
        if _USER_ID.match(ref):
            return [ref]
        if "@" in ref:
            return [self._by_email(ref)]
        incident_role = ref.removeprefix("incident_")
        if incident_role in INCIDENT_ROLES:
            holder = incident.role_holder(incident_role) if incident else None
            if not holder:
                raise PeopleError(
                    f"nobody holds the {incident_role} role" + (f" in {incident.ref}" if incident else "")
                )
            return [holder]
        if ref in self.config.people:
            return self.users(ref, incident)
        raise PeopleError(f"{ref!r} is not a role under `people`, a user ID or an email")

    def _by_email(self, email: str) -> str:
        try:
            return self.slack.user_by_email(email)
        except SlackApiError as exc:
            if error_code(exc) == "users_not_found":
                raise PeopleError(f"no Slack user has the email {email}") from exc
            raise
