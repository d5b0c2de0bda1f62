"""The Statuspage client against the local Statuspage emulator (no network beyond 127.0.0.1)."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest

from bot.domain.policy import StatuspageConfig
from bot.sandbox.statuspage import StatuspageSandbox
from bot.statuspage.client import StatuspageClient, StatuspageError, _retry_after, from_config, impact_for

PAGE = "page1abc"
KEY = "sp-secret-key-0123456789"


@pytest.fixture
def sandbox() -> Iterator[StatuspageSandbox]:
    with StatuspageSandbox(page_id=PAGE, api_key=KEY) as running:
        yield running


@pytest.fixture
def client(sandbox: StatuspageSandbox) -> StatuspageClient:
    return StatuspageClient(sandbox.api_url, PAGE, KEY, timeout=2)


def raw_call(sandbox: StatuspageSandbox, method: str, path: str, body: Any, key: str | None = KEY):
    """Call the emulator without the client: (status, JSON answer)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"OAuth {key}"
    request = urllib.request.Request(sandbox.url + path, data=json.dumps(body).encode(), method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- create / update / resolve ------------------------------------------------------------------


def test_create_sends_the_documented_body_and_auth_header(sandbox, client):
    incident_id = client.create_incident("Checkout errors", "investigating", "We are looking.")

    assert incident_id in sandbox.incidents
    (call,) = sandbox.calls
    assert (call.method, call.path, call.endpoint) == (
        "POST",
        f"/v1/pages/{PAGE}/incidents",
        "create_incident",
    )
    assert call.body == {
        "incident": {
            "name": "Checkout errors",
            "status": "investigating",
            "body": "We are looking.",
        }
    }
    assert call.authorized
    assert call.headers["Authorization"] == "OAuth [redacted]"
    assert call.headers["Content-Type"] == "application/json"

    incident = sandbox.incident(incident_id)
    assert incident["name"] == "Checkout errors"
    assert incident["status"] == "investigating"
    assert incident["impact"] == "none"
    assert [(u["status"], u["body"]) for u in incident["incident_updates"]] == [("investigating", "We are looking.")]


@pytest.mark.parametrize(
    ("severity", "impact"),
    [("P1", "critical"), ("P2", "major"), ("p3", "minor"), ("P4", "none")],
)
def test_severity_becomes_impact_override(sandbox, client, severity, impact):
    incident_id = client.create_incident(
        "Outage", "identified", "Bad deploy.", severity=severity, deliver_notifications=False
    )

    sent = sandbox.calls[-1].body["incident"]
    assert sent["impact_override"] == impact
    assert sent["deliver_notifications"] is False
    assert sandbox.incident(incident_id)["impact"] == impact


def test_update_patches_status_and_body(sandbox, client):
    incident_id = client.create_incident("Outage", "investigating", "Looking.")

    client.update_incident(incident_id, "identified", "Bad deploy; rolling back.")
    client.update_incident(incident_id, "monitoring", "Rolled back; watching.", severity="P2")

    first, second = sandbox.calls_to("update_incident")
    assert (first.method, first.path) == ("PATCH", f"/v1/pages/{PAGE}/incidents/{incident_id}")
    assert first.body == {"incident": {"status": "identified", "body": "Bad deploy; rolling back."}}
    assert second.body == {
        "incident": {
            "status": "monitoring",
            "body": "Rolled back; watching.",
            "impact_override": "major",
        }
    }
    assert all(c.authorized and c.headers["Authorization"] == "OAuth [redacted]" for c in (first, second))
    incident = sandbox.incident(incident_id)
    assert incident["status"] == "monitoring"
    assert incident["monitoring_at"] is not None
    assert incident["impact"] == "major"
    # newest first, as the API lists them
    assert [u["status"] for u in incident["incident_updates"]] == [
        "monitoring",
        "identified",
        "investigating",
    ]


def test_resolve_marks_the_incident_resolved(sandbox, client):
    incident_id = client.create_incident("Outage", "investigating", "Looking.")
    assert sandbox.incident(incident_id)["resolved_at"] is None

    client.resolve_incident(incident_id, "All clear.")

    assert sandbox.calls[-1].method == "PATCH"
    assert sandbox.calls[-1].body == {"incident": {"status": "resolved", "body": "All clear."}}
    incident = sandbox.incident(incident_id)
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] is not None
    assert incident["incident_updates"][0]["body"] == "All clear."


def test_invalid_arguments_are_refused_before_sending(sandbox, client):
    with pytest.raises(ValueError, match="status"):
        client.create_incident("Outage", "on_fire", "x")
    with pytest.raises(ValueError, match="severity"):
        client.create_incident("Outage", "investigating", "x", severity="P0")
    with pytest.raises(ValueError, match="name"):
        client.create_incident("  ", "investigating", "x")
    assert sandbox.calls == []


# -- errors -------------------------------------------------------------------------------------


