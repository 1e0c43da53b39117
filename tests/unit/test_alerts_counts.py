"""Count buckets over a plain dict (the Faust table in the service)."""

from datetime import datetime, timedelta, timezone

import pytest

from lyssna.alerts.counts import AddResult, CountBuckets
from lyssna.alerts.rules import counts_for
from lyssna.common.config import RuleConfig
from lyssna.common.contracts import ClassifiedPost, ModelInfo

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=timezone.utc)
MODEL = ModelInfo(encoder="e", heads="h")


def post(pid: str, at: datetime, *, orgs=("Acme",), topics=("employee_satisfaction",), sentiment="negative",
         lang="sv") -> ClassifiedPost:
    return ClassifiedPost(id=pid, source="t", text="x", created_at=at, lang=lang, orgs=list(orgs),
                          topics=list(topics), sentiment=sentiment, model=MODEL)


def buckets(**kw) -> CountBuckets:
    return CountBuckets({}, kw.pop("bucket", timedelta(minutes=1)), kw.pop("retention", timedelta(hours=2)), **kw)


def test_posts_land_in_their_event_time_bucket_and_windows_sum_them():
    b = buckets()
    now = T0 + timedelta(minutes=90)
    for i, minute in enumerate([0, 0, 1, 59, 60]):
        assert b.add("Acme", post(f"p{i}", T0 + timedelta(minutes=minute, seconds=30)), now) is AddResult.counted
    cells = b.cells("Acme", T0, T0 + timedelta(hours=1))
    assert cells[("Acme", "*", "negative", "*")] == 4  # minute 60 is the next window
    assert cells[("Acme", "employee_satisfaction", "negative", "sv")] == 4
    assert b.cells("Acme", T0 + timedelta(hours=1), T0 + timedelta(hours=2))[("Acme", "*", "negative", "*")] == 1
    assert b.cells("Globex", T0, T0 + timedelta(hours=1)) == {}
    assert b.orgs() == {"Acme"}
    assert b.earliest() == T0


def test_a_window_edge_is_half_open():
    b = buckets()
    b.add("Acme", post("a", T0 - timedelta(microseconds=1)), T0 + timedelta(hours=1))
    b.add("Acme", post("b", T0), T0 + timedelta(hours=1))
    # One post makes four cells: (its topic, any topic) x (its language, any language).
    assert b.cells("Acme", T0, T0 + timedelta(minutes=5)) == {
        ("Acme", t, "negative", lang): 1 for t in ("employee_satisfaction", "*") for lang in ("sv", "*")}
    before = b.cells("Acme", T0 - timedelta(minutes=5), T0)
    assert before[("Acme", "*", "negative", "*")] == 1


def test_the_same_post_is_counted_once():
    b = buckets()
    p = post("same", T0)
    assert b.add("Acme", p, T0) is AddResult.counted
    assert b.add("Acme", p, T0 + timedelta(seconds=5)) is AddResult.duplicate
    assert b.cells("Acme", T0, T0 + timedelta(minutes=1))[("Acme", "*", "negative", "*")] == 1


def test_a_post_from_the_future_counts_now_and_one_older_than_retention_is_dropped():
    b = buckets()
    now = T0 + timedelta(hours=3)
    assert b.add("Acme", post("future", now + timedelta(hours=5)), now) is AddResult.counted
    assert b.cells("Acme", now, now + timedelta(minutes=1))[("Acme", "*", "negative", "*")] == 1
    assert b.add("Acme", post("old", now - timedelta(hours=2, seconds=1)), now) is AddResult.too_old


def test_expire_deletes_buckets_older_than_the_retention():
    table: dict = {}
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    for m in range(0, 120, 10):
        b.add("Acme", post(f"p{m}", T0 + timedelta(minutes=m)), T0 + timedelta(minutes=m))
    removed = b.expire("Acme", T0 + timedelta(minutes=125))
    assert removed == 7  # minutes 0..60 are older than 125 - 60 = 65
    assert sorted(CountBuckets.split_key(k)[1] for k in table if "#" not in k) == [
        int((T0 + timedelta(minutes=m)).timestamp()) for m in (70, 80, 90, 100, 110)]
    assert b.earliest() >= T0 + timedelta(minutes=65)


def test_index_is_rebuilt_from_the_table_when_the_generation_changes():
    table: dict = {}
    gen = {"v": 1}
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=2), generation=lambda: gen["v"])
    b.add("Acme", post("a", T0), T0)
    # A recovery replaced the table's contents behind the index's back.
    table[CountBuckets.key("Globex", int(T0.timestamp()))] = {"c": {"*|neutral|*": 1}}
    assert b.orgs() == {"Acme"}
    gen["v"] = 2
    assert b.orgs() == {"Acme", "Globex"}
    gen["v"] = None  # loading: nothing cached
    del table[CountBuckets.key("Acme", int(T0.timestamp()))]
    assert b.orgs() == {"Globex"}


def test_rules_read_their_view_from_the_cells():
    b = buckets()
    b.add("Acme", post("1", T0, sentiment="negative", lang="en-GB"), T0)
    b.add("Acme", post("2", T0, sentiment="positive", topics=()), T0)
    b.add("Acme", post("3", T0, sentiment="negative", topics=("recruitment",), lang="sv"), T0)
    cells = b.cells("Acme", T0, T0 + timedelta(minutes=1))
    rule = RuleConfig(name="r", topic="employee_satisfaction", sentiment="negative", lang="en",
                      condition={"type": "count", "threshold": 1})
    assert counts_for(rule, "Acme", cells).matching == 1
    ratio = RuleConfig(name="q", condition={"type": "ratio", "threshold": 0.5, "min_volume": 1})
    view = counts_for(ratio, "Acme", cells)
    assert (view.total, view.matching, dict(view.by_sentiment)) == (3, 2, {"negative": 2, "positive": 1})


