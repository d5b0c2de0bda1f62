"""Socket Mode: `apps.connections.open` and the WebSocket Slack serves behind it.

As Slack's Socket Mode documents it: `apps.connections.open` takes the app-level token (`xapp-`,
scope `connections:write`; any other token gets `not_allowed_token_type`) and answers a one-use
WebSocket URL. On connecting, Slack sends `hello` (`num_connections`, `debug_info`,
`connection_info`); every request then comes as an envelope `{"envelope_id", "type":
slash_commands | interactive | events_api, "payload", "accepts_response_payload"}` (events also
carry `retry_attempt` and `retry_reason`), which the app acks on that connection with
`{"envelope_id", "payload"?}` within 3 s. Slack refreshes connections (`{"type": "disconnect",
"reason": "refresh_requested"}`) or warns before dropping one (`"warning"`) and closes the old
socket a little later (`socket_close_after_s`); a new request goes to a connection that was not
told to go.

`deliver()` sends one envelope and waits for its ack; `refresh_sockets()` plays a refresh;
`socket_envelopes()` is every envelope with when and how it was acked.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server as WsServer
from websockets.sync.server import ServerConnection, serve

from bot.sandbox.slack.constants import APP_ID
from bot.sandbox.slack.core import SandboxCore, SlackError

ACK_DEADLINE_S = 3.0


@dataclass
class SocketConnection:
    number: int
    ws: ServerConnection = field(repr=False)
    opened: float
    told_to_go: str | None = None  # the disconnect reason sent, once sent
    closed: bool = False


@dataclass
class Envelope:
    """One request sent over a socket, and its ack."""

    envelope_id: str
    type: str
    payload: dict[str, Any] = field(repr=False)
    accepts_response_payload: bool
    connection: int
    sent: float  # time.monotonic()
    acked: float | None = None
    ack_payload: dict[str, Any] | None = field(default=None, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def latency(self) -> float | None:
        """Seconds from sending the envelope to its ack (None: never acked)."""
        return None if self.acked is None else self.acked - self.sent


class SocketModeMethods(SandboxCore):
    """apps.connections.open (lock held) and the Socket Mode server."""

    socket_close_after_s = 5.0  # how long Slack keeps a refreshed connection open

    def _socket_state(self) -> dict[str, Any]:
        state: dict[str, Any] | None = getattr(self, "_socket", None)
        if state is None:
            state = {"server": None, "tickets": set(), "connections": [], "envelopes": [], "refusals": []}
            self._socket = state
            self._socket_changed = threading.Condition(self._lock)
        return state

    # ---- apps.connections.open ------------------------------------------------------------------

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        state = self._socket_state()
        if state["server"] is None:
            server = serve(self._socket_session, "127.0.0.1", 0, process_request=self._socket_handshake)
            threading.Thread(target=server.serve_forever, name="slack-socket-mode", daemon=True).start()
            state["server"] = server
        ticket = uuid.uuid4().hex
        state["tickets"].add(ticket)
        port = state["server"].socket.getsockname()[1]
        return {"url": f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={APP_ID}"}

    def _socket_handshake(self, ws: ServerConnection, request: Request) -> Response | None:
        ticket = (parse_qs(urlsplit(request.path).query).get("ticket") or [""])[0]
        with self._lock:
            tickets = self._socket_state()["tickets"]
            if ticket in tickets:
                tickets.discard(ticket)  # one use, as Slack's
                return None
        return ws.respond(401, "invalid or used ticket\n")

    # ---- one connection -------------------------------------------------------------------------

    def _socket_session(self, ws: ServerConnection) -> None:
        with self._lock:
            state = self._socket_state()
            conn = SocketConnection(len(state["connections"]) + 1, ws, time.monotonic())
            state["connections"].append(conn)
            live = sum(1 for c in state["connections"] if not c.closed)
            self._socket_changed.notify_all()
        hello = {
            "type": "hello",
            "num_connections": live,
            "debug_info": {"host": "applink-sandbox", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        try:
            ws.send(json.dumps(hello))
            for raw in ws:
                self._socket_ack(conn, raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                conn.closed = True
                self._socket_changed.notify_all()

    def _socket_ack(self, conn: SocketConnection, raw: str | bytes) -> None:
        now = time.monotonic()
        try:
            ack = json.loads(raw)
        except ValueError:
            ack = None
        with self._lock:
            state = self._socket_state()
            if not isinstance(ack, dict) or not isinstance(ack.get("envelope_id"), str):
                state["refusals"].append(f"connection {conn.number}: not an ack: {raw!r:.200}")
                return
            envelope = next((e for e in state["envelopes"] if e.envelope_id == ack["envelope_id"]), None)
            if envelope is None or envelope.connection != conn.number:
                # Slack matches an ack to the envelope it sent on this connection, nothing else.
                state["refusals"].append(f"connection {conn.number}: ack of an unknown envelope {ack['envelope_id']}")
                return
            if envelope.acked is not None:
                state["refusals"].append(f"envelope {envelope.envelope_id} acked twice")
                return
            envelope.acked = now
            payload = ack.get("payload")
            envelope.ack_payload = payload if isinstance(payload, dict) else None
            envelope.done.set()

    # ---- what tests do --------------------------------------------------------------------------

    def deliver(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        deadline_s: float = ACK_DEADLINE_S,
    ) -> Envelope:
        """Send one envelope to the newest connection not told to go; wait for its ack.

        The time spent waiting for such a connection counts against the deadline, as it does
        for the person who typed the command.
        """
        started = time.monotonic()
        with self._lock:
            state = self._socket_state()
            conn = None
            while conn is None:
                fresh = [c for c in state["connections"] if not c.closed and c.told_to_go is None]
                conn = fresh[-1] if fresh else None
                left = started + deadline_s - time.monotonic()
                if conn is None:
                    if left <= 0:
                        raise AssertionError("no Socket Mode connection to deliver to within the ack deadline")
                    self._socket_changed.wait(left)
            envelope = Envelope(uuid.uuid4().hex, kind, payload, accepts_response_payload, conn.number, started)
            state["envelopes"].append(envelope)
        message: dict[str, Any] = {
            "envelope_id": envelope.envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            message["retry_attempt"] = retry_attempt or 0
            message["retry_reason"] = retry_reason or ""
        try:
            conn.ws.send(json.dumps(message))
        except ConnectionClosed:
            return envelope  # never acked: Slack tells the user the app did not answer
        envelope.done.wait(max(0.0, started + deadline_s - time.monotonic()))
        return envelope

    def refresh_sockets(self, reason: str = "refresh_requested", close_after_s: float | None = None) -> int:
        """Tell every open connection to go (`disconnect`), close them `close_after_s` later.

        Returns how many connections were told."""
        delay = self.socket_close_after_s if close_after_s is None else close_after_s
        with self._lock:
            told = [c for c in self._socket_state()["connections"] if not c.closed and c.told_to_go is None]
            for conn in told:
                conn.told_to_go = reason
            self._socket_changed.notify_all()
        for conn in told:
            try:
                conn.ws.send(
                    json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}})
                )
            except ConnectionClosed:
                continue
            timer = threading.Timer(delay, conn.ws.close)
            timer.daemon = True
            timer.start()
        return len(told)

    def wait_for_socket(self, timeout: float = 10.0) -> SocketConnection:
        """The newest connection not told to go, once there is one (a test's "the bot is connected")."""
        deadline = time.monotonic() + timeout
        with self._lock:
            state = self._socket_state()
            while True:
                live = [c for c in state["connections"] if not c.closed and c.told_to_go is None]
                if live:
                    return live[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no Socket Mode connection within {timeout} s: {state['connections']}")
                self._socket_changed.wait(left)

    def socket_connections(self) -> list[SocketConnection]:
        with self._lock:
            return list(self._socket_state()["connections"])

    def socket_envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._socket_state()["envelopes"])

    def socket_refusals(self) -> list[str]:
        with self._lock:
            return list(self._socket_state()["refusals"])

    def close_socket_mode(self) -> None:
        with self._lock:
            state = self._socket_state()
            server: WsServer | None = state["server"]
            state["server"] = None
        if server is not None:
            server.shutdown()


def refuse_app_token_elsewhere(method: str, token: str, app_tokens: frozenset[str]) -> None:
    """An app-level token opens connections and nothing else; nothing else opens connections."""
    if (method == "apps.connections.open") != (token in app_tokens):
        raise SlackError("not_allowed_token_type")
