"""The pacer's order and reserve, on an injected clock: no Slack, no threads racing the clock."""

from __future__ import annotations

import threading

import pytest

from bot.slack.pacing import Lane, Origin, Pacer, Rate, Saturated, pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(pacer: Pacer, origin: Origin, channel: str = "D0PRIMARY") -> int:
    """How many posts to `channel` go at once (without waiting) for calls of `origin`."""
    taken = 0
    with pace(Lane.PEOPLE, origin, max_wait_s=0.0):
        while True:
            try:
                pacer.acquire("chat.postMessage", channel)
            except Saturated:
                return taken
            taken += 1


def test_an_alert_never_takes_the_last_token_a_person_then_goes_at_once():
    clock = Clock()
    pacer = Pacer(rates={"chat.postMessage": Rate(600, 20)}, clock=clock)

    # The DM's burst (the pacer's 5 per channel) spent by alert pages, all but one token.
    assert drain(pacer, Origin.ALERT) == 4
    # A person's page meanwhile finds the token the alerts left.
    assert drain(pacer, Origin.PERSON) == 1
    # Refill: an alert waits until two tokens are there, so one is left for a person again.
    clock.now += 1.2 + 1e-6  # one token a 1.2 s (50 a minute per channel)
    assert drain(pacer, Origin.ALERT) == 0
    clock.now += 1.2 + 1e-6
    assert drain(pacer, Origin.ALERT) == 1
    assert drain(pacer, Origin.PERSON) == 1


def test_a_person_goes_ahead_of_alerts_already_waiting_without_waiting_itself():
    clock = Clock()
    pacer = Pacer(rates={"chat.postMessage": Rate(600, 20)}, clock=clock)
    assert drain(pacer, Origin.ALERT) == 4
    waiting = threading.Event()
    alert_done = threading.Event()

    def alert_page() -> None:
        with pace(Lane.PEOPLE, Origin.ALERT):
            waiting.set()
            pacer.acquire("chat.postMessage", "D0PRIMARY")
        alert_done.set()

    thread = threading.Thread(target=alert_page, daemon=True)
    thread.start()
    waiting.wait(5)
    # The alert page waits for a second token; the person's takes the one there, without waiting.
    with pace(Lane.PEOPLE, Origin.PERSON, max_wait_s=0.0):
        pacer.acquire("chat.postMessage", "D0PRIMARY")
    assert not alert_done.is_set()
    clock.now += 2.4
    with pacer._cond:  # noqa: SLF001 - wake the waiter after moving the clock
        pacer._cond.notify_all()  # noqa: SLF001
    thread.join(5)
    assert alert_done.is_set()


@pytest.mark.parametrize("origin", [Origin.PERSON, Origin.ALERT])
def test_the_channel_rate_is_the_same_for_alerts_and_people(origin: Origin):
    """The reserve delays alerts' first burst by one token; their rate over time is unchanged."""
    clock = Clock()
    pacer = Pacer(rates={"chat.postMessage": Rate(600, 20)}, clock=clock)
    sent = drain(pacer, origin)
    for _ in range(50):
        clock.now += 1.2 + 1e-6  # a token each (a hair over: floating point)
        sent += drain(pacer, origin)
    assert sent == (5 if origin == Origin.PERSON else 4) + 50
