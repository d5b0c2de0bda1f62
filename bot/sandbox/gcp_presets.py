"""Realistic Cloud Run worlds for the sandbox, and `GcpSandbox`, which serves them.

A preset is a service, its revisions, 40 minutes of request/application/system logs and a
health answer, all generated relative to `now` with a fixed seed so tests can count on the
numbers. `GcpSandbox` starts the Cloud Run, Cloud Logging and health emulators together,
loads a preset into them (`use`) and injects faults per source (`delay`, `fail`, `hang`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain.service import ServiceRef
from bot.sandbox.cloud_logging import LoggingEmulator
from bot.sandbox.cloud_monitoring import MonitoringEmulator, Sample, Served
from bot.sandbox.cloud_run import LATEST, CloudRunEmulator, ready_condition, rfc3339
from bot.sandbox.health import ALL, FaultInjection, HealthServer

PRESETS = (
    "healthy",
    "bad_deploy",
    "oom",
    "slow",
    "dependency_down",
    "rate_limited",
    "bad_input",
)
HISTORY = timedelta(minutes=40)  # logs reach back further than the 15-minute window
PATHS: tuple[tuple[str, str, int], ...] = (  # method, path, share of traffic
    ("POST", "/marketplace", 35),
    ("POST", "/pubsub", 30),
    ("GET", "/pricing", 20),
    ("GET", "/receipts", 10),
    ("GET", "/health", 5),
)
IMAGE = "us-docker.pkg.dev/{project}/tai/tai-autonomics"


@dataclass(frozen=True)
class Revision:
    short: str
    version: str
    created_at: datetime
    live_at: datetime
    memory: str = "512Mi"


@dataclass
class World:
    """What a preset produced: API resources as JSON plus the facts tests assert on."""

    preset: str
    service: dict[str, Any]
    revisions: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    health_status: int
    health_body: dict[str, Any]
    serving_revision: str
    previous_revision: str
    notes: dict[str, Any] = field(default_factory=dict)
    served: list[Served] = field(default_factory=list)  # what Cloud Monitoring's request_count counts
    memory: list[Sample] = field(default_factory=list)  # per instance and minute, 0..1
    instances: list[Sample] = field(default_factory=list)  # per revision, state and minute


@dataclass
class _Request:
    at: datetime
    method: str
    path: str
    status: int
    latency_ms: float
    revision: str
    ip: str
    message: str = ""
    error_code: str = ""
    severity: str = ""


def build(preset: str, now: datetime, ref: ServiceRef, seed: int = 7, revisions: int = 0) -> World:
    """Generate the world called `preset` as it looks at `now`.

    `revisions`, when more than the preset's own three or four, adds older Ready revisions
    (one every few days) until the service has that many: a long deploy history.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    rng = random.Random(f"{preset}:{seed}")
    g = _Generator(preset, now, ref, rng, revisions)
    return g.world()


