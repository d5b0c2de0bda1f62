"""Log lines: the JSON shape Cloud Logging parses, request context on every line, no secrets."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from bot.core import logs


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("INFO", stream=stream, fmt="json")
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_in_cloud_loggings_shape(captured: io.StringIO) -> None:
    logging.getLogger("bot.paging.pager").warning("paged %s", "U0PRIMARY")
    (line,) = _lines(captured)
    assert line["severity"] == "WARNING"
    assert line["message"] == "paged U0PRIMARY"
    assert line["logger"] == "bot.paging.pager"
    assert isinstance(line["time"], str) and line["time"].endswith("Z")
    written = datetime.fromisoformat(line["time"])
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60


def test_request_context_is_on_every_line_written_inside_it(captured: io.StringIO) -> None:
    trace = logs.trace_field("0123456789abcdef0123456789abcdef/1;o=1", "my-project")
    with logs.log_context(incident=7, verb="ack", request_id="ab12cd34", **{logs.TRACE_FIELD: trace}):
        logging.getLogger("slack_bolt").info("inside")
    logging.getLogger("bot").info("outside")
    inside, outside = _lines(captured)
    assert inside["incident"] == 7 and inside["verb"] == "ack" and inside["request_id"] == "ab12cd34"
    assert inside[logs.TRACE_FIELD] == "projects/my-project/traces/0123456789abcdef0123456789abcdef"
    assert not {"incident", "verb", "request_id", logs.TRACE_FIELD} & outside.keys()


def test_context_follows_work_handed_to_another_thread(captured: io.StringIO) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool, logs.log_context(incident=3, request_id="r1"):
        pool.submit(logs.carry(lambda: logging.getLogger("bot").info("after the ack"))).result()
        pool.submit(lambda: logging.getLogger("bot").info("not carried")).result()
    carried, bare = _lines(captured)
    assert carried["incident"] == 3 and carried["request_id"] == "r1"
    assert "incident" not in bare


def test_bind_adds_a_field_found_later_in_the_request(captured: io.StringIO) -> None:
    def handle() -> None:
        with logs.log_context(request_id="r2"):
            logs.bind(incident=9)
            logging.getLogger("bot").info("knows the incident now")

    thread = threading.Thread(target=handle)
    thread.start()
    thread.join()
    (line,) = _lines(captured)
    assert line["incident"] == 9 and line["request_id"] == "r2"


def test_an_exception_becomes_a_stack_trace_field(captured: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("bot").exception("command failed")
    (line,) = _lines(captured)
    assert line["severity"] == "ERROR" and line["message"] == "command failed"
    assert "RuntimeError: boom" in str(line["stack_trace"]) and "Traceback" in str(line["stack_trace"])


@pytest.mark.parametrize(
    "secret",
    [
        "xoxb-1234-5678-abcdefABCDEF",
        "xapp-1-A0123-4567-abcdef",
        "Bearer abc.def-ghi",
        "OAuth 5e4f3c2b1a0099887766",
    ],
)
def test_tokens_never_reach_a_line_in_messages_arguments_or_tracebacks(captured: io.StringIO, secret: str) -> None:
    log = logging.getLogger("slack_sdk.web")
    log.info("calling with %s", secret)
    try:
        raise ValueError(f"refused: {secret}")
    except ValueError:
        log.exception("failed")
    assert secret not in captured.getvalue()
    assert secret.split()[-1] not in captured.getvalue()
    assert captured.getvalue().count("[redacted]") == 2


def test_secrets_of_no_known_shape_are_redacted_by_value(captured: io.StringIO) -> None:
    signing_secret = "8f742231b10e8888abcd99yyyzzz85a5"
    logs.register_secrets(signing_secret, None, "")
    logging.getLogger("bot").warning("secret was %s", signing_secret)
    assert signing_secret not in captured.getvalue() and "[redacted]" in captured.getvalue()


def test_a_terminal_gets_readable_lines_with_the_context() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = _Terminal()
    try:
        logs.configure("INFO", stream=stream)
        with logs.log_context(incident=4, verb="declare"):
            logging.getLogger("bot").info("declared with xoxb-1-2-abc")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = stream.getvalue()
    assert not text.lstrip().startswith("{")
    assert "INFO bot: declared with [redacted] [incident=4 verb=declare]" in text


@pytest.mark.parametrize(
    ("header", "project", "expected"),
    [
        ("105445aa7843bc8bf206b12000100000/1;o=1", "p", "projects/p/traces/105445aa7843bc8bf206b12000100000"),
        ("105445aa7843bc8bf206b12000100000", "p", "projects/p/traces/105445aa7843bc8bf206b12000100000"),
        ("not-a-trace/1", "p", None),
        (None, "p", None),
        ("105445aa7843bc8bf206b12000100000/1", None, None),
    ],
)
def test_trace_field_from_cloud_runs_header(header: str | None, project: str | None, expected: str | None) -> None:
    assert logs.trace_field(header, project) == expected


def test_a_request_is_handled_inside_its_log_context_and_counted(captured: io.StringIO) -> None:
    from prometheus_client import REGISTRY

    from bot.app import listeners as app

    def handle(ref: str) -> str:
        logs.bind(verb="ack", incident=7)
        logging.getLogger("bot.commands").warning("handling %s", ref)
        return "ok"

    before = REGISTRY.get_sample_value("incident_bot_commands_total", {"verb": "ack", "outcome": "ok"}) or 0.0
    app._observe(handle)
    (line,) = _lines(captured)
    assert line["verb"] == "ack" and line["incident"] == 7 and line["message"] == f"handling {line['request_id']}"
    assert REGISTRY.get_sample_value("incident_bot_commands_total", {"verb": "ack", "outcome": "ok"}) == before + 1
    assert logs.current() == {}  # nothing leaks into the next request on this thread
