"""Events to PagerDuty, sent as deliveries: so a phone rings beside the Slack page.

Each event was recorded with the change that owes it (`bot.domain.pagerduty`); here it is sent,
counted as sent once PagerDuty answers 202, retried with backoff on 429, 5xx and network errors
(honouring `Retry-After`), and a 400 is reported once in the war room and not retried. The
events of one incident go one at a time, in the order they were made; a trigger still waiting
when a later acknowledge or resolve is made is dropped rather than sent late (nobody needs a
phone call for an incident someone is already on). They go on a lane of their own
(`OUTSIDE_KINDS`), so PagerDuty being slow or down never delays a Slack page.

The `links` event is the trigger again with the same dedup_key, once the announcement and the
war room exist; it is dropped when the first trigger already had them or the incident was
acknowledged or resolved in the meantime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet, Refused, RetryLater
from bot.domain import pagerduty
from bot.domain.deliveries import NOT_PLACED_YET, DeliveryKind, DeliveryStatus
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import DeliveryRecord
from bot.pagerduty.client import PagerDutyClient, PagerDutyError
from bot.slack.gateway import SlackGateway, failure_code
from bot.slack.pacing import Saturated
from bot.store import Store

log = logging.getLogger(__name__)

WAITING = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
# The links wait for the announcement and war room this long at most (retried with backoff, and
# pulled forward the moment set-up has made them); after it they go with what exists.
LINKS_WAIT = timedelta(minutes=2)
_WAITING_FOR_SLACK = "the announcement and the war room"
_PACING = "PagerDuty Events API (about 120 events a minute per integration key)"
# A later event that makes an earlier one moot while it still waits.
_SUPERSEDES = {
    pagerduty.EventAction.ACKNOWLEDGE: {pagerduty.EventAction.TRIGGER, pagerduty.LINKS},
    pagerduty.EventAction.RESOLVE: {pagerduty.EventAction.TRIGGER, pagerduty.LINKS, pagerduty.EventAction.ACKNOWLEDGE},
    pagerduty.EventAction.TRIGGER: {pagerduty.LINKS},
}


def routes(
    config: Config,
    store: Store,
    slack: SlackGateway,
    client: PagerDutyClient | None,
    clock: Callable[[], datetime],
) -> dict[DeliveryKind, Route]:
    def may_go(delivery: DeliveryRecord) -> bool:
        """Every earlier event of its incident is done; one a later event makes moot is dropped."""
        events = store.deliveries(delivery.incident, kind=DeliveryKind.PAGERDUTY)
        moot = _SUPERSEDES.get(delivery.target, set())  # type: ignore[call-overload]
        for earlier in (d for d in events if d.id < delivery.id and d.status in WAITING):
            dropped = earlier.target in moot and store.drop_pending_delivery(
                earlier.id, f"superseded by the {delivery.target} (delivery {delivery.id})"
            )
            if not dropped:
                return False
        return True

    def send(delivery: DeliveryRecord, incident: Incident) -> None:
        if client is None:
            store.cancel_delivery(delivery.id, "PagerDuty is not configured (no routing key)")
            return
        later = _superseded_by(store, delivery)
        if later is not None:
            # Due before the event that makes it moot (both were retrying while PagerDuty was down):
            # a trigger sent now would ring a phone for an incident someone is already on.
            store.cancel_delivery(delivery.id, f"superseded by the {later.target} (delivery {later.id})")
            return
        links: list[dict[str, str]] = []
        if delivery.target in (pagerduty.EventAction.TRIGGER, pagerduty.LINKS):
            if delivery.target == pagerduty.LINKS:
                if not incident.is_open or incident.acknowledged_at is not None:
                    store.cancel_delivery(delivery.id, "moot: the incident was acknowledged or resolved")
                    return
                if not _set_up(config, incident) and clock() - incident.declared_at < LINKS_WAIT:
                    # Retried with backoff, and at once when set-up has made them (`retry_unplaced`).
                    raise NotPlacedYet(_WAITING_FOR_SLACK)
            links = _links(slack, incident)
            if delivery.target == pagerduty.LINKS and not links:
                store.cancel_delivery(delivery.id, "no announcement or war room to link")
                return
        label = config.policy(incident.severity).label if incident.severity in config.severities else ""
        event = pagerduty.event(
            incident,
            delivery.target,
            routing_key=client.routing_key,
            source=config.service.name,
            label=label or incident.severity,
            links=links,
        )
        wait = client.pace.take()
        if wait:
            # PagerDuty's limit would refuse it: deferred (not a failed attempt) until the oldest
            # event leaves the window, as the Slack pacer defers a call it has no token for.
            raise Saturated(_PACING, wait)
        try:
            client.send(event)
        except PagerDutyError as exc:
            if exc.retryable:
                raise RetryLater(str(exc), after=exc.retry_after) from exc
            if delivery.target == pagerduty.EventAction.TRIGGER:
                _drop_links(store, incident, delivery, "the trigger was refused")
            raise Refused(
                str(exc),
                f"⚠️ PagerDuty refused the {event['event_action']} for {incident.ref} (`{exc}`), so I will not "
                "retry it. Check `pagerduty` in the config and the integration key; Slack paging carries on.",
            ) from exc
        store.finish_delivery(delivery.id, clock(), user=None, channel=None, ts=None)
        if delivery.target == pagerduty.EventAction.TRIGGER and _set_up(config, incident) and links:
            _drop_links(store, incident, delivery, "the trigger already had the links")

    return {DeliveryKind.PAGERDUTY: Route(send, may_go=may_go, failing=_failing)}


def _superseded_by(store: Store, delivery: DeliveryRecord) -> DeliveryRecord | None:
    """A later event of the same incident (sent or still owed) that makes this one moot."""
    for later in store.deliveries(delivery.incident, kind=DeliveryKind.PAGERDUTY):
        moot = _SUPERSEDES.get(later.target, set())  # type: ignore[call-overload]
        if later.id > delivery.id and later.status != DeliveryStatus.CANCELLED and delivery.target in moot:
            return later
    return None


def _drop_links(store: Store, incident: Incident, trigger: DeliveryRecord, reason: str) -> None:
    """The links that would follow `trigger` are moot."""
    for later in store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY, status=DeliveryStatus.PENDING):
        if later.target == pagerduty.LINKS and later.id > trigger.id:
            store.drop_pending_delivery(later.id, reason)


def _set_up(config: Config, incident: Incident) -> bool:
    """The announcement exists, and the war room too if this severity has one."""
    room = incident.war_room_id is not None or not config.has_war_room(incident.severity)
    return incident.announcement_ts is not None and room


def _links(slack: SlackGateway, incident: Incident) -> list[dict[str, str]]:
    """Links to the war room and the announcement (Slack's permalink, else a redirect to its channel)."""
    links = []
    if incident.war_room_id:
        links.append({"href": _redirect(incident.war_room_id), "text": f"{incident.ref} war room in Slack"})
    if incident.announcement_channel and incident.announcement_ts:
        href = _redirect(incident.announcement_channel)
        try:
            href = slack.permalink(incident.announcement_channel, incident.announcement_ts) or href
        except (SlackApiError, OSError) as exc:
            log.info("no permalink for %s's announcement (%s); linking its channel", incident.ref, failure_code(exc))
        links.append({"href": href, "text": f"{incident.ref} announcement in Slack"})
    return links


def _redirect(channel: str) -> str:
    return f"https://slack.com/app_redirect?channel={channel}"


# A passing 429 or 503, retried a moment later, is nobody's business; three in a row are.
WARN_AFTER_FAILURES = 3


def _failing(delivery: DeliveryRecord, attempts: int, reason: str) -> str | None:
    """Said from the third failed try, once (the warning's key is the delivery's); waiting for the
    war room is no failure, and the pace defers without counting a try at all."""
    if attempts < WARN_AFTER_FAILURES or reason.startswith(NOT_PLACED_YET):
        return None
    return (
        f"⚠️ PagerDuty did not take the {delivery.target} (`{reason}`). Slack paging carries on; "
        "I keep retrying until PagerDuty answers."
    )
