"""`incident-bot serve | demo | check-config [path]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from bot import config as config_module
from bot import logs
from bot.settings import Settings, SettingsError

log = logging.getLogger("incident_bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="incident-bot", description="Run the incident runbook from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve Slack requests (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)")
    demo = sub.add_parser("demo", help="run a scripted incident against the built-in sandbox and print it")
    demo.add_argument("--db", default=None, help="SQLite file for the demo (default: a temporary one)")
    check = sub.add_parser("check-config", help="print the effective config, or its errors (exit 1)")
    check.add_argument("path", nargs="?", default=None)
    args = parser.parse_args(argv)

    if args.command == "check-config":
        return check_config(args.path)
    if args.command == "serve":
        return serve()
    if args.command == "demo":
        from bot.demo import run_demo

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


def _statuspage_key(config: config_module.Config) -> tuple[str, ...]:
    if config.statuspage is None or not config.statuspage.api_key_env:
        return ()
    return (os.environ.get(config.statuspage.api_key_env, ""),)


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

    logs.register_secrets(settings.bot_token, settings.signing_secret, settings.app_token, *_statuspage_key(config))

    from bot.app import IncidentBot

    bot = IncidentBot(settings, config)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    bot.start()
    try:
        if settings.app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            log.info("serving in Socket Mode")
            SocketModeHandler(bot.bolt, settings.app_token).start()
        else:
            from bot.server import make_server

            server = make_server(bot, port=settings.port, threads=settings.http_threads)
            log.info("serving on port %s (POST /slack/events, GET /healthz)", server.effective_port)
            server.run()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
