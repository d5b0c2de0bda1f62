"""Proposed production changes (rollback, memory, instance cap) as pure rules. No I/O, no clock.

A proposal is shown in Slack with a Confirm button; it changes production only when someone
allowed confirms it while it is still pending, fresh (`expires_after`) and current (the
revision serving the most traffic is still the one it showed). These functions decide that,
choose the rollback target and check the sizes people type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.domain.service import RevisionState, ServiceState

DEFAULT_EXPIRES_AFTER = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MEMORY_MIN = 128 * 2**20  # 128Mi: Cloud Run's smallest memory limit
MEMORY_MAX = 32 * 2**30  # 32Gi: its largest
INSTANCES_MIN, INSTANCES_MAX = 1, 1000
_MEMORY = re.compile(r"^(\d{1,6})(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class ProposalKind(StrEnum):
    """What a proposal changes. The values are what the store holds: never rename one."""

    ROLLBACK = "rollback"  # all traffic to an earlier revision
    SCALE_MEMORY = "scale_memory"  # the revision template's memory limit (a new revision)
    SCALE_MAX_INSTANCES = "scale_max_instances"  # the template's instance cap (a new revision)


class ProposalStatus(StrEnum):
    PENDING = "pending"  # proposed, waiting for Confirm or Cancel
    EXECUTING = "executing"  # confirmed: the change is being carried out
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not confirmed in time
    UNKNOWN = "unknown"  # the bot stopped while carrying it out: nobody knows how it ended


FINISHED = frozenset({ProposalStatus.SUCCEEDED, ProposalStatus.FAILED, ProposalStatus.UNKNOWN})


@dataclass(frozen=True)
class Proposal:
    id: int
    incident: int
    # Rows read back keep the stored string: an instance must not fail on a value a newer one
    # wrote (deploys overlap); it compares equal to the enum member all the same.
    kind: str  # a ProposalKind
    target: str  # a revision id, a memory limit (`1Gi`) or an instance count (`20`)
    current: str  # what it is now: the serving revision, the memory limit, the cap
    serving_revision: str  # the revision serving the most traffic when it was proposed
    pinned: bool  # traffic is pinned to a revision, so a new revision would get none
    proposer: str
    created_at: datetime
    status: str = ProposalStatus.PENDING  # a ProposalStatus
    outcome: str = ""
    move_traffic: bool = False  # scale only: also send all traffic to the new revision
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    finished_at: datetime | None = None
    channel: str | None = None
    ts: str | None = None
    etag: str = ""  # the service's etag when proposed: every write carries it, so a change since is refused
    latest_revision: str = ""  # the service's latest created revision when proposed

    @property
    def action(self) -> str:
        """The permission this proposal needs: `rollback` or `scale`."""
        return "rollback" if self.kind == ProposalKind.ROLLBACK else "scale"

    @property
    def what(self) -> str:
        """`roll back to tai-00042-xyz`, `set memory to 1Gi`, ... (plain words, no markup)."""
        if self.kind == ProposalKind.ROLLBACK:
            return f"roll back to {self.target}"
        if self.kind == ProposalKind.SCALE_MEMORY:
            return f"set memory to {self.target}"
        return f"set max instances to {self.target}"

    def expires_at(self, expires_after: timedelta) -> datetime:
        return self.created_at + expires_after


@dataclass(frozen=True)
class Verdict:
    """What a confirm click may do: `start`, or why not (`in_progress`, `done`, `expired`...)."""

    outcome: str
    message: str = ""

    @property
    def start(self) -> bool:
        return self.outcome == "start"


def confirm_verdict(
    proposal: Proposal,
    *,
    user: str,
    now: datetime,
    expires_after: timedelta = DEFAULT_EXPIRES_AFTER,
    require_second_person: bool = False,
    incident_resolved: bool = False,
) -> Verdict:
    """May `user` start carrying out `proposal` at `now`? Checked again inside the transaction
    that marks it executing, so only one click can ever get `start`."""
    status = proposal.status
    if status == ProposalStatus.EXECUTING:
        by = f" by <@{proposal.confirmed_by}>" if proposal.confirmed_by else ""
        return Verdict("in_progress", f"This is already in progress (confirmed{by}). Nothing else was sent.")
    if status in FINISHED:
        return Verdict("done", f"This proposal was already carried out ({status}). Nothing else was sent.")
    if status == ProposalStatus.CANCELLED:
        return Verdict("cancelled", "This proposal was cancelled. Nothing was sent; propose again if needed.")
    if incident_resolved:
        return Verdict(
            "resolved",
            f"INC-{proposal.incident} is resolved, so this proposal can no longer be confirmed. Nothing was sent; "
            "`/incident reopen` it first if production needs changing again.",
        )
    if status == ProposalStatus.EXPIRED or now >= proposal.expires_at(expires_after):
        minutes = int(expires_after.total_seconds() // 60)
        age = f"{minutes} min" if minutes else f"{int(expires_after.total_seconds())} s"
        return Verdict(
            "expired",
            f"This proposal expired (proposals last {age}, and production may have changed since). "
            "Nothing was sent; propose again to see the current state.",
        )
    if require_second_person and user == proposal.proposer:
        return Verdict(
            "own_proposal",
            "You proposed this, and `rollback.require_second_person` is on: someone else must confirm it.",
        )
    return Verdict("start")


def serving_revision(service: ServiceState) -> str:
    """The revision serving the most traffic (a LATEST allocation resolved to latest ready)."""
    top = max(service.traffic, key=lambda t: t.percent, default=None)
    if top is None:
        return service.latest_ready_revision
    return top.revision or service.latest_ready_revision


def is_pinned(service: ServiceState) -> bool:
    """Traffic goes to named revisions, so a new revision would get none of it."""
    return bool(service.traffic) and not any(t.latest and t.percent for t in service.traffic)


def stale_message(proposal: Proposal, serving_now: str) -> str | None:
    """Why confirming would act on a world the proposal did not show, or None."""
    if serving_now == proposal.serving_revision:
        return None
    return (
        f"Production changed since this was proposed: `{serving_now}` now serves the most traffic, "
        f"not `{proposal.serving_revision}`. Nothing was sent; propose again to see the current state."
    )


def changed_since_message(proposal: Proposal, service: ServiceState, when: str = "") -> str:
    """What a person reads when the service's etag is no longer the one the proposal was made on:
    `tai-autonomics changed since this proposal: a new revision went live at 14:31. Nothing was
    changed; propose again.` `when` is ` at <time>` (or empty) in the reader's terms."""
    name = service_short(service)
    serving = serving_revision(service)
    latest = service.latest_created_revision
    if latest and latest != proposal.latest_revision:
        if serving == latest:
            what = f"a new revision went live{when} (`{latest}`)"
        else:
            what = f"a new revision `{latest}` was deployed{when}; `{serving}` serves the most traffic"
    elif serving != proposal.serving_revision:
        what = f"traffic moved to `{serving}`{when}"
    else:
        what = f"its configuration or traffic was changed{when}"
    return f"{name} changed since this proposal: {what}. Nothing was changed; propose again."


