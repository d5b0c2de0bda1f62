"""Carrying out confirmed production changes: propose, confirm, execute, verify, report.

The flow for `/incident rollback` and `/incident scale`: a proposal is read from Cloud Run and
posted with buttons; a confirm click by someone allowed marks it executing in the same
transaction that checks it is still pending (so a second click never sends a second request),
re-checks that production still looks as proposed, sends exactly one update to Cloud Run, waits
for its operation, probes the health endpoint, and edits the proposal with the outcome. Nothing
is retried blindly: a failure is reported with the next step, and a change the bot was carrying
out when it stopped is reported as "outcome unknown", never sent again.

A change being carried out names its executor (the instance) and renews a heartbeat every
`EXECUTION_BEAT_S` while it runs. "Outcome unknown" is said only once that heartbeat has lapsed
(`EXECUTION_LAPSE_S`: the executor died), by whichever instance's leader notices first, once:
the finishing write matches only a proposal still executing, and one that matched nothing
records and says nothing. A lease change alone is not a reason: the executor is still at work.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot import permissions
from bot.changes import verify
from bot.context import Context, Reply
from bot.core import counters as metrics
from bot.core.durations import humanize
from bot.core.errors import UsageError
from bot.core.mrkdwn import escape
from bot.delivery.dispatch import Route
from bot.delivery.once import post_patiently
from bot.domain import access, actions
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.incidents import Incident, start_fix
from bot.domain.proposals import (
    Proposal,
    ProposalKind,
    ProposalStatus,
    TargetError,
    Verdict,
    answers_rollback,
    changed_since_message,
    confirm_verdict,
    is_pinned,
    memory_bytes,
    rollback_target,
    serving_revision,
    stale_message,
)
from bot.domain.records import DeliveryRecord
from bot.domain.service import (
    ChangeError,
    ChangeResult,
    HealthResult,
    RevisionState,
    ServiceRef,
    ServiceState,
    short_revision,
)
from bot.oncall.directory import mentioned_user
from bot.slack.blocks import changes as change_blocks
from bot.slack.blocks.incident import slack_date
from bot.slack.gateway import calls_until, failure_code

log = logging.getLogger(__name__)


REVISIONS_SHOWN = 5  # named in a "no such revision" reply: the newest few


def service_ref(ctx: Context) -> ServiceRef:
    s = ctx.config.service
    return ServiceRef(s.project, s.region, s.name, s.health_url)


# -- propose ---------------------------------------------------------------------------------


def propose(
    ctx: Context,
    incident: Incident,
    user: str,
    kind: str,
    target: str | None,
    fallback_channel: str | None,
) -> Reply:
    """Check the proposer may do this, ack at once, then read Cloud Run and post the proposal."""
    action = "rollback" if kind == ProposalKind.ROLLBACK else "scale"
    permissions.require(ctx, action, user, incident)
    name = ctx.config.service.name

    def post() -> Reply | None:
        return _post_proposal(ctx, incident, user, kind, target, fallback_channel)

    doing = "traffic and revisions" if kind == ProposalKind.ROLLBACK else "current settings"
    return Reply(f"Reading {name}'s {doing} from Cloud Run to prepare the proposal…", after=post)


def _post_proposal(
    ctx: Context,
    incident: Incident,
    user: str,
    kind: str,
    target: str | None,
    fallback_channel: str | None,
) -> Reply | None:
    ref = service_ref(ctx)
    try:
        service = ctx.cloud.get_service(ref)
        revisions = []
        if kind == ProposalKind.ROLLBACK:
            named = short_revision(target) if target else None
            revisions = ctx.cloud.list_revisions(ref, limit=REVISIONS_SHOWN, enough=answers_rollback(service, named))
        elif is_pinned(service):
            made = service.latest_created_revision
            revisions = ctx.cloud.list_revisions(ref, limit=1, enough=lambda read: any(r.name == made for r in read))
    except Exception as exc:  # noqa: BLE001 - the asker hears it; nothing was proposed
        log.warning("could not read %s for a proposal", ref.path, exc_info=True)
        return Reply(
            f"Could not read {ref.name} from Cloud Run ({type(exc).__name__}). Nothing was proposed; try again."
        )
    serving = serving_revision(service)
    target_revision = None
    if kind == ProposalKind.ROLLBACK:
        try:
            target_revision = rollback_target(service, revisions, short_revision(target) if target else None)
        except TargetError as exc:
            raise UsageError(str(exc), "/incident rollback [INC-n] [revision]") from exc
        value, current = target_revision.name, serving
    elif kind == ProposalKind.SCALE_MEMORY:
        value, current = str(target), service.memory_limit or ""
    else:
        value, current = str(target), str(service.max_instances or "")
    same = memory_bytes(value) == memory_bytes(current) if kind == ProposalKind.SCALE_MEMORY else value == current
    if kind != ProposalKind.ROLLBACK and same:
        raise UsageError(
            f"{ref.name} already has {current}; nothing to change.", "/incident scale memory|max-instances"
        )
    where = ctx.announcer.war_room_target(incident)
    channel, thread_ts = where if where else (fallback_channel, None)
    if not channel:
        return Reply("The incident has no war room or announcement yet; propose again in a moment.")
    now = ctx.now()
    draft = Proposal(
        id=0,
        incident=incident.number,
        kind=kind,
        target=value,
        current=current,
        serving_revision=serving,
        pinned=is_pinned(service),
        proposer=user,
        created_at=now,
        etag=service.etag,
        latest_revision=service.latest_created_revision,
    )
    proposal = ctx.store.create_proposal(
        draft, now, f"<@{user}> proposed to {escape(draft.what)} (from {escape(current or 'unset')})"
    )
    blocks = change_blocks.proposal_blocks(
        proposal,
        incident.ref,
        service,
        who_may_confirm(ctx, incident, draft.action)
        + (f"; not <@{user}>, who proposed it (two-person rule)" if ctx.config.rollback.require_second_person else ""),
        ctx.config.rollback.expires_after,
        target_revision,
        template_from=_template_revision(service, revisions) if proposal.pinned else None,
    )
    key = f"proposal:{proposal.id}"
    posted_at = time.time()
    try:
        # A few tries through a Slack that rate limits or fails for a moment: the person waits
        # for this message during an outage, and its buttons are the way to the fix.
        posted_channel, ts = post_patiently(
            ctx.slack,
            channel,
            change_blocks.proposal_text(proposal, incident.ref),
            blocks,
            key=key,
            thread_ts=thread_ts,
        )
    except (SlackApiError, OSError) as exc:
        # A timeout or a lost answer: the proposal may be in Slack all the same, and its
        # buttons work. It must be linked, or its outcome could never be shown on it.
        try:
            found = ctx.slack.find_posted(channel, key, posted_at - 1, thread_ts)
        except (SlackApiError, OSError):
            found = None
        if found is None:
            return _not_posted(ctx, proposal, user, exc)
        posted_channel, ts = channel, found
    ctx.store.set_proposal_message(proposal.id, posted_channel, ts)
    latest = ctx.store.get_proposal(proposal.id)
    if latest is not None and latest.status not in (ProposalStatus.PENDING, ProposalStatus.EXECUTING):
        # Someone pressed a button while Slack was slow to answer the post, and it is already
        # over: its edits found no message to edit, so the outcome is shown now.
        _edit(ctx, latest, latest.outcome or f"*{latest.status.capitalize()}*.")
    if posted_channel != fallback_channel:
        return Reply(f"The proposal is in <#{posted_channel}>.")
    return None


def _not_posted(ctx: Context, proposal: Proposal, user: str, exc: Exception) -> Reply:
    """Slack did not take the proposal: withdrawn, so no proposal waits unseen (should its post
    have landed after all, its buttons find it cancelled and change nothing)."""
    why = failure_code(exc)
    log.warning("the proposal %s could not be posted: %s", proposal.id, why)
    ctx.store.cancel_proposal(
        proposal.id,
        ctx.now(),
        user=user,
        text=f"The proposal to {escape(proposal.what)} was withdrawn: Slack did not take its message ({why})",
    )
    return Reply(f"Slack did not take the proposal (`{why}`); nothing was proposed. Try again in a moment.")


def who_may_confirm(ctx: Context, incident: Incident, action: str) -> str:
    """`the incident commander (<@U1>), `tech_lead` (<@U3>)`: the rule `require` enforces for
    `action` (`rollback.allowed` unless `permissions:` overrides it), with its holders now."""
    parts = []
    for ref in access.rule(ctx.config, action):
        if ref == actions.ANYONE:
            return "anyone"
        if ref == actions.PAGED:
            parts.append(f"people paged for {incident.ref}")
            continue
        user = mentioned_user(ref)
        if user:
            parts.append(f"<@{user}>")
            continue
        try:
            found, _ = ctx.directory.resolve(ref, incident)
        except Exception:  # noqa: BLE001 - an email Slack cannot look up now: shown as nobody
            found = []
        holders = ", ".join(f"<@{u}>" for u in found) or "nobody now"
        name = "the incident " + ref.removeprefix("incident_") if ref.startswith("incident_") else f"`{ref}`"
        parts.append(f"{name} ({holders})")
    return ", ".join(parts) or "nobody (see `rollback.allowed` in the config)"


def _template_revision(service: ServiceState, revisions: list[RevisionState]) -> RevisionState | None:
    """The revision the service's template last made: a template change copies its image."""
    return next((r for r in revisions if r.name == service.latest_created_revision), None)


