"""A connection that fails under a request is the recipient's trouble for now, not ours:
a retryable error, "Connection failed", however it fails (refused, reset before the
answer, reset or closed halfway through the body)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from streams.config import parse_destinations
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer sees a TCP reset, not an orderly end."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def reset_before_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    reset(writer)


async def reset_halfway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n{"id": ')
    await writer.drain()
    reset(writer)


async def closed_halfway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n{"id": ')
    await writer.drain()
    writer.close()


@pytest.fixture
async def serving() -> AsyncIterator[Callable[[Behaviour], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(behaviour: Behaviour) -> str:
        server = await asyncio.start_server(behaviour, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/leads"

    yield start
    for server in servers:
        server.close()


def refused_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/leads"


@pytest.mark.parametrize("behaviour", [None, reset_before_answer, reset_halfway, closed_halfway])
async def test_a_failed_connection_is_a_retryable_connection_failure(
    behaviour: Behaviour | None,
    serving: Callable[[Behaviour], Awaitable[str]],
    sender: HttpSender,
) -> None:
    url = refused_url() if behaviour is None else await serving(behaviour)
    dest = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "mapping": {"email": "email"}}]}
    ).destinations[0]
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert attempt.outcome.kind is OutcomeKind.ERROR, attempt.outcome
    assert attempt.outcome.reason == "Connection failed", attempt.outcome
    assert attempt.outcome.retryable
    assert attempt.outcome.category is OutcomeCategory.RECIPIENT_ERROR


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_recipient_that_moved_is_not_followed_and_the_reason_says_where(
    status: int, sender: HttpSender
) -> None:
    """A redirect could take the lead to plain http or another host, past the egress policy
    (and a 301 or 302 would turn the POST into a GET without its body): the lead goes
    nowhere else, and the reason names the new place so the url can be changed."""
    moved_to: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        if request.path == "/v2/leads":
            moved_to.append(request.method)
            return web.json_response({"id": "R-1"}, status=201)
        return web.Response(status=status, headers={"Location": "/v2/leads"}, text="Moved")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        dest = parse_destinations(
            {
                "destinations": [
                    {
                        "id": "crm",
                        "url": f"http://127.0.0.1:{port}/leads",
                        "insecure": True,
                        "mapping": {"email": "email"},
                    }
                ]
            }
        ).destinations[0]
        attempt = await attempt_delivery(LEAD, dest, sender)
    finally:
        await runner.cleanup()
    assert moved_to == []
    assert attempt.outcome.kind is OutcomeKind.ERROR
    assert not attempt.outcome.retryable
    assert attempt.outcome.reason == (
        f"Redirected (HTTP {status}) to /v2/leads: redirects are not followed; update the url"
    )


async def test_a_host_that_does_not_resolve_is_named_so(sender: HttpSender) -> None:
    """A typo in a url read 'Connection failed', like a recipient that was down. '.invalid'
    never resolves (RFC 2606); DNS trouble can pass, so it is still retried."""
    dest = parse_destinations(
        {
            "destinations": [
                {"id": "crm", "url": "https://crm.invalid/leads", "mapping": {"email": "email"}}
            ]
        }
    ).destinations[0]
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert (attempt.outcome.kind, attempt.outcome.reason) == (OutcomeKind.ERROR, "Host not found")
    assert attempt.outcome.retryable
    assert attempt.outcome.category is OutcomeCategory.RECIPIENT_ERROR
