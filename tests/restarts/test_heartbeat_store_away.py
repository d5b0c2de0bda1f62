"""The dead man's switch while the store goes away: a `serve` process on PostgreSQL, reached
through a TCP proxy the test cuts, pings every second while the store answers, stops while it is
unreachable (the server gone, or the network silent), and pings again once it is back."""

from __future__ import annotations

import time
from pathlib import Path

from bot.sandbox.heartbeat import HeartbeatServer
from bot.sandbox.slack import SlackSandbox
from tests.pg import PostgresServer
from tests.restarts.test_two_instances import CONFIG, Instance
from tests.tcp_proxy import Mode, TcpProxy

HEARTBEAT = 'heartbeat: {{url: "{url}", every: 1s, max_backlog: 30s}}\n'
AWAY_S = 3.0  # how long the store stays unreachable: three rounds of the heartbeat


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_the_heartbeat_stops_while_the_store_is_away_and_resumes_when_it_is_back(
    tmp_path: Path, pg_url: str, postgres_server: PostgresServer
) -> None:
    with SlackSandbox() as slack, HeartbeatServer() as monitor, TcpProxy(postgres_server.port) as proxy:
        assert isinstance(monitor, HeartbeatServer)
        proxied = pg_url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        assert proxied != pg_url
        bot = Instance(tmp_path, slack, "instance-a", proxied)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(CONFIG + HEARTBEAT.format(url=monitor.ping_url()), "utf-8")
        try:
            bot.start()
            assert bot.health()["leader"] is True
            started = time.time()
            assert wait_for(lambda: len(monitor.pings_since(started)) >= 2, timeout=10), monitor.pings
            modes: tuple[Mode, ...] = ("refuse", "blackhole")  # the server gone, then the network silent
            for mode in modes:
                proxy.cut(mode)
                cut = time.time()
                time.sleep(AWAY_S)  # observing an absence: three rounds with the store unreachable
                # A round that read the store just before the cut may still land its ping; none after.
                during = [round(t - cut, 2) for t in monitor.pings_since(cut)]
                assert all(t < 1.0 for t in during), (mode, during)

                proxy.heal()
                healed = time.time()
                assert wait_for(lambda healed=healed: len(monitor.pings_since(healed)) >= 2, timeout=30), (
                    mode,
                    [round(t - healed, 2) for t in monitor.pings_since(cut)],
                    bot.log.read_text()[-3000:],
                )
                first = monitor.pings_since(healed)[0] - healed
                print(f"{mode}: pings during the cut at {during}; first ping {first:.1f}s after the store came back")
                assert bot.health()["leader"] is True
        finally:
            bot.stop()