# -- confirm and cancel ----------------------------------------------------------------------


def parse_value(value: str) -> tuple[int, bool]:
    """A button value `<incident>:<proposal>[:move|:stay]` -> (proposal id, move traffic)."""
    parts = value.split(":")
    if len(parts) < 2 or not parts[1].isdigit():
        raise UsageError("That button carries no proposal; propose again.")
    return int(parts[1]), (parts[2] == "move" if len(parts) > 2 else False)


def confirm(ctx: Context, proposal_id: int, user: str, move_traffic: bool = False) -> Reply | None:
    """A confirm click (runs after the ack): decide, mark executing, carry it out."""
    proposal = ctx.store.get_proposal(proposal_id)
    if proposal is None:
        raise UsageError("That proposal no longer exists.")
    incident = ctx.store.get(proposal.incident)
    rules = ctx.config.rollback

    def decide(current: Proposal) -> Verdict:
        return confirm_verdict(
            current,
            user=user,
            now=ctx.now(),
            expires_after=rules.expires_after,
            require_second_person=rules.require_second_person,
            incident_resolved=_resolved(ctx, current.incident),
        )

    if proposal.status != ProposalStatus.PENDING:  # in progress or done: anyone may be told, nobody may act
        return Reply(confirm_verdict(proposal, user=user, now=ctx.now()).message)
    permissions.require(ctx, proposal.action, user, incident)
    verdict, proposal = ctx.store.start_proposal(
        proposal_id, decide, ctx.now(), user=user, move_traffic=move_traffic, executor=ctx.instance
    )
    if not verdict.start:
        if verdict.outcome == "expired" and proposal.status == ProposalStatus.EXPIRED:
            _edit(ctx, proposal, ":hourglass: *Expired* before anyone confirmed it. Nothing was sent.")
        if verdict.outcome == "own_proposal":
            ctx.store.record_audit(
                proposal.incident,
                ctx.now(),
                user,
                "refused",
                {"action": proposal.action, "reason": "require_second_person", "proposal": proposal_id},
            )
        return Reply(verdict.message)
    if incident is not None:
        _start_fix(ctx, incident, user, proposal)
    try:
        with _heartbeat(ctx, proposal):
            execute(ctx, proposal)
    except Exception:  # noqa: BLE001 - the request may have reached Google: say so, never resend
        log.exception("proposal %s failed while executing", proposal_id)
        current = ctx.store.get_proposal(proposal_id)
        if current is not None and current.status == ProposalStatus.EXECUTING:
            _finish(
                ctx,
                current,
                ProposalStatus.UNKNOWN,
                _unknown_text(ctx, current, "the bot hit an error while carrying this out"),
            )
    return None


