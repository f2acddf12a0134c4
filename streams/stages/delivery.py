"""HttpRequest + Destination → HttpResponse: the only code that speaks HTTP.

One pooled aiohttp session per worker; aiohttp's exceptions become typed DeliveryErrors here
and nowhere else, so the stages above see a response or a DeliveryError, nothing in between.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError

from streams.config.policies import EgressPolicy, ForwardProxy
from streams.errors import (
    CertificateRefused,
    DeliveryConnectionError,
    DeliveryError,
    DeliveryTimeout,
    EgressRefused,
    HostNotFound,
    ProxyRefused,
    ProxyUnreachable,
    ResponseTooLarge,
    SenderClosed,
    StoppedWhileWaiting,
    TlsRefused,
    UnreadableAnswer,
)
from streams.model import HttpRequest, HttpResponse
from streams.outcome import window_spent
from streams.secrets import MASK, SCRUBBER, mask_header, mask_url
from streams.stages.egress import AddressRefused, GuardedResolver, check_literal
from streams.stages.limits import Allowance, Gate

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

    from streams.config import Destination, Limits


def _user_agent() -> str:
    try:
        return f"lead-courier/{version('lead-courier')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "lead-courier"


# Who is calling, in every request to a recipient unless its destination's headers say
# otherwise: its operators can tell our traffic apart, and web firewalls that turn away
# aiohttp's default ("Python/3.11 aiohttp/3.14") as a script let it through.
USER_AGENT = _user_agent()

# What a stage needs to deliver: tests pass a plain function, the worker an HttpSender.
Send = Callable[[HttpRequest, "Destination"], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """A request as events and logs show it: credentials masked, no body (it carries PII)."""

    method: str
    url: str
    headers: dict[str, str]
    body_bytes: int


def summarize(
    req: HttpRequest,
    url_template: str | None = None,
    templated_headers: frozenset[str] = frozenset(),
) -> RequestSummary:
    """``url_template``: the URL as configured, shown in place of one filled from the lead
    (``/ok/{{lead.email}}`` rather than the address); ``templated_headers``: headers filled
    from the lead, shown masked."""

    def shown(name: str, value: str) -> str:
        if name.lower() in req.secret_headers:
            return mask_header(name, value)
        return MASK if name.lower() in templated_headers else value

    headers = {name: shown(name, value) for name, value in req.headers.items()}
    url = mask_url(req.url if url_template is None else url_template)
    return RequestSummary(
        req.method, SCRUBBER.scrub(url), SCRUBBER.scrub_any(headers), len(req.body)
    )


class HttpSender:
    """Sends requests over one shared keep-alive pool; create and close it inside the loop.

    ``max_connections``: the pool's limit (0: none); ``in_flight_per_destination``: requests
    at once to a destination whose ``limits.concurrency`` does not say (None: no limit).
    With per-destination slots and no pool limit, a destination whose recipient is slow
    fills only its own slots: the others' requests never queue behind it."""

    def __init__(
        self,
        max_connections: int = 256,
        in_flight_per_destination: int | None = None,
        egress: EgressPolicy | None = None,
        lets_through: Callable[[Destination], bool] | None = None,
        proxy: ForwardProxy | None = None,
    ) -> None:
        """``egress``: where requests may go (the worker passes the configured policy;
        None: anywhere). Destinations with ``insecure: true`` are not held to it.
        ``lets_through(destination)``: asked once more when a request that waited for the
        destination's slots or rate has its turn (the worker asks the destination's
        circuit and its operators' pause); False: not sent, StoppedWhileWaiting.
        ``proxy``: every request goes through it, but to the hosts it lets go direct."""
        self._lets_through = lets_through
        self._proxy = proxy
        self._max_connections = max_connections
        self._in_flight_per_destination = in_flight_per_destination
        self._egress = egress if egress is not None and egress.mode != "any" else None
        self._closed = False
        self._draining = False
        # Two pools: one whose resolver applies the egress policy, one for development
        # destinations. A connector's DNS cache then never serves one to the other.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        # The proxies requests went through: a destination's own proxy, on a private
        # network, is let through the egress policy as the worker's is (GuardedResolver).
        self._proxy_hosts: set[str] = set()
        self._gates: dict[str, tuple[float, Limits, Gate]] = {}  # share, limits, their gate
        # Requests under way per destination id (a metric).
        self.in_flight: Counter[str] = Counter()
        # This worker's share of a destination's limits (its part of the partitions that
        # deliver to it): the limits hold for all workers together.
        self.share = 1.0

    async def _gate(self, destination: Destination) -> Gate:
        # A destination with caps is delivered from its own partition, in one worker: all
        # of its limits are that worker's. Every other one from every lead's partition.
        share = 1.0 if destination.caps is not None else self.share
        limits = destination.limits
        known = self._gates.get(destination.id)
        # The same share and the same limits (a reloaded file makes new ones): as it is.
        if known is not None and known[0] == share and known[1] is limits:
            return known[2]
        concurrency = limits.concurrency
        if concurrency is not None:
            concurrency = max(1, int(concurrency * share))  # never more than all together
        allowance = Allowance(
            concurrency or self._in_flight_per_destination,
            None if limits.per_second is None else limits.per_second * share,
            None if limits.per_hour is None else max(1, int(limits.per_hour * share)),
            None if limits.per_day is None else max(1, int(limits.per_day * share)),
        )
        gate = known[2] if known is not None else Gate()
        await gate.retune(allowance)  # a new share or a reloaded file: in place
        self._gates[destination.id] = (share, limits, gate)
        return gate

    def _session_for(self, egress: EgressPolicy | None) -> aiohttp.ClientSession:
        guarded = egress is not None
        session = self._sessions.get(guarded)
        if session is None or session.closed:
            connector = _PoolConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                resolver=GuardedResolver(egress, self._proxy_hosts) if egress is not None else None,
            )
            # Responses are read raw; no cookies are kept between leads.
            session = self._sessions[guarded] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},  # a destination's own header wins
                auto_decompress=True,
                raise_for_status=False,
                # aiohttp refuses an answer with a header over 8,190 bytes (a long
                # Content-Security-Policy, a load balancer's cookie): the recipient had
                # taken the lead and it was "Delivery failed". Node takes 16 KiB of headers,
                # curl 100 KiB a header; what is still longer is an unreadable answer.
                max_line_size=HEADER_LINE_LIMIT,
                max_field_size=HEADER_LINE_LIMIT,
            )
        return session

    async def __call__(self, req: HttpRequest, destination: Destination) -> HttpResponse:
        gate = await self._gate(destination)
        if gate.idle:
            return _heeded(gate, await self._counted(req, destination))
        async with gate.held():
            # The circuit and the pause were asked before the wait; the circuit may have
            # opened since (the requests ahead failed) or an operator paused the
            # destination: leads queued behind them stay unsent.
            if self._lets_through is not None and not self._lets_through(destination):
                raise StoppedWhileWaiting
            # Heeded before the slot is freed: who takes it waits for a spent window too.
            return _heeded(gate, await self._counted(req, destination))

    def turn_in(self, destination_id: str) -> float:
        """Seconds at least before a request to the destination would go (``Gate.turn_in``)."""
        known = self._gates.get(destination_id)
        return 0.0 if known is None else known[2].turn_in()

    def queued(self, destination_id: str) -> int:
        """Requests waiting for the destination's turn (its in-flight slots or its rate)."""
        known = self._gates.get(destination_id)
        return 0 if known is None else known[2].waiting

    async def _counted(self, req: HttpRequest, destination: Destination) -> HttpResponse:
        self.in_flight[destination.id] += 1
        try:
            return await self._exchange(req, destination)
        finally:
            self.in_flight[destination.id] -= 1

    def drain(self) -> None:
        """Stopping: requests under way finish, none starts (they raise SenderClosed)."""
        self._draining = True

    async def _exchange(self, req: HttpRequest, destination: Destination) -> HttpResponse:
        if self._closed or self._draining:
            raise SenderClosed
        egress = None if destination.insecure else self._egress
        if egress is not None:
            check_literal(req.url, egress)
        session = self._session_for(egress)
        headers, proxy, proxy_headers = req.headers, None, None
        # The destination's own proxy (or "direct") over the worker's.
        own = destination.own_proxy
        through = self._proxy if own is None else None if own == "direct" else own
        tunnelled = req.url.startswith("https:")  # through a proxy: a CONNECT tunnel
        if through is not None and (proxy := through.for_url(req.url)) is not None:
            self._proxy_hosts.add(through.host)
            if tunnelled:
                proxy_headers = through.headers  # on the CONNECT, outside the tunnel
            else:
                # A plain request goes to the proxy itself, which drops its own headers;
                # aiohttp 3.14 sends ``proxy_headers`` only on a CONNECT.
                headers = {**req.headers, **through.headers}
        limits = destination.timeouts
        timeout = aiohttp.ClientTimeout(
            total=limits.total, sock_connect=limits.connect, sock_read=limits.read
        )
        # A kept-alive connection the recipient closed as we sent on it (its idle timeout:
        # Node's 5 s, Gunicorn's 2 s, shorter than aiohttp's 15 s) fails before any answer:
        # sent once more, on a new connection, as Go's client does for a request with an
        # Idempotency-Key. Not when the destination allows one attempt only: a recipient
        # that dedupes nothing is never sent a lead twice by us.
        resend = destination.retry.max_attempts > 1
        while True:
            _REUSED.set(False)
            answered = False
            try:
                async with session.request(
                    req.method,
                    req.url,
                    headers=headers,
                    data=req.body or None,
                    timeout=timeout,
                    allow_redirects=False,
                    # True: aiohttp's default verification; False: none (tls_verify:
                    # false); or the destination's own CA and client certificate (its tls:).
                    ssl=destination.tls_terms,
                    proxy=proxy,
                    proxy_headers=proxy_headers,
                ) as res:
                    answered = True
                    if proxy is not None and (res.status == 407 or _proxy_made(res, tunnelled)):
                        # The proxy's answer, not the recipient's (a CONNECT tunnel's own
                        # refusals are aiohttp's ClientHttpProxyError, below).
                        raise ProxyRefused(res.status, res.headers.get(_SQUID_ERROR))
                    try:
                        body = await _read_limited(res, destination.max_response_bytes)
                    except aiohttp.ClientPayloadError as exc:
                        if not _mislabelled(exc):
                            raise
                        raise _body_mislabelled(res) from exc
                    return HttpResponse(res.status, dict(res.headers), body)
            # ConnectionError: a reset while the answer is read can reach us unwrapped.
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                if self._closed:  # our own shutdown cut it short: not the recipient's doing
                    raise SenderClosed from exc
                closed_idle = isinstance(
                    exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
                )
                if resend and closed_idle and not answered and _REUSED.get():
                    resend = False
                    continue
                raise _delivery_error(exc, destination, via_proxy=proxy is not None) from exc

    async def close(self) -> None:
        self._closed = True
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        # Let the connectors' transports finish closing (aiohttp's documented advice).
        await asyncio.sleep(0)


