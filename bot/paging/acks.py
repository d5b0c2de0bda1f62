"""`POST /pagerduty/webhook`: acks made in PagerDuty count in Slack.

A v3 webhook is accepted only with a valid `X-PagerDuty-Signature` (`v1=` HMAC-SHA256 of the raw
body under the subscription's secret; any of several during a rotation); anything else is 401 and
changes nothing. Then:

- `incident.acknowledged` for one of the bot's dedup keys (`event.data.incident_key`)
  acknowledges the incident exactly as a Slack ack does (escalation stopped, pages and
  announcement edited, the lines in Slack), as the PagerDuty user: the Slack user with their
  email when `pagerduty.api_token_env` lets the bot read it, else "<name> in PagerDuty".
  No acknowledge goes back to PagerDuty: it has it.
- `incident.resolved` says so in the war room and offers **Resolve**: the bot never resolves by itself.
  PagerDuty announces the changes the bot's own events make too: the echo of the bot's resolve
  (a severity lowered out of the list) is ignored, and so is that of its acknowledge (the incident
  is acknowledged already).
- any other event type, or a key that is not one of ours, is answered 200 and ignored.

The same webhook twice changes things once: the ack is idempotent, and the resolved line is a
firing keyed by the webhook's event id.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.core.text import escape
from bot.domain import pagerduty
from bot.domain.deliveries import DeliveryKind, said
from bot.domain.incidents import Change, Incident, acknowledge
from bot.pagerduty.client import signed
from bot.slack.blocks import incident as blocks

log = logging.getLogger(__name__)

PATH = "/pagerduty/webhook"
MAX_BODY = 1_048_576
# How long the webhook looks for the Slack user behind a PagerDuty ack (PagerDuty waits 5 s in all).
WHO_BUDGET_S = 2.0
StartResponse = Callable[..., Any]


def webhook(ctx: Context, secrets: list[str]) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app for PATH (the server sends only that path here)."""
    if ctx.config.pagerduty is not None and not secrets:
        log.warning(
            "pagerduty is configured but %s is unset: PagerDuty webhooks are refused",
            ctx.config.pagerduty.webhook_secret_env,
        )

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if ctx.config.pagerduty is None or not secrets:
            return _answer(start_response, 404, {"error": "PagerDuty webhooks are not enabled"})
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, {"error": "use POST"}, [("Allow", "POST")])
        body = _read_body(environ)
        if body is None:
            return _answer(start_response, 413, {"error": "the body is too large"})
        if not signed(body, environ.get("HTTP_X_PAGERDUTY_SIGNATURE"), secrets):
            return _answer(start_response, 401, {"error": "bad or missing X-PagerDuty-Signature"})
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _answer(start_response, 400, {"error": "the body is not valid JSON"})
        try:
            outcome = receive(ctx, payload)
        except Exception:  # noqa: BLE001 - not recorded: a 5xx makes PagerDuty deliver it again
            log.exception("could not take a PagerDuty webhook in")
            return _answer(start_response, 503, {"error": "not recorded; try again"})
        log.info("PagerDuty webhook: %s", outcome)
        return _answer(start_response, 200, {"outcome": outcome})

    return app


def receive(ctx: Context, payload: Any) -> str:
    """Act on one verified webhook body; returns what was done (for the log and the answer)."""
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        return "ignored: no event"
    kind = event.get("event_type")
    data: dict[str, Any] = event["data"] if isinstance(event.get("data"), dict) else {}
    key = data.get("incident_key")
    number = pagerduty.key_number(key)
    incident = ctx.store.get(number) if number is not None else None
    if incident is None or key != pagerduty.dedup_key(incident):
        return f"ignored: {kind} for a key that is not one of ours"
    if kind == "incident.acknowledged":
        return _acknowledged(ctx, incident, event.get("agent"))
    if kind == "incident.resolved":
        return _resolved(ctx, incident, event)
    return f"ignored: {kind}"