def _resolved(ctx: Context, number: int) -> bool:
    """Read inside the confirm's transaction, just before it may start: a resolved incident's
    proposals are over (a fix confirmed after the all-clear would change production unwatched)."""
    incident = ctx.store.get(number)
    return incident is not None and not incident.is_open


def cancel(ctx: Context, proposal_id: int, user: str) -> Reply | None:
    proposal = ctx.store.get_proposal(proposal_id)
    if proposal is None:
        raise UsageError("That proposal no longer exists.")
    if proposal.status != ProposalStatus.PENDING:
        return Reply(f"This proposal is already {proposal.status}; there is nothing to cancel.")
    if user != proposal.proposer:
        permissions.require(ctx, proposal.action, user, ctx.store.get(proposal.incident))
    cancelled, proposal = ctx.store.cancel_proposal(
        proposal_id, ctx.now(), user=user, text=f"<@{user}> cancelled the proposal to {escape(proposal.what)}"
    )
    if not cancelled:
        return Reply(f"This proposal is already {proposal.status}; there is nothing to cancel.")
    # The outcome is the line shown, so a late re-show (a post Slack was slow to answer, a retried
    # edit) says the same thing.
    _edit(ctx, proposal, proposal.outcome)
    return None


# -- execute ---------------------------------------------------------------------------------


