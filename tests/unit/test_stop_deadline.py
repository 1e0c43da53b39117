"""The shared shutdown budget: a step that hangs is given up on and the steps after
it still run, all within the one budget; a failing step is logged, not raised."""

from __future__ import annotations

import asyncio
import logging

from lyssna.common.runtime import StopDeadline


async def test_a_hung_step_is_given_up_and_the_next_still_runs(caplog):
    done: list[str] = []

    async def hangs():
        await asyncio.Event().wait()

    async def closes():
        done.append("closed")

    with caplog.at_level(logging.WARNING):
        deadline = StopDeadline(logging.getLogger("test.stop"), budget_s=0.2)
        await deadline.step("faust", hangs())
        await deadline.step("redis", closes())
    assert done == ["closed"]
    assert [r.component for r in caplog.records if r.getMessage().startswith("gave up")] == ["faust"]


async def test_a_failing_step_is_logged_and_cancelled_tasks_are_awaited(caplog):
    async def fails():
        raise RuntimeError("broker gone")

    task = asyncio.create_task(asyncio.Event().wait())
    task.cancel()
    with caplog.at_level(logging.ERROR):
        deadline = StopDeadline(logging.getLogger("test.stop"), budget_s=5)
        await deadline.step("producer", fails())
        await deadline.tasks("tasks", [task])
    assert task.cancelled()
    assert [r.component for r in caplog.records if r.getMessage() == "error while stopping"] == ["producer"]
