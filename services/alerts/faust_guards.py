"""Two guards around faust-streaming 0.15.3 internals that the counts need to be exact.

Faust gives at-least-once processing only if an offset is committed after the
mention it stands for has left its mark in the changelog. Two places in Faust
break that under a rebalance or a broker failure; both guards only ever hold
back a commit, so their worst case is a mention read twice, which the seen keys
of :mod:`.counts` already count once.

- :func:`confirmed_table_class`: the table keeps the futures of its changelog
  writes, so the count agent can wait until Kafka has them (see its docstring).
- :func:`guarded_app_class`: an app whose consumer commits an offset only when
  every mention from the committed offset up to it was processed. Faust's own
  bookkeeping can commit past mentions no agent ever saw, and the
  replicated-cluster test caught it doing so after a broker kill and a
  handover (the mentions of six organizations short by up to 44, with no trace
  in the changelog, or not even routed). Three paths lead there:

  1. Offsets it takes for holes. When a partition's next record is more than
     one past the last one read, Faust records the offsets between as a "gap"
     (offsets that do not exist: transaction markers, compaction) and commits
     them as if processed. Records fetched before a rebalance but handed out
     after the consumer seeked back to the committed offset make such a jump,
     so real, unprocessed mentions become a gap; the gap even includes the
     record at its end, which is then acked twice and from then on commits
     crawl forward one offset per commit.
  2. Records it drops. A record below the partition's last read offset is
     dropped as already seen; after such a jump that is every record the seek
     fetched again, so they are never processed.
  3. Acks of events no agent processed. The stream skips an event taken while
     flow control is suspended (a rebalance is under way) or that was fetched
     in an earlier rebalance generation, and acknowledges it anyway; and Faust
     commits a run of acked offsets that starts one past the committed offset
     (or anywhere, right after a revocation).

  Lyssna's topics have no holes (no transactions, no compaction), so the guard
  turns off the gap and the drop (a record delivered twice is processed twice:
  the seen keys count it once), ignores the acks of skipped events, and
  commits only the run of acked offsets that starts exactly at the committed
  offset. One limit follows: a replica that falls further behind than a
  topic's retention (the records at its committed offset deleted) counts on
  from the oldest record left but commits no more for that partition, and
  after a restart reads from there again, counting nothing twice.
"""

from __future__ import annotations

import logging

log = logging.getLogger("lyssna.alerts.faust")


def confirmed_table_class():
    """A Faust table that keeps the futures of its changelog writes, so the count
    agent can wait until Kafka has them before it lets go of the mention.

    Why: Faust commits a source offset after flushing its producer, but its flush
    gives up after 0.1 s without progress (``ProducerBuffer.flush_atmost``), as
    while a broker dies and partitions change leader. The offset of a mention could
    then be committed while the count it made was still in Faust's buffer, and a
    kill -9 of the replica lost that count for good (an undercount in one
    replicated-cluster run)."""
    import faust

    class ConfirmedTable(faust.Table):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.unconfirmed: list = []

        def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None):
            fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
            # The table's own key: the message carries it serialized.
            self.unconfirmed.append((fut, key))
            return fut

    return ConfirmedTable


def counts_ack(app, message) -> bool:
    """Whether an ack of ``message`` may let its offset be committed: only when the
    stream could have processed it, i.e. flow is on and it was fetched in the
    current rebalance generation (exactly the events Faust's stream does not skip)."""
    return app.flow_control.is_active() and message.generation_id == app.consumer_generation_id


def next_commit(acked: list[int], committed: int | None) -> int | None:
    """The offset to commit for a partition: one past the run of consecutive acked
    offsets that starts at ``committed`` (the next offset to process), or None when
    the mention at ``committed`` is not processed yet. With no committed offset yet
    (a new consumer group) the run starts at the lowest acked offset.

    ``acked`` is Faust's list for the partition; it is left holding the acks beyond
    the run (duplicates removed), as Faust's own version does."""
    pending = sorted({o for o in acked if committed is None or o >= committed})
    acked[:] = pending
    if not pending or (committed is not None and pending[0] != committed):
        return None
    end = pending[0]
    for o in pending:
        if o != end:
            break
        end += 1
    del acked[:end - pending[0]]
    return end


class _NoReadOffsets(dict):
    """Faust's last-read offset per partition, read as "none": the fetch loop then
    neither drops a record below it nor takes a jump past it for a gap."""

    def __getitem__(self, tp):
        return None


def guarded_app_class():
    """``faust.App`` whose Kafka consumer commits only what was processed (see the module)."""
    import faust
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types.tuples import ack_lock
    from mode.utils.futures import notify

    class GuardedConsumer(faust_aiokafka.Consumer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._read_offset = _NoReadOffsets()

        async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
            return None  # Lyssna's topics have no holes: a jump is records still to come

        def _new_offset(self, tp):
            with ack_lock:
                offset = next_commit(self._acked[tp], self._committed_offset[tp])
                # Faust's index of the list, which next_commit may have shortened.
                self._acked_index[tp] = set(self._acked[tp])
                return offset

        def ack(self, message) -> bool:
            with ack_lock:  # as Faust's own ack: the test and the marking are one step
                if message.acked or counts_ack(self.app, message):
                    return super().ack(message)
                message.acked = True
                # Nothing waits for it: a rebalance's wait for in-flight events must not hang on it.
                self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            log.debug("ignored the ack of an event no agent processed; it will be read again",
                      extra={"topic": message.topic, "partition": message.partition, "offset": message.offset})
            return False

    class GuardedTransport(faust_aiokafka.Transport):
        Consumer = GuardedConsumer

    class GuardedApp(faust.App):
        def _new_transport(self):
            return GuardedTransport(self.conf.broker_consumer, self)

    return GuardedApp
