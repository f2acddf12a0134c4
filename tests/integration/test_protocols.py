"""Every protocol and auth scheme, checked byte for byte at a real local recipient."""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web

from streams.config import Destination, parse_destinations
from streams.errors import ConfigError
from streams.model import Lead, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from tests.integration.recipients import Received, Recipient

LEAD = Lead(
    "L-1",
    {
        "id": "L-1",
        "lead": {
            "first_name": "Ada & Co",
            "last_name": "<Lovelace>",
            "email": "ada@example.com",
            "zip": "90210",
        },
        "source": {"name": "spring form"},
    },
)
MAPPING = {"first": "first_name", "last": "last_name", "contact.email": "email"}


async def accept(recipient: Recipient, received: Received) -> web.Response:
    return web.json_response({"id": "R-1"}, status=201)


@pytest.fixture
async def server() -> AsyncIterator[Recipient]:
    recipient = await Recipient(answer=accept).start()
    yield recipient
    await recipient.stop()


def destination(**fields: Any) -> Destination:
    return parse_destinations({"destinations": [{"id": "crm", **fields}]}).destinations[0]


async def deliver(dest: Destination, sender: HttpSender, server: Recipient) -> Received:
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    return server.requests[-1]


async def test_json_put_with_a_templated_url_escapes_every_value(
    server: Recipient, sender: HttpSender
) -> None:
    dest = destination(
        url=server.url("/leads/{{source.name}}/{{payload.contact.email}}?src={{lead.first_name}}"),
        method="PUT",
        mapping=MAPPING,
        headers={"X-Source": "{{source.name}}"},
    )
    received = await deliver(dest, sender, server)
    assert received.method == "PUT"
    # "@" may stand unescaped in a path (RFC 3986 pchar); aiohttp sends it so.
    assert received.path == "/leads/spring%20form/ada@example.com?src=Ada%20%26%20Co"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Source"] == "spring form"
    assert (
        received.body
        == b'{"first":"Ada & Co","last":"<Lovelace>","contact":{"email":"ada@example.com"}}'
    )


async def test_form_post_encodes_nested_fields_with_brackets(
    server: Recipient, sender: HttpSender
) -> None:
    dest = destination(url=server.url("/post"), integration="form_post", mapping=MAPPING)
    received = await deliver(dest, sender, server)
    assert received.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (
        received.body
        == b"first=Ada+%26+Co&last=%3CLovelace%3E&contact%5Bemail%5D=ada%40example.com"
    )


@pytest.mark.parametrize("integration", ["form_post", "get_query"])
async def test_a_form_or_query_in_an_older_endpoints_charset(
    server: Recipient, sender: HttpSender, integration: str
) -> None:
    """An older PHP or ASP endpoint reads its form in Windows-1252: UTF-8's "José" reached
    it as "JosÃ©". A character the charset lacks goes as a browser sends it: &#NNNN;."""
    lead = Lead("L-2", {"id": "L-2", "lead": {"first_name": "José Müller ✓"}})
    dest = destination(
        url=server.url("/post"),
        integration=integration,
        mapping={"first": "first_name"},
        settings={"charset": "windows-1252"},
    )
    attempt = await attempt_delivery(lead, dest, sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    received = server.requests[-1]
    sent = received.body.decode() if integration == "form_post" else urlsplit(received.path).query
    assert parse_qsl(sent, encoding="cp1252") == [("first", "José Müller &#10003;")]


def test_a_charset_nobody_knows_stops_start_up() -> None:
    with pytest.raises(ConfigError, match="'klingon' is not a charset Python knows"):
        destination(url="https://crm.example.com/post", integration="form_post",
                    settings={"charset": "klingon"})  # fmt: skip


async def test_get_query_appends_fields_to_the_existing_query(
    server: Recipient, sender: HttpSender
) -> None:
    dest = destination(
        url=server.url("/ping?campaign=7"),
        integration="get_query",
        mapping=MAPPING,
        settings={"nested": "dots"},
    )
    received = await deliver(dest, sender, server)
    assert received.method == "GET" and received.body == b""
    assert parse_qsl(urlsplit(received.path).query) == [
        ("campaign", "7"),
        ("first", "Ada & Co"),
        ("last", "<Lovelace>"),
        ("contact.email", "ada@example.com"),
    ]


async def test_xml_element_tree_escapes_text_and_sets_attributes(
    server: Recipient, sender: HttpSender
) -> None:
    dest = destination(
        url=server.url("/xml"),
        integration="xml_post",
        mapping={**MAPPING, "@source": "source.name"},
        settings={"root": "Lead", "namespace": "urn:example:leads"},
    )
    received = await deliver(dest, sender, server)
    assert received.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert received.body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Lead xmlns="urn:example:leads" source="spring form"><first>Ada &amp; Co</first>'
        b"<last>&lt;Lovelace&gt;</last><contact><email>ada@example.com</email></contact></Lead>"
    )


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_soap_envelopes_follow_each_version(
    server: Recipient, sender: HttpSender, version: str
) -> None:
    dest = destination(
        url=server.url("/soap"),
        integration="xml_post",
        mapping=MAPPING,
        settings={
            "soap": version,
            "soap_action": "urn:addLead",
            "template": '<addLead xmlns="urn:crm"><name>{{payload.first}} {{payload.last}}</name></addLead>',
        },
    )
    received = await deliver(dest, sender, server)
    envelope = ET.fromstring(received.body)
    ns = {
        "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
        "1.2": "http://www.w3.org/2003/05/soap-envelope",
    }[version]
    assert envelope.tag == f"{{{ns}}}Envelope"
    name = envelope.find(f"{{{ns}}}Body/{{urn:crm}}addLead/{{urn:crm}}name")
    assert name is not None and name.text == "Ada & Co <Lovelace>"
    if version == "1.1":
        assert received.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert received.headers["SOAPAction"] == '"urn:addLead"'
    else:
        assert (
            received.headers["Content-Type"]
            == 'application/soap+xml; charset=utf-8; action="urn:addLead"'
        )


