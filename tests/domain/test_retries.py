"""bot/domain/deliveries.retry_delay: how long a failed delivery waits before its next try."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.deliveries import URGENT_RETRY_MAX, DeliveryKind, retry_delay

BASE = timedelta(seconds=5)
CEILING = timedelta(minutes=5)


def test_a_post_backs_off_doubling_up_to_the_ceiling():
    delays = [retry_delay(DeliveryKind.POST, n, BASE, CEILING).total_seconds() for n in range(8)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize("kind", [DeliveryKind.PAGE, DeliveryKind.SLA_BREACH])
def test_a_page_is_tried_again_at_least_every_half_minute_however_often_it_failed(kind):
    delays = [retry_delay(kind, n, BASE, CEILING) for n in range(12)]
    assert delays[:3] == [BASE, 2 * BASE, 4 * BASE]
    assert max(delays) == URGENT_RETRY_MAX == timedelta(seconds=30)


def test_a_lower_ceiling_holds_for_pages_too():
    assert retry_delay(DeliveryKind.PAGE, 9, BASE, timedelta(seconds=12)) == timedelta(seconds=12)


def test_a_huge_count_of_attempts_does_not_overflow():
    assert retry_delay(DeliveryKind.POST, 10_000, BASE, CEILING) == CEILING
