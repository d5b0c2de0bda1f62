"""Post-mortem drafts in Slack: gathered from the store, written by `bot.domain.postmortem`, uploaded, reminded.

Both the upload of a draft and the reminder that the post-mortem is due are deliveries (kinds
`postmortem_draft` and `postmortem_reminder`): rows the delivery loop sends and retries until
Slack accepts them, across restarts, like a page. The draft is stored before it is uploaded,
so `incident-bot postmortem INC-7` prints exactly the bytes the war room received.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from slack_sdk.errors import SlackApiError

from bot.context import Announcing
from bot.core.mrkdwn import user_text
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet, RetryLater
from bot.delivery.once import post_delivery
from bot.domain import postmortem
from bot.domain.deliveries import DeliveryKind
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import SlackGateway, error_code
from bot.store import Store

log = logging.getLogger(__name__)


def facts(config: Config, store: Store, incident: Incident, now: datetime) -> postmortem.Facts:
    policy = config.policy(incident.severity)
    return postmortem.Facts(
        incident=incident,
        events=store.timeline(incident.number),
        resolution=store.resolution(incident.number),
        followups=store.followups(incident.number),
        pages=[postmortem.Page(who, at) for who, at in store.pages_sent(incident.number)],
        service=config.service.name,
        severity_label=policy.label,
        ack_within=policy.ack_within,
        generated_at=now,
    )


def write_draft(
    config: Config, store: Store, incident: Incident, now: datetime, name_of: Callable[[str], str | None] | None = None
) -> str:
    """Render the draft from the store as it is now, and keep it as the incident's draft.

    With `name_of`, each person it mentions is looked up once (Slack's users.info, in the
    delivery loop, never before an ack) and named instead of their user ID."""
    written = facts(config, store, incident, now)
    markdown = postmortem.render(written)
    if name_of is not None:
        names = {user: name for user in postmortem.people_in(markdown) if (name := name_of(user))}
        if names:
            markdown = postmortem.render(replace(written, names=names))
    store.save_draft(incident.number, markdown, now)
    return markdown


def routes(
    config: Config, store: Store, slack: SlackGateway, announcer: Announcing, clock: Callable[[], datetime]
) -> dict[DeliveryKind, Route]:
    def upload(delivery: DeliveryRecord, incident: Incident) -> None:
        _upload(delivery, incident, config=config, store=store, slack=slack, announcer=announcer, now=clock())

    def landed(delivery: DeliveryRecord, incident: Incident, oldest: float) -> bool:
        return recover_upload(delivery, incident, oldest, config=config, store=store, slack=slack, now=clock())

    def remind(delivery: DeliveryRecord, incident: Incident) -> None:
        _remind(delivery, incident, store=store, slack=slack, now=clock())

    return {
        DeliveryKind.POSTMORTEM_DRAFT: Route(upload, landed=landed),
        DeliveryKind.POSTMORTEM_REMINDER: Route(remind),
    }


def _upload(
    delivery: DeliveryRecord,
    incident: Incident,
    *,
    config: Config,
    store: Store,
    slack: SlackGateway,
    announcer: Announcing,
    now: datetime,
) -> None:
    if incident.is_open and delivery.detail == "resolved":
        store.cancel_delivery(delivery.id, "reopened before the draft was uploaded")
        return
    target = announcer.war_room_target(incident)
    if target is None:
        raise NotPlacedYet("the incident has no war room or announcement to upload the draft to yet")
    channel, thread_ts = target
    markdown = write_draft(config, store, incident, now, name_of=slack.display_name)
    state = "ongoing" if incident.is_open else "resolved"
    comment = (
        f"📝 Post-mortem draft for *{incident.ref}* ({state}): {user_text(incident.title, 300)}. "
        "The timeline and impact are filled in; add what went well and what we will improve. "
        "`/incident followup &lt;action&gt;` records follow-ups, `/incident postmortem` rewrites the draft."
    )
    # Where it goes, then the file's id, are stored before Slack shares it, so that a retry or
    # start-up asks Slack about that very file instead of uploading it again.
    store.set_delivery_channel(delivery.id, channel, None, thread_ts)
    file_id = slack.upload_file(
        channel,
        thread_ts,
        draft_filename(incident),
        f"{incident.ref} post-mortem draft",
        markdown,
        comment,
        on_file_id=lambda file_id: store.note_draft_file(incident.number, file_id),
    )
    # Slack answered the upload; it shares the file after that, or (rarely) never. The draft is
    # delivered once the channel shows it.
    if _shared_soon(slack, file_id, channel):
        _uploaded(delivery, incident, file_id, channel, store=store, slack=slack, now=now)
        return
    raise RetryLater("uploaded; Slack has not shown it in the channel yet", after=_share_check_s(config))


# Slack usually shares within a second: looked for this long right after the upload (a few
# files.info calls, Tier 4), then again by the delivery loop's retries.
SHARE_LOOKS_S = (0.0, 0.1, 0.2, 0.4, 0.8)


def _shared_soon(slack: SlackGateway, file_id: str, channel: str) -> bool:
    pause = threading.Event()
    for delay in SHARE_LOOKS_S:
        pause.wait(delay)
        if slack.file_shared(file_id, channel):
            return True
    return False


def _share_check_s(config: Config) -> float:
    """How soon to look again for a share Slack has not made yet."""
    return max(0.2, min(5.0, config.postmortem_share_within.total_seconds() / 10))


def draft_filename(incident: Incident) -> str:
    return f"{incident.ref}-postmortem.md"


def _uploaded(
    delivery: DeliveryRecord,
    incident: Incident,
    file_id: str,
    channel: str,
    *,
    store: Store,
    slack: SlackGateway,
    now: datetime,
) -> None:
    try:
        permalink = slack.file_permalink(file_id)
    except SlackApiError as exc:  # the upload landed; a missing link only makes the reminder plainer
        log.warning("could not read the permalink of %s: %s", file_id, error_code(exc))
        permalink = None
    store.record_draft_upload(incident.number, file_id, permalink, channel)
    store.finish_delivery(delivery.id, now, user=None, channel=channel, ts=None)


def recover_upload(
    delivery: DeliveryRecord,
    incident: Incident,
    oldest: float,
    *,
    config: Config,
    store: Store,
    slack: SlackGateway,
    now: datetime,
) -> bool:
    """A draft upload a crash, a timeout or a share still pending left in doubt: True (and
    recorded) if Slack shows the file in the channel.

    The file's id is stored before Slack is asked to share it. While Slack may still share it
    (`postmortem.share_within` after the draft was written) this waits, raising RetryLater:
    uploading again now would show the draft twice once the first share lands. A file Slack has
    not shared by then is deleted (so it cannot appear later) and False lets the draft go again.
    """
    if not delivery.channel:
        return False  # it never got as far as uploading
    draft = store.draft(incident.number)
    if draft is not None and draft.file_id and not draft.channel:
        shared = slack.file_shared(draft.file_id, delivery.channel)
        if shared:
            _uploaded(delivery, incident, draft.file_id, delivery.channel, store=store, slack=slack, now=now)
            return True
        if shared is None:
            return False  # the upload never completed: nothing of it can be shared
        if now - draft.generated_at < config.postmortem_share_within:
            raise RetryLater("uploaded; Slack has not shown it in the channel yet", after=_share_check_s(config))
        log.warning(
            "Slack has not shared %s of INC-%s after %s: deleting it, uploading the draft again",
            draft.file_id,
            incident.number,
            config.postmortem_share_within,
        )
        slack.delete_file(draft.file_id)
        return False
    # No file id stored (an upload begun before ids were stored): the message that shares it.
    file_id = slack.find_file(delivery.channel, draft_filename(incident), oldest, delivery.thread_ts)
    if file_id is None:
        return False
    _uploaded(delivery, incident, file_id, delivery.channel, store=store, slack=slack, now=now)
    return True


def _remind(delivery: DeliveryRecord, incident: Incident, *, store: Store, slack: SlackGateway, now: datetime) -> None:
    if incident.is_open:
        store.cancel_delivery(delivery.id, "reopened: the post-mortem waits for the next resolution")
        return
    draft = store.draft(incident.number)
    if draft is not None and draft.permalink:
        where = f"<{draft.permalink}|the draft>"
    elif draft is not None and draft.channel:
        where = f"the draft in <#{draft.channel}>"
    else:
        where = f"`incident-bot postmortem {incident.ref}` (the draft)"
    text = (
        f"📝 <@{incident.commander}>: the post-mortem of *{incident.ref}* ({incident.severity}) is due. "
        f"Start from {where}: root cause, detection gap, what went well, what we will improve, "
        "and an owner and date for each action."
    )
    user = incident.commander
    post_delivery(store, slack, now, delivery, slack.open_dm(user), text, user=user)
