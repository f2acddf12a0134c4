"""Deliveries through a forward proxy (``COURIER_HTTP_PROXY``), as most corporate and many
Kubernetes networks require: a real proxy on 127.0.0.1 (tests/integration/forward_proxy.py),
real recipients (conftest's ``recipient``, ``https_url``), plain HTTP and HTTPS through a
CONNECT tunnel, and a worker that delivers through it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from streams.config import Settings, parse_destinations
from streams.errors import ConfigError
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.forward_proxy import ForwardProxy
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.unit.test_logs_and_summary import summary

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})
USER, PASSWORD = "courier", "p@ss:word"  # characters a URL must escape


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    forward = await ForwardProxy(credentials=(USER, PASSWORD)).start()
    yield forward
    await forward.stop()


@pytest.fixture
def https_port(https_url: str) -> int:
    """An HTTPS recipient (tests/integration/https_recipient.py): self-signed, for localhost."""
    return int(urlsplit(https_url).port or 443)


def user_info(password: str = PASSWORD) -> str:
    return f"{USER}:{password.replace('@', '%40').replace(':', '%3A')}@"


async def deliver(url: str, settings: Settings, **fields: Any) -> Any:
    dest = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "mapping": {"email": "email"}, **fields}]}
    ).destinations[0]
    sender = HttpSender(egress=settings.egress_policy(), proxy=settings.forward_proxy())
    try:
        return (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await sender.close()


async def test_a_lead_goes_through_the_proxy_with_its_credentials_and_not_beyond(
    proxy: ForwardProxy, recipient: Recipient
) -> None:
    settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
    outcome = await deliver(recipient.url(), settings)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    [asked] = proxy.asked
    assert (asked.method, asked.target) == ("POST", recipient.url())
    assert asked.authorization is not None and asked.authorization.startswith("Basic ")
    [received] = recipient.requests
    assert "Proxy-Authorization" not in received.headers  # the proxy's, never the recipient's
    assert received.json() == {"email": "ada@example.com"}


async def test_an_https_recipient_is_reached_through_a_tunnel_with_its_certificate_checked(
    proxy: ForwardProxy, https_port: int
) -> None:
    """TLS runs to the recipient inside the CONNECT tunnel: its certificate is verified as
    without a proxy (a self-signed one refused), and the proxy never sees the lead."""
    settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
    url = f"https://localhost:{https_port}/leads"
    refused = await deliver(url, settings)
    assert refused.reason == "TLS certificate refused", refused
    delivered = await deliver(url, settings, tls_verify=False)
    assert delivered.kind is OutcomeKind.SUCCESS, delivered
    assert delivered.reference_id == "R-1"
    assert [(a.method, a.target) for a in proxy.asked] == [
        ("CONNECT", f"localhost:{https_port}")
    ] * 2


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_refused_proxy_credentials_are_an_error_never_retried(
    proxy: ForwardProxy, recipient: Recipient, https_port: int, scheme: str
) -> None:
    settings = Settings(http_proxy=proxy.url(user_info("wrong")), egress="any")
    url = recipient.url() if scheme == "http" else f"https://localhost:{https_port}/leads"
    outcome = await deliver(url, settings, tls_verify=False)
    assert (outcome.kind, outcome.reason) == (
        OutcomeKind.ERROR,
        "Proxy authentication failed (HTTP 407)",
    )
    assert not outcome.retryable
    assert outcome.category is OutcomeCategory.AUTH_ERROR
    assert recipient.requests == []


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_recipient_the_proxy_cannot_reach_is_retried(
    proxy: ForwardProxy, scheme: str
) -> None:
    settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
    outcome = await deliver(f"{scheme}://localhost:9/leads", settings)  # nobody listens on 9
    assert (outcome.kind, outcome.reason) == (
        OutcomeKind.ERROR,
        "Proxy could not connect (HTTP 502)",
    )
    assert outcome.retryable
    assert outcome.category is OutcomeCategory.RECIPIENT_ERROR


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_recipient_the_proxy_refuses_by_its_rules_is_not_retried(
    proxy: ForwardProxy, recipient: Recipient, https_port: int, scheme: str
) -> None:
    proxy.refused_hosts = frozenset({"localhost"})
    settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
    port = recipient.port if scheme == "http" else https_port
    outcome = await deliver(f"{scheme}://localhost:{port}/leads", settings, tls_verify=False)
    assert outcome.kind is OutcomeKind.ERROR
    assert not outcome.retryable
    # Through a tunnel the proxy's 403 is its own; a plain request's, by Squid's mark on
    # its own error pages (before, read as the recipient's: refused credentials).
    assert outcome.reason == "Proxy refused (HTTP 403)"
    assert outcome.raw is not None
    assert scheme == "https" or "ERR_ACCESS_DENIED" in outcome.raw
    assert recipient.requests == []


async def test_a_recipients_own_error_through_the_proxy_stays_the_recipients(
    proxy: ForwardProxy,
) -> None:
    async def forbidden(_: Recipient, __: Received) -> web.Response:
        return web.json_response({"message": "bad key"}, status=403)

    refusing = Recipient(forbidden)
    await refusing.start()
    try:
        settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
        outcome = await deliver(refusing.url().replace("127.0.0.1", "localhost"), settings)
    finally:
        await refusing.stop()
    assert outcome.reason == "Authentication failed (HTTP 403)"
    assert len(refusing.requests) == 1


@pytest.mark.parametrize("proxy_host", ["127.0.0.1", "proxy.invalid"])
async def test_a_proxy_that_cannot_be_reached_is_named_not_the_recipient(
    recipient: Recipient, proxy_host: str
) -> None:
    """Before: "Connection failed" when the proxy was down and "Host not found" when its
    name did not resolve, as if the recipient were; every destination through it has the
    same trouble. Retried, as a failed connection is."""
    with socket.socket() as closed:  # a port nobody listens on once this closes
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = Settings(http_proxy=f"http://{proxy_host}:{port}", egress="any")
    outcome = await deliver(recipient.url(), settings)
    assert (outcome.reason, outcome.retryable) == ("Proxy unreachable", True), outcome
    assert outcome.category is OutcomeCategory.RECIPIENT_ERROR
    assert recipient.requests == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*"])
async def test_hosts_named_in_no_proxy_are_reached_direct(
    proxy: ForwardProxy, recipient: Recipient, no_proxy: str
) -> None:
    settings = Settings(http_proxy=proxy.url(user_info()), no_proxy=no_proxy, egress="any")
    outcome = await deliver(recipient.url(), settings)
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert proxy.asked == []
    assert len(recipient.requests) == 1


async def test_a_destination_goes_through_its_own_proxy_while_the_others_go_direct(
    proxy: ForwardProxy, recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buyer that takes leads only from listed addresses is reached through a static-IP
    proxy (paid by the request), the house CRM direct: one destination's ``proxy:``."""
    monkeypatch.setenv("STATIC_IP_PROXY", proxy.url(user_info()))
    settings = Settings(egress="any")  # no worker-wide proxy
    buyer = await deliver(recipient.url("/buyer"), settings, proxy="${env:STATIC_IP_PROXY}")
    crm = await deliver(recipient.url("/crm"), settings)
    assert (buyer.kind, crm.kind) == (OutcomeKind.SUCCESS, OutcomeKind.SUCCESS)
    [asked] = proxy.asked
    assert asked.target == recipient.url("/buyer")
    assert asked.authorization is not None
    assert [r.path for r in recipient.requests] == ["/buyer", "/crm"]


