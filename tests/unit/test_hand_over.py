"""Faust's hand-over of a record to the agents without mode's four tasks when it is done at
once, and mode's full wait when it is not (``streams.app.done_at_once``)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from streams.app import done_at_once


class FullWait:
    """mode's ``wait_first``, counted: what it is given, then the first to finish."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def __call__(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109 (mode's)
        self.calls.append(coros)
        tasks = [asyncio.ensure_future(c) for c in coros]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return [t.result() for t in done]


async def put(queue: asyncio.Queue[int], value: int) -> int:
    await queue.put(value)
    return value


async def test_a_hand_over_with_room_is_done_without_the_full_wait() -> None:
    full, queue, suspended = FullWait(), asyncio.Queue[int](maxsize=1), asyncio.Event()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the flow's wait, never started, is closed
        answer = await done_at_once(full, put(queue, 7), suspended.wait())
    assert answer.results == [7] and not answer.stopped and full.calls == []
    assert queue.get_nowait() == 7


async def test_a_hand_over_that_waits_takes_the_full_wait_and_gives_way() -> None:
    full, queue, suspended = FullWait(), asyncio.Queue[int](maxsize=1), asyncio.Event()
    queue.put_nowait(1)  # full: the hand-over waits
    waiting = asyncio.ensure_future(done_at_once(full, put(queue, 2), suspended.wait()))
    await asyncio.sleep(0.05)
    assert len(full.calls) == 1 and not waiting.done()
    suspended.set()  # a rebalance: the hand-over gives way
    assert await waiting == [True]
    assert queue.qsize() == 1 and queue.get_nowait() == 1


async def test_a_hand_over_that_fails_raises_and_one_cancelled_is_cancelled() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await done_at_once(FullWait(), fails())
    queue = asyncio.Queue[int](maxsize=1)
    queue.put_nowait(1)
    waiting = asyncio.ensure_future(done_at_once(FullWait(), put(queue, 2)))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert queue.qsize() == 1  # the blocked put went with it
