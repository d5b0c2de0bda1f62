"""What an alert becomes in Slack: an incident, a proposal, lines in a thread.

`receive` records a delivery's alerts (one transaction, in the request) and hands the Slack
work to the alert intake's own bounded executor (`ctx.alert_work`: people's work never waits
behind it; `has_room` says whether the webhook may take a notification on): one job per alert
group in the notification, however many alerts it holds, which settles each of them in turn and
then edits each message they changed (the proposal, the group's message in the incident) once,
showing the latest state, instead of once per alert. `settle` does that work for one alert, driven by what the store
says is still to do, so it can run again after a crash or a Slack outage (the bot's set-up
retry calls `settle_all`): declare it, post its proposal, link it in its incident's thread,
count it closed in its group's message (and, once all have closed, suggest resolving). Declaring goes through `bot.incident.opening.create`, the same path as
`/incident declare`, and the store refuses a second incident for the same alert.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.domain.alerts import Alert, incident_title, scenario_for
from bot.domain.incidents import Incident
from bot.domain.policy import AlertRoute
from bot.domain.records import AlertReceipt, AlertRecord
from bot.incident.opening import create, set_up
from bot.slack.blocks import alerts as alert_blocks
from bot.slack.blocks.incident import Block
from bot.slack.gateway import rate_limited, retry_after_s
from bot.slack.pacing import Lane, Origin, pace
from bot.store import AlertTaken

log = logging.getLogger(__name__)

# One alert's Slack work at a time: the webhook, a retry and a button may all reach one alert.
_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
# One group message's edit at a time; a request meanwhile makes the holder edit once more.
_group_guard = threading.Lock()
_proposal_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_group_busy: set[str] = set()
_group_again: set[str] = set()
# One suggestion to resolve per incident at a time: its last alerts may close at once.
_suggestion_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
# Within one batch (an alert group's alerts from one notification): the edits of messages that
# already exist, by key, made once at the end of the batch. None outside a batch: edits go at once.
_EDITS: ContextVar[dict[str, Callable[[], None]] | None] = ContextVar("alert_edits", default=None)

Step = Callable[[Context, int], None]


def receive(ctx: Context, alerts: list[tuple[Alert, AlertRoute]]) -> list[AlertReceipt]:
    """Record the alerts now; show them in Slack after the caller has answered: one job per
    alert group (an Alertmanager notification's 100 alerts are one job, not 100)."""
    reopen_within = ctx.config.alerts.reopen_within if ctx.config.alerts else timedelta(0)
    receipts = ctx.store.record_alerts(alerts, ctx.now(), reopen_within)
    if any(r.outcome in ("refire", "closed") for r in receipts):
        ctx.timers.wake_deliveries()  # a re-fire's message is a delivery, recorded with the alert
    groups: dict[tuple[str, str], list[tuple[Step, int]]] = {}
    for receipt in receipts:
        if receipt.record is None or receipt.outcome in ("stale", "refire"):
            continue
        step = still_firing if receipt.outcome == "repeat" else settle
        groups.setdefault(_group_id(receipt.record), []).append((step, receipt.record.id))
    for steps in groups.values():
        ctx.alert_work.submit(batch, ctx, steps)
    return receipts


def batch(ctx: Context, steps: list[tuple[Step, int]]) -> None:
    """Each alert's step in turn, then each message the steps edited, once, as the store has it
    by then. A message's first post is never put off (only edits of one that exists are), so
    a crash mid-batch loses at most an edit the next notification makes again."""
    edits: dict[str, Callable[[], None]] = {}
    token = _EDITS.set(edits)
    try:
        for step, alert_id in steps:
            _guarded(step, ctx, alert_id)
    finally:
        _EDITS.reset(token)
    for key, edit in edits.items():
        _guarded_edit(ctx, key, edit)


def settle_all(ctx: Context) -> None:
    """Finish every alert's Slack work that an outage or a crash left undone."""
    batch(ctx, [(settle, record.id) for record in ctx.store.unsettled_alerts()])


def declare(ctx: Context, record: AlertRecord, by: str, commander: str | None = None) -> Incident:
    """Open the alert's incident, with the other waiting alerts of its group (an Alertmanager
    group, a Cloud Monitoring policy) attached: titled after the alert, detected when the first
    of them started. Raises AlertTaken when the alert already has an incident, however many
    deliveries or clicks race here."""
    for attempt in range(3):
        group = [record, *ctx.store.open_group_alerts(record)]
        try:
            return create(
                ctx,
                title=incident_title(record.policy, record.summary),
                severity=record.severity,
                user=by,
                detected_at=min(a.started_at for a in group),
                alerts=tuple(a.id for a in group),
                commander=commander,
            )
        except AlertTaken as exc:
            if exc.alert_id == record.id or attempt == 2:
                raise
            # A groupmate was declared meanwhile: try again without it.
    raise AssertionError("unreachable")


def settle(ctx: Context, alert_id: int) -> None:
    with _locks[alert_id]:
        record = ctx.store.alert(alert_id)
        if record is None:
            return
        # A re-fire of a resolved incident is said in it (a delivery), never declared or proposed.
        waiting = record.is_open and record.incident is None and not record.dismissed_by and record.refire_of is None
        if waiting and record.action == "declare":
            try:
                incident = declare(ctx, record, by=ctx.slack.bot_user_id(), commander=_first_responder(ctx, record))
            except AlertTaken:
                pass  # declared meanwhile (a click on its proposal): linked below like any other
            else:
                # Committed, its pages under way: the set-up (announcement, war room at Tier 2's
                # 20 a minute) is a job of its own, so this thread goes on to the next group's
                # declare instead of waiting on Slack, and no alert's page waits behind another
                # alert incident's war room.
                ctx.alert_work.submit(set_up_declared, ctx, incident.number)
            record = _reread(ctx, alert_id)
        elif waiting and record.action == "propose" and record.proposal_ts is None:
            record = _propose(ctx, record)
        if record.incident is not None and not record.link_noted:
            record = _link(ctx, record)
        if not record.is_open and not record.close_noted:
            record = _close(ctx, record)


def set_up_declared(ctx: Context, number: int) -> None:
    """An alert incident's set-up, then its alerts' lines (each of them, the first included)."""

    def work() -> None:
        incident = ctx.store.get(number)
        if incident is not None:
            set_up(ctx, incident)
            settle_linked(ctx, number)

    _attempt(
        ctx,
        f"alert-setup-{number}",
        f"setting up INC-{number}",
        work,
        lambda: ctx.alert_work.submit(set_up_declared, ctx, number),
    )


def settle_linked(ctx: Context, number: int, but: int | None = None) -> None:
    """Once an incident is announced: the lines of the alerts declared with it, which waited."""
    waiting = [(settle, other.id) for other in ctx.store.alerts_of(number) if other.id != but and not other.link_noted]
    if waiting:
        ctx.alert_work.submit(batch, ctx, waiting)


def still_firing(ctx: Context, alert_id: int) -> None:
    """A repeat notification: the incident's group message edited, or one line under the proposal."""
    with _locks[alert_id]:
        record = ctx.store.alert(alert_id)
        if record is None or not record.is_open or record.dismissed_by:
            return
        if record.incident is not None:
            show_group(ctx, record)  # the group's one message, edited: never a line per re-send
        else:
            refresh_proposal(ctx, record)  # the proposal edited to count it: never a line per re-send
    # A repeat is also the moment to finish what an earlier delivery could not.
    settle(ctx, alert_id)


def _propose(ctx: Context, record: AlertRecord) -> AlertRecord:
    """One proposal per alert group: the first alert posts it, its waiting groupmates join it."""
    with _proposal_locks[_group_id(record)]:
        record = _reread(ctx, record.id)
        if record.proposal_ts is not None:
            return record
        shared = next((a for a in ctx.store.open_group_alerts(record) if a.proposal_channel and a.proposal_ts), None)
        if shared is not None and shared.proposal_channel and shared.proposal_ts:
            record = ctx.store.note_alert(
                record.id, proposal_channel=shared.proposal_channel, proposal_ts=shared.proposal_ts
            )
            refresh_proposal(ctx, record)
            return record
        channel, ts = ctx.announcer.post_once(
            f"alert-proposal:{record.id}",
            ctx.config.channel,
            alert_blocks.proposal_text(ctx.config, record),
            _proposal_blocks(ctx, [record]),
        )
        return ctx.store.note_alert(record.id, proposal_channel=channel, proposal_ts=ts)


def proposal_group(ctx: Context, record: AlertRecord) -> list[AlertRecord]:
    """The alerts the record's proposal shows (its group's, which share the one message)."""
    if not (record.proposal_channel and record.proposal_ts):
        return [record]
    return ctx.store.proposal_alerts(record.proposal_channel, record.proposal_ts) or [record]


def refresh_proposal(ctx: Context, record: AlertRecord) -> None:
    """Edit the proposal to show its alerts as the store has them now; edits asked for while
    one is under way collapse into one more."""
    channel, ts = record.proposal_channel, record.proposal_ts
    if channel and ts:

        def edit() -> None:
            group = proposal_group(ctx, record)
            ctx.slack.update(
                channel, ts, alert_blocks.proposal_text(ctx.config, _lead(group)), _proposal_blocks(ctx, group)
            )

        _edit(f"proposal:{channel}:{ts}", edit)


def _lead(group: list[AlertRecord]) -> AlertRecord:
    """Whose state a group's proposal shows: a declared one, else one still waiting, else the first."""
    return next(
        (a for a in group if a.incident is not None),
        next((a for a in group if a.is_open and not a.dismissed_by), group[0]),
    )


def _link(ctx: Context, record: AlertRecord) -> AlertRecord:
    """The alert's line, with its link, under its incident's announcement; the proposal shows
    where it went. Waits for the announcement: set-up may still be under way."""
    incident = ctx.store.get(record.incident or 0)
    if incident is None or incident.announcement_ts is None:
        return record
    refresh_proposal(ctx, record)
    show_group(ctx, record)
    return ctx.store.note_alert(record.id, link_noted=True)


def group_of(ctx: Context, record: AlertRecord) -> list[AlertRecord]:
    """The alerts of the record's group (Alertmanager `groupKey`, Cloud Monitoring project and
    policy) attached to its incident, oldest first."""
    if record.incident is None:
        return [record]
    group = [
        a for a in ctx.store.alerts_of(record.incident) if a.source == record.source and a.group_key == record.group_key
    ]
    return sorted(group, key=lambda a: a.id) or [record]


def show_group(ctx: Context, record: AlertRecord) -> None:
    """The incident's one message for the alert's group: posted once (post-once key, its ts kept
    in the store), then edited in place. Requests that arrive while one is being shown collapse
    into one more edit showing the latest state."""
    incident = ctx.store.get(record.incident or 0)
    if incident is None or not incident.is_open or incident.announcement_ts is None:
        return
    key = f"alert-group:{incident.number}:{group_of(ctx, record)[0].id}"
    if ctx.store.posted(key) is not None:
        _edit(key, lambda: _show_group_once(ctx, incident, record, key))  # in a batch: once, at its end
    else:
        _collapsed(key, lambda: _show_group_once(ctx, incident, record, key))  # its first post is never put off


def _edit(key: str, edit: Callable[[], None]) -> None:
    """Edit the message `key` now, or, within a batch, once at the batch's end (the latest
    asked for: an edit reads the store when it runs)."""
    edits = _EDITS.get()
    if edits is not None:
        edits[key] = edit
        return
    _collapsed(key, edit)


def _collapsed(key: str, show: Callable[[], None]) -> None:
    """Run `show` for `key`; a request while one runs makes it run once more, not once each."""
    with _group_guard:
        if key in _group_busy:
            _group_again.add(key)
            return
        _group_busy.add(key)
    try:
        while True:
            with _group_guard:
                _group_again.discard(key)
            show()
            with _group_guard:
                if key not in _group_again:
                    return
    finally:
        with _group_guard:
            _group_busy.discard(key)


def _show_group_once(ctx: Context, incident: Incident, record: AlertRecord, key: str) -> None:
    text, blocks = alert_blocks.group_status(group_of(ctx, record))
    known = ctx.store.posted(key)
    if known is not None:
        ctx.slack.update(known[0], known[1], text, blocks)
        return
    channel, ts = ctx.announcer.post_once(
        key,
        incident.announcement_channel or ctx.config.channel,
        text,
        blocks,
        thread_ts=incident.announcement_ts,
    )
    ctx.store.note_posted(key, channel, ts, ctx.now())


def _close(ctx: Context, record: AlertRecord) -> AlertRecord:
    """A closed alert is counted in its group's one message (no line per alert); once every alert
    attached to the incident has closed, one line suggests resolving it."""
    incident = ctx.store.get(record.incident) if record.incident is not None else None
    if incident is not None and incident.is_open:
        if incident.announcement_ts is None:
            return record  # said once the announcement exists
        show_group(ctx, record)
        attached = ctx.store.alerts_of(incident.number)
        if all(not a.is_open for a in attached):
            _suggest_resolving(ctx, incident, attached)
    refresh_proposal(ctx, record)
    return ctx.store.note_alert(record.id, close_noted=True)


def _suggest_resolving(ctx: Context, incident: Incident, attached: list[AlertRecord]) -> None:
    """The incident's one suggestion to resolve, once every alert attached to it has closed: in
    the announcement's thread and the war room, once per incident (not per group or alert), even
    when its last alerts close at once, across a crash, or after alerts re-fire and close again."""
    key = f"alerts-all-closed:{incident.number}"
    with _suggestion_locks[incident.number]:
        if ctx.store.posted(key) is not None:
            return
        text, blocks = alert_blocks.all_closed(incident, attached)
        channel, ts = ctx.announcer.post_once(
            key,
            incident.announcement_channel or ctx.config.channel,
            text,
            blocks,
            thread_ts=incident.announcement_ts,
        )
        if incident.war_room_id:
            ctx.announcer.post_once(f"{key}:war-room", incident.war_room_id, text, blocks)
        ctx.store.note_posted(key, channel, ts, ctx.now())


def _proposal_blocks(ctx: Context, group: list[AlertRecord]) -> list[Block]:
    record = _lead(group)
    incident = ctx.store.get(record.incident) if record.incident is not None else None
    scenario = scenario_for(record.policy, record.condition, record.summary)
    return alert_blocks.proposal(ctx.config, record, scenario, incident, group)


def _first_responder(ctx: Context, record: AlertRecord) -> str | None:
    """Who commands an incident nobody declared by hand: the first person its escalation path
    pages (the primary on call), so reminders and hand-overs reach a person, not the bot."""
    steps = ctx.config.policy(record.severity).escalation
    try:
        return ctx.directory.users(steps[0].page[0])[0] if steps and steps[0].page else None
    except Exception as exc:  # noqa: BLE001 - without a name the bot commands until someone takes over
        log.warning("could not name a commander for alert %s: %s", record.id, exc)
        return None


def _reread(ctx: Context, alert_id: int) -> AlertRecord:
    record = ctx.store.alert(alert_id)
    assert record is not None
    return record


def _guarded(step: Step, ctx: Context, alert_id: int) -> None:
    _attempt(
        ctx,
        f"alert-retry-{alert_id}",
        f"showing alert {alert_id} in Slack",
        lambda: step(ctx, alert_id),
        lambda: ctx.alert_work.submit(_guarded, step, ctx, alert_id),
    )


def _guarded_edit(ctx: Context, key: str, edit: Callable[[], None]) -> None:
    _attempt(
        ctx,
        f"alert-edit-retry-{key}",
        f"editing {key} in Slack",
        lambda: _collapsed(key, edit),
        lambda: ctx.alert_work.submit(_guarded_edit, ctx, key, edit),
    )


def _attempt(ctx: Context, timer: str, what: str, work: Callable[[], None], again: Callable[[], object]) -> None:
    try:
        # What an alert starts waits behind what people started, in every lane.
        with pace(Lane.ANNOUNCE, Origin.ALERT):
            work()
    except SlackApiError as exc:
        if not rate_limited(exc):
            log.warning("%s failed; it will be retried", what, exc_info=True)
            return
        # Slack said when: try again then, rather than at the next set-up retry round.
        wait = retry_after_s(getattr(exc.response, "headers", None)) or 1.0
        log.info("%s was rate limited; again in %.0f s", what, wait)

        def retry() -> None:
            again()

        ctx.timers.place(timer, retry, ctx.now() + timedelta(seconds=wait))
    except Exception:  # noqa: BLE001 - logged; settle_all tries again with the set-up retry
        log.warning("%s failed; it will be retried", what, exc_info=True)


def _group_id(record: AlertRecord) -> tuple[str, str]:
    """An alert's group: its notification's groupKey, or its Cloud Monitoring project and policy."""
    return (record.source, record.group_key or f"#{record.id}")
