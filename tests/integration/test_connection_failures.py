"""A connection that fails under a request is the recipient's trouble for now, not ours:
a retryable error, "Connection failed", however it fails (refused, reset before the
answer, reset or closed halfway through the body). A kept-alive connection the recipient
closed as we sent on it is not a failure: the request goes again on a new connection."""

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


class ClosesWhenIdle:
    """A recipient whose idle timer fires as a request arrives on a kept-alive connection
    (Node's 5 s, Gunicorn's 2 s, where aiohttp keeps connections 15 s): it answers the
    first request of each connection and closes the connection at the second, unanswered.
    ``requests``: how many requests each connection carried, in the order they opened."""

    def __init__(self) -> None:
        self.requests: list[int] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len(self.requests)
        self.requests.append(0)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            self.requests[connection] += 1
            if self.requests[connection] > 1:
                writer.close()
                return
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b'Content-Length: 13\r\n\r\n{"id": "R-1"}'
            )
            await writer.drain()


@pytest.mark.parametrize(("max_attempts", "sent_again"), [(5, True), (1, False)])
async def test_a_kept_alive_connection_closed_as_we_send_is_sent_again_on_a_new_one(
    max_attempts: int,
    sent_again: bool,
    serving: Callable[[Behaviour], Awaitable[str]],
    sender: HttpSender,
) -> None:
    """Before, the second lead read "Connection failed" and waited for its retry: 27 of 150
    requests failed so against a server closing idle connections at the moment they came.
    A destination that allows one attempt only is never sent a lead twice."""
    recipient = ClosesWhenIdle()
    url = await serving(recipient)
    dest = parse_destinations(
        {
            "destinations": [
                {
                    "id": "crm",
                    "url": url,
                    "mapping": {"email": "email"},
                    "retry": {"max_attempts": max_attempts},
                }
            ]
        }
    ).destinations[0]
    first = await attempt_delivery(LEAD, dest, sender)
    assert first.outcome.kind is OutcomeKind.SUCCESS, first.outcome
    second = await attempt_delivery(Lead("L-2", {"id": "L-2", "lead": {}}), dest, sender)
    if sent_again:
        assert second.outcome.kind is OutcomeKind.SUCCESS, second.outcome
        assert recipient.requests == [2, 1]
    else:
        assert second.outcome.reason == "Connection failed", second.outcome
        assert recipient.requests == [2]


async def test_a_new_connection_closed_before_the_answer_is_not_sent_again(
    serving: Callable[[Behaviour], Awaitable[str]], sender: HttpSender
) -> None:
    """The resend is for a kept-alive connection only: a recipient that closes a new one
    has read the lead and failed on it, and the lead's retries are what its policy says."""
    requests: list[bytes] = []

    async def closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    dest = parse_destinations(
        {
            "destinations": [
                {"id": "crm", "url": await serving(closes), "mapping": {"email": "email"}}
            ]
        }
    ).destinations[0]
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert attempt.outcome.reason == "Connection failed", attempt.outcome
    assert len(requests) == 1
