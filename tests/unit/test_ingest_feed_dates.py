"""Feed dates read strictly: a real instant or nothing, never a guess that puts a
post into the wrong alert window."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lyssna.ingest.connectors.feed_dates import parse_feed_date, to_utc
from lyssna.ingest.connectors.rss import parse_feed

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
UTC = timezone.utc


def utc(value: str) -> datetime | None:
    return to_utc(parse_feed_date(value))


@pytest.mark.parametrize("value, expected", [
    ("2026-05-04T10:14:55Z", datetime(2026, 5, 4, 10, 14, 55, tzinfo=UTC)),
    ("2026-05-04T10:14:55.123+02:00", datetime(2026, 5, 4, 8, 14, 55, tzinfo=UTC)),
    ("2026-05-04 10:14:55 -00:30", datetime(2026, 5, 4, 10, 44, 55, tzinfo=UTC)),
    ("2026-05", datetime(2026, 5, 1, tzinfo=UTC)),
    ("2026", datetime(2026, 1, 1, tzinfo=UTC)),
    ("Mon, 04 May 2026 10:14:55 GMT", datetime(2026, 5, 4, 10, 14, 55, tzinfo=UTC)),
    ("Mon,4 May 2026 10:14 CEST", datetime(2026, 5, 4, 8, 14, tzinfo=UTC)),
    ("Mon, 04 May, 26 10:14:55 EDT", datetime(2026, 5, 4, 14, 14, 55, tzinfo=UTC)),
    ("Mon, 04 May 2026", datetime(2026, 5, 4, tzinfo=UTC)),
    ("Mon, 04 May 2026 10:14:55 GMT+01:30", datetime(2026, 5, 4, 8, 44, 55, tzinfo=UTC)),
    ("Mon May 4 2026 10:14:55 +0200", datetime(2026, 5, 4, 8, 14, 55, tzinfo=UTC)),
    ("Mon May  4 10:14:55 2026", datetime(2026, 5, 4, 10, 14, 55, tzinfo=UTC)),
    ("Mon, 2026/05/04 10:14:55 PDT", datetime(2026, 5, 4, 17, 14, 55, tzinfo=UTC)),
    ("Δευ, 04 Μάι 2026 10:00:00 GMT", datetime(2026, 5, 4, 10, tzinfo=UTC)),
    ("2026-május-4T9:15+02:00", datetime(2026, 5, 4, 7, 15, tzinfo=UTC)),
])
def test_readable_dates(value, expected):
    assert utc(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Mon, May 04 2026 02:15:00 PM", datetime(2026, 5, 4, 14, 15)),
    ("Mon, May 04 2026 12:15:00 AM", datetime(2026, 5, 4, 0, 15)),
    ("Mon, May 04 2026 12:15:00 PM", datetime(2026, 5, 4, 12, 15)),
    ("2026-05-04 오후 2:15:00", datetime(2026, 5, 4, 5, 15)),   # Korean "PM", KST
])
def test_twelve_hour_clock_keeps_pm(value, expected):
    dt = to_utc(parse_feed_date(value))
    assert dt == expected.replace(tzinfo=UTC)


@pytest.mark.parametrize("value", [
    "2026-05-04T25:14:55Z",         # 25 o'clock: not the next day
    "2026-05-04T10:61:55Z",
    "2026-05-04T10:14:61Z",
    "2026-02-30",
    "2026-xx-04",                   # not "this month"
    "2026-05-04T09:xx:00Z",         # not midnight
    "2026-05-04T09:00:00+00:xx",
    "2026-05-04T09:00:00+24:00",
    "2026-05-04-01",
    "2026-05-04T09:00:00Zextra",
    "22026",                        # a five-digit year, not 2022 day 26
    "026",
    "Mon, 32 May 2026 10:00:00 GMT",
    "Mon, 04 Mai 2026 10:00:00 GMT",
    "Mon, 04 May 2026 10:00:00 XYZ",  # an unknown zone is not guessed as UTC
    "Mon, 04 May 2026 13:00:00 PM",
    "Mon, 04 May 2026 1:2:3:4 GMT",
    "Fri, 31 Dec 9999 23:59:59 -1200",  # past year 9999 in UTC
    "",
    "   ",
    "x" * 200,
    None,
    1746353695,
])
def test_unreadable_dates_are_refused(value):
    assert parse_feed_date(value) is None or to_utc(parse_feed_date(value)) is None


def test_a_zoneless_date_is_read_in_the_zone_of_the_feed():
    naive = parse_feed_date("Mon, May 04 2026 02:15:00 PM")
    assert naive.tzinfo is None
    assert to_utc(naive, timezone(timedelta(hours=2))) == datetime(2026, 5, 4, 12, 15, tzinfo=UTC)


def test_feed_with_odd_dates():
    pm, rolled, filled = parse_feed((FEEDS / "rss_odd_dates.xml").read_bytes(),
                                    feed_url="https://lokalnytt.example.se/rss")
    # 2:15 PM in the channel's +02:00, not 02:15 and not UTC
    assert pm.created_at == datetime(2026, 5, 5, 12, 15, tzinfo=UTC)
    assert rolled.created_at is None and filled.created_at is None  # refused: fetch time counts


def test_atom_content_src_keeps_the_summary():
    (post,) = parse_feed((FEEDS / "atom_content_src.xml").read_bytes(),
                         feed_url="https://klubben.example.se/atom")
    assert post.text == "Protokoll från medlemsmötet\n\nAcme Robotics ledning svarade på frågor om övertiden."
    assert post.created_at == datetime(2026, 5, 6, 8, tzinfo=UTC)