async def test_a_destinations_own_proxy_on_a_private_network_is_let_through_the_policy(
    proxy: ForwardProxy, recipient: Recipient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The egress policy lets the worker connect to a destination's own proxy (here on
    loopback, often on a private network) as it lets the worker's: before, it had to be
    named in COURIER_EGRESS_ALLOW too, or every delivery was "Address refused"."""
    monkeypatch.setenv("STATIC_IP_PROXY", proxy.url(user_info(), host="localhost"))
    settings = Settings(egress="public")
    buyer = await deliver(
        f"http://localhost:{recipient.port}/buyer", settings, proxy="${env:STATIC_IP_PROXY}"
    )
    assert buyer.kind is OutcomeKind.SUCCESS, buyer
    assert [a.target for a in proxy.asked] == [f"http://localhost:{recipient.port}/buyer"]
    # Without the proxy the same recipient, on loopback, is still refused
    direct = await deliver(f"http://localhost:{recipient.port}/crm", settings)
    assert direct.reason == "Address refused", direct


async def test_proxy_direct_goes_past_the_workers_proxy(
    proxy: ForwardProxy, recipient: Recipient
) -> None:
    settings = Settings(http_proxy=proxy.url(user_info()), egress="any")
    outcome = await deliver(recipient.url(), settings, proxy="direct")
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert proxy.asked == []


@pytest.mark.parametrize(
    ("proxy_setting", "problem"),
    [
        (
            "http://courier:secret@proxy.corp:3128",
            "proxy: credentials must be a reference like ${env:NAME}, never a literal",
        ),
        ("${env:NOT_SET_ANYWHERE}", "proxy: "),
        ("https://proxy.corp:3128", "proxy: not a proxy URL like http://proxy.example.com:3128"),
        ("http://proxy.corp:3128/path", "proxy: a proxy URL has no path or query"),
    ],
)
def test_a_destinations_proxy_that_cannot_be_used_is_named(
    proxy_setting: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_destinations(
            {"destinations": [{"id": "buyer", "url": "https://b.example", "proxy": proxy_setting}]}
        )
    assert problem in str(caught.value)
    assert "secret" not in str(caught.value).replace("secrets", "")


def test_the_summary_names_a_destinations_own_proxy_without_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATIC_IP_PROXY", "http://u:pw-4711@static.example:9293")
    lines, _ = summary(
        {
            "destinations": [
                {"id": "buyer", "url": "https://b.example", "proxy": "${env:STATIC_IP_PROXY}"},
                {"id": "crm", "url": "https://crm.example", "proxy": "direct"},
            ]
        }
    )
    assert (
        "destination buyer: json_post → b.example, through its own proxy "
        "http://static.example:9293" in lines
    )
    assert "destination crm: json_post → crm.example, direct (not through the worker's proxy)" in (
        lines
    )
    assert not any("pw-4711" in line for line in lines)


async def test_with_the_egress_policy_on_the_proxy_is_reached_and_addresses_still_checked(
    proxy: ForwardProxy, recipient: Recipient
) -> None:
    """The proxy (here on loopback, often on a private network) is where the worker
    connects: the policy lets it. A recipient named by a private address is still refused
    before anything is sent; a name is resolved by the proxy, whose rules then apply."""
    # By name: the worker resolves the proxy's name, and the policy lets its addresses.
    settings = Settings(http_proxy=proxy.url(user_info(), host="localhost"), egress="public")
    refused = await deliver(f"https://10.0.0.1:{recipient.port}/leads", settings)
    assert refused.reason == "Address refused", refused
    assert proxy.asked == []
    delivered = await deliver(f"http://localhost:{recipient.port}/leads", settings)
    assert delivered.kind is OutcomeKind.SUCCESS, delivered
    assert [a.target for a in proxy.asked] == [f"http://localhost:{recipient.port}/leads"]


async def test_a_worker_delivers_through_the_proxy(
    kafka: KafkaTarget,
    topics: Any,
    start_worker: Any,
    proxy: ForwardProxy,
    recipient: Recipient,
) -> None:
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email}}
"""
    env = {"COURIER_HTTP_PROXY": proxy.url(user_info()), "COURIER_EGRESS": "any"}
    worker = start_worker(yaml, env=env)
    leads = [{"id": f"P-{n}", "lead": {"email": f"p{n}@example.com"}} for n in range(5)]
    await publish(kafka, topics.leads, leads)
    records = await collect(kafka, topics.outcomes, 5)
    outcomes = [decode_with_schema_file(r.value, "lead_outcome") for r in records]
    assert {tuple(o["accepted_by"]) for o in outcomes} == {("crm",)}
    assert sorted(a.target for a in proxy.asked) == [recipient.url()] * 5
    assert len(recipient.requests) == 5
    log = worker.log_path.read_text()
    assert f"deliveries through the proxy http://127.0.0.1:{proxy.port}" in log
    assert "p%40ss" not in log and PASSWORD not in log  # its credentials never shown


def test_a_buyers_pings_go_through_its_proxy_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buyer that lists the addresses it takes leads from lists them for its pings too."""
    monkeypatch.setenv("STATIC_IP_PROXY", "http://static.example:9293")
    [buyer] = parse_destinations(
        {
            "destinations": [
                {
                    "id": "buyer",
                    "url": "https://b.example/post",
                    "proxy": "${env:STATIC_IP_PROXY}",
                    "ping": {"url": "https://b.example/ping"},
                }
            ]
        }
    ).destinations
    own = buyer.pinged.own_proxy
    assert own is not None and own != "direct" and own.address == "http://static.example:9293"