class _Generator:
    def __init__(self, preset: str, now: datetime, ref: ServiceRef, rng: random.Random, revisions: int = 0) -> None:
        self.preset, self.now, self.ref, self.rng = preset, now, ref, rng
        name = ref.name
        self.revs = [
            Revision(f"{name}-00040-hup", "1.3.7", now - timedelta(days=9), now - timedelta(days=9)),
            Revision(f"{name}-00041-kom", "1.3.8", now - timedelta(days=3), now - timedelta(days=3)),
            Revision(
                f"{name}-00042-xyz",
                "1.3.9",
                now - timedelta(hours=26, minutes=5),
                now - timedelta(hours=26),
            ),
        ]
        if preset == "bad_deploy":
            live = now - timedelta(minutes=8)
            self.revs.append(Revision(f"{name}-00043-bad", "1.4.0", live - timedelta(seconds=50), live))
        older = max(revisions - len(self.revs), 0)
        for number in range(older, 0, -1):  # newest of the old first, each inserted at the front
            created = now - timedelta(days=9 + 3 * (older - number + 1))
            old = Revision(f"{name}-{number:05d}-old", f"1.2.{number}", created, created + timedelta(minutes=1))
            self.revs.insert(0, old)
        self.burst_from = now - timedelta(minutes=4)  # bad_deploy: errors start here
        self.trouble_from = now - timedelta(minutes=12)  # other presets' trouble starts here

    # -- the world -------------------------------------------------------------------------

    def world(self) -> World:
        serving = self.revs[-1]
        requests = list(self._requests())
        entries = [e for r in requests for e in self._request_entries(r)]
        entries += list(self._system_entries())
        entries.sort(key=lambda e: e["timestamp"])
        status, body = self._health()
        return World(
            preset=self.preset,
            service=self._service(serving),
            revisions=[self._revision(r) for r in self.revs],
            entries=entries,
            health_status=status,
            health_body=body,
            serving_revision=serving.short,
            previous_revision=self.revs[-2].short,
            notes={"requests": len(requests), "burst_from": self.burst_from},
            served=[Served(r.at, r.status, r.latency_ms, r.revision) for r in requests],
            memory=list(self._memory()),
            instances=list(self._instances()),
        )

    # -- containers (Cloud Monitoring's memory utilisation and instance count) ---------------

    def _minutes(self) -> Iterator[datetime]:
        minute = self.now - HISTORY + timedelta(minutes=1)
        while minute <= self.now:
            yield minute
            minute += timedelta(minutes=1)

    def _instance_count(self, at: datetime) -> int:
        if self.preset == "rate_limited" and at > self.now - timedelta(minutes=8):
            ramp = (at - (self.now - timedelta(minutes=8))).total_seconds() / 60
            return min(10, 2 + int(ramp * 2))  # scales out to max instances (10)
        return 2

    def _memory(self) -> Iterator[Sample]:
        for at in self._minutes():
            revision = self._revision_at(at)
            for instance in range(self._instance_count(at)):
                base = 0.48 + 0.02 * instance
                if self.preset == "oom" and at > self.trouble_from - timedelta(minutes=10):
                    # Growing since 22 min ago: past 90% for the last 8 minutes (a leak).
                    climbed = (at - (self.trouble_from - timedelta(minutes=10))).total_seconds() / 60
                    base = min(0.99, 0.62 + 0.017 * climbed)
                yield Sample(at - timedelta(seconds=self.rng.uniform(0, 50)), revision, round(base, 3))

    def _instances(self) -> Iterator[Sample]:
        for at in self._minutes():
            count = self._instance_count(at)
            yield Sample(at, self._revision_at(at), float(count - 1), "active")
            yield Sample(at, self._revision_at(at), 1.0, "idle")

    def _service(self, serving: Revision) -> dict[str, Any]:
        ref, now = self.ref, self.now
        full = f"{ref.path}/revisions/{serving.short}"
        return {
            "name": ref.path,
            "uid": "6f1d2c3b-0000-4000-8000-00000000cafe",
            "generation": str(len(self.revs) + 40),
            "createTime": rfc3339(now - timedelta(days=120)),
            "updateTime": rfc3339(serving.created_at),
            "creator": "deploy@example.com",
            "lastModifier": "deploy@example.com",
            "template": self._template(serving),
            "traffic": [{"type": LATEST, "percent": 100}],
            "observedGeneration": str(len(self.revs) + 40),
            "terminalCondition": ready_condition(serving.live_at),
            "conditions": [
                {**ready_condition(serving.live_at), "type": "RoutesReady"},
                {**ready_condition(serving.created_at), "type": "ConfigurationsReady"},
            ],
            "latestReadyRevision": full,
            "latestCreatedRevision": full,
            "trafficStatuses": [{"type": LATEST, "percent": 100}],
            "uri": f"https://{ref.name}-4x7kq2mzva-uc.a.run.app",
            "urls": [f"https://{ref.name}-123456789012.{ref.region}.run.app"],
            "reconciling": False,
            "etag": '"CNjA2rwGEJCE5sMC/cHJvamVjdHMvZGVtbw"',
        }

    def _template(self, rev: Revision) -> dict[str, Any]:
        # No enum fields here: the client echoes enums back as numbers on PATCH, and the
        # emulator decides "new revision" by comparing templates.
        return {
            "scaling": {"minInstanceCount": 1, "maxInstanceCount": 10},
            "containers": [
                {
                    "image": f"{IMAGE.format(project=self.ref.project)}:{rev.version}",
                    "resources": {"limits": {"cpu": "1", "memory": rev.memory}},
                    "ports": [{"name": "http1", "containerPort": 8080}],
                }
            ],
            "timeout": "300s",
            "serviceAccount": f"tai-autonomics@{self.ref.project}.iam.gserviceaccount.com",
            "maxInstanceRequestConcurrency": 80,
        }

    def _revision(self, rev: Revision) -> dict[str, Any]:
        return {
            "name": f"{self.ref.path}/revisions/{rev.short}",
            "uid": f"rev-{rev.short}",
            "generation": "1",
            "createTime": rfc3339(rev.created_at),
            "updateTime": rfc3339(rev.live_at),
            "service": self.ref.name,
            "scaling": {"minInstanceCount": 1, "maxInstanceCount": 10},
            "containers": self._template(rev)["containers"],
            "maxInstanceRequestConcurrency": 80,
            "timeout": "300s",
            "conditions": [
                ready_condition(rev.live_at),
                {**ready_condition(rev.live_at), "type": "ContainerHealthy"},
                {**ready_condition(rev.created_at), "type": "ResourcesAvailable"},
            ],
            "observedGeneration": "1",
            "logUri": f"https://console.cloud.google.com/logs/viewer?project={self.ref.project}",
        }

    def _revision_at(self, at: datetime) -> str:
        live = [r for r in self.revs if r.live_at <= at]
        return (live[-1] if live else self.revs[0]).short

    # -- traffic ---------------------------------------------------------------------------

    def _requests(self) -> Iterator[_Request]:
        rng, now = self.rng, self.now
        minute = now - HISTORY
        while minute < now:
            per_minute = 20
            if self.preset == "rate_limited" and minute >= now - timedelta(minutes=8):
                per_minute = 90
            for _ in range(per_minute):
                at = minute + timedelta(seconds=rng.uniform(0, 60))
                if at >= now:
                    continue
                yield self._request(at)
            minute += timedelta(minutes=1)

    def _request(self, at: datetime) -> _Request:
        rng = self.rng
        method, path, _ = rng.choices(PATHS, weights=[w for *_, w in PATHS])[0]
        latency = rng.lognormvariate(4.6, 0.5)  # median ~100 ms, p95 ~230 ms
        req = _Request(at, method, path, 200, latency, self._revision_at(at), _ip(rng))
        if rng.random() < 0.003:  # background noise every healthy service has
            return replace(
                req,
                status=500,
                message="unhandled exit in receipts_handler: {badmatch,{error,closed}}",
                error_code="internal_error",
            )
        return _PRESET_EFFECTS[self.preset](self, req)

    def _request_entries(self, req: _Request) -> Iterator[dict[str, Any]]:
        ref = self.ref
        severity = req.severity or ("ERROR" if req.status >= 500 else "WARNING" if req.status >= 400 else "INFO")
        resource = self._resource(req.revision)
        trace = f"projects/{ref.project}/traces/{self.rng.getrandbits(128):032x}"
        yield {
            "logName": f"projects/{ref.project}/logs/run.googleapis.com%2Frequests",
            "resource": resource,
            "timestamp": rfc3339(req.at),
            "receiveTimestamp": rfc3339(req.at + timedelta(milliseconds=req.latency_ms + 40)),
            "severity": severity,
            "insertId": f"{self.rng.getrandbits(48):012x}",
            "trace": trace,
            "httpRequest": {
                "requestMethod": req.method,
                "requestUrl": f"https://{ref.name}-4x7kq2mzva-uc.a.run.app{req.path}",
                "status": req.status,
                "latency": f"{req.latency_ms / 1000:.6f}s",
                "userAgent": "tai-client/2.1 (python-requests)",
                "remoteIp": req.ip,
                "responseSize": str(self.rng.randint(200, 4000)),
                "protocol": "HTTP/1.1",
            },
        }
        if req.message:
            payload = {"message": req.message, "path": req.path, "error_code": req.error_code}
            yield {
                "logName": f"projects/{ref.project}/logs/run.googleapis.com%2Fstdout",
                "resource": resource,
                "timestamp": rfc3339(req.at + timedelta(milliseconds=req.latency_ms * 0.9)),
                "severity": "ERROR" if req.status >= 500 else "WARNING",
                "insertId": f"{self.rng.getrandbits(48):012x}",
                "trace": trace,
                "jsonPayload": payload,
            }

    def _system_entries(self) -> Iterator[dict[str, Any]]:
        if self.preset != "oom":
            return
        at = self.trouble_from
        while at < self.now:
            used = self.rng.randint(515, 560)
            for offset, severity, text in (
                (
                    0,
                    "ERROR",
                    f"Memory limit of 512 MiB exceeded with {used} MiB used. Consider "
                    "increasing the memory limit, see "
                    "https://cloud.google.com/run/docs/configuring/memory-limits",
                ),
                (1, "WARNING", "Container terminated on signal 9."),
            ):
                yield {
                    "logName": f"projects/{self.ref.project}/logs/run.googleapis.com%2Fvarlog%2Fsystem",
                    "resource": self._resource(self._revision_at(at)),
                    "timestamp": rfc3339(at + timedelta(seconds=offset)),
                    "severity": severity,
                    "insertId": f"{self.rng.getrandbits(48):012x}",
                    "textPayload": text,
                }
            at += timedelta(seconds=self.rng.randint(70, 110))

    def _resource(self, revision: str) -> dict[str, Any]:
        ref = self.ref
        return {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": ref.project,
                "service_name": ref.name,
                "revision_name": revision,
                "location": ref.region,
                "configuration_name": ref.name,
            },
        }

    def _health(self) -> tuple[int, dict[str, Any]]:
        if self.preset == "bad_deploy":
            return 503, {"status": "unhealthy", "error": "pricing_engine not started"}
        if self.preset == "dependency_down":
            return 503, {"status": "degraded", "db": "timeout", "pubsub": "error"}
        return 200, {"status": "healthy", "db": "connected", "pubsub": "connected"}

    # -- what each preset does to a request ------------------------------------------------

    def _healthy(self, req: _Request) -> _Request:
        return req

    def _bad_deploy(self, req: _Request) -> _Request:
        if req.at >= self.burst_from and req.path != "/health" and self.rng.random() < 0.45:
            return replace(
                req,
                status=500,
                latency_ms=self.rng.uniform(5, 40),
                message="badarg in pricing_engine:quote/2 (config key tier_table missing)",
                error_code="internal_error",
            )
        return req

    def _oom(self, req: _Request) -> _Request:
        if req.at >= self.trouble_from and self.rng.random() < 0.03:
            return replace(
                req,
                status=503,
                latency_ms=self.rng.uniform(800, 3000),
                message="The request failed because the instance was shut down",
                error_code="instance_unavailable",
            )
        return req

    def _slow(self, req: _Request) -> _Request:
        if req.at < self.trouble_from:
            return req
        latency = self.rng.lognormvariate(6.85, 0.6)  # median ~950 ms, p95 ~2500 ms
        if latency > 2000:
            return replace(
                req,
                latency_ms=latency,
                message=f"slow request {req.method} {req.path} took {latency:.0f} ms",
                error_code="slow_request",
                severity="WARNING",
            )
        return replace(req, latency_ms=latency)

    def _dependency_down(self, req: _Request) -> _Request:
        if req.at < self.trouble_from or self.rng.random() >= 0.08:
            return req
        dependency = self.rng.choice(_DEPENDENCY_FAILURES)
        path, message, code = dependency
        return replace(
            req,
            method="POST",
            path=path,
            status=503,
            latency_ms=self.rng.uniform(5000, 10000),
            message=message,
            error_code=code,
        )

    def _rate_limited(self, req: _Request) -> _Request:
        if req.at >= self.now - timedelta(minutes=8) and self.rng.random() < 0.35:
            return replace(
                req,
                method="POST",
                path="/marketplace",
                status=429,
                latency_ms=self.rng.uniform(1, 4),
                ip=f"203.0.113.{self.rng.randint(40, 43)}",
                message="rate limit exceeded for api key ak_live_9f2c (1000 req/min)",
                error_code="rate_limit_exceeded",
            )
        return req

    def _bad_input(self, req: _Request) -> _Request:
        if req.at >= self.trouble_from and req.path == "/marketplace" and self.rng.random() < 0.12:
            return replace(
                req,
                status=500,
                latency_ms=self.rng.uniform(10, 30),
                message="function_clause in marketplace:format_receipt/1: customer_id has 500 characters (limit 255)",
                error_code="internal_error",
            )
        return req