def _acknowledged(ctx: Context, incident: Incident, agent: Any) -> str:
    if not incident.is_open:
        return f"ignored: {incident.ref} is resolved"
    if incident.acknowledged_at is not None:
        return f"{incident.ref} was already acknowledged"
    by = _who(ctx, agent)
    shown = pagerduty.person(by, where=False)
    now = ctx.now()
    line = f"✅ {incident.ref} acknowledged in PagerDuty by {shown}. Escalation stopped."
    owed = ctx.store.firing_writer(lambda new: [said(new, line, close_pages=True)], now)

    def decide(current: Incident) -> Change | None:
        change = acknowledge(current, by=by, now=now) if current.is_open else None
        return replace(change, text=f"{incident.ref} acknowledged in PagerDuty by {shown}") if change else None

    change, saved = ctx.store.change(incident, decide, now, also=owed)
    if change is None:
        return f"{saved.ref} was already acknowledged"
    ctx.timers.replan(saved.number)
    ctx.timers.wake_deliveries()
    return f"{saved.ref} acknowledged by {by}"


def _who(ctx: Context, agent: Any) -> str:
    """The Slack user behind a PagerDuty user (by email, when the bot may read it), else their name.

    PagerDuty waits 5 seconds for the webhook's answer and disables a subscription whose webhooks
    keep failing, so the look-up (PagerDuty's REST API, then Slack) gets WHO_BUDGET_S: past that
    the ack still counts, shown by the PagerDuty name."""
    agent = agent if isinstance(agent, dict) else {}
    name = str(agent.get("summary") or "someone")
    user_id = agent.get("id")
    client = ctx.pagerduty
    if client is not None and client.reads_users and isinstance(user_id, str) and agent.get("type") == "user_reference":
        found: queue.Queue[str | None] = queue.Queue(maxsize=1)

        def look_up() -> None:
            email = client.user_email(user_id, timeout=WHO_BUDGET_S)
            slack_user = None
            if email:
                try:
                    slack_user = ctx.slack.user_by_email(email)
                except (SlackApiError, OSError) as exc:
                    log.info("no Slack user for PagerDuty user %s (%s); shown by name", user_id, type(exc).__name__)
            found.put(slack_user)

        threading.Thread(target=look_up, name="pagerduty-who", daemon=True).start()
        try:
            slack_user = found.get(timeout=WHO_BUDGET_S)
        except queue.Empty:
            log.warning("PagerDuty user %s not found in Slack within %.1f s; shown by name", user_id, WHO_BUDGET_S)
            slack_user = None
        if slack_user:
            return slack_user
    return pagerduty.outside_person(name)


def _resolved(ctx: Context, incident: Incident, event: dict[str, Any]) -> str:
    if not incident.is_open:
        return f"ignored: {incident.ref} is already resolved"
    if pagerduty.resolved_by_us(ctx.store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY)):
        return f"ignored: {incident.ref} was resolved in PagerDuty by the bot's own resolve"
    agent: dict[str, Any] = event["agent"] if isinstance(event.get("agent"), dict) else {}
    name = escape(str(agent.get("summary") or "someone"))
    text = (
        f"PagerDuty says {incident.ref} is resolved ({name} resolved it there). "
        "If it is over, resolve it here too: the all-clear, the timers and the post-mortem follow from that."
    )
    event_id = str(event.get("id") or "")[:64]
    firing = said(incident, text, blocks.resolved_elsewhere(incident, text), refresh=False)
    firing = replace(firing, key=f"pagerduty:resolved:{event_id}")
    if not ctx.store.record_firing(incident.number, firing, ctx.now()):
        return f"{incident.ref}: this resolve was heard already"
    ctx.timers.wake_deliveries()
    return f"{incident.ref}: PagerDuty's resolve posted, Resolve offered"


def _read_body(environ: dict[str, Any]) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    body: bytes = environ["wsgi.input"].read(min(length, MAX_BODY + 1) if length else MAX_BODY + 1)
    return body if len(body) <= MAX_BODY else None


def _answer(
    start_response: StartResponse, status: int, body: dict[str, Any], extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    reasons |= {413: "Content Too Large", 503: "Service Unavailable"}
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(extra or [])]
    start_response(f"{status} {reasons[status]}", headers)
    return [data]
