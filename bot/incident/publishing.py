"""The status page, kept in step with the incident: create, update and resolve calls queued as
deliveries (sent and retried like a page, never blocking Slack), one call per incident at a
time, in the order they were made.

A call that a later one supersedes is dropped rather than sent late; one the status page refuses
outright (a 4xx other than a rate limit) is cancelled, and the war room told.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from bot.context import Context
from bot.core.text import plain
from bot.delivery.dispatch import Route
from bot.delivery.errors import Refused, RetryLater
from bot.domain.deliveries import DeliveryKind, DeliveryStatus, status_page_firing
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord
from bot.statuspage.client import GENERIC_BODY, GENERIC_NAME, StatuspageClient, StatuspageError
from bot.store import Store

WAITING = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


def to_status_page(ctx: Context, incident: Incident, action: str, *, status: str | None = None, body: str = "") -> None:
    """Queue a status page change; it is sent (and retried) like a page, never blocking Slack.

    `body` is user text in the canonical form; the status page gets it as plain text.
    """
    if ctx.statuspage is None:
        return
    fired = ctx.store.fired_keys(incident.number)
    if action == "resolve" and "statuspage:create" not in fired:
        return  # never made public: nothing to resolve there
    if action == "update" and "statuspage:create" not in fired:
        # A lower severity made public by hand: open it there first (in general words: the
        # update was asked to go public, the title was not), then update it.
        to_status_page(ctx, incident, "create", body=GENERIC_BODY)
    ctx.store.record_firing(incident.number, status_page_firing(action, status=status, body=plain(body)), ctx.now())
    ctx.timers.wake_deliveries()


def routes(
    store: Store, statuspage: StatuspageClient | None, clock: Callable[[], datetime]
) -> dict[DeliveryKind, Route]:
    def may_go(delivery: DeliveryRecord) -> bool:
        """Every earlier call of its incident is done: the page never shows an older state last.

        An earlier update still waiting is superseded by a later update or the resolve, and is
        dropped rather than sent late.
        """
        calls = store.deliveries(delivery.incident, kind=DeliveryKind.STATUSPAGE)
        for call in (d for d in calls if d.id < delivery.id and d.status in WAITING):
            supersedes = call.target == "update" and delivery.target in ("update", "resolve")
            if not (supersedes and store.drop_pending_delivery(call.id, f"superseded by delivery {delivery.id}")):
                return False
        return True

    def send(delivery: DeliveryRecord, incident: Incident) -> None:
        """Create, update or resolve the public incident."""
        if statuspage is None:
            store.cancel_delivery(delivery.id, "no status page configured")
            return
        try:
            if _call(store, statuspage, clock, delivery, incident):
                store.finish_delivery(delivery.id, clock(), user=None, channel=None, ts=None)
        except StatuspageError as exc:
            if exc.retryable:
                raise RetryLater(str(exc), after=exc.retry_after) from exc
            # Bad key, unknown page, invalid field: the same call would be refused again.
            raise Refused(
                str(exc),
                f"⚠️ The status page refused the {delivery.target} (`{exc}`), so I will not retry it. "
                "Check `statuspage` in the config and post the status by hand.",
            ) from exc

    return {DeliveryKind.STATUSPAGE: Route(send, may_go=may_go, failing=_failing)}


def _call(
    store: Store,
    statuspage: StatuspageClient,
    clock: Callable[[], datetime],
    delivery: DeliveryRecord,
    incident: Incident,
) -> bool:
    """Make the call; False when it became moot (and was cancelled)."""
    detail = json.loads(delivery.detail or "{}")
    if delivery.target == "create":
        if incident.statuspage_id is None:
            # The name is in the delivery: the title goes public only when someone asked for it.
            page_id = statuspage.create_incident(
                detail.get("name") or GENERIC_NAME,
                "investigating",
                detail.get("body", ""),
                severity=incident.severity,
            )
            store.record_setup(incident.number, clock(), statuspage_id=page_id)
        return True
    if delivery.target == "update" and not incident.is_open:
        store.cancel_delivery(delivery.id, "the incident is resolved: the resolve has the last word")
        return False
    if incident.statuspage_id is None:
        # Calls go in order, so the create is done by now: it was refused or never made.
        store.cancel_delivery(delivery.id, "the status page incident was never created")
        return False
    if delivery.target == "resolve":
        statuspage.resolve_incident(incident.statuspage_id, detail.get("body", ""))
    else:
        statuspage.update_incident(incident.statuspage_id, detail["status"], detail.get("body", ""))
    return True


def _failing(delivery: DeliveryRecord, attempts: int, reason: str) -> str | None:
    """A status page that customers read is reported at its first failure."""
    if attempts != 1:
        return None
    return f"⚠️ The status page ({delivery.target}) failed (`{reason}`). Slack carries on; I keep retrying."
