"""`incident-bot serve | demo | check-config [path] | check-oncall [--days N] | oncall [--at TIME] | postmortem INC-n | stats [30d]`."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bot import config as config_module
from bot.app.settings import Settings, SettingsError, config_secrets
from bot.core import logs
from bot.domain.policy import Config

log = logging.getLogger("incident_bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-bot", description="Run the incident runbook from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve Slack requests (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)")
    demo = sub.add_parser("demo", help="run a scripted incident against the built-in sandbox and print it")
    demo.add_argument("--db", default=None, help="SQLite file for the demo (default: a temporary one)")
    check = sub.add_parser("check-config", help="print the effective config, or its errors (exit 1)")
    check.add_argument("path", nargs="?", default=None)
    oncall = sub.add_parser("oncall", help="print who is on call per schedule and role (overrides from the store)")
    oncall.add_argument(
        "--at", default=None, help="a time instead of now: 2026-11-30T09:00 (UTC unless it has an offset)"
    )
    readiness = sub.add_parser(
        "check-oncall",
        help="print what would leave a page with nobody to reach (exit 1 if anything); asks Slack with $SLACK_BOT_TOKEN",
    )
    readiness.add_argument(
        "--days", type=int, default=None, help="how far ahead (default: oncall_checks.horizon, else 14)"
    )
    review = sub.add_parser("postmortem", help="print an incident's post-mortem draft (markdown) from $INCIDENT_BOT_DB")
    review.add_argument("incident", help="INC-7, inc-7 or #7")
    stats = sub.add_parser("stats", help="count, MTTA, MTTR and ack SLA breaches by severity, from $INCIDENT_BOT_DB")
    stats.add_argument("window", nargs="?", default="30d", help="7d, 30d, 90d (default 30d)")
    args = parser.parse_args(argv)

    # Each command imports what it needs when it runs (here and in the functions below), so that
    # `check-config`, `oncall` and the review commands start without Bolt, Slack or Google clients.
    if args.command == "postmortem":
        from bot.review.report import print_postmortem

        return print_postmortem(args.incident)
    if args.command == "stats":
        from bot.review.report import print_stats

        return print_stats(args.window)

    if args.command == "check-config":
        return check_config(args.path)
    if args.command == "oncall":
        return print_oncall(args.at)
    if args.command == "check-oncall":
        return check_oncall(args.days)
    if args.command == "serve":
        return serve()
    if args.command == "demo":
        from bot.sandbox.demo import run_demo

        return run_demo(db_path=args.db)
    return 2


def check_config(path: str | None) -> int:
    try:
        config = config_module.load(path)
    except config_module.ConfigError as exc:
        print(f"{exc.source}: {len(exc.errors)} error(s)", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(config_module.describe(config), end="")
    return 0


def print_oncall(at_text: str | None) -> int:
    """What `/incident oncall` shows, from the config and the store's overrides, at now or `--at`."""
    from bot.domain import schedules
    from bot.oncall.roster import roster_text
    from bot.store import Store
    from bot.store.postgres import is_postgres_url

    try:
        at = datetime.fromisoformat(at_text.strip()) if at_text else datetime.now(UTC)
    except ValueError:
        print(
            f"incident-bot: --at {at_text!r} is not a time (use e.g. 2026-11-30T09:00 or 2026-11-30T09:00+01:00)",
            file=sys.stderr,
        )
        return 2
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    try:
        config = config_module.load(None)
    except config_module.ConfigError as exc:
        print(f"incident-bot: invalid config {exc.source}:", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    db_path = os.environ.get("INCIDENT_BOT_DB", "incident-bot.db")
    # Reading must not leave a new empty database behind where none was.
    store = Store(db_path if is_postgres_url(db_path) or Path(db_path).exists() else ":memory:")
    try:

        def holders(role: str) -> str:
            shown = []
            for ref in config.people[role]:
                name = ref.removeprefix("schedule:")
                if ref.startswith("schedule:") and name in config.schedules:
                    now = schedules.on_call(config.schedules[name], store.overrides(name, ending_after=at), at)
                    shown.append(f"{now.user if now else 'nobody yet'} ({ref})")
                else:
                    shown.append(ref)
            return ", ".join(shown) or "nobody"

        text = roster_text(config, store, at, lambda ref: ref, holders)
    finally:
        store.close()
    print(f"# on call at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({config.source})")
    print(re.sub(r"\*([^*\n]+)\*", r"\1", text))  # mrkdwn bold means nothing on a terminal
    return 0


def check_oncall(days: int | None) -> int:
    """The readiness check, printed: 0 when every page over the horizon reaches someone, 1 when
    something would not, 2 on a bad argument or config. Run it in CI after editing the config."""
    from datetime import timedelta

    from bot.core.durations import humanize
    from bot.oncall.directory import Directory
    from bot.oncall.readiness import Reach, find_problems, overrides_by_schedule, report
    from bot.slack.gateway import SlackGateway, make_client
    from bot.store import Store
    from bot.store.postgres import is_postgres_url

    if days is not None and not 1 <= days <= 90:
        print("incident-bot: --days must be between 1 and 90", file=sys.stderr)
        return 2
    try:
        config = config_module.load(None)
    except config_module.ConfigError as exc:
        print(f"incident-bot: invalid config {exc.source}:", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 2
    checks = config.oncall_checks
    horizon = timedelta(days=days) if days is not None else (checks.horizon if checks else timedelta(days=14))
    token = os.environ.get("SLACK_BOT_TOKEN")
    slack = SlackGateway(make_client(token, os.environ.get("SLACK_API_URL") or None)) if token else None
    db_path = os.environ.get("INCIDENT_BOT_DB", "incident-bot.db")
    store = Store(db_path if is_postgres_url(db_path) or Path(db_path).exists() else ":memory:")
    now = datetime.now(UTC)
    try:
        directory = Directory(config, slack, store) if slack is not None else None
        problems = find_problems(
            config, overrides_by_schedule(config, store, now), directory, Reach(slack), now, horizon
        )
    except Exception as exc:  # noqa: BLE001 - a CI job needs a line, not a traceback
        print(f"incident-bot: the check could not finish ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"# on-call readiness from {now:%Y-%m-%d %H:%M} UTC over the next {humanize(horizon)} ({config.source})")
    if slack is None:
        print("# SLACK_BOT_TOKEN is not set: people and user groups were not checked in Slack")
    print(re.sub(r"\*([^*\n]+)\*", r"\1", report(problems)))
    return 1 if problems else 0


def example_people(config: Config) -> list[str]:
    """The people in `config` that are the built-in config's placeholders, not a team's."""
    placeholders = {h for holders in config_module.load(None).people.values() for h in holders}
    found = [
        holder
        for holders in config.people.values()
        for holder in holders
        if holder in placeholders or holder.lower().endswith("@example.com")
    ]
    return list(dict.fromkeys(found))


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Cloud Run sends SIGTERM before stopping an instance; leave through the normal shutdown path.
    raise KeyboardInterrupt


def serve() -> int:
    logs.configure(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        settings = Settings.from_env()
        config = config_module.load(settings.config_path)
    except SettingsError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 2
    except config_module.ConfigError as exc:
        print(f"incident-bot: invalid config {exc.source}:", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1

    placeholders = example_people(config)
    if placeholders and not settings.allow_example_people:
        print(
            f"incident-bot: the config names the built-in example people ({', '.join(placeholders)}), "
            "so every page would fail. Put your team's Slack user IDs or emails under `people` "
            "(INCIDENT_BOT_CONFIG points at your config; `incident-bot check-config` shows it), or set "
            "INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE=1 to run against a sandbox.",
            file=sys.stderr,
        )
        return 2

    # Every secret given, the config's `*_env` ones included (IncidentBot registers them again).
    logs.register_secrets(*settings.secrets(), *config_secrets(config))

    from bot.app.runtime import IncidentBot
    from bot.app.server import make_server

    # The port opens before anything calls Slack: a slow or down Slack makes the health
    # endpoint say why (503) instead of failing the platform's start-up probe.
    bot = IncidentBot(settings, config)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    socket_mode = settings.app_token is not None
    server = make_server(bot, port=settings.port, threads=settings.http_threads, slack_events=not socket_mode)
    routes = "Socket Mode; GET /health" if socket_mode else "POST /slack/events, GET /health"
    log.info("serving on port %s (%s)", server.effective_port, routes)
    bot.start_in_background()
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
