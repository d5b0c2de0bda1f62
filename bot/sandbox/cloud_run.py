"""A local Cloud Run Admin API v2 speaking the REST paths and JSON of `google.cloud.run_v2`.

Enough of the API for diagnostics and rollback, at the paths the generated REST transports
call (`run_v2/services/*/transports/rest_base.py`):

    GET   /v2/projects/{p}/locations/{l}/services/{s}                 services.get
    PATCH /v2/projects/{p}/locations/{l}/services/{s}                 services.patch -> Operation
    GET   /v2/projects/{p}/locations/{l}/services/{s}/revisions       revisions.list (paged)
    GET   /v2/projects/{p}/locations/{l}/services/{s}/revisions/{r}   revisions.get
    GET   /v2/projects/{p}/locations/{l}/operations/{id}              operations.get

A PATCH is validated at once and its spec stored (a changed template creates a revision; with
`updateMask` only the named fields change, without one the whole spec is replaced), and then the
service reconciles as service.proto describes: until its operation is done, `reconciling` is
true, `terminalCondition` is CONDITION_RECONCILING, `generation` is ahead of
`observedGeneration`, and `latestReadyRevision` and `trafficStatuses` still show what served
before; the new revision is not Ready yet. The operation reports `done` after
`operation_delay_s`, or as `operation_plan` says (done only after N polls, never, or done with
an error). On success the traffic and the new revision become Ready and serving; on an error
the spec stays, what serves stays the last serving state, `terminalCondition` is
CONDITION_FAILED with the message, and the new revision (if any) failed to become Ready. `fail_changes` makes PATCH answer an API error (403 PERMISSION_DENIED,
404 NOT_FOUND, 400 FAILED_PRECONDITION, 409 ABORTED...). Resources are kept as the API's JSON
(camelCase), so what the client sends comes back.

Every change gives the service a new `etag` (a fingerprint of its spec and generation); a PATCH
whose body carries an etag that no longer matches is refused with 409 ABORTED and changes
nothing, as AIP-154 prescribes for Google APIs ("If a user sends back an etag which does not
match the current etag value, the service must send an ABORTED error response"). A PATCH without
an etag is applied (AIP-154: "should permit"). `change()` is someone else changing the service
(a deploy from CI, a traffic split in the console); `before_next_patch` runs one such change just
before the next PATCH is handled: the race a read-modify-write loses.

`revisions.list` pages like the API: an opaque `nextPageToken` while more remain, none on the
last page, a token only valid for the same parent and page size, and revisions "sorted by
creation time, descending" (revision.proto's ListRevisions), newest first, as the API promises.
`GcpSandbox.delay("cloud_run", 0.35, endpoint="revisions.list")` makes each list call as slow as
a real one, so a caller that reads every page of a long history shows up as slow.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.sandbox.health import JsonServer, Request, Response, google_error

_LOC = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
SUCCEEDED = "CONDITION_SUCCEEDED"
FAILED = "CONDITION_FAILED"
RECONCILING = "CONDITION_RECONCILING"
# The REST transport sends enums as numbers ($alt=json;enum-encoding=int).
_LATEST_VALUES = (LATEST, 1)
# The reference states neither a default nor a maximum page size; these follow AIP-158 (the
# server picks a default and coerces larger requests down), and are small on purpose.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Fields of a Service the caller owns; everything else is status computed here.
_SPEC_FIELDS = (
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "defaultUriDisabled",
    "customAudiences",
)


@dataclass(frozen=True)
class OperationPlan:
    """How the operations of the next PATCHes behave."""

    polls: int = 0  # operations.get answers "not done" this many times first
    never: bool = False  # the operation never finishes
    error: tuple[int, str] | None = None  # finishes with this google.rpc error (code, message)


@dataclass
class _Operation:
    """One PATCH's long-running operation: what the service becomes when it succeeds, and what
    it served before (kept if it fails)."""

    service: str
    done_at: float
    final: dict[str, Any]
    before: dict[str, Any]
    new_revision: str  # the revision the change created, or ""
    settled: bool = False  # its outcome has been applied to the service (or it was superseded)


@dataclass(frozen=True)
class ChangeFault:
    """PATCH is refused with this HTTP status, gRPC status name and message."""

    status: int
    grpc_status: str
    message: str


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CloudRunEmulator(JsonServer):
    """Cloud Run Admin API v2 over HTTP, with services and revisions loaded by `load()`."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.operation_delay_s = 0.0
        self._state_lock = threading.Lock()
        self._services: dict[str, dict[str, Any]] = {}
        self._revisions: dict[str, list[dict[str, Any]]] = {}
        self._operations: dict[str, _Operation] = {}
        self.operation_plan = OperationPlan()
        self._op_plans: dict[str, OperationPlan] = {}
        self._change_fault: ChangeFault | None = None
        # Run once, before the next PATCH is handled (outside the lock): someone else's change
        # landing between the bot's read and its write.
        self.before_next_patch: Callable[[], None] | None = None
        # Called with the service JSON after each PATCH that changed it (the world reacts).
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        svc = _LOC + r"/services/(?P<service>[^/:]+)"
        self.route("GET", svc, "services.get", self._get_service)
        self.route("PATCH", svc, "services.patch", self._patch_service)
        self.route("GET", svc + r"/revisions", "revisions.list", self._list_revisions)
        self.route("GET", svc + r"/revisions/(?P<revision>[^/:]+)", "revisions.get", self._get_rev)
        self.route("GET", _LOC + r"/operations/(?P<op>[^/:]+)", "operations.get", self._get_op)

    # -- state -----------------------------------------------------------------------------

    def load(self, service: dict[str, Any], revisions: list[dict[str, Any]]) -> None:
        """Replace the world with one service (API JSON) and its revisions (any order)."""
        with self._state_lock:
            stored = copy.deepcopy(service)
            stored["etag"] = _etag(stored)
            self._services = {service["name"]: stored}
            self._revisions = {
                service["name"]: sorted(copy.deepcopy(revisions), key=lambda r: r["createTime"], reverse=True)
            }
            self._operations = {}

    def fail_changes(self, status: int, grpc_status: str, message: str = "injected failure") -> None:
        """Answer every PATCH with this API error until `allow_changes()`."""
        with self._state_lock:
            self._change_fault = ChangeFault(status, grpc_status, message)

    def allow_changes(self) -> None:
        with self._state_lock:
            self._change_fault = None
            self.operation_plan = OperationPlan()

    def change(
        self, name: str, *, image: str | None = None, traffic: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Someone else changes the service: a deploy of `image` (a new revision; traffic follows
        a LATEST allocation) and/or a new traffic split, applied at once (it supersedes a change
        still reconciling). Returns the service as it now is."""
        self._settle()
        with self._state_lock:
            for earlier in self._operations.values():
                if earlier.service == name:
                    earlier.settled = True
            current = self._services[name]
            updated = copy.deepcopy(current)
            if image is not None:
                for container in updated.get("template", {}).get("containers") or []:
                    container["image"] = image
                updated.get("template", {}).pop("revision", None)
            if traffic is not None:
                updated["traffic"] = copy.deepcopy(traffic)
            error = self._reconcile(current, updated)
            if error is not None:
                raise ValueError(f"the change was refused: {error.body}")
            self._services[name] = updated
            result = copy.deepcopy(updated)
        if self.on_change is not None:
            self.on_change(copy.deepcopy(result))
        return result

    def patches(self) -> list[Request]:
        """The services.patch requests received, oldest first."""
        return [r for r in self.requests if r.endpoint == "services.patch"]

    def revision_image(self, service: str, revision: str) -> str | None:
        """The container image of a revision (short or full name), for the world's health."""
        full = _full_revision(service, revision)
        with self._state_lock:
            for found in self._revisions.get(service, []):
                if found["name"] == full:
                    containers = found.get("containers") or [{}]
                    return str(containers[0].get("image") or "")
        return None

    def service(self, name: str) -> dict[str, Any]:
        """The stored service JSON (a copy), for assertions."""
        self._settle()
        with self._state_lock:
            return copy.deepcopy(self._services[name])

    # -- handlers --------------------------------------------------------------------------

    def _service_name(self, match: re.Match[str]) -> str:
        g = match.groupdict()
        return f"projects/{g['project']}/locations/{g['location']}/services/{g['service']}"

    def _get_service(self, req: Request, match: re.Match[str]) -> Response:
        name = self._service_name(match)
        self._settle()
        with self._state_lock:
            found = self._services.get(name)
            if not found:
                return _not_found(name)
            return Response(200, copy.deepcopy(found))

    def _list_revisions(self, req: Request, match: re.Match[str]) -> Response:
        name = self._service_name(match)
        self._settle()
        with self._state_lock:
            if name not in self._services:
                return _not_found(name)
            revisions = copy.deepcopy(self._revisions.get(name, []))
        revisions.sort(key=lambda r: r["createTime"], reverse=True)  # newest first, as documented
        try:
            size = int(req.query.get("pageSize", ["0"])[0] or 0)
        except ValueError:
            return google_error(400, "pageSize must be an integer")
        if size < 0:
            return google_error(400, "pageSize must not be negative")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = req.query.get("pageToken", [""])[0]
        start = _read_token(token, name, size) if token else 0
        if start is None:
            return google_error(400, "Invalid page token: other parameters must match the first call")
        page: dict[str, Any] = {"revisions": revisions[start : start + size]}
        if start + size < len(revisions):
            page["nextPageToken"] = _page_token(name, size, start + size)
        return Response(200, page)

    def _get_rev(self, req: Request, match: re.Match[str]) -> Response:
        parent = self._service_name(match)
        name = f"{parent}/revisions/{match['revision']}"
        self._settle()
        with self._state_lock:
            for revision in self._revisions.get(parent, []):
                if revision["name"] == name:
                    return Response(200, copy.deepcopy(revision))
        return _not_found(name)

    def _patch_service(self, req: Request, match: re.Match[str]) -> Response:
        name = self._service_name(match)
        if not isinstance(req.body, dict):
            return google_error(400, "body must be a Service")
        mask = [p for p in req.query.get("updateMask", [""])[0].split(",") if p]
        race, self.before_next_patch = self.before_next_patch, None
        if race is not None:
            race()
        self._settle()
        with self._state_lock:
            fault, plan = self._change_fault, self.operation_plan
        if fault is not None:
            return Response(
                fault.status, {"error": {"code": fault.status, "message": fault.message, "status": fault.grpc_status}}
            )
        with self._state_lock:
            current = self._services.get(name)
            if current is None:
                return _not_found(name)
            sent_etag = req.body.get("etag")
            if sent_etag and sent_etag != current.get("etag"):
                return Response(
                    409,
                    {
                        "error": {
                            "code": 409,
                            "message": f"Conflict for resource '{name.rsplit('/', 1)[-1]}': the etag {sent_etag} "
                            "does not match the current etag; the Service was modified since it was read.",
                            "status": "ABORTED",
                        }
                    },
                )
            updated = copy.deepcopy(current)
            for path in mask or _SPEC_FIELDS:
                # A field the mask names but the body leaves out is cleared (AIP-134).
                _apply_mask_path(updated, req.body, [_camel(part) for part in path.split(".")])
            if req.query.get("validateOnly", [""])[0] == "true":
                check = copy.deepcopy(updated)
                error = self._reconcile(copy.deepcopy(current), check, dry_run=True)
                return error or Response(200, {"name": "", "done": True, "response": {"@type": SERVICE_TYPE, **check}})
            error = self._reconcile(current, updated)
            if error:
                return error
            new_revision = (
                updated.get("latestCreatedRevision", "")
                if updated.get("latestCreatedRevision") != current.get("latestCreatedRevision")
                else ""
            )
            # Until the operation is done the service is reconciling: the spec and generation
            # are the new ones, while what serves (observedGeneration, latestReadyRevision,
            # trafficStatuses) is still the old, and the new revision is not Ready yet
            # (service.proto, `reconciling`).
            now = rfc3339(self.clock())
            transient = copy.deepcopy(updated)
            for key in ("observedGeneration", "latestReadyRevision", "trafficStatuses", "uri"):
                if key in current:
                    transient[key] = copy.deepcopy(current[key])
            transient["terminalCondition"] = {"type": "Ready", "state": RECONCILING, "lastTransitionTime": now}
            transient["reconciling"] = True
            self._services[name] = transient
            if new_revision:
                _set_ready(self._revision(name, new_revision), RECONCILING, now, reconciling=True)
            for earlier in self._operations.values():  # a newer change supersedes one still running
                if earlier.service == name and not earlier.settled:
                    earlier.settled = True
            op_name = f"{name.split('/services/')[0]}/operations/{uuid.uuid4()}"
            self._op_plans[op_name] = plan
            operation = {
                "name": op_name,
                "metadata": {"@type": SERVICE_TYPE, **copy.deepcopy(transient)},
                "done": False,
            }
            self._operations[op_name] = _Operation(
                name, time.monotonic() + self.operation_delay_s, updated, copy.deepcopy(current), new_revision
            )
        return Response(200, operation)

    def _get_op(self, req: Request, match: re.Match[str]) -> Response:
        g = match.groupdict()
        name = f"projects/{g['project']}/locations/{g['location']}/operations/{g['op']}"
        with self._state_lock:
            found = self._operations.get(name)
            plan = self._op_plans.get(name, OperationPlan())
            done = found is not None and self._op_done(name, found.done_at)
            if plan.polls > 0:  # this poll is answered "not done" and counts down
                self._op_plans[name] = replace(plan, polls=plan.polls - 1)
        if found is None:
            return _not_found(name)
        if done:
            self._settle()
        with self._state_lock:
            current = copy.deepcopy(self._services.get(found.service, found.final))
        operation: dict[str, Any] = {"name": name, "metadata": {"@type": SERVICE_TYPE, **current}, "done": done}
        if done and plan.error is not None:
            operation["error"] = {"code": plan.error[0], "message": plan.error[1]}
        elif done:
            operation["response"] = {"@type": SERVICE_TYPE, **copy.deepcopy(found.final)}
        return Response(200, operation)

    def _op_done(self, name: str, done_at: float) -> bool:
        """Whether operation `name` reports done now (caller holds the state lock)."""
        plan = self._op_plans.get(name, OperationPlan())
        if plan.never or plan.polls > 0:
            return False
        return time.monotonic() >= done_at

    def _settle(self) -> None:
        """Apply the outcome of every operation that is done and not yet applied: on success the
        service as changed, the new revision Ready; on failure the spec stays but what serves is
        the last serving state (service.proto: "traffic_statuses, observed_generation, and
        latest_ready_revision will have the state of the last serving revision"), with the
        failure in `terminalCondition` and on the new revision."""
        changed = []
        with self._state_lock:
            for op_name, op in self._operations.items():
                if op.settled or not self._op_done(op_name, op.done_at):
                    continue
                op.settled = True
                plan = self._op_plans.get(op_name, OperationPlan())
                now = rfc3339(self.clock())
                stored = self._services.get(op.service)
                if stored is None:
                    continue
                if plan.error is None:
                    final = copy.deepcopy(op.final)
                    final["etag"] = stored.get("etag", final.get("etag"))
                    self._services[op.service] = final
                    if op.new_revision:
                        _set_ready(self._revision(op.service, op.new_revision), SUCCEEDED, now)
                    changed.append(copy.deepcopy(final))
                    continue
                message = plan.error[1]
                failed = copy.deepcopy(stored)
                for key in ("observedGeneration", "latestReadyRevision", "trafficStatuses", "uri"):
                    if key in op.before:
                        failed[key] = copy.deepcopy(op.before[key])
                failed["terminalCondition"] = ready_condition(self.clock(), ok=False, message=message)
                failed["reconciling"] = False
                self._services[op.service] = failed
                if op.new_revision:
                    _set_ready(self._revision(op.service, op.new_revision), FAILED, now, message=message)
        for service in changed:
            if self.on_change is not None:
                self.on_change(service)

    def _revision(self, service: str, name: str) -> dict[str, Any]:
        return next(r for r in self._revisions.get(service, []) if r["name"] == name)

    # -- reconciliation --------------------------------------------------------------------

    def _reconcile(self, before: dict[str, Any], after: dict[str, Any], dry_run: bool = False) -> Response | None:
        """Derive status from spec the way Cloud Run does, or return the API's error."""
        name = after["name"]
        now = self.clock()
        revisions = list(self._revisions.get(name, [])) if dry_run else self._revisions.setdefault(name, [])
        template = after.get("template") or {}
        invalid = _resources_error(template)
        if invalid:
            return google_error(400, invalid)
        if _template_key(template) != _template_key(before.get("template") or {}):
            generation = int(after.get("generation") or 0) + 1
            short = name.rsplit("/", 1)[-1]
            rev_id = template.get("revision") or f"{short}-{generation:05d}-{uuid.uuid4().hex[:3]}"
            rev_name = f"{name}/revisions/{rev_id.rsplit('/', 1)[-1]}"
            if any(r["name"] == rev_name for r in revisions):
                return google_error(409, f"revision {rev_name} already exists")
            revisions.insert(0, _revision_from_template(name, rev_name, template, now))
            after["latestCreatedRevision"] = rev_name
            after["latestReadyRevision"] = rev_name
        known = {r["name"] for r in revisions}
        statuses = []
        total = 0
        for target in after.get("traffic") or [{"type": LATEST, "percent": 100}]:
            percent = int(target.get("percent") or 0)
            total += percent
            if target.get("type") in _LATEST_VALUES:
                revision = after.get("latestReadyRevision", "")
                kind = LATEST
            else:
                revision = _full_revision(name, target.get("revision", ""))
                kind = REVISION
                if revision not in known:
                    return google_error(400, f"Revision {target.get('revision')!r} not found")
            status = {"type": kind, "percent": percent}
            if kind == REVISION:
                # Traffic names revisions by short id; only LATEST leaves it out.
                status["revision"] = revision.rsplit("/", 1)[-1]
            if target.get("tag"):
                status["tag"] = target["tag"]
            statuses.append(status)
        if total != 100:
            return google_error(400, f"traffic percentages must add up to 100, got {total}")
        after["trafficStatuses"] = statuses
        after["generation"] = str(int(after.get("generation") or 0) + 1)
        after["observedGeneration"] = after["generation"]
        after["updateTime"] = rfc3339(now)
        after["terminalCondition"] = ready_condition(now)
        after["reconciling"] = False
        after["etag"] = _etag(after)
        return None


def ready_condition(at: datetime, ok: bool = True, message: str = "") -> dict[str, Any]:
    condition = {
        "type": "Ready",
        "state": SUCCEEDED if ok else "CONDITION_FAILED",
        "lastTransitionTime": rfc3339(at),
    }
    if message:
        condition["message"] = message
    return condition


def _set_ready(revision: dict[str, Any], state: str, at: str, *, message: str = "", reconciling: bool = False) -> None:
    """Set a revision's Ready condition (and `reconciling`) in place."""
    condition: dict[str, Any] = {"type": "Ready", "state": state, "lastTransitionTime": at}
    if message:
        condition["message"] = message
    others = [c for c in revision.get("conditions") or [] if c.get("type") != "Ready"]
    revision["conditions"] = [condition, *others]
    revision["reconciling"] = reconciling


def _revision_from_template(service: str, name: str, template: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "uid": str(uuid.uuid4()),
        "generation": "1",
        "createTime": rfc3339(now),
        "updateTime": rfc3339(now),
        "service": service.rsplit("/", 1)[-1],
        "containers": copy.deepcopy(template.get("containers") or []),
        "scaling": copy.deepcopy(template.get("scaling") or {}),
        "conditions": [ready_condition(now)],
        "observedGeneration": "1",
    }


def _apply_mask_path(target: dict[str, Any], source: dict[str, Any], path: list[str]) -> None:
    """Copy the field at `path` from `source` into `target`, or clear it if `source` lacks it."""
    head, rest = path[0], path[1:]
    if not rest:
        if head in source:
            target[head] = copy.deepcopy(source[head])
        else:
            target.pop(head, None)
        return
    inner = source.get(head)
    if not isinstance(inner, dict):
        inner = {}
    child = target.setdefault(head, {})
    if isinstance(child, dict):
        _apply_mask_path(child, inner, rest)


# Cloud Run's minimum CPUs for a memory limit: more than 4Gi needs 2, 8Gi 4, 16Gi 6, 24Gi 8.
_CPU_FOR_MEMORY = ((24 * 2**30, 8), (16 * 2**30, 6), (8 * 2**30, 4), (4 * 2**30, 2))
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
_FACTORS = {
    None: 1,
    "m": 0.001,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _quantity(value: Any) -> float | None:
    match = _QUANTITY.match(str(value or "").strip())
    return float(match.group(1)) * _FACTORS[match.group(2)] if match else None


def _resources_error(template: dict[str, Any]) -> str | None:
    """The API's INVALID_ARGUMENT for container limits Cloud Run does not allow, else None."""
    for container in template.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        memory = _quantity(limits.get("memory")) if limits.get("memory") else None
        if limits.get("memory") and memory is None:
            return f"Invalid value specified for memory: {limits['memory']!r}"
        if memory is None:
            continue
        if memory > 32 * 2**30:
            return f"Invalid value specified for memory: {limits['memory']}. The maximum is 32Gi."
        cpu = _quantity(limits.get("cpu")) or 1.0
        for above, needed in _CPU_FOR_MEMORY:
            if memory > above and cpu < needed:
                return (
                    f"Invalid value specified for memory. For {limits['memory']} of memory, "
                    f"cpu must be at least {needed} (it is {limits.get('cpu', '1')})."
                )
    return None


def _etag(service: dict[str, Any]) -> str:
    """A fingerprint of the service's spec and generation, quoted as RFC 7232 asks."""
    spec = {key: service.get(key) for key in _SPEC_FIELDS}
    body = json.dumps([spec, service.get("generation"), service.get("uid")], sort_keys=True, default=str)
    digest = base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()[:15]).decode()
    return f'"{digest}"'


def _template_key(template: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in template.items() if k != "revision"}, sort_keys=True)


def _full_revision(service: str, revision: str) -> str:
    return revision if revision.startswith("projects/") else f"{service}/revisions/{revision}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _page_token(parent: str, size: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([parent, size, offset]).encode()).decode()


def _read_token(token: str, parent: str, size: int) -> int | None:
    """The offset a token from `_page_token` carries, or None when it is not ours to take."""
    try:
        owner, owner_size, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        return None
    return int(offset) if (owner, owner_size) == (parent, size) else None


def _not_found(name: str) -> Response:
    return google_error(404, f"Resource '{name}' was not found")