class TargetError(ValueError):
    """No revision fits as the rollback target; the message says why and what to do."""


def rollback_target(service: ServiceState, revisions: list[RevisionState], named: str | None = None) -> RevisionState:
    """The revision to roll back to: `named` (which must exist and be Ready), else the newest
    Ready revision created before the one serving the most traffic."""
    serving = serving_revision(service)
    if named:
        found = next((r for r in revisions if r.name == named), None)
        if found is None:
            known = ", ".join(f"`{r.name}`" for r in revisions[:5]) or "none"
            raise TargetError(f"There is no revision `{named}` of {service_short(service)}. Recent: {known}.")
        if found.ready is not True:
            state = "failed" if found.ready is False else "not Ready yet"
            raise TargetError(f"Revision `{named}` is {state}, so it cannot take traffic. Pick a Ready one.")
        if found.name == serving:
            raise TargetError(f"`{named}` already serves the most traffic; there is nothing to roll back to.")
        return found
    target = last_healthy_before(revisions, serving)
    if target is None:
        raise TargetError(
            f"No Ready revision older than `{serving}` was found. Name one: `/incident rollback <revision>`."
        )
    return target


def answers_rollback(service: ServiceState, named: str | None = None) -> Callable[[Sequence[RevisionState]], bool]:
    """Whether the newest revisions read so far settle a rollback proposal: the named revision
    is among them, or the serving revision and a Ready one older than it are (and, when traffic
    is pinned, the revision the template last made). For reading `ListRevisions` (newest first)
    only as far as needed."""
    serving = serving_revision(service)
    template = service.latest_created_revision if is_pinned(service) else ""

    def enough(revisions: Sequence[RevisionState]) -> bool:
        names = {r.name for r in revisions}
        if named:
            return named in names
        if template and template not in names:
            return False
        return serving in names and last_healthy_before(revisions, serving) is not None

    return enough


def last_healthy_before(revisions: Sequence[RevisionState], name: str | None) -> RevisionState | None:
    """The newest Ready revision created before `name`: the rollback target, the one rule that
    both the diagnosis's Roll back button and `/incident rollback` name. Any order in."""
    current = next((r for r in revisions if r.name == name), None)
    for revision in sorted(revisions, key=lambda r: r.created_at or _EPOCH, reverse=True):
        if revision.name == name or revision.ready is not True:
            continue
        if current is None or current.created_at is None or revision.created_at is None:
            return revision
        if revision.created_at < current.created_at:
            return revision
    return None


def service_short(service: ServiceState) -> str:
    return service.name.rsplit("/", 1)[-1]


def parse_memory(text: str) -> tuple[str, int]:
    """`1Gi` -> ("1Gi", bytes), within 128Mi..32Gi (Kubernetes units); ValueError says why not."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise ValueError(f"`{text.strip()[:20]}` is not a memory size; use Kubernetes units such as 512Mi, 1Gi or 2Gi.")
    size = int(match.group(1)) * _UNITS[match.group(2)]
    if not MEMORY_MIN <= size <= MEMORY_MAX:
        raise ValueError(f"Memory must be between 128Mi and 32Gi; `{match.group(0)}` is not.")
    return match.group(0), size


def memory_bytes(text: str | None) -> int | None:
    """`1Gi` -> 1073741824, or None when it is not a size (so `1Gi` and `1024Mi` compare equal)."""
    match = _MEMORY.match((text or "").strip())
    return int(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_instances(text: str) -> int:
    """`20` -> 20, within 1..1000; ValueError says why not."""
    value = text.strip()
    if not re.fullmatch(r"\d{1,7}", value):
        raise ValueError(f"`{value[:20]}` is not a whole number of instances.")
    count = int(value)
    if not INSTANCES_MIN <= count <= INSTANCES_MAX:
        raise ValueError(f"Max instances must be between {INSTANCES_MIN} and {INSTANCES_MAX}; {count} is not.")
    return count


def cancelled_outcome(user: str) -> str:
    """What a proposal cancelled by `user` says it ended in."""
    return f":no_entry_sign: *Cancelled* by <@{user}>. Nothing was sent."
