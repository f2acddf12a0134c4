"""When the insight worker may judge alerts: the workers' rules read, or a fall-back wait."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.insight.dashboard import RulesGate
from tests.unit.clock import Clock


def test_no_event_to_wait_for_means_ready_at_once() -> None:
    assert RulesGate(None, 30.0).ready()


def test_ready_as_soon_as_the_configuration_is_known() -> None:
    known, clock = asyncio.Event(), Clock()
    gate = RulesGate(known, 30.0, clock)
    assert not gate.ready()
    known.set()
    assert gate.ready()


def test_the_wait_counts_from_the_first_alert_that_waited_not_from_the_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    known, clock = asyncio.Event(), Clock()
    gate = RulesGate(known, 30.0, clock)
    clock.now += 100  # a worker up for a while before its first alert
    assert not gate.ready()
    clock.now += 29.9
    assert not gate.ready()
    clock.now += 0.2
    with caplog.at_level(logging.WARNING, logger="streams.insight.dashboard"):
        assert gate.ready()
        assert gate.ready()
    assert known.is_set()  # whoever waits on the event goes on too
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "alerts: the config topic was not read in 30 s; judging with the rules in force"
    ]


async def test_wait_returns_when_the_configuration_arrives() -> None:
    known = asyncio.Event()
    gate = RulesGate(known, 30.0)
    asyncio.get_running_loop().call_later(0.05, known.set)
    await asyncio.wait_for(gate.wait(check_s=0.01), 5)
    assert gate.ready()


async def test_wait_returns_after_the_fall_back_when_the_configuration_never_comes() -> None:
    known, clock = asyncio.Event(), Clock()
    gate = RulesGate(known, 30.0, clock)
    waiting = asyncio.create_task(gate.wait(check_s=0.01))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    clock.now += 31
    await asyncio.wait_for(waiting, 5)
