"""No credential leaves the process: recipients that echo our request and one that answers
garbage to a query-key destination, then every topic, the worker's debug log and the
CLI's output are searched for every form of every secret.

Reproduced first (issue #13): the echoed Authorization, Basic and API-key headers reached
the event's ``raw``, the routing records and the changelogs; aiohttp's error text for a
malformed answer quoted ``url='...?api_key=SECRET'``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from streams.cli.console import read_records
from tests.integration.conftest import collect, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient

SECRETS = {
    "BEARER_TOKEN": "bearer-Secret-4d5e6f7a",
    "ACCESS_KEY": "access-Secret-1a2b3c4d",
    "BASIC_PASSWORD": "basic-Secret-7g8h9i0j",
    "QUERY_KEY": "query-Secret/+=9k8l7m",
}
BASIC_USER = "courier-user"
CLI = [sys.executable, "-m", "streams.cli"]


def forms() -> dict[str, bytes]:
    """Every secret as it may travel: itself, percent-encoded, Base64, in Basic credentials."""
    found: dict[str, bytes] = {}
    for name, value in SECRETS.items():
        found[name] = value.encode()
        found[f"{name} percent-encoded"] = quote(value, safe="").encode()
        found[f"{name} base64"] = base64.b64encode(value.encode()).rstrip(b"=")
    pair = f"{BASIC_USER}:{SECRETS['BASIC_PASSWORD']}".encode()
    found["basic credentials"] = base64.b64encode(pair).rstrip(b"=")
    return found


async def echo(recipient: Recipient, received: Received) -> web.Response:
    """Everything we sent, back in the answer: headers, path and query."""
    mirror = {"path": received.path, "headers": received.headers}
    if received.json().get("behaviour") == "reject":
        return web.json_response({"message": orjson.dumps(mirror).decode()}, status=400)
    return web.json_response(
        {"id": received.headers.get("Authorization", "none"), "echo": mirror}, status=201
    )


@pytest.fixture
async def echoing() -> AsyncIterator[Recipient]:
    recipient = await Recipient(echo).start()
    yield recipient
    await recipient.stop()


@pytest.fixture
async def garbage() -> AsyncIterator[str]:
    """A server that answers any request with a line that is not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT-HTTP garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/leads"
    server.close()
    await server.wait_closed()


def destinations_yaml(echo_url: str, garbage_url: str) -> str:
    return f"""
destinations:
  - id: bearer
    url: {echo_url}
    auth: {{type: bearer, token: "${{env:BEARER_TOKEN}}"}}
    headers: {{X-Access-Key: "${{env:ACCESS_KEY}}"}}
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    response:
      capture: {{echoed: {{json: $.echo}}}}
    mapping: {{ref: id, behaviour: lead.behaviour}}
  - id: basic
    url: {echo_url}
    auth: {{type: basic, username: {BASIC_USER}, password: "${{env:BASIC_PASSWORD}}"}}
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    mapping: {{ref: id, behaviour: lead.behaviour}}
  - id: query
    url: {garbage_url}?source=web&token=${{env:QUERY_KEY}}
    auth: {{type: api_key, value: "${{env:QUERY_KEY}}", name: api_key, in: query}}
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    mapping: {{ref: id}}
"""


async def every_topic(kafka: KafkaTarget) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        return sorted(await consumer.topics())
    finally:
        await consumer.stop()


async def leaks_in_topics(kafka: KafkaTarget) -> dict[str, list[str]]:
    leaks: dict[str, list[str]] = {}
    for topic in await every_topic(kafka):
        async for record in read_records(kafka.bootstrap, topic, follow=False):
            text = b"".join(
                [record.key or b"", record.value or b""]
                + [name.encode() + (value or b"") for name, value in record.headers or ()]
            )
            for form, needle in forms().items():
                if needle in text:
                    leaks.setdefault(topic, []).append(form)
    return leaks


def leaks_in(text: str) -> list[str]:
    return [form for form, needle in forms().items() if needle.decode() in text]


async def test_no_secret_reaches_a_topic_a_log_or_the_cli(
    kafka: KafkaTarget,
    echoing: Recipient,
    garbage: str,
    topics: Any,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    yaml = destinations_yaml(echoing.url(), garbage)
    worker = start_worker(yaml, env={**SECRETS, "COURIER_LOG_LEVEL": "debug"})
    leads = [{"id": f"S-{n}", "lead": {"behaviour": b}} for n, b in enumerate(["ok", "reject"])]
    await publish(kafka, topics.leads, leads)
    outcomes = await collect(kafka, topics.outcomes, len(leads), settle_s=1.0)
    assert len(outcomes) == len(leads)
    # The echo reached us: without scrubbing, these events would carry the secrets.
    assert len(echoing.requests) == 4
    assert SECRETS["BEARER_TOKEN"] in str(echoing.requests[0].headers) + str(
        echoing.requests[1].headers
    )
    await worker.stopped()

    assert await leaks_in_topics(kafka) == {}
    assert leaks_in(worker.log()) == []

    destinations = tmp_path / "cli-destinations.yaml"
    destinations.write_text(yaml)
    for name in ("bearer", "basic", "query"):
        for extra in ((), ("--dry-run",)):
            result = await asyncio.to_thread(
                subprocess.run,
                [*CLI, "destinations", "test", name, "--destinations", str(destinations), *extra],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, **SECRETS},
            )
            assert "Traceback" not in result.stderr, result.stderr
            assert leaks_in(result.stdout + result.stderr) == [], (name, extra, result.stdout)


def test_literal_credentials_in_headers_and_query_are_refused(tmp_path: Path) -> None:
    cases = {
        "X-Access-Key": "headers.X-Access-Key: credentials must be a reference",
        "Ocp-Apim-Subscription-Key": "headers.Ocp-Apim-Subscription-Key: credentials must be",
        "X-Auth": "headers.X-Auth: credentials must be a reference",
        "Private-Key": "headers.Private-Key: credentials must be a reference",
    }
    for header, message in cases.items():
        path = tmp_path / "d.yaml"
        path.write_text(
            "destinations:\n  - id: d\n    url: https://crm.example.com/leads\n"
            f"    headers: {{{header}: literal-value-123}}\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", "check", "--destinations", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
    path = tmp_path / "q.yaml"
    path.write_text(
        "destinations:\n  - id: d\n    url: https://crm.example.com/leads?token=abc123456\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "check", "--destinations", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "query parameter 'token' carries a credential" in (
        result.stderr
    )
    assert "abc123456" not in result.stderr