def test_bucket_must_be_whole_seconds():
    with pytest.raises(ValueError):
        CountBuckets({}, timedelta(milliseconds=1500), timedelta(hours=1))


class RecordingTable(dict):
    """A dict that records the JSON size of every value written, as the Faust
    table's changelog would receive it."""

    def __init__(self):
        super().__init__()
        self.written: list[int] = []

    def __setitem__(self, key, value):
        import json

        self.written.append(len(key) + len(json.dumps(value)))
        super().__setitem__(key, value)


def test_what_one_mention_writes_does_not_grow_with_the_bucket():
    table = RecordingTable()
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    per_mention = []
    for i in range(2000):
        before = sum(table.written)
        assert b.add("Acme", post(f"post-{i:05d}", T0), T0) is AddResult.counted
        per_mention.append(sum(table.written) - before)
    # The 2,000th mention writes what the 1,000th did (counts of the same width),
    # not twice as many hashes.
    assert per_mention[1999] == per_mention[999]
    assert per_mention[1999] < 300
    assert b.cells("Acme", T0, T0 + timedelta(minutes=1))[("Acme", "*", "negative", "*")] == 2000


def test_duplicates_are_found_after_a_recovery_and_expire_with_their_bucket():
    table: dict = {}
    gen = {"v": 1}
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1), generation=lambda: gen["v"])
    b.add("Acme", post("a", T0), T0)
    # A fresh instance over the recovered table (a restart) still knows "a".
    again = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1), generation=lambda: gen["v"])
    assert again.add("Acme", post("a", T0), T0 + timedelta(seconds=1)) is AddResult.duplicate
    assert again.expire("Acme", T0 + timedelta(hours=2)) == 1
    assert table == {}


def test_buckets_from_before_the_seen_keys_still_know_their_posts():
    from lyssna.alerts.counts import post_hash

    table = {CountBuckets.key("Acme", int(T0.timestamp())): {"c": {"*|negative|*": 1}, "ids": [post_hash("old")]}}
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    assert b.add("Acme", post("old", T0), T0) is AddResult.duplicate


def fetched(pid: str, at: datetime) -> ClassifiedPost:
    """A post without ``created_at``: its event time is when it was fetched."""
    return post(pid, at).model_copy(update={"created_at": None, "fetched_at": at})


def test_a_post_re_sent_with_a_later_fetch_time_in_another_bucket_is_counted_once():
    # Ingest's retry after a produce timeout (or a connector's re-fetch) carries a new
    # fetched_at, here two buckets later, in the same window.
    table: dict = {}
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    assert b.add("Acme", fetched("same", T0), T0) is AddResult.counted
    later = T0 + timedelta(minutes=2, seconds=10)
    assert b.add("Acme", fetched("same", later), later) is AddResult.duplicate
    assert b.cells("Acme", T0, T0 + timedelta(hours=1))[("Acme", "*", "negative", "*")] == 1
    # Another organization's mention of the same post is its own count.
    assert b.add("Globex", fetched("same", later), later) is AddResult.counted
    # A restart rebuilds the lookup from the seen keys of the first bucket.
    again = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    assert again.add("Acme", fetched("same", later), later) is AddResult.duplicate
    # Memory stays bounded: the post is forgotten with the bucket it was first counted in.
    end = T0 + timedelta(hours=1, minutes=2)
    again.expire("Acme", end)
    assert again.add("Acme", fetched("same", end), end) is AddResult.counted


class Changelog(dict):
    """A dict that logs every write and delete in order, as the Faust table's changelog
    partition receives them."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple[str, object]] = []

    def __setitem__(self, key, value):
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.log.append((key, None))
        super().__delitem__(key)

    def pop(self, key, *default):
        if key in self:
            self.log.append((key, None))
        return super().pop(key, *default)

    def recovered(self, records: int) -> dict:
        """What a new owner rebuilds from the first ``records`` records (a tombstone deletes)."""
        table: dict = {}
        for key, value in self.log[:records]:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return table


def test_a_kill_anywhere_in_the_changelog_neither_loses_nor_doubles_a_count():
    # kill -9 loses the tail of what the producer had not sent; the offsets of the
    # mentions counted in that tail were not committed either, so the new owner
    # replays them over what it recovered. Whatever the cut, each post counts once,
    # and each author once.
    posts = [post(f"p{i}", T0 + timedelta(seconds=10 * i)).model_copy(update={"author": f"a{i % 3}"})
             for i in range(8)]
    table = Changelog()
    b = CountBuckets(table, timedelta(minutes=1), timedelta(hours=1))
    for p in posts:
        b.add("Acme", p, T0 + timedelta(minutes=2))
    window = (T0, T0 + timedelta(minutes=2))
    cell = ("Acme", "*", "negative", "*")
    for cut in range(len(table.log) + 1):
        again = CountBuckets(table.recovered(cut), timedelta(minutes=1), timedelta(hours=1))
        for p in posts:  # replayed from before the cut: what was counted is a duplicate
            again.add("Acme", p, T0 + timedelta(minutes=2))
        assert again.cells("Acme", *window)[cell] == len(posts), f"cut after record {cut}"
        assert again.distinct_authors("Acme", *window, [cell]) == 3, f"cut after record {cut}"
