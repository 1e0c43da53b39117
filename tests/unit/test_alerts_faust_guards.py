"""The counts' Faust consumer never commits past a mention no agent processed.

These drive Faust's own consumer bookkeeping (``ack`` and ``_new_offset``, the
offset a commit would write) without a broker: the question is which offset
Faust would commit, not whether Kafka stores it."""

import asyncio

import faust
import pytest
from faust.types import TP, ConsumerMessage

from lyssna.alerts.faust_guards import guarded_app_class, next_commit

TOPIC = "lyssna-alerts-mentions"
TP0 = TP(TOPIC, 0)


def _message(offset: int, generation: int) -> ConsumerMessage:
    return ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"Acme", b"{}", None, 4, 2, TP0,
                           generation_id=generation)


@pytest.fixture(params=["faust", "guarded"])
def consumer(request):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cls = faust.App if request.param == "faust" else guarded_app_class()
    app = cls(f"test-guards-{request.param}", broker="kafka://127.0.0.1:9", autodiscover=False,
              web_enabled=False, loop=loop)
    app.topic(TOPIC, internal=True)  # acks are kept only for topics the app consumes
    app.topics._acking_topics.add(TOPIC)
    app.consumer_generation_id = 5
    app.flow_control.resume()
    yield request.param, app, app.consumer
    loop.close()
    asyncio.set_event_loop(None)


def test_an_event_skipped_during_a_rebalance_does_not_commit_past_unprocessed_mentions(consumer):
    kind, app, c = consumer
    # A revocation: Faust forgets the partition's committed offset and acks, and
    # suspends flow; mentions 10..12 were cleared from the stream's queue unprocessed.
    c._committed_offset.pop(TP0, None)
    app.flow_control.suspend()
    # A put that waited for room in the full queue lands mention 13 after the clear;
    # the stream skips it (flow is suspended) and acks it.
    c.ack(_message(13, generation=5))
    new_offset = c._new_offset(TP0)
    if kind == "faust":
        assert new_offset == 14  # Faust alone: 10..13 would be committed uncounted
    else:
        assert new_offset is None


def test_an_event_from_an_earlier_generation_is_not_committed(consumer):
    kind, app, c = consumer
    c._committed_offset[TP0] = 20
    app.consumer_generation_id = 6  # a rebalance happened after mention 21 was fetched
    c.ack(_message(21, generation=5))
    new_offset = c._new_offset(TP0)
    if kind == "faust":
        assert new_offset == 22  # Faust alone: 20 was never counted, yet committed
    else:
        assert new_offset is None


def test_processed_mentions_are_committed_as_before(consumer):
    _, app, c = consumer
    c._committed_offset[TP0] = 30
    for offset in (30, 31, 32):
        message = _message(offset, generation=5)
        c.track_message(message)
        assert c.ack(message)
    assert c._new_offset(TP0) == 33
    assert not c._unacked_messages


def test_an_ignored_ack_does_not_leave_a_rebalance_waiting(consumer):
    kind, app, c = consumer
    c._committed_offset[TP0] = 40
    message = _message(40, generation=5)
    c.track_message(message)
    app.flow_control.suspend()
    c.ack(message)
    assert message.acked and message not in c._unacked_messages  # wait_empty() would wait for it


def test_a_jump_past_the_read_offset_is_not_taken_for_a_gap(consumer):
    """Records fetched before a rebalance and handed out after the seek back to the
    committed offset (10) arrive at 15: Faust files 11..15 as a gap, offsets that do
    not exist, and commits them unprocessed."""
    kind, app, c = consumer
    c._committed_offset[TP0] = 10
    c._read_offset[TP0] = 10  # as perform_seek leaves it

    async def fetch_loop_step(offset: int):  # what Consumer._drain_messages does per record
        r_offset = c._read_offset[TP0]
        if r_offset is None or offset >= r_offset:
            if offset - (r_offset or 0) > 1 and r_offset:
                await c._add_gap(TP0, r_offset + 1, offset)
            c._read_offset[TP0] = offset
            return "delivered"
        return "dropped"

    loop = asyncio.get_event_loop()
    assert loop.run_until_complete(fetch_loop_step(15)) == "delivered"
    c.ack(_message(15, generation=5))
    refetched = [loop.run_until_complete(fetch_loop_step(o)) for o in (10, 11)]
    if kind == "faust":
        assert refetched == ["dropped", "dropped"]  # never processed ...
        assert c._new_offset(TP0) == 16  # ... yet committed
    else:
        assert refetched == ["delivered", "delivered"]
        assert c._new_offset(TP0) is None


def test_a_mention_acked_twice_does_not_slow_commits_to_one_offset_each(consumer):
    kind, app, c = consumer
    c._committed_offset[TP0] = 50
    c._acked[TP0] = [50, 51, 51, 52, 53]  # 51 twice: a gap's end, acked again when processed
    offset = c._new_offset(TP0)
    assert offset == (52 if kind == "faust" else 54)


@pytest.mark.parametrize("acked, committed, expected, left", [
    ([], 5, None, []),
    ([5, 6, 7], 5, 8, []),
    ([7, 5, 6, 9], 5, 8, [9]),
    ([6, 7], 5, None, [6, 7]),          # 5 not processed yet: nothing to commit
    ([3, 4, 5], 5, 6, []),              # acks below the committed offset are dropped
    ([5, 5, 6, 6], 5, 7, []),
    ([8, 9], None, 10, []),             # a new group: no committed offset yet
])
def test_next_commit(acked, committed, expected, left):
    assert next_commit(acked, committed) == expected
    assert acked == left