def execute(ctx: Context, proposal: Proposal) -> Proposal:
    """Carry out a proposal already marked executing: re-check, send once, wait, verify, report."""
    ref = service_ref(ctx)
    rules = ctx.config.rollback
    clock = time.monotonic()
    by = f"<@{proposal.confirmed_by}>"
    try:
        before = ctx.cloud.get_service(ref)
    except Exception as exc:  # noqa: BLE001
        return _finish(
            ctx,
            proposal,
            ProposalStatus.FAILED,
            f":x: *Not sent* ({escape(proposal.what)}): could not read {escape(ref.name)}'s traffic from Cloud Run ({type(exc).__name__}). "
            "Nothing was changed. Next: check Cloud Run is reachable, then propose again.",
        )
    if proposal.etag and before.etag != proposal.etag:
        return _refused_as_changed(ctx, proposal, before)
    stale = stale_message(proposal, serving_revision(before))
    if stale:
        return _finish(
            ctx, proposal, ProposalStatus.FAILED, f":no_entry: *Not sent* ({escape(proposal.what)}): {stale}"
        )
    doing = "Rolling back" if proposal.kind == ProposalKind.ROLLBACK else "Changing the service"
    _edit(
        ctx,
        proposal,
        f":hourglass_flowing_sand: *{doing}…* confirmed by {by}. Waiting for Cloud Run "
        f"(up to {_seconds(rules.operation_timeout.total_seconds())}), then for {escape(ref.name)}'s health check.",
    )
    wait_s = rules.operation_timeout.total_seconds()
    try:
        if proposal.kind == ProposalKind.ROLLBACK:
            result = ctx.cloud.move_traffic(ref, proposal.target, etag=proposal.etag, wait_s=wait_s)
        else:
            result = ctx.cloud.change_template(
                ref,
                memory=proposal.target if proposal.kind == ProposalKind.SCALE_MEMORY else None,
                max_instances=int(proposal.target) if proposal.kind == ProposalKind.SCALE_MAX_INSTANCES else None,
                traffic_to_latest=proposal.move_traffic and proposal.pinned,
                etag=proposal.etag,
                wait_s=wait_s,
            )
    except ChangeError as exc:
        if not exc.sent and exc.reason in ("stale", "conflict", "failed_precondition"):
            # Refused because production changed since the proposal? Then say what changed.
            # Never retried: whoever changed it may have had a reason; a person decides again.
            now_service = _read_quietly(ctx, ref)
            if now_service is not None and proposal.etag and now_service.etag != proposal.etag:
                return _refused_as_changed(ctx, proposal, now_service)
        text = _failure_text(ctx, proposal, exc, time.monotonic() - clock)
        if exc.sent and exc.reason != "timeout":
            # Cloud Run took the change and its operation failed: what serves now is what to know.
            after = _read_quietly(ctx, ref)
            if after is not None:
                text = _operation_failed_text(proposal, exc, after, time.monotonic() - clock)
        return _finish(ctx, proposal, ProposalStatus.FAILED, text)
    service = result.service
    lines = []
    ok = True
    if proposal.kind == ProposalKind.ROLLBACK:
        now_serving = serving_revision(service)
        ok = now_serving == proposal.target
        lines.append(f"*Traffic now:* {change_blocks.traffic_line(service)}")
        if not ok:
            lines.append(f":warning: Cloud Run reports `{escape(now_serving)}` serving the most, not the target.")
    else:
        ok, line = _new_revision_serving(
            ctx, ref, proposal, result, rules.operation_timeout.total_seconds() - (time.monotonic() - clock)
        )
        lines.append(line)
    health_ok, health_line = _wait_for_health(ctx, ref, rules.health_timeout.total_seconds())
    lines.append(health_line)
    elapsed = time.monotonic() - clock
    if ok and health_ok:
        head = f":white_check_mark: *Done* by {by} in {_seconds(elapsed)}: {escape(proposal.what)}."
        head += f" Verifying for {humanize(ctx.config.verify.window)} (the runbook's VERIFY step)."
        done = _finish(ctx, proposal, ProposalStatus.SUCCEEDED, head + "\n" + "\n".join(lines))
        _verify(ctx, done)
        return done
    next_step = (
        "Next: run `/incident diagnose`; if the target is unhealthy too, propose another revision."
        if proposal.kind == ProposalKind.ROLLBACK
        else "Next: run `/incident diagnose` and check the new revision's logs."
    )
    head = f":x: *Changed, but not healthy* after {_seconds(elapsed)}: {escape(proposal.what)} (confirmed by {by})."
    return _finish(ctx, proposal, ProposalStatus.FAILED, head + "\n" + "\n".join(lines) + "\n" + next_step)


