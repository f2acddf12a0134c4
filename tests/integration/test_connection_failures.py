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
from streams.model import Lead, Outcome, OutcomeCategory, OutcomeKind
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


def answering_raw(answer: bytes) -> Behaviour:
    """A server that reads the request and writes ``answer`` as it is, then closes."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return behaviour


async def delivered_to(url: str, sender: HttpSender) -> Outcome:
    dest = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "mapping": {"email": "email"}}]}
    ).destinations[0]
    return (await attempt_delivery(LEAD, dest, sender)).outcome


async def test_an_answer_with_a_long_header_is_read(
    serving: Callable[[Behaviour], Awaitable[str]], sender: HttpSender
) -> None:
    """A long Content-Security-Policy or a load balancer's cookie: aiohttp refuses a header
    over 8,190 bytes by default, and the lead the recipient had taken was "Delivery
    failed", not resent to it, and a waterfall sold it again elsewhere."""
    csp = b"default-src 'self'; script-src " + b" ".join(b"https://cdn%d.example.com" % n
                                                       for n in range(700))  # fmt: skip
    assert len(csp) > 16_000
    answer = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b"Content-Security-Policy: " + csp + b"\r\nSet-Cookie: AWSALB=" + b"Q" * 12_000 +
        b"; Path=/\r\nContent-Length: 13\r\n\r\n" + b'{"id": "R-1"}'
    )  # fmt: skip
    outcome = await delivered_to(await serving(answering_raw(answer)), sender)
    assert (outcome.kind, outcome.reference_id) == (OutcomeKind.SUCCESS, "R-1"), outcome


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 201 Created\r\nX-Trace: " + b"t" * 40_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
         "a line of its headers is longer than 32 KiB"),
        (b"HTTP/1.1 201 Created\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(200)) +
         b"Content-Length: 2\r\n\r\n{}", "more headers than aiohttp reads"),
        (b"HTTX/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
         "its first line is not an HTTP status line"),
        (b"HTTP/1.1 201 Created\r\nSet-Cookie session=secret-value\r\nContent-Length: 2\r\n\r\n{}",
         "it is not well-formed HTTP"),
        (b"HTTP/1.1 201 Created\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
         "its Content-Encoding is not one we read"),
        (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
         "its chunked body is not well-formed"),
    ],
    ids=["long-header", "many-headers", "status-line", "ill-formed-header", "unasked-brotli",
         "chunk-size"],
)  # fmt: skip
async def test_an_answer_that_is_not_readable_http_is_said_so_in_our_words(
    answer: bytes,
    said: str,
    serving: Callable[[Behaviour], Awaitable[str]],
    sender: HttpSender,
) -> None:
    """The recipient had the request and may have taken the lead: not resent to it. The
    reason was "Delivery failed" with aiohttp's message, which quoted the answer's bytes
    (a header, a cookie's value) into the event."""
    outcome = await delivered_to(await serving(answering_raw(answer)), sender)
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR, "Unreadable response", False
    ), outcome  # fmt: skip
    assert outcome.raw is not None and said in outcome.raw
    assert "secret-value" not in outcome.raw and "ttttt" not in outcome.raw


@pytest.mark.parametrize(
    "answer",
    [
        # nginx 1.22's, as it answers plain HTTP on a port with `listen … ssl`
        b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
        b"Content-Length: 255\r\nConnection: close\r\n\r\n<html>\r\n<head><title>400 The plain "
        b"HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad "
        b"Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port"
        b"</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n",
        # Go's net/http (server.go)
        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        # a TLS server that ends the connection with its alert (unexpected_message)
        b"\x15\x03\x03\x00\x02\x02\x0a",
    ],
    ids=["nginx", "go", "tls-alert"],
)
async def test_an_http_url_to_a_port_that_takes_https_is_a_configuration_refused(
    answer: bytes, serving: Callable[[Behaviour], Awaitable[str]], sender: HttpSender
) -> None:
    """http:// where the recipient's port takes https: every lead would meet it, so the
    circuit opens at once. Before, each lead was "Rejected (HTTP 400)" as if for itself,
    or "Delivery failed"."""
    outcome = await delivered_to(await serving(answering_raw(answer)), sender)
    assert (outcome.kind, outcome.category, outcome.retryable) == (
        OutcomeKind.ERROR, OutcomeCategory.AUTH_ERROR, False
    ), outcome  # fmt: skip
    assert outcome.reason.startswith("Configuration refused (")
    assert "https" in outcome.reason or "TLS" in outcome.reason


@pytest.mark.parametrize(("status", "retried"), [(201, False), (503, True)])
async def test_a_body_that_is_not_the_encoding_it_names_keeps_its_status(
    status: int, retried: bool, serving: Callable[[Behaviour], Awaitable[str]], sender: HttpSender
) -> None:
    """A plain body labelled ``Content-Encoding: gzip`` (a server that compresses twice, or
    names a compression it left out): aiohttp fails on the body after the status came. It
    was "Connection failed" and retried, so a lead the recipient had taken (201) was sent
    again and refused as a duplicate; now the status decides: a 2xx is not resent."""
    body = b'{"id": "R-1"}'
    answer = (
        b"HTTP/1.1 %d Whatever\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body)
    )
    outcome = await delivered_to(await serving(answering_raw(answer)), sender)
    assert (outcome.kind, outcome.reason, outcome.retryable) == (
        OutcomeKind.ERROR, f"Unreadable response (HTTP {status}: not gzip)", retried
    ), outcome  # fmt: skip