def _heeded(gate: Gate, response: HttpResponse) -> HttpResponse:
    """An answer that says the recipient's rate-limit window is spent (none left, or a 429
    with when to come back) holds the destination's next requests in this worker until it
    resets: each would have met a 429 and spent one of its lead's attempts on it."""
    spent = window_spent(response)
    if spent is not None:
        gate.hold(spent)
    return response


HEADER_LINE_LIMIT = 32 * 1024  # bytes in an answer's status line or any one header


# Squid marks the error pages it makes itself (ERR_ACCESS_DENIED, ERR_CONNECT_FAIL 111,
# ERR_DNS_FAIL): a plain request's answer through it is otherwise the recipient's, passed on.
_SQUID_ERROR = "X-Squid-Error"


def _proxy_made(res: aiohttp.ClientResponse, tunnelled: bool) -> bool:
    """Did the forward proxy answer a plain-http request itself (refused it by its rules,
    or could not reach the recipient)? Inside a tunnel every answer is the recipient's.
    RFC 9209's ``Proxy-Status: …; error=…`` is not read: a recipient's own CDN sends it
    when the recipient is down, and a proxy that forwards the answer need not add its own."""
    return not tunnelled and res.status >= 400 and _SQUID_ERROR in res.headers


# Set in the task that asks aiohttp's pool for a connection: whether the one it got had
# carried a request before (kept alive, so the recipient may have closed it meanwhile).
_REUSED: ContextVar[bool] = ContextVar("courier_connection_reused", default=False)