def _operation_failed_text(proposal: Proposal, exc: ChangeError, service: ServiceState, elapsed: float) -> str:
    """A change Cloud Run accepted whose operation failed: whether a new revision failed to
    become Ready, and that traffic did not move (a failed reconciliation keeps the last serving
    state, service.proto)."""
    what = escape(proposal.what)
    new = service.latest_created_revision
    failed_revision = new != service.latest_ready_revision and new != proposal.latest_revision
    lines = [f":x: *Failed* to {what} after {_seconds(elapsed)}: {escape(exc.message)}"]
    if failed_revision:
        lines.append(
            f"New revision `{escape(new)}` did not become Ready"
            + (f": {escape(service.ready_message)}" if service.ready_message else ".")
        )
    moved = serving_revision(service) != proposal.serving_revision
    if moved:
        lines.append(f":warning: Traffic moved all the same: {change_blocks.traffic_line(service)}")
    else:
        lines.append(
            f"*Traffic did not move:* {change_blocks.traffic_line(service)} (still `{escape(proposal.serving_revision)}`)."
        )
    lines.append(
        "Next: read the new revision's logs (`gcloud run revisions describe "
        f"{escape(new)}`), fix the cause, then propose again."
        if failed_revision
        else "Next: run `/incident diagnose` and check the service's conditions before proposing again."
    )
    return "\n".join(lines)


def _verify(ctx: Context, proposal: Proposal) -> None:
    """A fix that went through is watched for the verify window (bot/changes/verify.py)."""
    incident = ctx.store.get(proposal.incident)
    if incident is None or not incident.is_open:
        return
    try:
        verify.start(
            ctx,
            incident,
            by=proposal.confirmed_by or proposal.proposer,
            why=escape(proposal.what),
            proposal=proposal.id,
        )
    except Exception:  # noqa: BLE001 - the change is done; `/incident verify` starts a watch by hand
        log.warning("could not start verifying proposal %s", proposal.id, exc_info=True)


def _read_quietly(ctx: Context, ref: ServiceRef) -> ServiceState | None:
    try:
        return ctx.cloud.get_service(ref)
    except Exception:  # noqa: BLE001 - the refusal is reported all the same
        log.warning("could not re-read %s after a refused change", ref.path, exc_info=True)
        return None


def _refused_as_changed(ctx: Context, proposal: Proposal, service: ServiceState) -> Proposal:
    """Production changed since the proposal (its etag is not the one proposed on): nothing was
    sent or Cloud Run refused it; the channel hears what changed, and nothing is retried."""
    when = f" at {slack_date(service.updated_at, '{time}')}" if service.updated_at else ""
    text = changed_since_message(proposal, service, when)
    finished = _finish(
        ctx, proposal, ProposalStatus.FAILED, f":no_entry: *Not changed* ({escape(proposal.what)}): {text}"
    )
    if finished.channel:
        try:
            ctx.slack.post(finished.channel, text, thread_ts=None, key=f"proposal-changed:{proposal.id}")
        except Exception:  # noqa: BLE001 - the proposal itself already says so
            log.warning("could not tell the channel proposal %s was refused", proposal.id, exc_info=True)
    return finished


