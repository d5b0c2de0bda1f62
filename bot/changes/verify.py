"""The runbook's VERIFY step done by the bot: after a confirmed fix, watch the service and say
whether it held.

A watch is a row in the store (`Store.create_watch`); its sampling timer is a cache of it,
placed on the leader by `plan_all` at start-up, at every reconcile and when a watch starts. A
sample reads the health endpoint, the service's requests since the last sample (Cloud
Monitoring, else the request log) and the smoke calls, then records itself as the next sample
(compare-and-set: a run that lost a race, or one repeated after a restart, records nothing).
The one message is edited in place. The verdict (held for the window, or regressed at the first
sample over a threshold) is recorded once with its timeline line; a regression also owes a new
message mentioning the commander, sent as a delivery. A watch stops when its incident resolves.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

from bot.context import Context
from bot.core.mrkdwn import escape
from bot.domain.deliveries import post_to
from bot.domain.incidents import Incident
from bot.domain.records import EventKind
from bot.domain.service import ServiceRef
from bot.domain.verify import (
    Sample,
    SmokeResult,
    Verdict,
    Watch,
    WatchStatus,
    judge,
    offset_text,
)
from bot.slack.blocks import verify as blocks

log = logging.getLogger(__name__)

JOB_PREFIX = "verify-"
PROBE_TIMEOUT_S = 5.0
METRICS_TIMEOUT_S = 8.0


def _ref(ctx: Context) -> ServiceRef:
    s = ctx.config.service
    return ServiceRef(s.project, s.region, s.name, s.health_url)


def start(
    ctx: Context, incident: Incident, *, by: str, why: str, proposal: int | None = None, window: timedelta | None = None
) -> Watch | None:
    """Start watching (after a confirmed fix, or `/incident verify`): the row, the message, the
    first sample at once. None when there is nowhere to say it yet."""
    where = ctx.announcer.war_room_target(incident)
    if where is None:
        return None
    channel, thread_ts = where
    rules = ctx.config.verify
    now = ctx.now()
    span = window or rules.window
    every = min(rules.every, span)
    draft = Watch(
        id=0,
        incident=incident.number,
        started_by=by,
        started_at=now,
        window_s=span.total_seconds(),
        every_s=every.total_seconds(),
        why=why,
        proposal=proposal,
        channel=channel,
        thread_ts=thread_ts,
    )
    for earlier in ctx.store.watches(WatchStatus.WATCHING, incident=incident.number):
        # A newer fix supersedes the watch of an older one: one verdict, about what serves now.
        stopped = ctx.store.finish_watch(earlier.id, WatchStatus.STOPPED, now, kind=None, text="superseded")
        if stopped is not None:
            _show(ctx, stopped, Verdict(WatchStatus.STOPPED, (f"a newer watch replaced it ({why})",)))
    watch = ctx.store.create_watch(draft, f"Verifying the fix ({why}) for {span.total_seconds():g} s")
    # The first sample is taken at once, while the message is being posted: Slack's limit on
    # posts to the room can hold the post a second or two, and the baseline must not wait for it.
    # The sample's edit waits for the post (the lock), so the message is never posted twice.
    posting = _posting_lock(watch.id)
    posting.acquire()
    _place(ctx, watch.id, now)
    try:
        _, ts = ctx.slack.post(
            channel,
            blocks.watch_text(watch, incident.ref, Verdict(WatchStatus.WATCHING)),
            _blocks(ctx, watch, incident.ref, Verdict(WatchStatus.WATCHING)),
            thread_ts=thread_ts,
            key=f"verify:{watch.id}",
        )
        ctx.store.set_watch_message(watch.id, channel, ts)
    except Exception:  # noqa: BLE001 - the samples still run; each edit tries to post again
        log.warning("could not post the verify message of INC-%s", incident.number, exc_info=True)
    finally:
        posting.release()
    return ctx.store.get_watch(watch.id)


_posting_locks: dict[int, threading.Lock] = {}
_posting_guard = threading.Lock()


def _posting_lock(watch_id: int) -> threading.Lock:
    with _posting_guard:
        return _posting_locks.setdefault(watch_id, threading.Lock())


def plan_all(ctx: Context) -> None:
    """Place every watch still watching at its next sample (from the store: after a restart a
    watch resumes where it was; a sample that came due while the bot was down runs at once)."""
    for watch in ctx.store.watches(WatchStatus.WATCHING):
        _place(ctx, watch.id, max(ctx.now(), watch.next_at))


def _place(ctx: Context, watch_id: int, at: datetime) -> None:
    ctx.timers.place(f"{JOB_PREFIX}{watch_id}", lambda: sample(ctx, watch_id), at)


def sample(ctx: Context, watch_id: int) -> None:
    """Take the next sample of a watch, record it, edit the message, decide."""
    watch = ctx.store.get_watch(watch_id)
    if watch is None or watch.status != WatchStatus.WATCHING:
        return
    incident = ctx.store.get(watch.incident)
    if incident is None or not incident.is_open:
        stopped = ctx.store.finish_watch(
            watch.id, WatchStatus.STOPPED, ctx.now(), kind=None, text="stopped: the incident was resolved"
        )
        if stopped is not None:
            _show(ctx, stopped, Verdict(WatchStatus.STOPPED))
        return
    now = ctx.now()
    due = watch.next_at
    if now < due - timedelta(milliseconds=50):  # placed early (a reconcile): wait for its time
        _place(ctx, watch.id, due)
        return
    index = len(watch.samples)
    taken = _take(ctx, watch, index, now)
    recorded = ctx.store.add_watch_sample(watch.id, index, taken)
    if recorded is None:  # another run recorded this one (or the watch ended meanwhile)
        return
    rules = ctx.config.verify
    # Sample 0 is the baseline (how it was as the fix landed): shown, not judged.
    verdict = judge(recorded.samples[1:], rules, recorded.window, health_checked=bool(_ref(ctx).health_url))
    if verdict.status == WatchStatus.REGRESSED:
        _decide(ctx, recorded, incident, verdict)
    elif recorded.over:  # the window's last sample, and every one within the thresholds
        _decide(ctx, recorded, incident, Verdict(WatchStatus.HELD, (), taken.offset_s))
    else:
        _show(ctx, recorded, Verdict(WatchStatus.WATCHING))
        _place(ctx, watch.id, recorded.next_at)


def _decide(ctx: Context, watch: Watch, incident: Incident, verdict: Verdict) -> None:
    now = ctx.now()
    if verdict.status == WatchStatus.HELD:
        text = f"Verified: the fix held for {watch.window_s:g} s ({watch.why}): ready to resolve"
        finished = ctx.store.finish_watch(watch.id, WatchStatus.HELD, now, kind=EventKind.VERIFY_HELD, text=text)
    else:
        text = f"Regressed at {offset_text(verdict.at_offset_s)}: {escape(', '.join(verdict.breaches))}"
        message = blocks.regression_text(watch, incident.ref, verdict, incident.commander)
        channel = watch.channel or ""
        firing = post_to(f"verify:{watch.id}:regressed", channel, watch.thread_ts, message)
        finished = ctx.store.finish_watch(
            watch.id, WatchStatus.REGRESSED, now, kind=EventKind.VERIFY_REGRESSED, text=text, firing=firing
        )
        ctx.timers.wake_deliveries()
    if finished is not None:
        _show(ctx, finished, verdict)


def _take(ctx: Context, watch: Watch, index: int, now: datetime) -> Sample:
    """Look at the service once. Sample 0's requests are the baseline (the `every` before the fix
    was confirmed, or before the watch began); each later one covers the requests since the one
    before."""
    ref = _ref(ctx)
    rules = ctx.config.verify
    offset = (now - watch.started_at).total_seconds()
    if index == 0:
        # As it was when the fix was confirmed (or as the watch began): shown, not judged.
        confirmed = ctx.store.get_proposal(watch.proposal) if watch.proposal is not None else None
        before = confirmed.confirmed_at if confirmed is not None and confirmed.confirmed_at else watch.started_at
        start, end = before - watch.every, before
    else:  # from the last sample on: the intervals tile the window, whatever restarts did
        start, end = watch.started_at + timedelta(seconds=watch.samples[-1].offset_s), now
    health, health_note = None, "not configured"
    if ref.health_url:
        try:
            health, health_note = ctx.cloud.probe_health(ref.health_url, timeout_s=PROBE_TIMEOUT_S).status, ""
        except Exception as exc:  # noqa: BLE001 - no answer is a finding
            health_note = type(exc).__name__
    requests = errors = None
    p95 = None
    source = note = ""
    try:
        found = ctx.cloud.request_metrics(ref, start, end, timeout_s=METRICS_TIMEOUT_S)
        requests, errors, p95, source, note = found.requests, found.errors, found.p95_ms, found.source, found.note
    except Exception as exc:  # noqa: BLE001 - neither Monitoring nor Logging answered
        note = f"no metrics: {type(exc).__name__}"
        log.warning("verify %s: no request metrics", watch.id, exc_info=True)
    smoke = []
    for call in rules.smoke:
        try:
            status = ctx.cloud.probe_health(call.url, timeout_s=PROBE_TIMEOUT_S).status
            smoke.append(SmokeResult(call.url, call.expect, status))
        except Exception as exc:  # noqa: BLE001
            smoke.append(SmokeResult(call.url, call.expect, None, type(exc).__name__))
    return Sample(
        offset_s=round(offset, 3),
        health=health,
        health_note=health_note,
        requests=requests,
        errors=errors,
        p95_ms=p95,
        source=source,
        source_note=note,
        smoke=tuple(smoke),
    )


def _blocks(ctx: Context, watch: Watch, ref: str, verdict: Verdict) -> list[dict[str, object]]:
    return blocks.watch_blocks(
        watch,
        ref,
        ctx.config.verify,
        verdict,
        service=ctx.config.service.name,
        health_checked=bool(ctx.config.service.health_url),
    )


def _show(ctx: Context, watch: Watch, verdict: Verdict) -> None:
    """Edit the watch's message to where it stands (posting it if the first post failed)."""
    with _posting_lock(watch.id):  # the first post may still be under way: wait for it
        pass
    if not watch.ts:
        current = ctx.store.get_watch(watch.id)
        if current is not None and current.ts:
            watch = replace(watch, channel=current.channel, ts=current.ts)
    incident = ctx.store.get(watch.incident)
    ref = incident.ref if incident else f"INC-{watch.incident}"
    text = blocks.watch_text(watch, ref, verdict)
    try:
        if watch.ts and watch.channel:
            ctx.slack.update(watch.channel, watch.ts, text, _blocks(ctx, watch, ref, verdict))
        elif watch.channel:
            started = time.time()
            key = f"verify:{watch.id}"
            found = ctx.slack.find_posted(watch.channel, key, started - 3600, watch.thread_ts)
            if found is None:
                _, found = ctx.slack.post(
                    watch.channel, text, _blocks(ctx, watch, ref, verdict), thread_ts=watch.thread_ts, key=key
                )
            ctx.store.set_watch_message(watch.id, watch.channel, found)
    except Exception:  # noqa: BLE001 - the next sample edits it again
        log.warning("could not edit the verify message of watch %s", watch.id, exc_info=True)
