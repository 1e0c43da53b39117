"""The long-window tests pick a window with room left instead of sleeping until
the next one begins, which near a 6 h boundary took longer than a test may run."""

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.alerts.windows import window_for
from lyssna.common.durations import parse_duration
from tests.helpers.alerts_harness import window_with_room

NEED = timedelta(minutes=25)


def test_early_in_a_6h_window_it_is_6h():
    assert window_with_room(NEED, now=datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)) == "360m"


@pytest.mark.parametrize("now", [datetime(2026, 12, 2, 5, 51, tzinfo=timezone.utc),
                                 datetime(2026, 12, 2, 11, 59, 59, tzinfo=timezone.utc),
                                 datetime(2026, 12, 1, 23, 40, tzinfo=timezone.utc)])
def test_near_the_end_of_a_6h_window_a_slightly_longer_one_has_room(now):
    chosen = parse_duration(window_with_room(NEED, now=now))
    assert timedelta(hours=6) < chosen < timedelta(hours=10)
    assert window_for(now, chosen).end - now >= NEED