class _PoolConnector(aiohttp.TCPConnector):
    """aiohttp's connector, telling the requesting task whether its connection was reused
    (a weak set of the connections handed out: ~1 µs, against ~20 µs a request for
    aiohttp's request tracing, which says the same)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._handed_out: weakref.WeakSet[ResponseHandler] = weakref.WeakSet()

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp names it)
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol is not None:
            _REUSED.set(protocol in self._handed_out)
            self._handed_out.add(protocol)
        return connection


def _delivery_error(
    exc: TimeoutError | aiohttp.ClientError | ConnectionError,
    destination: Destination,
    via_proxy: bool,
) -> DeliveryError:
    if isinstance(exc, TimeoutError):
        return DeliveryTimeout(f"no answer within the destination's timeouts ({exc})")
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, AddressRefused):
        return EgressRefused(str(exc.os_error))
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CertificateRefused(str(exc))
    # Through a proxy the worker resolves and connects to the proxy alone (the recipient's
    # name is the proxy's to resolve): a failure to do so is the proxy's, not the recipient's.
    if isinstance(exc, aiohttp.ClientProxyConnectionError) or (
        via_proxy and isinstance(exc, aiohttp.ClientConnectorDNSError)
    ):
        return ProxyUnreachable(str(exc))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return HostNotFound(str(exc))
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy would not open the tunnel
        return ProxyRefused(exc.status)
    if isinstance(exc, aiohttp.ClientResponseError):  # its parser's: the answer is not HTTP
        return _unreadable(exc)
    if (alert := _tls_alert(exc)) is not None:
        tls = destination.tls
        return TlsRefused(alert, showed_certificate=tls is not None and tls.cert_file is not None)
    # ClientPayloadError: the connection ended before the whole answer came.
    if isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | ConnectionError
    ):
        return DeliveryConnectionError(str(exc))
    return DeliveryError(str(exc))


# A TLS record (an alert, 0x15, or a handshake, 0x16, of TLS 1.0 to 1.3) where an HTTP
# status line should be, as aiohttp's parsers quote the bytes they could not read.
_TLS_RECORD = re.compile(r"\\x1[56]\\x03\\x0[0-4]")


def _unreadable(exc: aiohttp.ClientResponseError) -> UnreadableAnswer:
    """Why aiohttp could not read the answer's first line or headers, in our words."""
    said = exc.message if isinstance(exc.message, str) else ""
    if _TLS_RECORD.search(said):
        return UnreadableAnswer(
            "the recipient answered in TLS: its port takes https, and the url says http://",
            reason="Configuration refused (the recipient answered in TLS: check the url)",
            every_lead=True,
        )
    lowered = said.lower()
    if "got more than" in lowered:  # LineTooLong's words, from either of aiohttp's parsers
        what = f"a line of its headers is longer than {HEADER_LINE_LIMIT // 1024} KiB"
    elif "too many headers" in lowered:
        what = "it has more headers than aiohttp reads (128)"
    elif "status line" in lowered:
        what = "its first line is not an HTTP status line"
    elif "content-encoding" in lowered:
        what = "its Content-Encoding is not one we read (we ask for gzip or deflate)"
    elif "chunk" in lowered:
        what = "its chunked body is not well-formed"
    else:
        what = "it is not well-formed HTTP"
    return UnreadableAnswer(f"the answer cannot be read: {what}")


