"""A vendor's allowance over an hour or a day: never more in any such period (sliding),
where a token bucket would let twice the allowance through in the first one."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from streams.config import Destination
from streams.stages.limits import Allowance, Gate, SlidingWindow
from tests.unit.clock import Clock


async def test_no_more_than_the_allowance_in_any_period() -> None:
    clock = Clock()
    hourly = SlidingWindow(3, 3600.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(7):
        await hourly.acquire()
        sent.append(clock.now)
    assert sent[:3] == [1000.0] * 3  # the allowance at once
    assert sent[3:6] == [4600.0] * 3  # then as each of the first leaves the hour
    assert sent[6] == 8200.0
    for i in range(len(sent)):
        in_any_hour = sum(1 for t in sent if sent[i] <= t < sent[i] + 3600)
        assert in_any_hour <= 3


async def test_waiting_requests_go_in_the_order_they_came() -> None:
    clock = Clock()
    daily = SlidingWindow(1, 86400.0, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def ask(n: int) -> None:
        await daily.acquire()
        order.append(n)

    await asyncio.gather(*(ask(n) for n in range(4)))
    assert order == [0, 1, 2, 3]


def test_five9_applies_its_documented_allowances_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    five9 = {"id": "dialer", "integration": "five9", "settings": {"username": "u",
             "password": "${env:FIVE9_PASSWORD}", "list_name": "Leads"}}  # fmt: skip
    monkeypatch.setenv("FIVE9_PASSWORD", "a-password-for-tests")
    limits = Destination.model_validate(five9).limits
    assert (limits.concurrency, limits.per_hour, limits.per_day) == (1, 7200, 172_800)
    own = Destination.model_validate({**five9, "limits": {"per_hour": 100}}).limits
    assert (own.per_hour, own.per_day) == (100, 172_800)


async def test_a_new_share_applies_to_the_requests_already_waiting() -> None:
    """A rebalance changes a worker's share while its requests wait: they go on at the
    new rate, never beside a second gate at the old one."""
    clock = Clock()
    gate = Gate(clock=clock, sleep=clock.sleep)
    await gate.retune(Allowance(None, 10.0, None, None))
    sent: list[float] = []

    async def request() -> None:
        async with gate.held():
            sent.append(clock.now)

    async def halve_the_share() -> None:
        while len(sent) < 2:
            await asyncio.sleep(0)
        await gate.retune(Allowance(None, 5.0, None, None))

    await asyncio.gather(*(request() for _ in range(6)), halve_the_share())
    gaps = [round(later - earlier, 6) for earlier, later in pairwise(sent)]
    assert gaps == [0.1, 0.2, 0.2, 0.2, 0.2]


async def test_a_lowered_concurrency_lets_none_in_until_enough_have_finished() -> None:
    gate = Gate()
    await gate.retune(Allowance(3, None, None, None))
    inside = 0
    most = 0
    release = asyncio.Event()

    async def request() -> None:
        nonlocal inside, most
        async with gate.held():
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    holders = [asyncio.create_task(request()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert inside == 3
    await gate.retune(Allowance(1, None, None, None))  # the share fell to a third
    waiting = [asyncio.create_task(request()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert inside == 3  # none of the new ones got in beside the three holding slots
    most = 0
    release.set()
    await asyncio.gather(*holders, *waiting)
    assert most == 1  # from then on one at a time


async def test_a_raised_concurrency_lets_waiting_requests_in_at_once() -> None:
    gate = Gate()
    await gate.retune(Allowance(1, None, None, None))
    release = asyncio.Event()
    inside = 0

    async def request() -> None:
        nonlocal inside
        async with gate.held():
            inside += 1
            await release.wait()

    tasks = [asyncio.create_task(request()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert inside == 1
    await gate.retune(Allowance(3, None, None, None))
    await asyncio.sleep(0.01)
    assert inside == 3
    release.set()
    await asyncio.gather(*tasks)


async def test_a_spent_window_holds_the_requests_that_wait_for_a_slot() -> None:
    """The answer that frees a slot says the recipient's window is spent: the request that
    takes the slot waits for the reset too, and so do those after it; a shorter hold
    after it does not cut it."""
    clock = Clock()
    gate = Gate(clock=clock, sleep=clock.sleep)
    await gate.retune(Allowance(1, None, None, None))
    sent: list[float] = []

    async def request(n: int) -> None:
        async with gate.held():
            sent.append(clock.now)
            if n == 0:
                gate.hold(5.0)  # the first answer: none left, resets in 5 s
                gate.hold(1.0)

    await asyncio.gather(*(request(n) for n in range(3)))
    assert sent == [1000.0, 1005.0, 1005.0]


async def test_a_gate_with_no_limits_holds_while_the_window_is_spent() -> None:
    clock = Clock()
    gate = Gate(clock=clock, sleep=clock.sleep)
    assert gate.idle
    gate.hold(2.0)
    assert not gate.idle  # the sender goes through held() while it lasts
    async with gate.held():
        assert clock.now == 1002.0
    assert gate.idle


async def test_a_request_cancelled_while_held_gives_its_slot_back() -> None:
    clock = Clock()
    gate = Gate(clock=clock, sleep=asyncio.sleep)  # the hold is a real sleep, to cancel
    await gate.retune(Allowance(1, None, None, None))
    gate.hold(30.0)

    async def request() -> None:
        async with gate.held():
            pass

    waiting = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert gate.waiting == 0
    clock.now += 30.0  # the window reset: the one slot is free for the next request
    await asyncio.wait_for(request(), timeout=5)


async def test_a_request_s_turn_counts_the_spent_window_and_those_waiting_ahead() -> None:
    """``turn_in``: how long at least before a request asked now would go (an auction does
    not ping a buyer whose turn comes after the ping's timeout)."""
    clock = Clock()
    hourly = SlidingWindow(2, 3600.0, clock=clock, sleep=clock.sleep)
    assert hourly.free_in() == 0.0
    await hourly.acquire()
    assert hourly.free_in() == 0.0 and hourly.free_in(ahead=1) == 3600.0
    clock.now += 600.0
    await hourly.acquire()
    assert hourly.free_in() == 3000.0  # the first leaves the hour
    assert hourly.free_in(ahead=1) == 3600.0  # the second does, after the one ahead
    assert hourly.free_in(ahead=2) == 3000.0 + 3600.0  # the one ahead's own hour
    gate = Gate(clock=clock, sleep=clock.sleep)
    assert gate.turn_in() == 0.0
    gate.hold(12.0)  # the recipient said its window resets in 12 s
    assert gate.turn_in() == 12.0
    await gate.retune(Allowance(None, 2.0, None, 1))  # one request a day, two a second
    async with gate.held():
        pass
    # Its day counted when it passed the windows (1600), before it waited out the hold.
    assert clock.now == 1612.0 and gate.turn_in() == 86388.0
    clock.now += 86388.0
    assert gate.turn_in() == 0.0
