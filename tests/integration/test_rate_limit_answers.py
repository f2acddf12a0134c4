"""A 429 that says when its limit resets without a Retry-After: the IETF RateLimit fields
(``RateLimit: "default";r=0;t=30``, ``RateLimit-Reset: 30``) or ``X-RateLimit-Reset``
(seconds, or a Unix time as GitHub's). Before, none was read: the retry came after the
backoff's own 1 to 8 s, into the same closed window, and was refused again.

Some say it in words with another status (GitHub's 403 "API rate limit exceeded", a 400
or a 200 "Too many requests"): before, a refusal, and the lead was never sent again."""

from __future__ import annotations

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