def _mislabelled(exc: aiohttp.ClientPayloadError) -> bool:
    """Did the body fail to decode as its Content-Encoding said (a plain body labelled
    gzip: a server compressing twice, or naming a compression it left out)?"""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ContentEncodingError):
            return True
        cause = cause.__cause__
    return False


def _body_mislabelled(res: aiohttp.ClientResponse) -> UnreadableAnswer:
    """The status came, the body could not be decoded. Its status is known, so a 2xx is
    not resent as a failed connection would be (the recipient took the lead: resent, it
    would be refused as a duplicate); a 5xx is retried."""
    named = _ENCODING_NAME.sub("", res.headers.get("Content-Encoding", ""))[:20] or "encoding"
    return UnreadableAnswer(
        f"the answer cannot be read: HTTP {res.status}, its body is not the {named} its "
        "Content-Encoding names",
        reason=f"Unreadable response (HTTP {res.status}: not {named})",
        retryable=res.status >= 500,
    )


_ENCODING_NAME = re.compile(r"[^\w, -]")  # the recipient's words: a coding's characters


# OpenSSL's names for an alert the peer sent: SSLV3_ALERT_BAD_CERTIFICATE,
# TLSV1_ALERT_UNKNOWN_CA, TLSV13_ALERT_CERTIFICATE_REQUIRED…
_PEER_ALERT = re.compile(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z_]+)")
# ssl.SSLErrors that are no alert of the peer's: our own verification of its certificate,
# and aiohttp's ClientConnectorSSLError (an SSLError too, without its reason).
_NOT_AN_ALERT = (ssl.SSLCertVerificationError, aiohttp.ClientError)


def _tls_alert(exc: BaseException) -> str | None:
    """The alert the recipient ended the handshake with ("unknown ca"), "not tls" when its
    answer was not TLS at all, or None when the failure was not one of these.

    aiohttp wraps the ssl.SSLError differently by where it happened: in the connector's
    handshake (TLS 1.2: ``os_error``) or at the first read (TLS 1.3, where the client's
    certificate is judged after the client has finished its handshake: ``__cause__``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, _NOT_AN_ALERT):
            reason = cause.reason or ""
            if reason == "WRONG_VERSION_NUMBER":
                return "not tls"
            matched = _PEER_ALERT.fullmatch(reason)
            # An internal error may pass: left a failed connection, retried.
            if matched is not None and matched[1] != "INTERNAL_ERROR":
                return matched[1].lower().replace("_", " ")
            return None
        cause = getattr(cause, "os_error", None) or cause.__cause__ or cause.__context__
    return None


async def _read_limited(res: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in res.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"the answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
