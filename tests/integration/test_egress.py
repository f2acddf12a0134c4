"""The egress policy: a request reaches only public addresses, unless the address or host is
allowed or the destination is a development one (``insecure: true``). Checked on the
resolved address, so a host name cannot get round it. On 127.0.0.1 with the policy on
(refused) and off (delivered)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from streams.config import parse_destinations
from streams.config.policies import EgressPolicy
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})


async def accept(recipient: Recipient, received: Received) -> web.Response:
    return web.json_response({"id": "R-1"}, status=201)


@pytest.fixture
async def local() -> AsyncIterator[Recipient]:
    recipient = await Recipient(accept).start()
    yield recipient
    await recipient.stop()


async def deliver(url: str, policy: EgressPolicy, **fields: Any) -> Any:
    dest = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "mapping": {"email": "email"}, **fields}]}
    ).destinations[0]
    sender = HttpSender(egress=policy)
    try:
        return (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await sender.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_by_address_and_by_name(local: Recipient, host: str) -> None:
    outcome = await deliver(f"http://{host}:{local.port}/leads", EgressPolicy())
    assert outcome.kind is OutcomeKind.ERROR and outcome.reason == "Address refused", outcome
    assert not outcome.retryable
    assert local.requests == []  # nothing reached it


@pytest.mark.parametrize(
    ("policy", "fields"),
    [
        (EgressPolicy(mode="any"), {}),  # the policy off
        (EgressPolicy(), {"insecure": True}),  # a development destination
        (EgressPolicy(allow=("127.0.0.0/8",)), {}),  # its network allowed
        (EgressPolicy(allow=("localhost",)), {}),  # its host allowed
    ],
)
async def test_allowed_ones_are_delivered(
    local: Recipient, policy: EgressPolicy, fields: dict[str, Any]
) -> None:
    host = "localhost" if "localhost" in policy.allow else "127.0.0.1"
    outcome = await deliver(f"http://{host}:{local.port}/leads", policy, **fields)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert len(local.requests) == 1


@pytest.mark.parametrize(
    ("address", "permitted"),
    [
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.100.100.200", False),  # shared address space (a cloud's metadata too)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("::ffff:127.0.0.1", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_what_is_public(address: str, permitted: bool) -> None:
    assert EgressPolicy().permits("recipient.example", address) is permitted


async def test_a_worker_with_the_policy_on_refuses_a_loopback_recipient(
    kafka: KafkaTarget, local: Recipient, topics: Any, start_worker: Any
) -> None:
    yaml = f"""
destinations:
  - id: crm
    url: {local.url()}
    retry: {{max_attempts: 1}}
    mapping: {{email: email}}
"""
    start_worker(yaml, env={"COURIER_EGRESS": "public"})
    await publish(kafka, topics.leads, [{"id": "E-1", "lead": {"email": "a@example.com"}}])
    [event] = await collect(kafka, topics.events, 1)
    decoded = decode_with_schema_file(event.value, "delivery_event")
    assert decoded["outcome"] == "error" and decoded["reason"] == "Address refused", decoded
    assert local.requests == []


def test_a_wrong_allow_list_stops_start_up_naming_the_entry() -> None:
    from pydantic import ValidationError

    from streams.config import Settings

    with pytest.raises(ValidationError, match=r"'10\.0\.0\.0/33' is not a network"):
        Settings(egress_allow="crm.internal, 10.0.0.0/33")
    allowed = Settings(egress_allow="crm.internal., 10.0.0.0/8").egress_policy()
    assert allowed.permits("CRM.internal", "192.168.0.1") and allowed.permits("x", "10.9.9.9")