_PRESET_EFFECTS: dict[str, Callable[[_Generator, _Request], _Request]] = {
    "healthy": _Generator._healthy,
    "bad_deploy": _Generator._bad_deploy,
    "oom": _Generator._oom,
    "slow": _Generator._slow,
    "dependency_down": _Generator._dependency_down,
    "rate_limited": _Generator._rate_limited,
    "bad_input": _Generator._bad_input,
}

_DEPENDENCY_FAILURES = (
    (
        "/receipts",
        "Firestore unavailable: deadline exceeded after 5000 ms writing receipts/r-20931",
        "firestore_unavailable",
    ),
    (
        "/pubsub",
        "Pub/Sub publish to topic erlang-autonomics timed out after 10 s",
        "connection_timeout",
    ),
    (
        "/marketplace",
        "Stripe API timeout: POST /v1/charges did not answer within 10 s",
        "payment_provider_unavailable",
    ),
)


def _ip(rng: random.Random) -> str:
    return f"198.51.100.{rng.randint(1, 254)}"


class GcpSandbox:
    """Cloud Run, Cloud Logging and a health endpoint on 127.0.0.1, loaded with a preset.

    Sources for faults: "cloud_run", "logging", "monitoring", "health"; an optional endpoint narrows a
    fault to one call, e.g. `delay("cloud_run", 0.3, endpoint="revisions.list")`.
    """

    def __init__(
        self,
        project: str = "demo-project",
        region: str = "us-central1",
        name: str = "tai-autonomics",
    ) -> None:
        self.project, self.region, self.name = project, region, name
        self.cloud_run = CloudRunEmulator()
        self.logging = LoggingEmulator()
        self.monitoring = MonitoringEmulator(project, name, region)
        self.health = HealthServer()
        self.world: World | None = None
        # The bad deploy's health follows traffic: once its image no longer serves the most, the
        # endpoint answers 200 again (after `warmup_s`, as instances of the old revision start).
        self.health_follows_traffic = True
        self.warmup_s = 0.0
        self.cloud_run.on_change = self._traffic_changed
        # Live traffic (`start_live`): requests served from now on, in the request log and in
        # Cloud Monitoring's request metrics alike, at `live_error_rate` 5xx and `live_latency_ms`.
        self.live_rps = 40.0
        self.live_error_rate = 0.0
        self.live_latency_ms = 120.0
        self._live_stop = threading.Event()
        self._live: threading.Thread | None = None
        self._live_debt = 0.0
        self._live_errors_debt = 0.0

    @property
    def servers(self) -> dict[str, FaultInjection]:
        return {
            "cloud_run": self.cloud_run,
            "logging": self.logging,
            "monitoring": self.monitoring,
            "health": self.health,
        }

    def start(self) -> GcpSandbox:
        for server in self.servers.values():
            server.start()
        return self

    def stop(self) -> None:
        self.stop_live()
        for server in self.servers.values():
            server.stop()

    # -- live traffic ----------------------------------------------------------------------

    def start_live(
        self, error_rate: float | None = None, latency_ms: float | None = None, served_for: float = 3.0
    ) -> None:
        """Serve requests from now on (about `live_rps` a second), each recorded in the request
        log and in Cloud Monitoring's metrics: exactly `error_rate` of them 5xx, at `latency_ms`
        (the bad deploy's rate follows traffic, as its health does).

        A real service was serving before anyone looked: the last `served_for` seconds of that
        traffic are recorded at once, so a query of the seconds before a fast rollback (the verify
        baseline) finds requests however soon after this call it is made."""
        self.set_live(error_rate, latency_ms)
        if self._live is not None and self._live.is_alive():
            return
        if served_for > 0:
            self._serve(served_for, datetime.now(UTC))
        self._live_stop.clear()
        self._live = threading.Thread(target=self._serve_live, name="live-traffic", daemon=True)
        self._live.start()

    def set_live(self, error_rate: float | None = None, latency_ms: float | None = None) -> None:
        if error_rate is not None:
            self.live_error_rate = error_rate
        if latency_ms is not None:
            self.live_latency_ms = latency_ms

    def stop_live(self) -> None:
        self._live_stop.set()
        if self._live is not None:
            self._live.join(timeout=2)
            self._live = None

    def _serve_live(self) -> None:
        tick = 0.1
        while not self._live_stop.wait(tick):
            self._serve(tick, datetime.now(UTC))

    def _serve(self, seconds: float, now: datetime) -> None:
        """The requests of the `seconds` up to `now`, spread evenly across them."""
        self._live_debt += self.live_rps * seconds
        count = int(self._live_debt)
        self._live_debt -= count
        revision = self._serving_now()
        served = []
        for i in range(count):
            self._live_errors_debt += self.live_error_rate
            error = self._live_errors_debt >= 1
            if error:
                self._live_errors_debt -= 1
            at = now - timedelta(seconds=seconds * (count - i - 1) / count)
            served.append(Served(at, 500 if error else 200, self.live_latency_ms, revision))
        self.monitoring.record(served)
        self.logging.add([self._request_log(s) for s in served])

    def _serving_now(self) -> str:
        try:
            service = self.cloud_run.service(self.service_ref.path)
        except KeyError:
            return ""
        statuses = service.get("trafficStatuses") or []
        top: dict[str, Any] = max(statuses, key=lambda t: int(t.get("percent") or 0), default={})
        return str(top.get("revision") or str(service.get("latestReadyRevision", "")).rsplit("/", 1)[-1])

    def _request_log(self, served: Served) -> dict[str, Any]:
        ref = self.service_ref
        return {
            "logName": f"projects/{ref.project}/logs/run.googleapis.com%2Frequests",
            "resource": {
                "type": "cloud_run_revision",
                "labels": {
                    "project_id": ref.project,
                    "service_name": ref.name,
                    "revision_name": served.revision,
                    "location": ref.region,
                    "configuration_name": ref.name,
                },
            },
            "timestamp": rfc3339(served.at),
            "receiveTimestamp": rfc3339(served.at),
            "severity": "ERROR" if served.status >= 500 else "INFO",
            "httpRequest": {
                "requestMethod": "GET",
                "requestUrl": f"https://{ref.name}-4x7kq2mzva-uc.a.run.app/pricing",
                "status": served.status,
                "latency": f"{served.latency_ms / 1000:.6f}s",
            },
        }

    def __enter__(self) -> GcpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cloud_run_url(self) -> str:
        return self.cloud_run.url

    @property
    def logging_url(self) -> str:
        return self.logging.url

    @property
    def health_url(self) -> str:
        return f"{self.health.url}/health"

    @property
    def service_ref(self) -> ServiceRef:
        return ServiceRef(self.project, self.region, self.name, self.health_url)

    def env(self) -> dict[str, str]:
        """The environment variables that point the bot at this sandbox."""
        return {
            "CLOUD_RUN_API_URL": self.cloud_run_url,
            "CLOUD_LOGGING_API_URL": self.logging_url,
            "CLOUD_MONITORING_API_URL": self.monitoring.url,
        }

    def use(self, preset: str, now: datetime | None = None, seed: int = 7, revisions: int = 0) -> World:
        """Load `preset` as it looks at `now` (default: the current time) into every server.

        `revisions` gives the service a longer history (see `build`)."""
        moment = now or datetime.now(UTC)
        world = build(preset, moment, ServiceRef(self.project, self.region, self.name), seed, revisions)
        loaded = time.monotonic()
        # The emulator's clock (for new revisions, update times) runs on from the preset's now.
        self.cloud_run.clock = lambda: moment + timedelta(seconds=time.monotonic() - loaded)
        self.cloud_run.load(world.service, world.revisions)
        self.logging.load(world.entries)
        self.monitoring.clear()
        self.monitoring.record(world.served)
        self.monitoring.load_containers(world.memory, world.instances)
        self.health.set(world.health_status, world.health_body)
        self.live_error_rate = 0.45 if preset == "bad_deploy" else 0.0
        self.world = world
        return world

    def _traffic_changed(self, service: dict[str, Any]) -> None:
        world = self.world
        if world is None or world.preset != "bad_deploy" or not self.health_follows_traffic:
            return
        statuses = service.get("trafficStatuses") or []
        top: dict[str, Any] = max(statuses, key=lambda t: int(t.get("percent") or 0), default={})
        serving = top.get("revision") or str(service.get("latestReadyRevision", "")).rsplit("/", 1)[-1]
        # Health goes with the code: a new revision of the bad image (a scale-up) is as broken.
        bad_image = self.cloud_run.revision_image(service["name"], world.serving_revision)
        if self.cloud_run.revision_image(service["name"], serving) == bad_image:
            status, body = world.health_status, world.health_body
            self.live_error_rate = 0.45
        else:
            status, body = 200, {"status": "healthy", "db": "connected", "pubsub": "connected"}
            self.live_error_rate = 0.0
        if self.warmup_s > 0:
            timer = threading.Timer(self.warmup_s, self.health.set, (status, body))
            timer.daemon = True
            timer.start()
        else:
            self.health.set(status, body)

    def delay(self, source: str, seconds: float, endpoint: str = ALL) -> None:
        self._server(source).delay(seconds, endpoint)

    def fail(self, source: str, status: int = 500, endpoint: str = ALL) -> None:
        self._server(source).fail(status, endpoint)

    def hang(self, source: str, endpoint: str = ALL) -> None:
        self._server(source).hang(endpoint)

    def heal(self, source: str | None = None) -> None:
        for name, server in self.servers.items():
            if source in (None, name):
                server.heal()

    def _server(self, source: str) -> FaultInjection:
        try:
            return self.servers[source]
        except KeyError:
            raise ValueError(f"unknown source {source!r}; use cloud_run, logging, monitoring or health") from None
