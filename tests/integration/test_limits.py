"""Per-destination limits: never more requests at once, or per second, than allowed."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from streams.config import parse_destinations
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.recipients import Received, Recipient


class Observed:
    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.arrivals: list[float] = []

    async def answer(self, recipient: Recipient, received: Received) -> web.Response:
        self.arrivals.append(time.monotonic())
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.1)
        self.now -= 1
        return web.json_response({"id": "R"}, status=201)


def lead(n: int) -> Lead:
    return Lead(f"L-{n}", {"id": f"L-{n}", "lead": {}})


async def test_concurrency_limit_holds_and_other_destinations_are_not_held_up(
    sender: HttpSender,
) -> None:
    limited, free = Observed(), Observed()
    limited_server = await Recipient(answer=limited.answer).start()
    free_server = await Recipient(answer=free.answer).start()
    try:
        limited_dest, free_dest = parse_destinations(
            {
                "destinations": [
                    {"id": "limited", "url": limited_server.url(), "limits": {"concurrency": 3}},
                    {"id": "free", "url": free_server.url()},
                ]
            }
        ).destinations
        attempts = await asyncio.gather(
            *(attempt_delivery(lead(n), limited_dest, sender) for n in range(15)),
            *(attempt_delivery(lead(n), free_dest, sender) for n in range(15)),
        )
    finally:
        await limited_server.stop()
        await free_server.stop()
    assert {a.outcome.kind for a in attempts} == {OutcomeKind.SUCCESS}
    assert limited.most == 3
    assert free.most > 3  # the limit is per destination


async def test_requests_per_second_limit_holds(sender: HttpSender) -> None:
    observed = Observed()
    server = await Recipient(answer=observed.answer).start()
    try:
        (dest,) = parse_destinations(
            {"destinations": [{"id": "paced", "url": server.url(), "limits": {"per_second": 10}}]}
        ).destinations
        await asyncio.gather(*(attempt_delivery(lead(n), dest, sender) for n in range(25)))
    finally:
        await server.stop()
    arrivals = sorted(observed.arrivals)
    # In any one-second window, at most one second's allowance (a small margin for the
    # moment the window is measured at the recipient, not the sender).
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= 11, busiest
    assert len(arrivals) == 25


async def test_the_sender_counts_what_waits_for_a_destinations_turn(sender: HttpSender) -> None:
    """``queued``: requests waiting for a slot (what decides when deliveries wait in the
    table instead); one cancelled while it waits is no longer counted."""
    answering = asyncio.Event()

    async def held(recipient: Recipient, received: Received) -> web.Response:
        await answering.wait()
        return web.json_response({"id": "R"}, status=201)

    server = await Recipient(answer=held).start()
    try:
        (dest,) = parse_destinations(
            {"destinations": [{"id": "one", "url": server.url(), "limits": {"concurrency": 1}}]}
        ).destinations
        tasks = [asyncio.ensure_future(attempt_delivery(lead(n), dest, sender)) for n in range(4)]
        await server.wait_for(1)
        assert (sender.in_flight["one"], sender.queued("one")) == (1, 3)
        tasks[3].cancel()
        await asyncio.gather(tasks[3], return_exceptions=True)
        assert sender.queued("one") == 2
        answering.set()
        await asyncio.gather(*tasks[:3])
        assert (sender.in_flight["one"], sender.queued("one")) == (0, 0)
    finally:
        answering.set()
        await server.stop()
