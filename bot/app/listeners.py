"""The Bolt app and its listeners: the request path from a verified Slack request to a reply.

Bolt verifies the signature (and the replay guard refuses a request seen before); our listener
parses `/incident <verb> [INC-n] args`, finds the incident, passes the permission gate, calls
the command module, and acks with its reply. Slow work the command asks for (Slack set-up calls,
Google calls) runs after the ack on the work executor, so a slow Slack API never holds up
another user's ack. Before the ack people are looked up from the directory's caches only
(`Directory.cached_only`), and the one Slack call made, views.open, uses a client that does not
sleep through a 429's Retry-After (`SlackGateway.open_view`).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk.errors import SlackApiError

import commands
from bot import permissions
from bot.app import replay
from bot.app.settings import Settings
from bot.context import ButtonClick, CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core import counters as metrics
from bot.core import logs
from bot.core.errors import UsageError
from bot.core.text import decode_slash, from_form, length
from bot.domain.access import Forbidden
from bot.domain.incidents import Incident, clean_inline
from bot.incident import catchup
from bot.oncall import home
from bot.review import pins
from bot.slack import payloads
from bot.slack.gateway import error_code
from bot.slack.grammar import MAX_COMMAND_TEXT, parse

log = logging.getLogger(__name__)


def _reference() -> str:
    return uuid.uuid4().hex[:8]


def _apology(ref: str) -> str:
    return f"Sorry, something went wrong on my side (ref `{ref}`). The bot's log has the details."


def build_bolt_app(ctx: Context, settings: Settings, client: Any) -> App:
    app = App(
        client=client,
        signing_secret=settings.signing_secret or "socket-mode-has-no-signing-secret",
        # Our listeners ack in microseconds and hand slow work to ctx.work; running them before
        # the response avoids Bolt's 10 ms ack-polling loop and a second thread hop.
        process_before_response=True,
        request_verification_enabled=settings.signing_secret is not None,
        # Bolt would call auth.test here, before the port opens; IncidentBot.start does it after.
        token_verification_enabled=False,
        logger=logging.getLogger("slack_bolt"),
        # Without a name Bolt walks inspect.stack(), which resolves the path of every loaded
        # module: ~0.1 s of a cold start spent on a label.
        name="incident-bot",
    )
    owners = commands.owners()
    permissions.check_registry(owners)  # a verb or button with no permission rule must not run open
    app.error(_refuse_malformed)
    # Over HTTP: replays refused, events seen before answered 200. In Socket Mode requests carry
    # no signature to replay, but Slack still retries events, so copies are recognised there too.
    # On PostgreSQL the memory is shared by the instances: a replay sent to another is refused too.
    shared = ctx.store.remember_request if ctx.store.dialect == "postgresql" else None
    app.use(replay.middleware(replay.ReplayGuard(remember=shared)))
    app.command("/incident")(_command_listener(ctx, owners))
    for action_id, handler in commands.actions().items():
        app.action(action_id)(_action_listener(ctx, handler, owners))
    for callback_id, handler in commands.views().items():
        app.view(callback_id)(_view_listener(ctx, handler, owners))
    app.event("reaction_added")(_event_listener(ctx, pins.on_reaction_added))
    app.event("member_joined_channel")(_event_listener(ctx, catchup.on_member_joined))
    app.event("app_home_opened")(_event_listener(ctx, home.on_app_home_opened))
    return app


def _event_listener(ctx: Context, handler: Callable[[Context, dict[str, Any]], None]) -> Callable[..., None]:
    """An Events API event: acked at once (Slack retries anything slower), handled after."""

    def run(event: dict[str, Any]) -> None:
        try:
            handler(ctx, event)
        except Exception:  # noqa: BLE001 - nobody waits on an event; the log is where it shows
            log.exception("handling a %s event failed", event.get("type"))

    def on_event(ack: Any, event: dict[str, Any]) -> None:
        ack()
        ctx.work.submit(run, event)

    return on_event


def _refuse_malformed(error: Exception, body: dict[str, Any]) -> BoltResponse:
    """Bolt's own parsing failed on a signed but malformed payload: a 400, never a 500.

    Our listeners catch everything they raise, so only Bolt's middleware gets here.
    """
    log.warning("refused a malformed request (%s: %s)", type(error).__name__, error)
    return BoltResponse(status=400, body={"error": "malformed request"})


def resolve_incident(ctx: Context, ref: int | None, channel: str) -> tuple[Incident | None, str | None]:
    """The incident named, else the one whose war room this is, else the only open one."""
    if ref is not None:
        incident = ctx.store.get(ref)
        if incident is None:
            return None, f"INC-{ref} does not exist. {_open_list(ctx)}"
        return incident, None
    incident = ctx.store.by_war_room(channel)
    if incident is not None:
        return incident, None
    open_incidents = ctx.store.open_incidents()
    if len(open_incidents) == 1:
        return open_incidents[0], None
    if not open_incidents:
        return None, "There is no open incident. `/incident declare p1 <title>` opens one."
    return None, f"Which incident? {_open_list(ctx, open_incidents)}"


def _open_list(ctx: Context, incidents: list[Incident] | None = None) -> str:
    incidents = ctx.store.open_incidents() if incidents is None else incidents
    if not incidents:
        return "There are no open incidents."
    names = ", ".join(f"`{i.ref}`" for i in incidents[:20])
    more = f" and {len(incidents) - 20} more" if len(incidents) > 20 else ""
    return f"Open: {names}{more}. Name one, e.g. `/incident ack {incidents[0].ref}`."


def _outcome(exc: UsageError) -> str:
    return "forbidden" if isinstance(exc, Forbidden) else "usage_error"


def _observe(handle: Callable[[str], str]) -> None:
    """Run a request's handling inside its log context (every line it and its after-ack work
    write carries the request id, verb and incident), then count it by verb and outcome."""
    ref = _reference()
    with logs.log_context(request_id=ref):
        outcome = handle(ref)
        metrics.COMMANDS.labels(str(logs.current().get("verb", "unknown")), outcome).inc()


def _command_listener(ctx: Context, owners: permissions.Owners) -> Callable[..., None]:
    # Bolt passes arguments by name, so each listener keeps its exact signature.
    def on_incident(ack: Any, body: dict[str, Any], respond: Any) -> None:
        _observe(lambda ref: _handle_command(ctx, owners, ack, body, respond, ref))

    return on_incident


def _handle_command(
    ctx: Context, owners: permissions.Owners, ack: Any, body: dict[str, Any], respond: Any, ref: str
) -> str:
    try:
        # Before the ack: nothing here may wait on Slack but views.open (bot/slack/forms.py).
        with ctx.store.urgent(), ctx.directory.cached_only():
            reply = _dispatch_command(ctx, owners, body, ref)
    except UsageError as exc:
        ack(text=exc.reply_text(), response_type="ephemeral")
        return _outcome(exc)
    except Exception:  # noqa: BLE001 - the user gets a reference, the log gets the trace
        log.exception("command failed (ref %s): %r", ref, payloads.text_at(body, "text")[:200])
        ack(text=_apology(ref), response_type="ephemeral")
        return "error"
    if reply.text or reply.blocks:
        ack(text=reply.text, blocks=reply.blocks, response_type="in_channel" if reply.in_channel else "ephemeral")
    else:
        ack()
    if reply.after is not None:
        ctx.work.submit(logs.carry(_run_after), reply.after, _responder(respond), ref)
    return "ok"


def _dispatch_command(ctx: Context, owners: permissions.Owners, body: dict[str, Any], ref: str) -> Reply:
    # Decoded here, once, for every subcommand: `req.args` is the canonical form (bot/text.py).
    text = decode_slash(payloads.text_at(body, "text"))
    typed = length(text)
    if typed > MAX_COMMAND_TEXT:
        raise UsageError(
            f"That is {typed:,} characters; commands are limited to {MAX_COMMAND_TEXT:,}. "
            "Titles are limited to 150, updates to 2,900.",
            "/incident help",
        )
    parsed = parse(text)
    sub = commands.REGISTRY.get(parsed.verb)
    logs.bind(verb=parsed.verb if sub is not None else "unknown", incident=parsed.ref)
    if sub is None:
        known = ", ".join(commands.REGISTRY)
        shown = clean_inline(parsed.verb[:30])
        raise UsageError(f"There is no `{shown}` subcommand. Try one of: {known}.", "/incident help")
    channel = payloads.text_at(body, "channel_id")
    incident = error = None
    if sub.needs_incident:
        incident, error = resolve_incident(ctx, parsed.ref, channel)
    req = CommandRequest(
        verb=parsed.verb,
        args=parsed.args,
        user=payloads.text_at(body, "user_id"),
        channel=channel,
        usage=sub.usage,
        incident=incident,
        incident_error=error,
        trigger_id=payloads.text_at(body, "trigger_id") or None,
        request_id=ref,
    )
    permissions.gate(ctx, req, owners)
    return sub.handle(ctx, req)


def _action_listener(
    ctx: Context, handler: Callable[[Context, ButtonClick], Reply], owners: permissions.Owners
) -> Callable[..., None]:
    def on_action(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()  # a button's ack carries nothing; feedback goes through its response_url
        # A button on the Home tab has no response_url: the answer is the tab, published again.
        on_home = payloads.text_at(body, "view", "type") == "home"
        deliver = _home_deliverer(ctx, payloads.text_at(body, "user", "id")) if on_home else _responder(respond)
        _observe(lambda ref: _handle_click(ctx, handler, owners, body, deliver, ref))

    return on_action


def _handle_click(
    ctx: Context,
    handler: Callable[[Context, ButtonClick], Reply],
    owners: permissions.Owners,
    body: dict[str, Any],
    deliver: Callable[[Reply], None],
    ref: str,
) -> str:
    try:
        action = payloads.object_at(body, "actions", 0)
        value = payloads.text_at(action, "value")
        head = value.split(":", 1)[0]
        # isdecimal, not isdigit: "²" is a digit that int() refuses.
        number = int(head) if head.isdecimal() and len(head) <= 12 else None
        action_id = payloads.text_at(action, "action_id")
        logs.bind(verb=action_id, incident=number)  # Bolt routed it here by this registered id
        click = ButtonClick(
            action_id=action_id,
            value=value,
            user=payloads.text_at(body, "user", "id"),
            channel=payloads.text_at(body, "channel", "id") or None,
            trigger_id=payloads.text_at(body, "trigger_id") or None,
            incident=ctx.store.get(number) if number is not None else None,
            request_id=ref,
        )
        with ctx.store.urgent(), ctx.directory.cached_only():
            permissions.gate(ctx, click, owners)
            reply = handler(ctx, click)
    except UsageError as exc:
        ctx.work.submit(logs.carry(deliver), Reply(exc.reply_text()))
        return _outcome(exc)
    except Exception:  # noqa: BLE001
        log.exception("button failed (ref %s)", ref)
        ctx.work.submit(logs.carry(deliver), Reply(_apology(ref)))
        return "error"
    if reply.text:
        ctx.work.submit(logs.carry(deliver), reply)
    if reply.after is not None:
        ctx.work.submit(logs.carry(_run_after), reply.after, deliver, ref)
    return "ok"


def _view_listener(
    ctx: Context, handler: Callable[[Context, ViewSubmission], Reply], owners: permissions.Owners
) -> Callable[..., None]:
    def on_view(ack: Any, body: dict[str, Any]) -> None:
        _observe(lambda ref: _handle_submission(ctx, handler, owners, ack, body, ref))

    return on_view


def _handle_submission(
    ctx: Context,
    handler: Callable[[Context, ViewSubmission], Reply],
    owners: permissions.Owners,
    ack: Any,
    body: dict[str, Any],
    ref: str,
) -> str:
    view = payloads.object_at(body, "view")
    user = payloads.text_at(body, "user", "id")
    try:
        metadata = json.loads(payloads.text_at(view, "private_metadata") or "{}")
    except ValueError:
        metadata = {}
    submission = ViewSubmission(
        callback_id=payloads.text_at(view, "callback_id"),
        user=user,
        values=_view_values(view),
        metadata=metadata if isinstance(metadata, dict) else {},
    )
    logs.bind(verb=submission.callback_id)  # Bolt routed it here by this registered id
    try:
        with ctx.store.urgent(), ctx.directory.cached_only():
            permissions.gate(ctx, submission, owners)
            reply = handler(ctx, submission)
    except ViewErrors as exc:
        ack(response_action="errors", errors=exc.errors)
        return "usage_error"
    except UsageError as exc:
        first_block = next(iter(submission.values), "")
        ack(response_action="errors", errors={first_block: exc.message[:150]})
        return _outcome(exc)
    except Exception:  # noqa: BLE001
        log.exception("modal failed (ref %s)", ref)
        ack(response_action="errors", errors={next(iter(submission.values), ""): _apology(ref)[:150]})
        return "error"
    ack()
    deliver = _ephemeral_deliverer(ctx, metadata.get("channel"), user)
    if reply.text:
        ctx.work.submit(logs.carry(deliver), reply)
    if reply.after is not None:
        ctx.work.submit(logs.carry(_run_after), reply.after, deliver, ref)
    return "ok"


def _view_values(view: dict[str, Any]) -> dict[str, str | None]:
    """block_id -> the value typed or chosen in that input."""
    values: dict[str, str | None] = {}
    for block_id, actions in payloads.object_at(view, "state", "values").items():
        for state in actions.values() if isinstance(actions, dict) else ():
            if payloads.object_at(state, "selected_option"):
                values[block_id] = payloads.text_at(state, "selected_option", "value") or None
            elif isinstance(payloads.at(state, "selected_options"), list):  # checkboxes: the chosen values
                chosen = (payloads.text_at(o, "value") for o in state["selected_options"])
                values[block_id] = ",".join(v for v in chosen if v) or None
            else:
                # Typed text arrives raw; from_form makes it canonical like decoded slash text.
                value = payloads.text_at(state, "value")
                values[block_id] = from_form(value) if value else None
    return values


def _responder(respond: Any) -> Callable[[Reply], None]:
    def deliver(reply: Reply) -> None:
        try:
            respond(
                text=reply.text,
                blocks=reply.blocks,
                response_type="in_channel" if reply.in_channel else "ephemeral",
                replace_original=False,
            )
        except Exception as exc:  # noqa: BLE001 - an expired response_url must not hide the work's outcome
            log.warning("could not deliver a reply through response_url (%s: %.200s)", type(exc).__name__, exc)

    return deliver


def _home_deliverer(ctx: Context, user: str) -> Callable[[Reply], None]:
    def deliver(reply: Reply) -> None:
        try:
            home.publish(ctx, user, note=reply.text)
        except Exception:  # noqa: BLE001 - the click itself was handled; only its echo is lost
            log.warning("could not refresh the Home tab of %s after a click", user, exc_info=True)

    return deliver


def _ephemeral_deliverer(ctx: Context, channel: str | None, user: str) -> Callable[[Reply], None]:
    def deliver(reply: Reply) -> None:
        try:
            if channel:
                ctx.slack.post_ephemeral(channel, user, reply.text)
            else:
                ctx.slack.post(ctx.slack.open_dm(user), reply.text, reply.blocks)
        except SlackApiError:
            # Not a member of that channel: a DM always reaches the person.
            try:
                ctx.slack.post(ctx.slack.open_dm(user), reply.text, reply.blocks)
            except Exception:  # noqa: BLE001
                log.warning("could not tell %s: %s", user, reply.text[:200], exc_info=True)

    return deliver


def _run_after(after: Callable[[], Reply | None], deliver: Callable[[Reply], None], ref: str) -> None:
    try:
        reply = after()
    except UsageError as exc:
        deliver(Reply(exc.reply_text()))
    except SlackApiError as exc:
        log.warning("Slack refused follow-up work (ref %s): %s", ref, error_code(exc))
        deliver(Reply(f"Slack refused part of that (`{error_code(exc)}`, ref `{ref}`)."))
    except Exception:  # noqa: BLE001
        log.exception("follow-up work failed (ref %s)", ref)
        deliver(Reply(_apology(ref)))
    else:
        if reply is not None and (reply.text or reply.blocks):
            deliver(reply)