def test_wrong_key_is_a_401_client_error(sandbox):
    wrong = StatuspageClient(sandbox.api_url, PAGE, "wrong-key-abcdef", timeout=2)

    with pytest.raises(StatuspageError) as caught:
        wrong.create_incident("Outage", "investigating", "Looking.")

    error = caught.value
    assert error.status_code == 401
    assert error.is_client_error and not error.retryable
    assert "Could not authenticate" in str(error)
    assert "wrong-key-abcdef" not in str(error)
    assert sandbox.incidents == {}
    assert sandbox.calls[0].authorized is False


def test_server_error_is_retryable_and_a_later_call_succeeds(sandbox, client):
    sandbox.fail(1, status=500)

    with pytest.raises(StatuspageError) as caught:
        client.create_incident("Outage", "investigating", "Looking.")
    assert caught.value.status_code == 500
    assert caught.value.is_server_error and caught.value.retryable
    assert not caught.value.is_client_error
    assert sandbox.incidents == {}

    # the fault was for one request only: the caller's retry goes through
    incident_id = client.create_incident("Outage", "investigating", "Looking.")
    assert incident_id in sandbox.incidents


def test_unavailable_is_503_on_update_only(sandbox, client):
    incident_id = client.create_incident("Outage", "investigating", "Looking.")
    sandbox.fail(2, status=503, endpoint="update_incident")

    for _ in range(2):
        with pytest.raises(StatuspageError) as caught:
            client.update_incident(incident_id, "identified", "Found it.")
        assert caught.value.status_code == 503
    client.update_incident(incident_id, "identified", "Found it.")
    assert sandbox.incident(incident_id)["status"] == "identified"


def test_rate_limit_exposes_retry_after(sandbox, client):
    sandbox.rate_limit(1, retry_after=30)

    with pytest.raises(StatuspageError) as caught:
        client.create_incident("Outage", "investigating", "Looking.")

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 30
    assert caught.value.is_rate_limited and caught.value.retryable


def test_retry_after_as_an_http_date():
    assert _retry_after(formatdate(time.time() + 120, usegmt=True)) == pytest.approx(120, abs=2)
    assert _retry_after("7") == 7
    assert _retry_after(None) is None
    assert _retry_after("soon") is None


def test_unknown_incident_and_page_are_404(sandbox, client):
    with pytest.raises(StatuspageError) as caught:
        client.update_incident("nosuchincident", "identified", "x")
    assert caught.value.status_code == 404 and caught.value.is_client_error

    other_page = StatuspageClient(sandbox.api_url, "otherpage", KEY, timeout=2)
    with pytest.raises(StatuspageError) as caught:
        other_page.create_incident("Outage", "investigating", "x")
    assert caught.value.status_code == 404
    assert "otherpage" in caught.value.message


def test_timeout_is_a_retryable_error_without_status(sandbox):
    sandbox.delay(1.0)
    slow = StatuspageClient(sandbox.api_url, PAGE, KEY, timeout=0.2)

    started = time.monotonic()
    with pytest.raises(StatuspageError) as caught:
        slow.create_incident("Outage", "investigating", "Looking.")

    assert time.monotonic() - started < 0.9
    assert caught.value.status_code is None
    assert caught.value.retryable
    assert "timed out" in caught.value.message


def test_unreachable_server_is_a_retryable_error(sandbox):
    url = sandbox.api_url
    sandbox.stop()
    gone = StatuspageClient(url, PAGE, KEY, timeout=1)

    with pytest.raises(StatuspageError) as caught:
        gone.create_incident("Outage", "investigating", "Looking.")
    assert caught.value.status_code is None and caught.value.retryable


# -- the key stays secret ----------------------------------------------------------------------


def test_key_is_not_in_repr_or_vars(client):
    assert KEY not in repr(client)
    assert KEY not in str(client)
    assert KEY not in repr(vars(client))
    assert "[redacted]" in repr(client)
    assert PAGE in repr(client)


def test_key_never_in_error_messages_or_logs(sandbox, client, caplog):
    caplog.set_level(logging.DEBUG, logger="bot.statuspage.client")
    errors: list[StatuspageError] = []

    # the emulator echoes the incident id in its 404 message: here the id *is* the key
    with pytest.raises(StatuspageError) as caught:
        client.update_incident(KEY, "identified", "x")
    errors.append(caught.value)
    assert caught.value.status_code == 404
    assert "[redacted]" in caught.value.message

    sandbox.fail(1, status=500)
    with pytest.raises(StatuspageError) as caught:
        client.create_incident("Outage", "investigating", "x")
    errors.append(caught.value)
    client.create_incident("Outage", "investigating", "x")

    assert caplog.records, "the client logs its calls"
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error)
        assert KEY not in repr(error.args)
    assert KEY not in caplog.text
    # and the emulator's record of the requests never holds it either
    assert all(KEY not in json.dumps(c.headers) for c in sandbox.calls)


