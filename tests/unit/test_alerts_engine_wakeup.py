"""The counter tells the engine which organizations changed through DirtyOrgs,
which exists before either of them."""

import asyncio

from lyssna.alerts.engine import DirtyOrgs


async def test_marks_wake_the_engine_and_are_taken_once():
    dirty = DirtyOrgs()
    waiter = asyncio.create_task(dirty.wake.wait())
    dirty.mark("Acme")  # what the counter calls for every counted mention
    dirty.mark("Globex")
    dirty.mark("Acme")
    await asyncio.wait_for(waiter, 1)
    assert dirty.take() == {"Acme", "Globex"}
    assert dirty.take() == set()


def test_the_counter_can_be_wired_before_the_engine_exists():
    dirty = DirtyOrgs()
    on_counted = dirty.mark  # bound now; the engine is built later with the same object
    on_counted("Acme")
    assert dirty.take() == {"Acme"}
