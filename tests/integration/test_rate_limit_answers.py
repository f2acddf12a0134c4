"""A 429 that says when its limit resets without a Retry-After: the IETF RateLimit fields
(``RateLimit: "default";r=0;t=30``, ``RateLimit-Reset: 30``) or ``X-RateLimit-Reset``
(seconds, or a Unix time as GitHub's). Before, none was read: the retry came after the
backoff's own 1 to 8 s, into the same closed window, and was refused again.

Some say it in words with another status (GitHub's 403 "API rate limit exceeded", a 400
or a 200 "Too many requests"): before, a refusal, and the lead was never sent again."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from aiohttp import web

from streams.config import parse_destinations
from streams.model import Lead, OutcomeKind
from streams.outcome import RETRY_AFTER_LIMIT_S
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.recipients import Received, Recipient

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})


async def answered(
    status: int, headers: dict[str, str], says: str = "rate limited"
) -> float | None:
    """The retry delay read from a real recipient's answer, which ``says`` so."""

    async def answer(_: Recipient, __: Received) -> web.Response:
        return web.json_response({"error": says}, status=status, headers=headers)

    recipient = await Recipient(answer).start()
    [dest] = parse_destinations(
        {"destinations": [{"id": "buyer", "url": recipient.url(), "mapping": {"email": "email"}}]}
    ).destinations
    sender = HttpSender()
    try:
        outcome = (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await sender.close()
        await recipient.stop()
    assert outcome.kind is OutcomeKind.ERROR and outcome.retryable, outcome
    return outcome.retry_after_s


@pytest.mark.parametrize(
    ("headers", "delay_s"),
    [
        ({"RateLimit": '"default";r=0;t=30', "RateLimit-Policy": '"default";q=100;w=60'}, 30),
        ({"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "42"}, 42),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "17"}, 17),
        ({"Retry-After": "5", "X-RateLimit-Reset": "17"}, 5),  # Retry-After first
    ],
)
async def test_a_429_waits_until_its_limit_resets(headers: dict[str, str], delay_s: float) -> None:
    assert await answered(429, headers) == delay_s


@pytest.mark.parametrize("unit", [1, 1000])  # seconds (GitHub's), or milliseconds
async def test_a_reset_given_as_a_unix_time_is_the_time_left(unit: int) -> None:
    reset = str(int((time.time() + 90) * unit))
    delay = await answered(429, {"X-RateLimit-Reset": reset})
    assert delay is not None and 85 <= delay <= 90


async def test_a_reset_is_read_for_a_429_only() -> None:
    """A 503 with a rate-limit header describes the quota, not the outage; a 503 that says
    it is a rate limit is one (tests/integration/test_answer_bodies.py)."""
    assert await answered(503, {"X-RateLimit-Reset": "17"}, says="upstream down") is None
    assert await answered(503, {"X-RateLimit-Reset": "17"}) == 17


@pytest.mark.parametrize("status", [403, 400, 200])
async def test_a_rate_limit_said_in_words_is_retried_when_it_resets(status: int) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "17"}
    assert await answered(status, headers) == 17


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "9223372036854775"}, {"X-RateLimit-Reset": "9" * 40}]
)
async def test_a_wait_past_a_year_is_a_year(headers: dict[str, str]) -> None:
    """Found by tests/integration/test_hostile_answers.py: the wait asked went into the
    event's milliseconds, past what Avro's long holds, and the event could not be written."""
    assert await answered(429, headers) == RETRY_AFTER_LIMIT_S


class Windowed:
    """A recipient that takes ``allowed`` requests in each window of ``period_s`` and says
    how many are left and when the window resets (GitHub's headers, in seconds with a
    fraction as some APIs write them); past its allowance, a 429."""

    def __init__(self, allowed: int, period_s: float) -> None:
        self.allowed, self.period_s = allowed, period_s
        self.started = 0.0
        self.taken = 0
        self.refused = 0

    async def answer(self, _: Recipient, received: Received) -> web.Response:
        now = time.monotonic()
        if now >= self.started + self.period_s:
            self.started, self.taken = now, 0
        resets = math.ceil((self.started + self.period_s - now) * 1000) / 1000
        headers = {"X-RateLimit-Limit": str(self.allowed), "X-RateLimit-Reset": f"{resets:.3f}"}
        if self.taken >= self.allowed:
            self.refused += 1
            headers["X-RateLimit-Remaining"] = "0"
            return web.json_response({"error": "rate limited"}, status=429, headers=headers)
        self.taken += 1
        headers["X-RateLimit-Remaining"] = str(self.allowed - self.taken)
        return web.json_response({"id": f"R-{received.json()['email']}"}, headers=headers)


async def test_an_answer_that_spends_the_window_holds_the_next_requests_until_it_resets() -> None:
    """The third answer of a window says none are left and when it resets: the requests
    after it wait for the reset. Before, each went at once and met a 429, which cost its
    lead an attempt (and with ``max_attempts`` spent, the lead)."""
    windowed = Windowed(allowed=3, period_s=0.3)
    recipient = await Recipient(windowed.answer).start()
    [dest] = parse_destinations(
        {
            "destinations": [
                {
                    "id": "buyer",
                    "url": recipient.url(),
                    "mapping": {"email": "email"},
                    # One at a time: each request goes after the answer before it. With
                    # more at once, those under way when the window is spent can meet a
                    # 429 still (retried as before).
                    "limits": {"concurrency": 1},
                }
            ]
        }
    ).destinations
    sender = HttpSender()
    leads = [Lead(f"L-{n}", {"id": f"L-{n}", "lead": {"email": f"{n}@example.com"}})
             for n in range(12)]  # fmt: skip
    try:
        attempts = await asyncio.gather(*(attempt_delivery(lead, dest, sender) for lead in leads))
    finally:
        await sender.close()
        await recipient.stop()
    assert [a.outcome.reason for a in attempts] == ["Accepted"] * 12
    assert windowed.refused == 0
