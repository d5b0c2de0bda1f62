"""Logging set-up: JSON lines Cloud Logging understands, readable lines on a terminal, no secrets.

On Cloud Run, a JSON object per line on stdout becomes a structured log entry: `severity`,
`message`, `time` and `logging.googleapis.com/trace` are lifted into the entry itself, every
other key lands in `jsonPayload`, so a responder can filter by `jsonPayload.incident=7`.
A person running the bot in a terminal gets one readable line instead.

The request's own facts (incident, verb, Slack request id, trace) travel in a context variable
set by the listener, so every log line written while handling that request carries them,
including lines written by libraries that know nothing of incidents.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, TypeVar

from pythonjsonlogger.json import JsonFormatter

_SECRET = re.compile(r"(xox[abposre]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|(?:Bearer|OAuth|Basic)\s+[A-Za-z0-9._~+/=-]+)")
# Secrets with no recognisable shape (the signing secret, API keys): redacted by value.
_KNOWN: set[str] = set()

TRACE_FIELD = "logging.googleapis.com/trace"

# Never mutated in place: each block sets a new mapping, so the empty default is safe to share.
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "incident_bot_log_context", default=MappingProxyType({})
)

T = TypeVar("T")


def redact(text: str) -> str:
    text = _SECRET.sub("[redacted]", text)
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def register_secrets(*secrets: str | None) -> None:
    """Values that must never appear in a log line, whatever their shape (8 characters or more,
    so a short test value cannot blank out ordinary words)."""
    _KNOWN.update(s for s in secrets if s and len(s) >= 8)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (incident, verb, request_id, trace) to every log line written in this block."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> Mapping[str, Any]:
    """The fields of the log context in force (empty outside any request)."""
    return _CONTEXT.get()


def bind(**fields: Any) -> None:
    """Add fields to the current context for the rest of it (once the incident is known)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})


def carry(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` bound to the current log context, for work handed to another thread after the ack."""
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(fn, *args, **kwargs)

    return run


def trace_field(header: str | None, project: str | None) -> str | None:
    """Cloud Run's `X-Cloud-Trace-Context: TRACE/SPAN;o=1` as Cloud Logging's trace resource name."""
    if not header or not project:
        return None
    trace = header.split("/", 1)[0].strip()
    if not re.fullmatch(r"[0-9a-fA-F]{32}", trace):
        return None
    return f"projects/{project}/traces/{trace}"


class ContextFilter(logging.Filter):
    """Copies the request's context fields onto each record (a field the call passed wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True


class CloudLoggingFormatter(JsonFormatter):
    """One JSON object per line in the shape Cloud Logging parses; secrets redacted last."""

    def __init__(self) -> None:
        super().__init__(
            "%(message)s %(levelname)s %(name)s",
            rename_fields={"levelname": "severity", "name": "logger", "exc_info": "stack_trace"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        # RFC 3339 with a Z: the form Cloud Logging reads as the entry's own timestamp.
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TerminalFormatter(logging.Formatter):
    """A readable line with the context fields appended; secrets redacted last."""

    _CONTEXT_KEYS = ("incident", "verb", "request_id")

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={record.__dict__[k]}" for k in self._CONTEXT_KEYS if k in record.__dict__)
        if extra:
            first, newline, rest = line.partition("\n")
            line = f"{first} [{extra}]{newline}{rest}"
        return redact(line)


def configure(level: str = "INFO", stream: IO[str] | None = None, fmt: str | None = None) -> None:
    """Log to stdout: JSON unless stdout is a terminal (`LOG_FORMAT=json|text` overrides)."""
    stream = stream if stream is not None else sys.stdout
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "").lower()
    if fmt not in ("json", "text"):
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter() if fmt == "json" else TerminalFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # slack_sdk logs request headers (the bot token among them) at DEBUG: never below INFO.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, root.level))