def _new_revision_serving(
    ctx: Context, ref: ServiceRef, proposal: Proposal, result: ChangeResult, wait_s: float
) -> tuple[bool, str]:
    """Wait for the template change's new revision to be Ready (and serving, unless pinned)."""
    service: ServiceState = result.service
    new = service.latest_created_revision
    deadline = time.monotonic() + max(wait_s, 0.0)
    expect_serving = proposal.move_traffic or not proposal.pinned
    while True:
        # While reconciling, latestReadyRevision and the traffic are transient (service.proto).
        settled = not service.reconciling
        ready = settled and service.latest_ready_revision == new
        serving = serving_revision(service) == new
        if ready and (serving or not expect_serving):
            break
        if settled and service.ready is False:
            reason = f": {escape(service.ready_message)}" if service.ready_message else ""
            return (
                False,
                f":x: New revision `{escape(new)}` did not become Ready{reason}. "
                f"*Traffic did not move:* {change_blocks.traffic_line(service)}",
            )
        if time.monotonic() >= deadline:
            state = "not Ready" if not ready else "Ready but not serving"
            return (
                False,
                f":x: New revision `{escape(new)}` is {state} yet. Traffic: {change_blocks.traffic_line(service)}",
            )
        time.sleep(0.5)
        try:
            service = ctx.cloud.get_service(ref)
        except Exception:  # noqa: BLE001 - keep waiting until the deadline
            log.warning("could not re-read %s", ref.path, exc_info=True)
    traffic = f"*Traffic now:* {change_blocks.traffic_line(service)}"
    if expect_serving:
        return True, f"New revision `{escape(new)}` is Ready and serving. {traffic}"
    return True, (
        f"New revision `{escape(new)}` is Ready but gets *no traffic*: it stays pinned to "
        f"`{escape(proposal.serving_revision)}` as chosen. {traffic}"
    )


def _wait_for_health(ctx: Context, ref: ServiceRef, timeout_s: float) -> tuple[bool, str]:
    """Probe the health endpoint until it answers 200 or `timeout_s` passes."""
    if not ref.health_url:
        return True, "*Health:* no `service.health_url` configured, so not checked."
    started = time.monotonic()
    interval = 1.0 if timeout_s >= 10 else 0.25
    seen: list[str] = []
    while True:
        remaining = timeout_s - (time.monotonic() - started)
        try:
            result: HealthResult | None = ctx.cloud.probe_health(
                ref.health_url, timeout_s=max(0.5, min(5.0, remaining))
            )
            answer = str(result.status) if result else "no answer"
        except Exception as exc:  # noqa: BLE001 - unreachable counts as not healthy yet
            result, answer = None, type(exc).__name__
        if not seen or seen[-1] != answer:
            seen.append(answer)
        elapsed = time.monotonic() - started
        if result is not None and result.status == 200:
            return True, f"*Health:* {' → '.join(seen)} :large_green_circle: green after {_seconds(elapsed)}"
        if elapsed + interval > timeout_s:
            return False, (
                f"*Health:* {' → '.join(seen)} :red_circle: never answered 200 within {_seconds(timeout_s)} "
                f"({escape(ref.health_url)})"
            )
        time.sleep(interval)


