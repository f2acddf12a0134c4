"""HTTPS recipients: certificates are verified unless a destination says tls_verify: false."""

from __future__ import annotations

from streams.config import parse_destinations
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender


async def test_an_untrusted_certificate_is_refused_by_default(
    https_url: str, sender: HttpSender
) -> None:
    (dest,) = parse_destinations({"destinations": [{"id": "dev", "url": https_url}]}).destinations
    outcome = (await attempt_delivery(Lead("L", {"id": "L", "lead": {}}), dest, sender)).outcome
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR,
        "TLS certificate refused",
        False,
    )


async def test_tls_verify_false_accepts_it(https_url: str, sender: HttpSender) -> None:
    (dest,) = parse_destinations(
        {"destinations": [{"id": "dev", "url": https_url, "tls_verify": False}]}
    ).destinations
    outcome = (await attempt_delivery(Lead("L", {"id": "L", "lead": {}}), dest, sender)).outcome
    assert outcome.kind is OutcomeKind.SUCCESS
