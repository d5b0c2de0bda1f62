"""A local health endpoint, and the small HTTP server the GCP emulators are built on.

`JsonServer` is a stdlib ThreadingHTTPServer bound to 127.0.0.1 on a free port, served from a
daemon thread, with faults that tests inject per endpoint: a delay, a failure status, or a
request that is never answered. `HealthServer` is the simplest subclass: `GET /health`
answers with whatever status and body the current preset says.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

# Google APIs put the gRPC status name next to the HTTP code in their JSON errors.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

ALL = "*"


@dataclass
class Fault:
    """What to do to requests for one endpoint before (or instead of) answering them."""

    delay_s: float = 0.0
    status: int | None = None
    hang: bool = False


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (kept in `JsonServer.requests` for tests)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    endpoint: str


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # a dict/list is sent as JSON, a str as text/plain


Handler = Callable[[Request, "re.Match[str]"], Response]


def google_error(status: int, message: str) -> Response:
    """An error in the JSON shape Google's REST APIs use, which the client libraries parse."""
    return Response(
        status,
        {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "")}},
    )


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler


@dataclass
class _FaultTable:
    by_endpoint: dict[str, Fault] = field(default_factory=dict)

    def for_endpoint(self, endpoint: str) -> Fault:
        return self.by_endpoint.get(endpoint) or self.by_endpoint.get(ALL) or Fault()


NOT_JSON = object()  # read_request's body for a non-empty body that is not JSON


def read_request(http: BaseHTTPRequestHandler) -> tuple[SplitResult, bytes, Any]:
    """(path parts, raw body, parsed JSON body: None when empty, NOT_JSON when unparseable)."""
    parts = urlsplit(http.path)
    length = int(http.headers.get("Content-Length") or 0)
    raw = http.rfile.read(length) if length else b""
    try:
        return parts, raw, json.loads(raw) if raw else None
    except ValueError:
        return parts, raw, NOT_JSON


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets bursts of parallel diagnostics


class FaultInjection:
    """Faults per endpoint and the log of requests seen: what every emulator offers tests."""

    def __init__(self) -> None:
        self._faults = _FaultTable()
        self._lock = threading.Lock()
        # Set on stop() or heal(): lets handlers stuck in a "hang" fault finish.
        self._release = threading.Event()
        self.requests: list[Request] = []

    def delay(self, seconds: float, endpoint: str = ALL) -> None:
        """Answer requests for `endpoint` (default: all) only after `seconds`."""
        with self._lock:
            self._faults.by_endpoint.setdefault(endpoint, Fault()).delay_s = seconds

    def fail(self, status: int = 500, endpoint: str = ALL) -> None:
        """Answer requests for `endpoint` with an error of `status`."""
        with self._lock:
            self._faults.by_endpoint.setdefault(endpoint, Fault()).status = status

    def hang(self, endpoint: str = ALL) -> None:
        """Never answer requests for `endpoint` (until heal() or stop())."""
        with self._lock:
            self._faults.by_endpoint.setdefault(endpoint, Fault()).hang = True
            self._release.clear()

    def heal(self) -> None:
        """Remove every fault and release hanging requests."""
        with self._lock:
            self._faults = _FaultTable()
        self._release.set()

    def _record(self, req: Request) -> Fault:
        """Log `req` and return (a copy of) the fault that applies to it."""
        with self._lock:
            self.requests.append(req)
            return Fault(**vars(self._faults.for_endpoint(req.endpoint)))

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError


class JsonServer(FaultInjection):
    """Base class: routes, fault injection, start/stop. Subclasses call `route(...)`."""

    def __init__(self) -> None:
        super().__init__()
        self._routes: list[_Route] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routing ---------------------------------------------------------------------------

    def route(self, method: str, pattern: str, endpoint: str, handler: Handler) -> None:
        self._routes.append(_Route(method, re.compile(pattern + r"\Z"), endpoint, handler))

    @property
    def endpoints(self) -> list[str]:
        return sorted({r.endpoint for r in self._routes})

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> JsonServer:
        if self._httpd is not None:
            return self
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

            def do_PATCH(self) -> None:
                server._serve(self, "PATCH")

            def do_DELETE(self) -> None:
                server._serve(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output clean

        self._release.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> JsonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    # -- request handling ------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler, method: str) -> None:
        parts, raw, body = read_request(http)
        if body is NOT_JSON:
            self._send(http, google_error(400, "request body is not JSON"))
            return
        for candidate in self._routes:
            match = candidate.pattern.match(parts.path)
            if match and candidate.method == method:
                break
        else:
            self._send(http, google_error(404, f"no route for {method} {parts.path}"))
            return
        req = Request(method, parts.path, parse_qs(parts.query), body, candidate.endpoint)
        fault = self._record(req)
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.hang:
            self._release.wait()
            return  # the client gave up long ago; close without an answer
        if fault.status is not None:
            self._send(http, google_error(fault.status, "injected failure"))
            return
        try:
            response = candidate.handler(req, match)
        except Exception as exc:  # an emulator bug should look like a server error, not a hang
            response = google_error(500, f"emulator error: {type(exc).__name__}: {exc}")
        self._send(http, response)

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, response: Response) -> None:
        if isinstance(response.body, str):
            data = response.body.encode()
            content_type = "text/plain; charset=utf-8"
        else:
            data = json.dumps(response.body).encode()
            content_type = "application/json; charset=utf-8"
        try:
            http.send_response(response.status)
            http.send_header("Content-Type", content_type)
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left


@dataclass
class HealthState:
    status: int = 200
    body: Any = field(default_factory=lambda: {"status": "healthy"})


class HealthServer(JsonServer):
    """The service's health endpoint: `GET /health` (any path) answers `state`."""

    def __init__(self) -> None:
        super().__init__()
        self.state = HealthState()
        self.route("GET", r"/.*", "health", self._health)

    def set(self, status: int, body: Any) -> None:
        self.state = HealthState(status, body)

    def _health(self, req: Request, match: re.Match[str]) -> Response:
        state = self.state
        return Response(state.status, state.body)