def test_a_malformed_key_is_refused_without_showing_it(sandbox):
    bad = "sp-secret\nX-Injected: yes"
    with pytest.raises(ValueError) as caught:
        StatuspageClient(sandbox.api_url, PAGE, bad)
    assert "sp-secret" not in str(caught.value)
    assert "Injected" not in str(caught.value)


# -- from_config --------------------------------------------------------------------------------


def config_for(api_url: str) -> StatuspageConfig:
    return StatuspageConfig(page_id=PAGE, api_key_env="TEST_STATUSPAGE_KEY", api_url=api_url)


def test_from_config_without_the_env_var_returns_none_and_says_why(caplog):
    caplog.set_level(logging.WARNING, logger="bot.statuspage.client")

    assert from_config(config_for("https://api.statuspage.io/v1/"), {}) is None

    assert "TEST_STATUSPAGE_KEY" in caplog.text
    assert "not set" in caplog.text


def test_from_config_with_an_empty_key_returns_none():
    env = {"TEST_STATUSPAGE_KEY": "   "}
    assert from_config(config_for("https://api.statuspage.io/v1/"), env) is None


def test_from_config_without_a_statuspage_block_returns_none(caplog):
    caplog.set_level(logging.WARNING, logger="bot.statuspage.client")
    assert from_config(None, {"TEST_STATUSPAGE_KEY": KEY}) is None
    assert caplog.text == ""  # Statuspage is optional: not configured is not a warning


def test_from_config_reads_the_key_from_the_named_env_var(sandbox):
    client = from_config(config_for(sandbox.api_url), {"TEST_STATUSPAGE_KEY": KEY})

    assert client is not None
    assert client.page_id == PAGE
    incident_id = client.create_incident("Outage", "investigating", "Looking.")
    assert incident_id in sandbox.incidents
    assert sandbox.calls[-1].authorized


def test_from_config_reads_os_environ_by_default(sandbox, monkeypatch):
    monkeypatch.setenv("TEST_STATUSPAGE_KEY", KEY)
    client = from_config(config_for(sandbox.api_url))
    assert client is not None
    client.create_incident("Outage", "investigating", "Looking.")
    assert sandbox.calls[-1].authorized

    monkeypatch.delenv("TEST_STATUSPAGE_KEY")
    assert from_config(config_for(sandbox.api_url)) is None


def test_impact_for_maps_every_severity():
    assert [impact_for(s) for s in ("P1", "P2", "P3", "P4")] == [
        "critical",
        "major",
        "minor",
        "none",
    ]


# -- the emulator on its own --------------------------------------------------------------------


def test_emulator_answers_the_api_shapes(sandbox):
    status, created = raw_call(
        sandbox,
        "POST",
        f"/v1/pages/{PAGE}/incidents",
        {"incident": {"name": "Outage", "status": "investigating", "body": "Looking."}},
    )
    assert status == 201
    for key in ("id", "name", "status", "impact", "created_at", "updated_at", "shortlink"):
        assert created[key], key
    (update,) = created["incident_updates"]
    assert set(update) >= {"id", "status", "body", "created_at"}

    status, fetched = raw_call(sandbox, "GET", f"/v1/pages/{PAGE}/incidents/{created['id']}", None)
    assert status == 200 and fetched == created


def test_emulator_refuses_an_invalid_status_with_422(sandbox):
    status, answer = raw_call(
        sandbox,
        "POST",
        f"/v1/pages/{PAGE}/incidents",
        {"incident": {"name": "Outage", "status": "on_fire", "body": "x"}},
    )
    assert status == 422
    assert "Status" in answer["error"]
    assert sandbox.incidents == {}


def test_emulator_wants_oauth_auth(sandbox):
    body = {"incident": {"name": "Outage", "status": "investigating"}}
    path = f"/v1/pages/{PAGE}/incidents"
    assert raw_call(sandbox, "POST", path, body, key=None) == (
        401,
        {"error": "Could not authenticate"},
    )
    assert raw_call(sandbox, "POST", path, body, key="nope")[0] == 401
    assert raw_call(sandbox, "POST", path, body)[0] == 201
    assert [c.authorized for c in sandbox.calls] == [False, False, True]


def test_emulator_enforces_the_documented_rate_limit():
    with StatuspageSandbox(page_id=PAGE, api_key=KEY, per_minute=3) as limited:
        client = StatuspageClient(limited.api_url, PAGE, KEY, timeout=2)
        incident_id = client.create_incident("Checkout errors", "investigating", "Looking.")
        client.update_incident(incident_id, "identified", "Found it.")
        client.update_incident(incident_id, "monitoring", "Fixed.")
        with pytest.raises(StatuspageError) as refused:
            client.update_incident(incident_id, "resolved", "Done.")
        assert refused.value.is_rate_limited and refused.value.retryable
        assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 61
        assert limited.incident(incident_id)["status"] == "monitoring"
