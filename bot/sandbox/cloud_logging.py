"""A local Cloud Logging API v2: `POST /v2/entries:list` with a subset of the filter language.

The google-cloud-logging HTTP client (`logging_v2/_http.py`) posts
`{"resourceNames", "filter", "orderBy", "pageSize", "pageToken"}` and reads
`{"entries", "nextPageToken"}`. The filter subset is what `bot.cloud` sends: comparisons
`field OP value` with OP one of `= != > >= < <= :`, joined by `AND`, optionally `NOT`-ed.
Fields are dotted paths into the entry JSON (`resource.labels.service_name`,
`httpRequest.status`, `jsonPayload.error_code`, ...); `severity` compares by level,
`timestamp` as a time. Anything else (OR, parentheses, bare words) is a 400, as a strict
server is how the tests notice the adapter sending something new.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.sandbox.health import JsonServer, Request, Response, google_error

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
MAX_PAGE_SIZE = 1000  # the real API's limit
DEFAULT_PAGE_SIZE = 50

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


class LoggingEmulator(JsonServer):
    """Cloud Logging API v2 over HTTP, serving the entries given to `load()`."""

    def __init__(self) -> None:
        super().__init__()
        self._entries: list[dict[str, Any]] = []
        self._state_lock = threading.Lock()
        self.route("POST", r"/v2/entries:list", "entries.list", self._list)

    def load(self, entries: list[dict[str, Any]]) -> None:
        with self._state_lock:
            self._entries = copy.deepcopy(entries)

    def add(self, entries: list[dict[str, Any]]) -> None:
        with self._state_lock:
            self._entries.extend(copy.deepcopy(entries))

    def _list(self, req: Request, match: re.Match[str]) -> Response:
        body = req.body or {}
        names = body.get("resourceNames") or []
        if not names:
            return google_error(400, "resourceNames is required")
        projects = {n.split("/", 1)[1] for n in names if n.startswith("projects/")}
        if len(projects) != len(names):
            return google_error(400, f"only projects/* resource names are supported: {names}")
        try:
            comparisons = parse_filter(body.get("filter") or "")
        except FilterError as exc:
            return google_error(400, f"Invalid filter: {exc}")
        order = (body.get("orderBy") or "timestamp asc").strip().lower()
        if order not in ("timestamp asc", "timestamp desc"):
            return google_error(400, f"orderBy must be 'timestamp asc|desc', got {order!r}")
        size = min(int(body.get("pageSize") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        start = int(body.get("pageToken") or 0)
        with self._state_lock:
            selected = [
                e for e in self._entries if _project_of(e) in projects and all(c.matches(e) for c in comparisons)
            ]
        selected.sort(key=_time_key(), reverse=order.endswith("desc"))
        page: dict[str, Any] = {"entries": copy.deepcopy(selected[start : start + size])}
        if start + size < len(selected):
            page["nextPageToken"] = str(start + size)
        return Response(200, page)


def _project_of(entry: dict[str, Any]) -> str:
    parts = str(entry.get("logName", "")).split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "projects" else ""


def _time_key() -> Callable[[dict[str, Any]], datetime]:
    return lambda e: _parse_time(e["timestamp"])