def _failure_text(ctx: Context, proposal: Proposal, exc: ChangeError, elapsed: float) -> str:
    ref = service_ref(ctx)
    describe = f"`gcloud run services describe {ref.name} --region={ref.region} --project={ref.project}`"
    what = escape(proposal.what)
    detail = escape(exc.message)
    steps = {
        "permission_denied": (
            "Google refused: the bot's service account may not change this service. Nothing was changed. "
            f"Next: grant it `roles/run.developer` on {escape(ref.name)}, or do it by hand."
        ),
        "not_found": (
            "Cloud Run does not know the service or revision. Nothing was changed. "
            "Next: check `service:` in the bot's config and the revision list, then propose again."
        ),
        "failed_precondition": (
            "Cloud Run refused the change in the service's current state. Nothing was changed. "
            f"Next: look at the service with {describe}, then propose again."
        ),
        "conflict": (
            "Someone else changed the service at the same moment. Nothing was changed by this request. "
            f"Next: look at the service with {describe}, then propose again."
        ),
        "invalid": (
            "Cloud Run rejected the value. Nothing was changed. Next: fix what it names (memory above "
            "4Gi needs more CPUs: `gcloud run services update --cpu`), then propose again."
        ),
        "timeout": (
            "Cloud Run accepted the change but had not finished it in time; it may still complete. "
            f"Next: check traffic with {describe} before proposing again (the bot does not resend)."
        ),
        "unavailable": (
            "Cloud Run could not be reached or did not answer. The change may or may not have been made. "
            f"Next: check traffic with {describe} before proposing again."
        ),
    }
    step = steps.get(
        exc.reason,
        f"Cloud Run reported an error. Next: check the service with {describe} before proposing again.",
    )
    return f":x: *Failed* to {what} after {_seconds(elapsed)}: {detail}\n{step}"


def _finish(ctx: Context, proposal: Proposal, status: str, line: str) -> Proposal:
    if proposal.confirmed_at is not None:
        elapsed = (ctx.now() - proposal.confirmed_at).total_seconds()
        metrics.ROLLBACK_SECONDS.labels(proposal.kind, status).observe(max(0.0, elapsed))
    actor = proposal.confirmed_by or "bot"
    summary = line.split("\n", 1)[0]
    finished = ctx.store.finish_proposal(
        proposal.id,
        status,
        line,
        ctx.now(),
        actor=actor,
        text=summary,
    )
    if finished is None:  # no longer executing: whoever finished it first said so; nothing new here
        log.warning("proposal %s was no longer executing when it finished (%s): nothing recorded", proposal.id, status)
        return ctx.store.get_proposal(proposal.id) or proposal
    _edit(ctx, finished, line)
    return finished


def _edit(ctx: Context, proposal: Proposal, line: str) -> None:
    if not proposal.channel or not proposal.ts:
        return
    doubt = ctx.slack.in_doubt_for()
    try:
        # Bounded, so that no retry of this edit starts after `doubt` has run out.
        with calls_until(time.monotonic() + doubt) as calls:
            _show(ctx, proposal, line)
        if not calls.resent:
            return
        log.info("an edit of proposal %s was sent again after no answer; showing it again later", proposal.id)
        retries = [timedelta(seconds=doubt)]
    except Exception:  # noqa: BLE001 - retried as a delivery: the outcome must reach the proposal
        log.warning("could not edit proposal %s; retrying", proposal.id, exc_info=True)
        retries = [timedelta(0), timedelta(seconds=doubt)]
    # The edit that went unanswered may still land (Slack slow to answer, the client's own
    # retries), after a later one such as the outcome: the proposal is shown again, as it stands
    # then, once that can no longer happen, so the message ends on the latest state.
    for after in retries:
        edit = Delivery(DeliveryKind.PROPOSAL_EDIT, str(proposal.id), line, after=after)
        ctx.store.record_firing(
            proposal.incident, Firing(f"{DeliveryKind.PROPOSAL_EDIT}:{uuid.uuid4().hex[:12]}", (edit,)), ctx.now()
        )
    ctx.timers.wake_deliveries()


def _show(ctx: Context, proposal: Proposal, line: str) -> None:
    assert proposal.channel and proposal.ts
    incident = ctx.store.get(proposal.incident)
    ref = incident.ref if incident else f"INC-{proposal.incident}"
    ctx.slack.update(
        proposal.channel,
        proposal.ts,
        f"{ref}: {proposal.what}: {proposal.status}",
        change_blocks.status_blocks(proposal, ref, line),
    )


def routes(ctx: Context) -> dict[DeliveryKind, Route]:
    return {
        DeliveryKind.PROPOSAL_EDIT: Route(
            lambda delivery, incident: deliver_edit(ctx, delivery, incident),
            # The proposal's one message: the latest edit shows its outcome, or its latest line.
            edits=lambda delivery, incident: f"proposal:{delivery.target}",
        )
    }