async def parse_or_refuse(recipient: Recipient, received: Received) -> web.Response:
    """An XML recipient as they are: ill-formed XML is refused before anything is read."""
    try:
        ET.fromstring(received.body)
    except ET.ParseError as exc:
        return web.Response(status=400, text=f"Malformed XML: {exc}")
    return web.Response(status=201, text="<result><status>ok</status></result>")


@pytest.mark.parametrize(
    "settings",
    [
        {"root": "Lead"},
        {"root": "Lead", "soap": "1.1"},
        {"template": '<Lead first="{{payload.first}}"><last>{{payload.last}}</last></Lead>'},
    ],
)
async def test_characters_xml_cannot_carry_are_left_out_not_sent(
    sender: HttpSender, settings: dict[str, Any]
) -> None:
    """A control character pasted into a form's field (a NUL, an ESC; Excel's line break in
    a cell is a vertical tab) made the whole XML body ill-formed: the recipient refused the
    lead ("Rejected (HTTP 400)") for a character nobody could see."""
    recipient = await Recipient(answer=parse_or_refuse).start()
    try:
        dest = destination(
            url=recipient.url("/xml"), integration="xml_post", mapping=MAPPING, settings=settings
        )
        lead = Lead("L-2", {"id": "L-2", "lead": {"first_name": "Ada\x00\x1b", "email": "a@x.io",
                                                    "last_name": "Love\x0blace\ufffe"}})  # fmt: skip
        attempt = await attempt_delivery(lead, dest, sender)
        assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
        root = ET.fromstring(recipient.requests[-1].body)
        texts = [root.get("first"), *(element.text for element in root.iter())]
        assert "Ada" in texts and "Love lace" in texts, texts
    finally:
        await recipient.stop()


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        ({"type": "api_key", "value": "${env:TEST_KEY}"}, "X-Api-Key", "k3y"),
        ({"type": "api_key", "name": "Api-Token", "value": "${env:TEST_KEY}"}, "Api-Token", "k3y"),
        ({"type": "bearer", "token": "${env:TEST_KEY}"}, "Authorization", "Bearer k3y"),
        (
            {"type": "basic", "username": "ada", "password": "${env:TEST_KEY}"},
            "Authorization",
            "Basic " + base64.b64encode(b"ada:k3y").decode(),
        ),
    ],
)
async def test_static_auth_schemes_on_the_wire_and_masked_in_the_event(
    server: Recipient,
    sender: HttpSender,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, Any],
    header: str,
    expected: str,
) -> None:
    monkeypatch.setenv("TEST_KEY", "k3y")
    dest = destination(url=server.url(), mapping=MAPPING, auth=auth)
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert server.requests[-1].headers[header] == expected
    assert attempt.request is not None
    assert "k3y" not in str(attempt.request)
    assert attempt.request.headers[header].endswith("****")


