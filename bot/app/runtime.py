"""Builds the bot: services from config and settings, the Bolt app, and its listeners.

Start-up never blocks on Slack: building the bot calls no Slack API, so the HTTP port opens
first and answers health probes. `start` then waits for Slack to answer `auth.test` (retrying
with backoff), rebuilds the timers and finishes interrupted set-ups; until it has, the health
endpoint answers 503 with the reason and Slack's requests get a 503 too.

The request path (Bolt, the listeners, the permission gate) is `bot.app.listeners`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App
from slack_bolt.middleware.authorization import SingleTeamAuthorization
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.alerts import intake as alert_incidents
from bot.alerts import refire as alert_refire
from bot.app import observability
from bot.app.listeners import build_bolt_app
from bot.app.settings import Settings, config_secrets
from bot.app.socket_mode import SocketMode
from bot.changes import flow as production
from bot.changes import verify
from bot.context import Context
from bot.core import logs
from bot.core.executors import BoundedExecutor
from bot.delivery.dispatch import Dispatcher, Route
from bot.diagnose import run as diagnose_run
from bot.domain.deliveries import DeliveryKind
from bot.domain.policy import Config
from bot.google.cloud import CloudSources
from bot.incident import followups, publishing
from bot.incident.announcer import Announcer
from bot.oncall.directory import RETRY_S, Directory
from bot.oncall.handoffs import HandoffNotices
from bot.oncall.readiness import DailyCheck
from bot.pagerduty import client as pagerduty_client
from bot.paging import pagerduty as pagerduty_events
from bot.paging.leadership import Leadership
from bot.paging.pager import Pager
from bot.paging.timers import JOBS, Timers
from bot.review import drafts
from bot.slack.gateway import SlackGateway, error_code, make_client, make_request_client
from bot.slack.pacing import Pacer
from bot.statuspage import client as statuspage
from bot.store import Store

log = logging.getLogger(__name__)

WORK_THREADS = 16
# The alert intake's own pool and queue: a flood of alerts never holds up what people started.
ALERT_THREADS = 4
ALERT_QUEUE = 200
# A delivery's sending deadline, in Slack client timeouts: a call starts only with two of them
# left (one to answer, one for a slow post to land), so a send has one timeout to get going.
SEND_DEADLINE_TIMEOUTS = 3
SLACK_RETRY_MAX_S = 30.0
# Slack answers these when the token itself is wrong: retrying will not help, a person must.
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})


def utcnow() -> datetime:
    return datetime.now(UTC)


class IncidentBot:
    """The running bot: store, Slack gateway, executors, Bolt app. One per process."""

    def __init__(
        self,
        settings: Settings,
        config: Config,
        clock: Callable[[], datetime] = utcnow,
        setup_retry_s: float = 60.0,
        slack_retry_s: float = 1.0,
        slack_timeout_s: int | None = None,
        slack_pacing: bool = True,
        alert_queue: int = ALERT_QUEUE,
        lookup_retry_s: float = RETRY_S,
    ) -> None:
        """`slack_pacing=False` lets Slack calls burst past Slack's published limits: only for a
        Slack that allows it (the sandbox with its limits off, for tests that need bursts)."""
        self.settings = settings
        # Before anything can log: every secret this process holds is redacted by value.
        logs.register_secrets(*settings.secrets(), *config_secrets(config))
        self.setup_retry_s = setup_retry_s
        self.slack_retry_s = slack_retry_s
        # Why the bot is not ready yet (the health endpoint's 503), or None once it is.
        self.not_ready: str | None = "starting: waiting for Slack to answer auth.test"
        self._stopping = threading.Event()
        self._starting: threading.Thread | None = None
        self._socket_mode: SocketMode | None = None
        self.config = config
        self.store = Store(settings.db_path)
        timeout_s = settings.slack_timeout_s if slack_timeout_s is None else slack_timeout_s
        # One pacer for every Slack call the process makes: Slack's limits are per app and workspace.
        self.pacer = Pacer() if slack_pacing else Pacer(rates={})
        self.client = make_client(settings.bot_token, settings.slack_api_url, timeout=timeout_s, pacer=self.pacer)
        # views.open before an ack goes through a client that never sleeps on Retry-After.
        self.request_client = make_request_client(settings.bot_token, settings.slack_api_url)
        self.slack = SlackGateway(self.client, self.request_client)
        self.work = ThreadPoolExecutor(max_workers=WORK_THREADS, thread_name_prefix="work")
        self.alert_work = BoundedExecutor(ALERT_THREADS, alert_queue, name="alerts")
        # A set-up is claimed like a delivery: until a sending deadline, extended call by call.
        self.announcer = Announcer(
            config,
            self.store,
            self.slack,
            clock,
            instance=settings.instance,
            setup_deadline=timedelta(seconds=SEND_DEADLINE_TIMEOUTS * timeout_s),
        )
        self.directory = Directory(config, self.slack, self.store, clock, retry_s=lookup_retry_s)
        self.statuspage = statuspage.from_config(config.statuspage)
        self.pagerduty = pagerduty_client.from_config(
            config.pagerduty, os.environ, settings.pagerduty_events_url, settings.pagerduty_api_url
        )
        # The v3 webhook subscription's signing secrets (several, comma-separated, during a rotation).
        self.pagerduty_secrets = pagerduty_client.webhook_secrets(config.pagerduty, os.environ)
        self.pager = Pager(config, self.store, self.slack, self.announcer, self.directory, clock)
        # Every kind's route is registered once the context its senders need exists (below).
        # A delivery is claimed until a deadline no send can outlast (bot/delivery/dispatch.py).
        self.deliveries = Dispatcher(
            self.store,
            self.slack,
            clock,
            routes={},
            instance=settings.instance,
            send_deadline=timedelta(seconds=SEND_DEADLINE_TIMEOUTS * timeout_s),
        )
        self.timers = Timers(config, self.store, self.deliveries, clock)
        self.leadership = Leadership(
            self.store, settings.instance, settings.lease_s, on_gain=self._lead, on_loss=self.timers.stop
        )
        self.timers.lease_current = self.leadership.current
        self.ctx = Context(
            config=config,
            store=self.store,
            slack=self.slack,
            clock=clock,
            work=self.work,
            alert_work=self.alert_work,
            announcer=self.announcer,
            directory=self.directory,
            timers=self.timers,
            statuspage=self.statuspage,
            pagerduty=self.pagerduty,
            instance=settings.instance,
            cloud=CloudSources(
                settings.cloud_run_api_url,
                settings.cloud_logging_api_url,
                monitoring_api_url=settings.cloud_monitoring_api_url,
            ),
        )
        self.deliveries.routes.update(delivery_routes(self.ctx, self.pager))
        # Verify watches are timers kept in the store: placed from it at start-up and every reconcile.
        self.timers.add_planner(lambda: verify.plan_all(self.ctx))
        self.metrics = observability.bot_registry(self.store, clock)
        self.started = threading.Event()
        self.bolt = build_bolt_app(self.ctx, settings, self.client)

    @property
    def ready(self) -> bool:
        return self.not_ready is None

    def start(self) -> None:
        """Wait for Slack, rebuild every timer from the store, finish any set-up a crash interrupted.

        Runs after the HTTP port is open (it may wait for Slack for a long time). Set-up that
        Slack refused (an outage, a channel the bot cannot join) is retried every
        `setup_retry_s` until it is complete. In Socket Mode the bot is ready once connected.
        """
        if not self.wait_for_slack() or self._stopping.is_set():
            return
        # The permission gate answers from caches only: fill them before saying ready. Through
        # the client that does not sleep on Retry-After, so a rate-limited Slack delays nothing;
        # what failed is logged and retried in the background, and counts nobody in meanwhile.
        self.not_ready = "starting: looking up the config's emails and user groups in Slack"
        failed = self.directory.refresh(SlackGateway(self.request_client))
        self.directory.keep_fresh(failed=bool(failed))
        self.not_ready = "starting: rebuilding timers from the store"
        self.work.submit(self.directory.warn_unknown_usergroups)
        # Work another instance makes (a declare's first page) reaches the leader at once.
        threading.Thread(
            target=self.store.listen_for_work, args=(self.timers.on_notice, self._stopping), name="listen", daemon=True
        ).start()
        self.leadership.start()  # on SQLite, or with no leader alive, this instance leads from here
        if self.settings.app_token and not self.connect_socket_mode(self.settings.app_token):
            return
        self.not_ready = None
        self.started.set()
        log.info("ready")

    def _lead(self, fence: int) -> None:
        """This instance has taken the lease: run the timers and the start-up recovery only a leader runs."""
        self.timers.start(fence)
        if self.config.schedules:
            self.timers.start_handoffs(
                HandoffNotices(self.config, self.store, self.slack, self.announcer, self.directory, self.timers.clock)
            )
        if self.config.oncall_checks is not None:
            self.timers.start_oncall_checks(
                DailyCheck(
                    self.config,
                    self.config.oncall_checks,
                    self.store,
                    self.slack,
                    self.announcer,
                    self.directory,
                    self.timers.clock,
                )
            )
        # A rollback or scale under way when the process died: report it, never resend it.
        # A rollback or scale whose executor died: report it (once, whoever notices), never resend
        # it. One still running on a live instance (this lease change notwithstanding) is left be.
        self.work.submit(production.report_lapsed, self.ctx, dead_predecessors=self.store.dialect == "sqlite")
        self.timers.scheduler.add_job(
            self._report_lapsed,
            "interval",
            seconds=production.EXECUTION_LAPSE_S / 2,
            id="executions",
            replace_existing=True,
            max_instances=1,
            executor=JOBS,
        )
        self.finish_setups()
        self.timers.scheduler.add_job(
            self.finish_setups,
            "interval",
            seconds=self.setup_retry_s,
            id="setup-retry",
            replace_existing=True,
            executor=JOBS,
        )
        # A set-up whose holder died or froze is taken over soon after its claim lapses, not at
        # the next minute's round.
        self.timers.scheduler.add_job(
            self._finish_lapsed_setups,
            "interval",
            seconds=max(1.0, self.announcer.setup_deadline.total_seconds() / 3),
            id="setup-lapsed",
            replace_existing=True,
            max_instances=1,
            executor=JOBS,
        )

    def _report_lapsed(self) -> None:
        try:
            production.report_lapsed(self.ctx)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("could not look for changes whose executor died", exc_info=True)

    def start_in_background(self) -> None:
        self._starting = threading.Thread(target=self.start, name="start-up", daemon=True)
        self._starting.start()

    def wait_for_slack(self) -> bool:
        """Call auth.test until Slack answers (True), or until the bot is stopped (False).

        A client of its own without retry handlers: this loop is the retry, and its backoff
        keeps the health endpoint's reason current.
        """
        probe = WebClient(token=self.settings.bot_token, base_url=self.client.base_url, timeout=10, retry_handlers=[])
        return self._retry(
            lambda: _seed_authorization(self.bolt, probe.auth_test()), "Slack has not answered auth.test"
        )

    def connect_socket_mode(self, app_token: str) -> bool:
        # Our client, not Bolt's SocketModeHandler: it keeps acking through Slack's refreshes
        # (bot/app/socket_mode.py says why).
        self._socket_mode = SocketMode(self.bolt, app_token, self.settings.slack_api_url)
        return self._retry(self._socket_mode.connect, "Socket Mode is not connected")

    def _retry(self, attempt: Callable[[], object], what: str) -> bool:
        delay = self.slack_retry_s
        while not self._stopping.is_set():
            try:
                attempt()
                return True
            except SlackApiError as exc:
                code = error_code(exc)
                hint = " (check SLACK_BOT_TOKEN)" if code in TOKEN_ERRORS else ""
                self.not_ready = f"starting: {what} (Slack said {code}{hint})"
            except Exception as exc:  # noqa: BLE001 - down, slow, unreachable: all mean "not yet"
                self.not_ready = f"starting: {what} ({type(exc).__name__})"
            log.warning("%s; retrying in %.1f s", self.not_ready, delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, SLACK_RETRY_MAX_S)
        return False

    def finish_setups(self) -> None:
        for incident in self.store.open_incidents():
            if self.announcer.needs_setup(incident):
                self.work.submit(self._finish_setup, incident.number)
        self.alert_work.submit(alert_incidents.settle_all, self.ctx)

    def _finish_lapsed_setups(self) -> None:
        try:
            now = self.ctx.now()
            for number in self.store.lapsed_setups(now):
                incident = self.store.get(number)
                if incident is None or not self.announcer.needs_setup(incident):
                    self.store.drop_lapsed_setup(number, now)  # done before its holder died
                    continue
                log.warning(
                    "INC-%s: its set-up claim lapsed (its holder died, froze or failed): taking it over", number
                )
                self.work.submit(self._finish_setup, number)
        except Exception:  # noqa: BLE001 - the next round looks again
            log.warning("could not look for set-ups whose holder died", exc_info=True)

    def _finish_setup(self, number: int) -> None:
        try:
            self.announcer.setup(number)
        except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
            log.warning("could not finish setting up INC-%s yet: %s", number, exc)
        finally:
            self.timers.replan(number)
            self.store.retry_unplaced(number, self.ctx.now())
            self.timers.wake_deliveries()

    def health(self) -> dict[str, Any]:
        if self.not_ready is not None:
            return {"status": "starting", "reason": self.not_ready}
        db_ok = self.store.ping()
        leading = self.leadership.leading
        # A standby is healthy without timers: they run on the leader.
        timers_ok = self.timers.running or not leading
        backlog, oldest = self.store.delivery_backlog() if db_ok else (None, None)
        return {
            "status": "ok" if db_ok and timers_ok else "degraded",
            "open_incidents": len(self.store.open_incidents()) if db_ok else None,
            "scheduler_running": self.timers.running,
            "db_ok": db_ok,
            # Deliveries Slack (or the status page) has not accepted yet, and how long the oldest waits.
            "delivery_backlog": backlog,
            "oldest_pending_s": round((self.ctx.now() - oldest).total_seconds(), 1) if oldest else None,
            "store": self.store.dialect,
            **(self.leadership.status() if db_ok else {"leader": leading}),
            # Between a dropped connection and its replacement (retried with backoff): "reconnecting".
            **(
                {"socket_mode": "connected" if self._socket_mode.connected else "reconnecting"}
                if self._socket_mode
                else {}
            ),
        }

    def stop(self) -> None:
        self._stopping.set()
        self.directory.stop()
        if self._starting is not None:
            self._starting.join(timeout=15)  # an auth.test in flight times out after 10 s
        if self._socket_mode is not None:
            self._socket_mode.close()
        # Follow-up work may re-plan timers, and timer jobs use the store: stop in that order.
        self.work.shutdown(wait=True, cancel_futures=False)
        self.alert_work.shutdown(wait=True, cancel_futures=False)
        self.leadership.stop()  # a leader stops its timers and lets its lease go
        self.timers.stop()
        self.store.close()


def delivery_routes(ctx: Context, pager: Pager) -> dict[DeliveryKind, Route]:
    """Every delivery kind with the sender of the feature that owns it: one table, checked whole."""
    routes: dict[DeliveryKind, Route] = {}
    for table in (
        pager.routes(),
        followups.routes(ctx.store, ctx.slack, ctx.announcer, ctx.clock),
        publishing.routes(ctx.store, ctx.statuspage, ctx.clock),
        pagerduty_events.routes(ctx.config, ctx.store, ctx.slack, ctx.pagerduty, ctx.clock),
        drafts.routes(ctx.config, ctx.store, ctx.slack, ctx.announcer, ctx.clock),
        diagnose_run.routes(ctx),
        production.routes(ctx),
        alert_refire.routes(ctx),
    ):
        for kind, route in table.items():
            assert kind not in routes, f"delivery kind {kind} routed twice"
            routes[kind] = route
    missing = set(DeliveryKind) - set(routes)
    if missing:
        raise RuntimeError(f"no sender for delivery kinds {sorted(missing)}: register one with its feature")
    return routes


def _seed_authorization(app: App, auth_test: SlackResponse) -> None:
    """Hand Bolt the auth.test answer start-up already has.

    Otherwise Bolt asks Slack again on the first request, inside the 3 s Slack allows for the
    ack, and a slow or failing answer turns that person's command into an error. Bolt takes the
    answer only in its constructor (which runs before Slack is reachable), hence the attribute.
    """
    for middleware in app._middleware_list:
        if isinstance(middleware, SingleTeamAuthorization) and not middleware.auth_test_result:
            middleware.auth_test_result = auth_test