def deliver_edit(ctx: Context, delivery: DeliveryRecord, incident: Incident) -> None:
    """Send a proposal edit that failed: the proposal as it stands now (a finished one shows its
    outcome, never an older progress line)."""
    proposal = ctx.store.get_proposal(int(delivery.target))
    if proposal is None or not proposal.channel or not proposal.ts:
        ctx.store.cancel_delivery(delivery.id, "no proposal message to edit")
        return
    _show(ctx, proposal, proposal.outcome or delivery.detail)
    ctx.store.finish_delivery(delivery.id, ctx.now(), user=None, channel=proposal.channel, ts=proposal.ts)


def _start_fix(ctx: Context, incident: Incident, user: str, proposal: Proposal) -> None:
    """Confirming a rollback or scale is the runbook's fix under way: the fix clock stops."""
    now = ctx.now()
    current = ctx.store.get(incident.number)
    if current is None:
        return
    try:
        ctx.store.change(current, lambda latest: start_fix(latest, by=user, now=now, how=proposal.what), now)
        ctx.timers.replan(incident.number)
    except Exception:  # noqa: BLE001 - never let the fix clock stop the change itself
        log.warning("could not record the fix start for INC-%s", incident.number, exc_info=True)


# -- start-up --------------------------------------------------------------------------------


# A change being carried out renews its executor's heartbeat this often; one whose heartbeat is
# older than the lapse is reported "outcome unknown" (its executor died).
EXECUTION_BEAT_S = 2.0
EXECUTION_LAPSE_S = 10.0


@contextmanager
def _heartbeat(ctx: Context, proposal: Proposal) -> Iterator[None]:
    """Renew the execution's heartbeat every `EXECUTION_BEAT_S` while the block runs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(EXECUTION_BEAT_S):
            try:
                if not ctx.store.beat_execution(proposal.id, ctx.instance, ctx.now()):
                    return
            except Exception:  # noqa: BLE001 - the next beat tries again; a lapse is reported by others
                log.warning("could not renew the heartbeat of proposal %s", proposal.id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"beat-{proposal.id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def report_lapsed(ctx: Context, *, dead_predecessors: bool = False) -> None:
    """Changes whose executor stopped beating (it died): say the outcome is unknown, never resend.

    Run by the leader periodically; each is reported once, by whichever instance finishes it
    first. `dead_predecessors` (SQLite at start-up: the one process before this one is dead):
    another executor's changes are reported at once."""
    before = ctx.now() - timedelta(seconds=EXECUTION_LAPSE_S)
    lapsed = ctx.store.lapsed_executions(before, dead_except=ctx.instance if dead_predecessors else None)
    report_interrupted(ctx, lapsed)


def report_interrupted(ctx: Context, interrupted: list[Proposal]) -> None:
    """Changes the bot was carrying out when its executor stopped: say the outcome is unknown, never resend."""
    for proposal in interrupted:
        finished = ctx.store.finish_proposal(
            proposal.id,
            ProposalStatus.UNKNOWN,
            _unknown_text(ctx, proposal, "the bot stopped while it was carrying this out"),
            ctx.now(),
            actor=proposal.confirmed_by or "bot",
            text=_unknown_text(ctx, proposal, "the bot stopped while it was carrying this out").split("\n", 1)[0],
        )
        if finished is None:
            continue  # finished after all, or reported by another instance first
        _edit(ctx, finished, finished.outcome)
        if finished.channel:
            try:
                ctx.slack.post(
                    finished.channel,
                    f"Outcome unknown: {finished.what} (proposal {finished.id}). Check traffic before acting again.",
                )
            except Exception:  # noqa: BLE001
                log.warning("could not report proposal %s", proposal.id, exc_info=True)


def _unknown_text(ctx: Context, proposal: Proposal, why: str) -> str:
    ref = service_ref(ctx)
    return (
        f":grey_question: *Outcome unknown* ({escape(proposal.what)}): {why} "
        f"(confirmed by <@{proposal.confirmed_by}>). "
        "It has not been sent again. "
        f"Next: check traffic with `gcloud run services describe {ref.name} --region={ref.region} "
        f"--project={ref.project}` or `/incident diagnose`, then propose again if needed."
    )


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"
