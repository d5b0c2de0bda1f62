"""Socket Mode: Slack's requests over a WebSocket, acked within milliseconds across refreshes.

Slack refreshes a Socket Mode connection every few hours (`{"type": "disconnect", "reason":
"refresh_requested"}`) and warns before it drops one (`"reason": "warning"`); an app must
connect anew at once and keep acking every envelope within 3 s. This client is ours, on the
`websockets` library's threaded client, because none of slack_sdk's clients keeps acking through
a refresh with a synchronous Bolt app (read from their source, slack_sdk 3.48):

- the built-in client (what Bolt's `SocketModeHandler` uses) handles the disconnect on its one
  message-processing thread, and closing the old session there waits for the receive lock a
  blocking `recv` holds for up to 3 s: envelopes on the new connection wait behind it (seen:
  2.5 s to the first ack, of Slack's 3 s);
- the websocket-client one closes the old session on that same thread (a close handshake of up
  to 3 s) and opens the new socket only when its runner thread next polls, 0.5 s later;
- the aiohttp one closes the old session *before* opening the new one, and the websockets one
  stops reading the old connection the moment the new one is up; both run the synchronous Bolt
  app on the event loop, where a listener's `views.open` would hold every other ack up.

Here each connection has its own reader thread and each envelope runs on a worker pool, so a
slow listener or a closing socket never delays another ack. A disconnect opens the replacement
first, in the background; the old connection keeps delivering (and its envelopes are acked on
it, where Slack sent them) until Slack closes it, or `drain_s` after the replacement is up. A
connection that drops without notice is replaced with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.internals import run_bolt_app
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
RECONNECT_MAX_S = 30.0


class SocketModeError(Exception):
    """The connection could not be opened (Slack refused the token, the socket, or said nothing)."""


class _Connection:
    """One WebSocket to Slack, read by its own thread."""

    def __init__(self, owner: SocketMode, ws: ClientConnection, number: int) -> None:
        self.owner = owner
        self.ws = ws
        self.number = number
        self.hello = threading.Event()
        self.closed = threading.Event()
        self.replaced = False  # a disconnect arrived: the replacement is (being) opened
        self.reader = threading.Thread(target=self._read, name=f"socket-mode-{number}", daemon=True)

    def start(self) -> None:
        self.reader.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.owner._on_message(self, raw)
        except (ConnectionClosed, OSError, WebSocketException) as exc:
            log.info("Socket Mode connection %s ended: %s", self.number, type(exc).__name__)
        finally:
            self.closed.set()
            self.owner._on_closed(self)

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send(json.dumps(message))

    def close(self) -> None:
        with contextlib.suppress(OSError, WebSocketException):  # already gone: nothing to close
            self.ws.close()


class SocketMode:
    """Serves `app` over Socket Mode with the app-level token; `connect()` once, `close()` at exit."""

    def __init__(
        self,
        app: App,
        app_token: str,
        api_url: str | None = None,
        *,
        workers: int = 16,
        drain_s: float = 10.0,
        ping_interval_s: float = 10.0,
    ) -> None:
        self.app = app
        # apps.connections.open takes the app-level token; a client of its own without retries
        # (the reconnect loop below is the retry, and never sleeps on a request thread).
        self.app_token = app_token
        self.web = WebClient(base_url=api_url or WebClient.BASE_URL, timeout=10, retry_handlers=[])
        self.drain_s = drain_s
        self.ping_interval_s = ping_interval_s
        self.work = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="socket-ack")
        self._lock = threading.Lock()
        self._current: _Connection | None = None
        self._connections: set[_Connection] = set()
        self._opening = False
        self._numbers = 0
        self._stopping = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        current = self._current
        return current is not None and not current.closed.is_set()

    def connect(self) -> None:
        """Open the first connection and wait for Slack's hello; raises when that fails."""
        with self._lock:
            self._opening = True
        try:
            self._install(self._open())
        finally:
            self._opened()

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close()
        self.work.shutdown(wait=True, cancel_futures=False)

    def _open(self) -> _Connection:
        url = self.web.apps_connections_open(app_token=self.app_token)[
            "url"
        ]  # the ticket in it is a credential: not logged
        ws = connect(
            url, open_timeout=HELLO_TIMEOUT_S, ping_interval=self.ping_interval_s, close_timeout=1, legacy=True
        )
        with self._lock:
            self._numbers += 1
            conn = _Connection(self, ws, self._numbers)
            self._connections.add(conn)
        conn.start()
        if not conn.hello.wait(HELLO_TIMEOUT_S):
            conn.close()
            raise SocketModeError("Slack sent no hello on the new Socket Mode connection")
        return conn

    def _install(self, conn: _Connection) -> None:
        with self._lock:
            old, self._current = self._current, conn
        log.info("Socket Mode connection %s is current", conn.number)
        if old is not None and not old.closed.is_set():
            # Slack closes the old one itself; in case it does not, close it once its envelopes
            # have had time to be acked.
            timer = threading.Timer(self.drain_s, old.close)
            timer.daemon = True
            timer.start()

    def _replace(self, reason: str) -> None:
        """Open a connection to take over from the current one, in the background, retrying."""
        with self._lock:
            if self._opening or self._stopping.is_set():
                return
            self._opening = True
        threading.Thread(target=self._reconnect, args=(reason,), name="socket-mode-connect", daemon=True).start()

    def _reconnect(self, reason: str) -> None:
        delay = 1.0
        try:
            while not self._stopping.is_set():
                try:
                    self._install(self._open())
                    log.info("Socket Mode reconnected (%s)", reason)
                    return
                except Exception as exc:  # noqa: BLE001 - Slack down, refused, slow: all mean "again later"
                    log.warning("Socket Mode could not reconnect (%s); retrying in %.0f s", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._opened()

    def _opened(self) -> None:
        """Opening is over; if the connection it installed has already dropped, open another."""
        with self._lock:
            self._opening = False
            dropped = self._current is not None and self._current.closed.is_set()
        if dropped:
            self._replace("the connection closed while it was being installed")

    # ---- what arrives ---------------------------------------------------------------------------

    def _on_message(self, conn: _Connection, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("Socket Mode: a message that is not JSON, ignored")
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "hello":
            log.info("Socket Mode hello on connection %s (%s open)", conn.number, message.get("num_connections"))
            conn.hello.set()
        elif kind == "disconnect":
            log.info("Socket Mode: Slack asks connection %s to reconnect (%s)", conn.number, message.get("reason"))
            conn.replaced = True
            if conn is self._current:
                self._replace(str(message.get("reason") or "disconnect"))
        elif "envelope_id" in message:
            self.work.submit(self._handle, conn, message)

    def _on_closed(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
            current = conn is self._current
        if current and not self._stopping.is_set():
            self._replace("the connection closed")

    def _handle(self, conn: _Connection, message: dict[str, Any]) -> None:
        request = SocketModeRequest.from_dict(message)
        if request is None:
            return
        try:
            response = run_bolt_app(self.app, request)
        except Exception:  # noqa: BLE001 - Bolt's own failure: no ack, Slack shows the user an error
            log.exception("Socket Mode: Bolt failed on envelope %s", request.envelope_id)
            return
        if response.status != 200:
            # Bolt's handlers send no ack for a refused request either: Slack treats it as failed.
            log.info("Socket Mode: envelope %s refused (%s)", request.envelope_id, response.status)
            return
        ack: dict[str, Any] = {"envelope_id": request.envelope_id}
        body = response.body or ""
        if body and request.accepts_response_payload:
            content_type = (response.headers.get("content-type") or [""])[0]
            ack["payload"] = json.loads(body) if content_type.startswith("application/json") else {"text": body}
        self._ack(conn, ack)

    def _ack(self, conn: _Connection, ack: dict[str, Any]) -> None:
        """On the connection the envelope came on; if Slack closed that one meanwhile, on the current."""
        started = time.monotonic()
        for target in (conn, self._current):
            if target is None:
                continue
            try:
                target.send(ack)
                return
            except (ConnectionClosed, OSError, WebSocketException):
                log.info("Socket Mode: connection %s closed before the ack of %s", target.number, ack["envelope_id"])
        log.warning(
            "Socket Mode: no open connection for the ack of %s (%.0f ms)",
            ack["envelope_id"],
            (time.monotonic() - started) * 1000,
        )
