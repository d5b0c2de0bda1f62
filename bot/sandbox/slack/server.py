"""The HTTP server: `_Server` and `_Handler` on 127.0.0.1, starting and stopping them, and the
routing of a request to `/api/<method>` (authenticated, faults first), a response_url or an
upload URL.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from bot.sandbox.slack.constants import METHOD_SCOPES
from bot.sandbox.slack.core import SandboxCore, SlackError
from bot.sandbox.slack.socket_mode import refuse_app_token_elsewhere
from bot.sandbox.slack.workspace import Call


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets bursts of connections; Slack does not.
    request_queue_size = 256
    sandbox: Server

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed or timed out mid-answer (the crash and fault suites) is not a sandbox bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean; every call is recorded in sandbox.calls instead

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.sandbox.handle_http(
            self.command, self.path, dict(self.headers.items()), body
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Server(SandboxCore):
    """Serving: the lifecycle of the HTTP server and what it does with each request."""

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on an ephemeral port of 127.0.0.1, serving from a daemon thread."""
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.sandbox = self
            # A short poll interval makes stop() quick, which keeps the test suite fast.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="slack-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def quiet_for(self) -> float:
        """Seconds since the last Web API call was answered, 0 while one is being answered (a
        delayed or held one included): a test waits on it for every process to have settled."""
        with self._lock:
            return 0.0 if self._in_flight else time.monotonic() - self._last_answered

    # ---- HTTP ------------------------------------------------------------------------------------

    def handle_http(
        self, verb: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request: (status, headers, body). Used by the server thread."""
        parts = urlsplit(path)
        lower = {k.lower(): v for k, v in headers.items()}
        if parts.path.startswith("/api/"):
            method = parts.path[len("/api/") :]
            with self._lock:
                self._in_flight += 1
            try:
                return self._handle_api(method, parts.query, lower, body)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._last_answered = time.monotonic()
        if parts.path.startswith("/response/") and verb == "POST":
            return self._handle_response_url(parts.path[len("/response/") :], lower, body)
        if parts.path.startswith("/upload/v1/") and verb == "POST":
            return self._handle_upload(parts.path[len("/upload/v1/") :], lower, body)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _handle_api(
        self, method: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = headers.get("content-type", "")
        json_body = False
        if body:
            if content_type.startswith("application/json"):
                json_body = True
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    return self._answer(method, params, {"ok": False, "error": "invalid_json"}, 200)
                params.update(parsed)
            else:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        # Slack reads a token from the Authorization header or a form/query field, never from a
        # JSON body: a JSON request without the header is not authenticated.
        token = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        form_token = params.pop("token", None)
        if token is None and not json_body:
            token = form_token

        delay, fault = self._take_faults(method)
        stall = 0.0
        if fault is None:
            fault, stall = self._chaos_fault()
        if delay:
            time.sleep(delay)
        if fault is not None:
            return self._answer_fault(method, params, fault)

        try:
            if method not in self._methods:
                raise SlackError("unknown_method", req_method=method)
            self._authenticate(method, token)
            retry_after = self._limit(method, params)
            if retry_after is not None:
                return self._answer_limited(method, params, retry_after)
            with self._lock:
                result = self._methods[method](params)
                hold = self._holds.get(method, 0.0) + stall
            response = {"ok": True, **result}
            if hold:
                time.sleep(hold)
        except SlackError as exc:
            response = {"ok": False, "error": exc.error, **exc.extra}
        except Exception:  # a sandbox bug must not look like a dropped connection
            self.errors.append(traceback.format_exc())
            return self._answer(method, params, {"ok": False, "error": "fatal_error"}, 500)
        return self._answer(method, params, response, 200)

    def _authenticate(self, method: str, token: str | None) -> None:
        if method == "api.test":
            return
        if not token:
            raise SlackError("not_authed")
        if token not in self.tokens:
            raise SlackError("invalid_auth")
        refuse_app_token_elsewhere(method, token, self.app_tokens)
        needed = METHOD_SCOPES.get(method)
        if needed and needed not in self.scopes:
            raise SlackError("missing_scope", needed=needed, provided=",".join(sorted(self.scopes)))

    def _answer_limited(
        self, method: str, params: dict[str, Any], retry_after: int
    ) -> tuple[int, dict[str, str], bytes]:
        """Slack's answer to a call over its rate limit: 429, `Retry-After`, `ratelimited`."""
        response = {"ok": False, "error": "ratelimited"}
        self._record(Call(method, params, response, 429, time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "Retry-After": str(retry_after)}
        return 429, headers, json.dumps(response).encode()

    def _answer(
        self, method: str, params: dict[str, Any], response: dict[str, Any], status: int
    ) -> tuple[int, dict[str, str], bytes]:
        self._record(Call(method, params, response, status, time.time()))
        return (
            status,
            {"Content-Type": "application/json; charset=utf-8"},
            json.dumps(response).encode(),
        )