async def test_api_key_in_the_query_is_sent_and_masked(
    server: Recipient, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", "k3y")
    dest = destination(
        url=server.url("/x?a=1"),
        auth={"type": "api_key", "in": "query", "name": "key", "value": "${env:TEST_KEY}"},
    )
    attempt = await attempt_delivery(LEAD, dest, sender)
    assert server.requests[-1].path == "/x?a=1&key=k3y"
    assert attempt.request is not None and "k3y" not in attempt.request.url


def test_literal_credentials_in_auth_are_refused() -> None:
    with pytest.raises(Exception, match=r"auth.bearer.token.*reference"):
        destination(url="https://x.example.com", auth={"type": "bearer", "token": "abc"})


@pytest.mark.parametrize(
    ("sign", "algorithm", "encoding", "prefix"),
    [
        ("body", "sha256", "hex", "sha256="),
        ("timestamp.body", "sha256", "hex", ""),
        ("method.path.timestamp.body", "sha512", "base64", ""),
        ("body", "sha1", "hex", "sha1="),
    ],
)
async def test_hmac_signatures_verify_with_the_documented_algorithm(
    server: Recipient,
    sender: HttpSender,
    monkeypatch: pytest.MonkeyPatch,
    sign: str,
    algorithm: str,
    encoding: str,
    prefix: str,
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    dest = destination(
        url=server.url("/hook?x=1"),
        mapping=MAPPING,
        auth={
            "type": "hmac",
            "secret": "${env:HOOK_SECRET}",
            "algorithm": algorithm,
            "sign": sign,
            "encoding": encoding,
            "prefix": prefix,
        },
    )
    received = await deliver(dest, sender, server)

    # What a recipient does, from docs/integrations.md's description and nothing of ours.
    timestamp = received.headers.get("X-Timestamp", "")
    signed = {
        "body": received.body,
        "timestamp.body": f"{timestamp}.".encode() + received.body,
        "method.path.timestamp.body": f"POST\n/hook?x=1\n{timestamp}\n".encode() + received.body,
    }[sign]
    digest = hmac.new(b"s3cret", signed, getattr(hashlib, algorithm)).digest()
    expected = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert received.headers["X-Signature"] == prefix + expected
    assert (sign == "body") == (timestamp == "")


async def test_a_50_mb_answer_is_cut_off_with_a_clear_error(sender: HttpSender) -> None:
    async def huge(recipient: Recipient, received: Received) -> web.StreamResponse:
        return web.Response(body=b"x" * (50 * 1024 * 1024), content_type="text/html")

    server = await Recipient(answer=huge).start()
    try:
        dest = destination(url=server.url(), max_response_bytes=1_048_576)
        attempt = await attempt_delivery(LEAD, dest, sender)
    finally:
        await server.stop()
    assert attempt.outcome.kind is OutcomeKind.ERROR
    assert attempt.outcome.reason == "Response too large"
    assert attempt.http_status is None


async def test_standard_webhooks_signature_verifies_as_the_spec_says(
    server: Recipient, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = b"0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("HOOK_SECRET", "whsec_" + base64.b64encode(key).decode())
    dest = destination(
        url=server.url("/hook"),
        integration="webhook",
        mapping=MAPPING,
        settings={"secret": "${env:HOOK_SECRET}"},
    )
    first = await deliver(dest, sender, server)
    again = await deliver(dest, sender, server)

    # standardwebhooks.com: signed content is "{id}.{timestamp}.{body}", HMAC-SHA256, base64.
    headers = first.headers
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + first.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert again.headers["webhook-id"] == headers["webhook-id"]  # same message, same id
    # Another lead with the very same body is another message: another id.
    twin = Lead("L-2", {**LEAD.envelope, "id": "L-2"})
    assert (await attempt_delivery(twin, dest, sender)).outcome.kind is OutcomeKind.SUCCESS
    assert server.requests[-1].body == first.body
    assert server.requests[-1].headers["webhook-id"] != headers["webhook-id"]


async def test_a_webhook_endpoint_that_is_gone_is_a_configuration_error(
    sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def gone(recipient: Recipient, received: Received) -> web.Response:
        return web.Response(status=410)

    recipient = await Recipient(answer=gone).start()
    monkeypatch.setenv("HOOK_SECRET", "whsec_" + base64.b64encode(b"k" * 32).decode())
    dest = destination(
        url=recipient.url("/hook"), integration="webhook", settings={"secret": "${env:HOOK_SECRET}"}
    )
    try:
        outcome = (await attempt_delivery(LEAD, dest, sender)).outcome
    finally:
        await recipient.stop()
    assert outcome.category is OutcomeCategory.AUTH_ERROR and not outcome.retryable
    assert "410 Gone" in outcome.reason


@pytest.mark.parametrize(
    ("secret", "accepted"),
    [
        ("whsec_" + base64.b64encode(b"k" * 24).decode().rstrip("="), True),  # unpadded
        ("whsec_" + base64.b64encode(b"k" * 64).decode(), True),
        ("whsec_" + base64.b64encode(b"k").decode(), False),  # 1 byte: the spec asks 24+
        ("whsec_" + base64.b64encode(b"k" * 23).decode(), False),
    ],
)
def test_webhook_secrets_are_24_to_64_bytes_padded_or_not(
    secret: str, accepted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", secret)
    settings = {"secret": "${env:HOOK_SECRET}"}
    if accepted:
        destination(url="https://h.example.com", integration="webhook", settings=settings)
        return
    with pytest.raises(Exception, match="Standard Webhooks asks for 24 to 64"):
        destination(url="https://h.example.com", integration="webhook", settings=settings)


def test_a_webhook_secret_not_in_the_spec_format_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "whsec_not base64!")
    with pytest.raises(Exception, match="whsec_ followed by base64"):
        destination(
            url="https://h.example.com",
            integration="webhook",
            settings={"secret": "${env:HOOK_SECRET}"},
        )


def _rsa_pair(tmp: Any) -> tuple[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp / "courier.pem"
    path.write_bytes(pem)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return str(path), public


@pytest.mark.parametrize("algorithm", ["HS256", "RS256"])
async def test_jwt_bearer_verifies_with_the_recipients_key_and_is_reused(
    server: Recipient,
    sender: HttpSender,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    algorithm: str,
) -> None:
    import jwt

    if algorithm == "HS256":
        monkeypatch.setenv("JWT_SECRET", "a-shared-secret-of-at-least-32-bytes!!")
        key_ref, verify_key = "${env:JWT_SECRET}", b"a-shared-secret-of-at-least-32-bytes!!"
    else:
        path, verify_key = _rsa_pair(tmp_path)
        key_ref = f"${{file:{path}}}"
    dest = destination(
        url=server.url(),
        auth={
            "type": "jwt",
            "algorithm": algorithm,
            "key": key_ref,
            "issuer": "lead-courier",
            "audience": "acme",
            "key_id": "k1",
            "claims": {"scope": "leads"},
        },
    )
    first = await deliver(dest, sender, server)
    second = await deliver(dest, sender, server)

    token = first.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(
        token, verify_key, algorithms=[algorithm], audience="acme", issuer="lead-courier"
    )
    assert claims["scope"] == "leads" and claims["exp"] - claims["iat"] == 300
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert (
        second.headers["Authorization"] == first.headers["Authorization"]
    )  # reused, not re-signed


def test_a_jwt_key_that_cannot_sign_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOT_A_PEM", "hello")
    with pytest.raises(Exception, match="key cannot sign RS256"):
        destination(
            url="https://x.example.com",
            auth={"type": "jwt", "algorithm": "RS256", "key": "${env:NOT_A_PEM}"},
        )


async def test_a_destination_header_overrides_the_integrations_content_type(
    server: Recipient, sender: HttpSender
) -> None:
    dest = destination(
        url=server.url(), mapping=MAPPING, headers={"Content-Type": "application/vnd.api+json"}
    )
    received = await deliver(dest, sender, server)
    assert received.headers["Content-Type"] == "application/vnd.api+json"


async def test_requests_say_who_sends_them_unless_the_destination_says_otherwise(
    server: Recipient, sender: HttpSender
) -> None:
    """Before, aiohttp's "Python/3.11 aiohttp/3.14.5": what web firewalls turn away as a
    script, and nothing a recipient's operators could tell apart."""
    ours = await deliver(destination(url=server.url(), mapping=MAPPING), sender, server)
    assert ours.headers["User-Agent"] == f"lead-courier/{version('lead-courier')}"
    theirs = destination(
        url=server.url(), mapping=MAPPING, headers={"user-agent": "AcmeLeads-Partner/7"}
    )
    asked = await deliver(theirs, sender, server)
    assert asked.headers["User-Agent"] == "AcmeLeads-Partner/7"
