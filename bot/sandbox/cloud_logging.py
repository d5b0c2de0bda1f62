"""A local Cloud Logging API v2: `ListLogEntries` (REST `entries:list`) over gRPC.

The generated `LoggingServiceV2Client` speaks only gRPC (google-cloud-logging ships no REST
transport for it), so this emulator is a gRPC server for `google.logging.v2.LoggingServiceV2`
on 127.0.0.1; `url` is `http://127.0.0.1:<port>`, which `bot.google.cloud` reads as "plaintext gRPC,
anonymous". Entries are loaded as the API's JSON and answered as `LogEntry` messages.

Like the API: `pageSize` defaults to 50 and a negative one or one above 1000 is refused;
`nextPageToken` appears while more entries remain and is only good for the same request.
The filter subset is what `bot.google.cloud` sends: comparisons `field OP value` with OP one of
`= != > >= < <= :`, joined by `AND`, optionally `NOT`-ed. Fields are dotted paths into the
entry JSON (`resource.labels.service_name`, `httpRequest.status`, `jsonPayload.error_code`,
...); `severity` compares by level, `timestamp` as a time. Anything else (OR, parentheses,
bare words) is INVALID_ARGUMENT, as a strict server is how the tests notice the adapter
sending something new. Every call is kept in `requests` (its body as the API's JSON) with
the endpoint name `entries.list`, so tests can count them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.sandbox.health import FaultInjection, Request

SEVERITIES = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)
_RANK = {name: i for i, name in enumerate(SEVERITIES)}
MAX_PAGE_SIZE = 1000  # ListLogEntriesRequest.page_size: "exceeds 1000, the request is rejected"
DEFAULT_PAGE_SIZE = 50  # "Default is 50"
SERVICE = "google.logging.v2.LoggingServiceV2"
ENDPOINT = "entries.list"
# HTTP statuses that tests inject, as the gRPC codes Google's servers answer with.
_GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>>=|<=|!=|=|>|<|:)
      | (?P<word>[A-Za-z0-9_.\-+/%@]+)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


class FilterError(ValueError):
    """The filter uses syntax this emulator does not implement (answered with a 400)."""


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: str
    negated: bool = False

    def matches(self, entry: dict[str, Any]) -> bool:
        return self._compare(entry) != self.negated

    def _compare(self, entry: dict[str, Any]) -> bool:
        actual = _lookup(entry, self.field)
        left: Any
        right: Any
        if self.field == "severity":
            actual = actual or "DEFAULT"
            left, right = _RANK.get(str(actual).upper(), 0), _severity_rank(self.value)
        elif actual is None:
            return self.op == "!="  # a missing field equals nothing
        elif self.field == "timestamp" or self.field.endswith("Timestamp"):
            left, right = _parse_time(str(actual)), _parse_time(self.value)
        elif isinstance(actual, (int, float)) and not isinstance(actual, bool):
            left, right = actual, _number(self.value)
        else:
            left, right = str(actual), self.value
        if self.op == ":":
            return str(right).lower() in str(left).lower()
        return {
            "=": left == right,
            "!=": left != right,
            ">": left > right,
            ">=": left >= right,
            "<": left < right,
            "<=": left <= right,
        }[self.op]


def parse_filter(text: str) -> list[Comparison]:
    """Parse `a=b AND c>=d AND NOT e:f` into comparisons that must all hold."""
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "bad"
        tokens.append((kind, match.group(kind)))
    bad = [value for kind, value in tokens if kind == "bad"]
    if bad:
        raise FilterError(f"unsupported syntax {bad[0]!r} (OR, parentheses, ...)")
    comparisons: list[Comparison] = []
    i = 0
    while i < len(tokens):
        negated = False
        if tokens[i] == ("word", "NOT"):
            negated, i = True, i + 1
        if i + 3 > len(tokens):
            raise FilterError(f"incomplete comparison near {tokens[i:]!r}")
        (fkind, field), (okind, op), (vkind, value) = tokens[i : i + 3]
        if fkind != "word" or okind != "op" or vkind not in ("word", "string"):
            raise FilterError(f"expected `field OP value`, got {field} {op} {value}")
        if field in ("AND", "OR", "NOT"):
            raise FilterError(f"unexpected {field}")
        if vkind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        comparisons.append(Comparison(field, op, value, negated))
        i += 3
        if i < len(tokens):
            if tokens[i] != ("word", "AND"):
                raise FilterError(f"only AND is supported between comparisons, got {tokens[i][1]}")
            i += 1
            if i == len(tokens):
                raise FilterError("filter ends with AND")
    return comparisons


def _lookup(entry: dict[str, Any], path: str) -> Any:
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _severity_rank(value: str) -> int:
    if value.isdigit():  # the API also accepts numeric levels: ERROR is 500
        return max((i for i, n in enumerate(SEVERITIES) if i * 100 <= int(value)), default=0)
    try:
        return _RANK[value.upper()]
    except KeyError:
        raise FilterError(f"unknown severity {value!r}") from None


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"bad timestamp {value!r}") from None


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise FilterError(f"expected a number, got {value!r}") from None


class ListError(Exception):
    """A request the API refuses: the gRPC code name and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LoggingEmulator(FaultInjection):
    """Cloud Logging API v2 `ListLogEntries` over gRPC, serving the entries given to `load()`."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[dict[str, Any]] = []
        self._state_lock = threading.Lock()
        # Each entry's LogEntry bytes, made on first use: json_format is slow in Python.
        self._encoded: dict[int, bytes] = {}
        self._server: Any = None
        self._port = 0

    def load(self, entries: list[dict[str, Any]]) -> None:
        with self._state_lock:
            self._entries = copy.deepcopy(entries)
            self._encoded = {}

    def add(self, entries: list[dict[str, Any]]) -> None:
        with self._state_lock:
            self._entries.extend(copy.deepcopy(entries))

    @property
    def calls(self) -> int:
        """How many `entries:list` calls (pages included) have been made so far."""
        with self._lock:
            return sum(1 for r in self.requests if r.endpoint == ENDPOINT)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> LoggingEmulator:
        if self._server is not None:
            return self
        # gRPC logs a GOAWAY at INFO whenever the emulator stops under a live client channel.
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc
        from google.cloud.logging_v2.types import ListLogEntriesRequest

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                    self._serve,
                    request_deserializer=ListLogEntriesRequest.deserialize,
                    response_serializer=lambda response: response.SerializeToString(),
                )
            },
        )
        self._release.clear()
        server = grpc.server(ThreadPoolExecutor(max_workers=32, thread_name_prefix="LoggingEmulator"))
        server.add_generic_rpc_handlers((handler,))
        self._port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    def __enter__(self) -> LoggingEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LoggingEmulator is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- ListLogEntries --------------------------------------------------------------------

    def _serve(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse
        from google.protobuf import json_format

        body = json_format.MessageToDict(ListLogEntriesRequest.pb(request))
        fault = self._record(Request("POST", "/v2/entries:list", {}, body, ENDPOINT))
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.hang:
            while not self._release.wait(0.05) and context.is_active():
                pass
            context.abort(grpc.StatusCode.UNAVAILABLE, "released")
        if fault.status is not None:
            code = getattr(grpc.StatusCode, _GRPC_CODES.get(fault.status, "UNKNOWN"))
            context.abort(code, "injected failure")
        try:
            entries, token = self._page(body)
            response = ListLogEntriesResponse.pb()(next_page_token=token)
            for entry in entries:
                response.entries.add().MergeFromString(self._encode(entry))
        except ListError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Exception as exc:  # an emulator bug should look like a server error, not a hang
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error: {type(exc).__name__}: {exc}")
        return response

    def list_entries(self, body: dict[str, Any]) -> dict[str, Any]:
        """One page for a request in the API's JSON: `{"entries": [...], "nextPageToken"?}`."""
        entries, token = self._page(body)
        page: dict[str, Any] = {"entries": copy.deepcopy(entries)}
        if token:
            page["nextPageToken"] = token
        return page

    def _encode(self, entry: dict[str, Any]) -> bytes:
        from google.cloud.logging_v2.types import LogEntry
        from google.protobuf import json_format

        with self._state_lock:
            known = self._encoded.get(id(entry))
        if known is None:
            known = json_format.ParseDict(entry, LogEntry.pb()()).SerializeToString()
            with self._state_lock:
                self._encoded[id(entry)] = known
        return known

    def _page(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The stored entries (not copies) on the page `body` asks for, and the next token."""
        names = body.get("resourceNames") or []
        if not names:
            raise ListError("INVALID_ARGUMENT", "resourceNames is required")
        projects = {n.split("/", 1)[1] for n in names if n.startswith("projects/")}
        if len(projects) != len(names):
            raise ListError("INVALID_ARGUMENT", f"only projects/* resource names are supported: {names}")
        try:
            comparisons = parse_filter(body.get("filter") or "")
        except FilterError as exc:
            raise ListError("INVALID_ARGUMENT", f"Invalid filter: {exc}") from None
        order = (body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            raise ListError("INVALID_ARGUMENT", f"orderBy must be 'timestamp asc|desc', got {order!r}")
        size = int(body.get("pageSize") or 0)
        if size < 0 or size > MAX_PAGE_SIZE:
            raise ListError("INVALID_ARGUMENT", f"pageSize must be between 0 and {MAX_PAGE_SIZE}, got {size}")
        size = size or DEFAULT_PAGE_SIZE
        token = body.get("pageToken") or ""
        start = _read_token(token, body) if token else 0
        if start is None:
            raise ListError("INVALID_ARGUMENT", "Invalid page token: the other parameters must match")
        with self._state_lock:
            selected = [
                e for e in self._entries if _project_of(e) in projects and all(c.matches(e) for c in comparisons)
            ]
        selected.sort(key=_time_key(), reverse=order.endswith("desc"))
        more = start + size < len(selected)
        return selected[start : start + size], _page_token(body, start + size) if more else ""


def _query_key(body: dict[str, Any]) -> str:
    """What a page token is bound to: every parameter but the token itself."""
    query = {k: v for k, v in body.items() if k != "pageToken"}
    return hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]


def _page_token(body: dict[str, Any], offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_query_key(body)}:{offset}".encode()).decode()


def _read_token(token: str, body: dict[str, Any]) -> int | None:
    try:
        key, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(offset) if key == _query_key(body) else None
    except ValueError:
        return None


def _project_of(entry: dict[str, Any]) -> str:
    parts = str(entry.get("logName", "")).split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "projects" else ""


def _time_key() -> Callable[[dict[str, Any]], datetime]:
    return lambda e: _parse_time(e["timestamp"])
