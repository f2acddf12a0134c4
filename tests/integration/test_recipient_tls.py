"""A recipient on a private PKI: its own CA to trust, and a client certificate it asks
for (mutual TLS), as lenders' and insurers' lead APIs and internal CRMs often do. Real
HTTPS on 127.0.0.1 with a CA made for the test (tests/integration/https_recipient.py)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from streams.config import Settings, parse_destinations
from streams.config import tls as tls_module
from streams.errors import ConfigError
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.secrets import without_secret_values
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.forward_proxy import ForwardProxy
from tests.integration.https_recipient import PrivateCa, alerting_recipient, private_ca
from tests.integration.recipients import Recipient

LEAD = Lead("L-1", {"id": "L-1", "lead": {"email": "ada@example.com"}})


@pytest.fixture
def pki(tmp_path: Path) -> PrivateCa:
    return private_ca(tmp_path)


@pytest.fixture
async def mutual_tls(pki: PrivateCa) -> AsyncIterator[tuple[str, list[str]]]:
    """The recipient's URL, and the client certificates' names it was shown."""
    shown: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(pair[0] for pair in (peer or {}).get("subject", ()))
        shown.append(subject.get("commonName", ""))
        return web.json_response({"id": "R-1"}, status=201)

    app = web.Application()
    app.router.add_post("/leads", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context())
    await site.start()
    yield f"https://localhost:{runner.addresses[0][1]}/leads", shown
    await runner.cleanup()


async def deliver(url: str, **fields: Any) -> Any:
    dest = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "mapping": {"email": "email"}, **fields}]}
    ).destinations[0]
    sender = HttpSender()
    try:
        return (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await sender.close()


def client_tls(pki: PrivateCa) -> dict[str, str]:
    return {
        "ca_file": str(pki.ca_file),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
        "key_password": "${env:CLIENT_KEY_PASSWORD}",
    }


async def test_a_lead_is_delivered_with_the_client_certificate_the_recipient_asks_for(
    pki: PrivateCa, mutual_tls: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIENT_KEY_PASSWORD", pki.key_password)
    url, shown = mutual_tls
    outcome = await deliver(url, tls=client_tls(pki))
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert shown == ["lead-courier"]


async def test_the_client_certificate_is_shown_through_a_proxy_tunnel(
    pki: PrivateCa, mutual_tls: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS runs end to end inside the CONNECT tunnel: the recipient sees the certificate,
    the proxy only the tunnel's host and port."""
    monkeypatch.setenv("CLIENT_KEY_PASSWORD", pki.key_password)
    url, shown = mutual_tls
    [dest] = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "tls": client_tls(pki)}]}
    ).destinations
    proxy = await ForwardProxy().start()
    sender = HttpSender(proxy=Settings(http_proxy=proxy.url()).forward_proxy())
    try:
        outcome = (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await sender.close()
        await proxy.stop()
    assert outcome.kind is OutcomeKind.SUCCESS, outcome
    assert shown == ["lead-courier"]
    assert [(a.method, a.target) for a in proxy.asked] == [("CONNECT", urlsplit(url).netloc)]


async def test_without_its_ca_the_recipient_is_not_trusted_and_without_a_certificate_refuses(
    pki: PrivateCa, mutual_tls: tuple[str, list[str]]
) -> None:
    url, shown = mutual_tls
    untrusted = await deliver(url)  # the system's CAs: the private CA is not among them
    assert untrusted.reason == "TLS certificate refused", untrusted
    no_certificate = await deliver(url, tls={"ca_file": str(pki.ca_file)})
    assert no_certificate.kind is OutcomeKind.ERROR, no_certificate
    assert shown == []  # no lead reached it either way


@pytest.mark.parametrize(
    ("highest_version", "reason", "alert"),
    [
        (ssl.TLSVersion.TLSv1_3, "TLS client certificate required", "certificate required"),
        (ssl.TLSVersion.TLSv1_2, "TLS handshake refused", "handshake failure"),
    ],
)
async def test_a_recipient_that_asks_for_a_certificate_we_do_not_show_says_so(
    pki: PrivateCa, highest_version: ssl.TLSVersion, reason: str, alert: str
) -> None:
    """Before: "Connection failed", retried, as if the recipient were down. Its alert names
    what it wants; TLS 1.3 says "certificate required", TLS 1.2 only "handshake failure"."""
    context = pki.server_context()
    context.maximum_version = highest_version
    with alerting_recipient(context) as url:
        outcome = await deliver(url, tls={"ca_file": str(pki.ca_file)})
    assert (outcome.kind, outcome.reason, outcome.retryable) == (OutcomeKind.ERROR, reason, False)
    assert outcome.raw is not None and alert in outcome.raw, outcome
    if highest_version is ssl.TLSVersion.TLSv1_3:
        assert outcome.category == OutcomeCategory.AUTH_ERROR  # as a 401: the circuit opens
        assert "tls: cert_file and key_file" in outcome.raw


async def test_a_client_certificate_the_recipient_does_not_trust_is_named(
    pki: PrivateCa, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our certificate is from a CA the recipient does not know (a renewal from the wrong
    issuer): "TLS client certificate refused", an auth_error, never "Connection failed"."""
    (tmp_path / "other").mkdir()
    other = private_ca(tmp_path / "other")
    monkeypatch.setenv("CLIENT_KEY_PASSWORD", other.key_password)
    tls = {**client_tls(other), "ca_file": str(pki.ca_file)}
    with alerting_recipient(pki.server_context()) as url:
        outcome = await deliver(url, tls=tls)
    assert (outcome.reason, outcome.category) == (
        "TLS client certificate refused",
        OutcomeCategory.AUTH_ERROR,
    ), outcome
    assert outcome.raw is not None and "unknown ca" in outcome.raw


async def test_an_https_url_to_an_http_port_is_named(recipient: Recipient) -> None:
    """https:// in front of a port that speaks plain HTTP: not a connection that failed."""
    http_url = recipient.url()
    outcome = await deliver(http_url.replace("http://", "https://"), tls_verify=False)
    assert (outcome.reason, outcome.retryable) == ("TLS handshake failed", False), outcome
    assert outcome.raw is not None and "did not answer in TLS" in outcome.raw


async def test_a_renewed_client_certificate_is_taken_without_a_restart(
    pki: PrivateCa,
    mutual_tls: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """cert-manager renews a client certificate in place (the Secret's mounted files); a
    worker that kept the old one would be refused once it expired. Files that cannot be
    loaded (half written) leave the loaded ones in use."""
    monkeypatch.setenv("CLIENT_KEY_PASSWORD", pki.key_password)
    monkeypatch.setattr(tls_module, "RELOAD_CHECK_S", 0.0)  # looked at for every connection
    url, shown = mutual_tls
    [dest] = parse_destinations(
        {"destinations": [{"id": "crm", "url": url, "tls": client_tls(pki)}]}
    ).destinations
    sender = HttpSender()
    try:
        assert (await attempt_delivery(LEAD, dest, sender)).outcome.kind is OutcomeKind.SUCCESS
        pki.renew_client("lead-courier-renewed")
        assert (await attempt_delivery(LEAD, dest, sender)).outcome.kind is OutcomeKind.SUCCESS
        pki.client_cert.write_text("-----BEGIN CERTIFICATE-----\nhalf written")
        with caplog.at_level(logging.ERROR, logger="streams.config.tls"):
            outcome = (await attempt_delivery(LEAD, dest, sender)).outcome
        assert outcome.kind is OutcomeKind.SUCCESS, outcome
    finally:
        await sender.close()
    assert shown == ["lead-courier", "lead-courier-renewed", "lead-courier-renewed"]
    assert "changed but cannot be loaded" in caplog.text
    assert pki.key_password not in caplog.text


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ({"ca_file": "/nowhere/ca.pem"}, "tls.ca_file: /nowhere/ca.pem is not a readable file"),
        ({"key_file": "KEY"}, "tls.key_file: needs cert_file"),
        (
            {"cert_file": "CERT", "key_file": "KEY", "key_password": "literal"},
            "credentials must be a reference",
        ),
        (
            {"cert_file": "CERT", "key_file": "SERVER_KEY"},
            "tls.cert_file: CERT and its key could not be loaded together",
        ),
        (
            {"cert_file": "CERT", "key_file": "KEY"},
            "tls.key_password: KEY is an encrypted key; give its password as a reference",
        ),
        ({"ca_file": "KEY"}, "tls.ca_file: KEY holds no certificate"),
        ({"ca_file": "CERT", "verify": False}, "tls.verify: unknown option"),
    ],
)
def test_wrong_tls_files_stop_start_up_naming_the_option(
    pki: PrivateCa, tls: dict[str, Any], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named at start (``courier check`` too), not as a failed delivery of every lead: a
    missing file, a key without its certificate, a literal password, a key that is not
    the certificate's (the server's), an encrypted key without its password, a CA file
    that holds a key."""
    files = {"CERT": pki.client_cert, "KEY": pki.client_key, "SERVER_KEY": pki.server_key}
    named = {k: str(files[v]) if isinstance(v, str) and v in files else v for k, v in tls.items()}
    with pytest.raises(ConfigError) as caught:
        parse_destinations(
            {"destinations": [{"id": "crm", "url": "https://crm.example.com", "tls": named}]}
        )
    for name, path in files.items():
        problem = problem.replace(name, str(path))
    assert problem in str(caught.value)


def test_a_check_without_the_workers_secrets_does_not_read_the_files() -> None:
    """``courier check --no-secrets`` in a pipeline and ``courier admin`` on an operator's
    machine load the file where the certificates are not mounted: they are not read there
    (the workers read them at start)."""
    tls = {
        "ca_file": "/etc/courier/crm/ca.pem",
        "cert_file": "/etc/courier/crm/client.pem",
        "key_file": "/etc/courier/crm/client-key.pem",
        "key_password": "${env:NOT_SET_HERE}",
    }
    document = {"destinations": [{"id": "crm", "url": "https://crm.example.com", "tls": tls}]}
    with without_secret_values():
        [dest] = parse_destinations(document).destinations
    assert dest.tls is not None and dest.tls.describe() == "its own CA and a client certificate"
    del tls["key_password"]  # where the workers run, the files are read
    with pytest.raises(
        ConfigError, match=r"tls\.ca_file: /etc/courier/crm/ca\.pem is not a readable"
    ):
        parse_destinations(document)
