"""OAuth 2.0: tokens fetched once, cached, and replaced once when a recipient refuses them."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from streams.config import Destination, parse_destinations
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.stages.delivery import HttpSender
from streams.stages.oauth import TokenCache
from tests.integration.local_server import LocalServer


class AuthorizationServer(LocalServer):
    """A token endpoint (RFC 6749 §4.4, §6) and a protected lead endpoint in one server.

    ``expire()`` makes every token issued so far invalid, as a revocation or an early
    expiry would; the lead endpoint then answers 401 ``invalid_token`` (RFC 6750 §3.1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.token_requests: list[dict[str, str]] = []
        self.token_auth: list[str] = []
        self.valid: set[str] = set()
        self.answer_token_with: tuple[int, dict[str, Any]] | None = None
        # Refresh tokens it takes, when it rotates them (None: it does not): each refresh
        # answers a new one and voids the one sent, as Xero's, QuickBooks' and Salesforce's
        # (with rotation on) do.
        self.live_refresh_tokens: set[str] | None = None

    def url(self, path: str) -> str:
        return self.base_url(path)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/leads", self._lead)
        return app

    def expire(self) -> None:
        self.valid.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        self.token_requests.append(form)
        self.token_auth.append(request.headers.get("Authorization", ""))
        if self.answer_token_with is not None:
            status, body = self.answer_token_with
            if 200 <= status < 300 and "access_token" in body:
                self.valid.add(body["access_token"])
            return web.json_response(body, status=status)
        await asyncio.sleep(0.05)  # slow enough that concurrent callers overlap
        token = f"token-{len(self.token_requests)}"
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
        if self.live_refresh_tokens is not None:
            if form.get("refresh_token") not in self.live_refresh_tokens:
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.live_refresh_tokens = {f"refresh-{len(self.token_requests) + 1}"}
            answer["refresh_token"] = next(iter(self.live_refresh_tokens))
        self.valid.add(token)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    async def _lead(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.valid:
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return web.json_response({"id": "R-1"}, status=201)


@pytest.fixture
async def authorization_server() -> AsyncIterator[AuthorizationServer]:
    server = await AuthorizationServer().start()
    yield server
    await server.stop()


def oauth_destination(server: AuthorizationServer, **auth: Any) -> Destination:
    return parse_destinations(
        {
            "destinations": [
                {
                    "id": "crm",
                    "url": server.url("/leads"),
                    "auth": {
                        "type": "oauth2",
                        "token_url": server.url("/oauth/token"),
                        "client_id": "courier app",
                        "client_secret": "${env:OAUTH_SECRET}",
                        "scope": "leads.write",
                        **auth,
                    },
                }
            ]
        }
    ).destinations[0]


@pytest.fixture(autouse=True)
def oauth_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_SECRET", "s3:cret")
    monkeypatch.setenv("OAUTH_REFRESH", "refresh-1")


def lead(n: int) -> Lead:
    return Lead(f"L-{n}", {"id": f"L-{n}", "lead": {"n": n}})


async def test_100_concurrent_deliveries_with_an_expired_token_fetch_exactly_one(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    dest = oauth_destination(authorization_server)
    tokens = TokenCache()

    first = await attempt_delivery(lead(0), dest, sender, tokens=tokens)
    assert first.outcome.kind is OutcomeKind.SUCCESS
    assert len(authorization_server.token_requests) == 1

    authorization_server.expire()
    attempts = await asyncio.gather(
        *(attempt_delivery(lead(n), dest, sender, tokens=tokens) for n in range(1, 101))
    )
    assert {a.outcome.kind for a in attempts} == {OutcomeKind.SUCCESS}
    assert len(authorization_server.token_requests) == 2  # one more, not one per delivery
    assert tokens.requests == 2


async def test_concurrent_first_deliveries_share_one_token_request(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    dest = oauth_destination(authorization_server)
    tokens = TokenCache()
    attempts = await asyncio.gather(
        *(attempt_delivery(lead(n), dest, sender, tokens=tokens) for n in range(50))
    )
    assert {a.outcome.kind for a in attempts} == {OutcomeKind.SUCCESS}
    assert len(authorization_server.token_requests) == 1


async def test_the_token_request_is_rfc_6749_client_credentials(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    dest = oauth_destination(authorization_server)
    attempt = await attempt_delivery(lead(1), dest, sender)
    assert authorization_server.token_requests == [
        {"grant_type": "client_credentials", "scope": "leads.write"}
    ]
    # §2.3.1: id and secret are form-urlencoded, then joined and Basic-encoded.
    expected = base64.b64encode(b"courier+app:s3%3Acret").decode()
    assert authorization_server.token_auth == [f"Basic {expected}"]
    assert attempt.request is not None
    assert attempt.request.headers["Authorization"] == "Bearer ****"


async def test_refresh_token_grant_with_credentials_in_the_body(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    dest = oauth_destination(
        authorization_server,
        grant="refresh_token",
        refresh_token="${env:OAUTH_REFRESH}",
        client_auth="body",
        scope=None,
    )
    await attempt_delivery(lead(1), dest, sender)
    assert authorization_server.token_requests == [
        {
            "grant_type": "refresh_token",
            "refresh_token": "refresh-1",
            "client_id": "courier app",
            "client_secret": "s3:cret",
        }
    ]
    assert authorization_server.token_auth == [""]


async def test_a_rotated_refresh_token_is_the_one_sent_next(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    """RFC 6749 §6: a new refresh token in the answer replaces the one sent. Before, the
    configured one went again, the endpoint had voided it, and every lead from the second
    refresh on was an authentication error."""
    authorization_server.live_refresh_tokens = {"refresh-1"}
    dest = oauth_destination(
        authorization_server, grant="refresh_token", refresh_token="${env:OAUTH_REFRESH}"
    )
    tokens = TokenCache()
    for n in range(3):
        attempt = await attempt_delivery(lead(n), dest, sender, tokens=tokens)
        assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
        authorization_server.expire()  # the next lead meets a 401 and refreshes
    sent = [form["refresh_token"] for form in authorization_server.token_requests]
    assert sent == ["refresh-1", "refresh-2", "refresh-3"]


async def test_a_rotated_refresh_token_is_written_to_its_file_for_the_next_start(
    authorization_server: AuthorizationServer, sender: HttpSender, tmp_path: Path
) -> None:
    """Given as ``${file:}``, the new refresh token replaces the file's (owner-only), so a
    restarted worker sends it instead of the voided one; a token an operator puts in the
    file is sent at the next refresh."""
    authorization_server.live_refresh_tokens = {"refresh-1"}
    secret = tmp_path / "crm-refresh-token"
    secret.write_text("refresh-1\n")

    def started() -> tuple[Destination, TokenCache]:  # the worker's start: the file read again
        return oauth_destination(
            authorization_server, grant="refresh_token", refresh_token=f"${{file:{secret}}}"
        ), TokenCache()

    dest, tokens = started()
    assert (await attempt_delivery(lead(1), dest, sender, tokens=tokens)).outcome.kind is (
        OutcomeKind.SUCCESS
    )
    assert secret.read_text() == "refresh-2\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["crm-refresh-token"]  # no temporary left

    authorization_server.expire()
    dest, tokens = started()  # killed and started again
    attempt = await attempt_delivery(lead(2), dest, sender, tokens=tokens)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome

    authorization_server.live_refresh_tokens = {"issued-by-hand"}  # an operator's new grant
    secret.write_text("issued-by-hand\n")
    authorization_server.expire()
    attempt = await attempt_delivery(lead(3), dest, sender, tokens=tokens)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    sent = [form["refresh_token"] for form in authorization_server.token_requests]
    assert sent == ["refresh-1", "refresh-2", "issued-by-hand"]


async def test_workers_sharing_a_rotating_refresh_token_refresh_in_turn(
    authorization_server: AuthorizationServer, sender: HttpSender, tmp_path: Path
) -> None:
    """Two workers (each its TokenCache, each opening the file's directory on its own, as
    two processes do) that need a token at the same moment: one refreshes, the other waits
    for it and sends the token it wrote. Before, both sent the token they had read, the
    endpoint voided it at the first answer and refused the second (``invalid_grant``): an
    authentication error, and the destination's circuit open in that worker."""
    authorization_server.live_refresh_tokens = {"refresh-1"}
    secret = tmp_path / "crm-refresh-token"
    secret.write_text("refresh-1\n")
    dest = oauth_destination(
        authorization_server, grant="refresh_token", refresh_token=f"${{file:{secret}}}"
    )
    workers = [TokenCache() for _ in range(3)]
    attempts = await asyncio.gather(
        *(
            attempt_delivery(lead(n), dest, sender, tokens=tokens)
            for n, tokens in enumerate(workers)
        )
    )
    assert [a.outcome.kind for a in attempts] == [OutcomeKind.SUCCESS] * 3, attempts
    sent = [form["refresh_token"] for form in authorization_server.token_requests]
    assert sent == ["refresh-1", "refresh-2", "refresh-3"]
    assert secret.read_text() == "refresh-4\n"
    assert os.listdir(tmp_path) == ["crm-refresh-token"]


async def test_an_instance_url_that_is_no_url_is_not_followed(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    """A token answer's ``instance_url`` urllib cannot split ("https://[::1") raised out of
    the token fetch: each lead ended "Internal error: ValueError"."""
    authorization_server.answer_token_with = (
        200,
        {"access_token": "token-x", "token_type": "Bearer", "instance_url": "https://[::1"},
    )
    authorization_server.valid.add("token-x")
    attempt = await attempt_delivery(lead(1), oauth_destination(authorization_server), sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


async def test_password_grant_sends_the_users_credentials(
    authorization_server: AuthorizationServer, sender: HttpSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 6749 §4.3: older CRMs' and lead systems' /token endpoints, Salesforce's
    username-password flow (its password followed by the user's security token)."""
    monkeypatch.setenv("CRM_PASSWORD", "p@ss word+TOKEN")
    dest = oauth_destination(
        authorization_server,
        grant="password",
        username="leads@acme.example",
        password="${env:CRM_PASSWORD}",
        scope=None,
    )
    attempt = await attempt_delivery(lead(1), dest, sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome
    assert authorization_server.token_requests == [
        {"grant_type": "password", "username": "leads@acme.example", "password": "p@ss word+TOKEN"}
    ]
    assert authorization_server.token_auth[0].startswith("Basic ")


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (400, {"error": "invalid_client"}, False),
        (401, {"error": "invalid_client"}, False),
        (503, {"error": "temporarily_unavailable"}, True),
        (200, {"token_type": "Bearer"}, False),  # no access_token
    ],
)
async def test_a_refused_token_request_is_an_authentication_error(
    authorization_server: AuthorizationServer,
    sender: HttpSender,
    status: int,
    body: dict[str, Any],
    retryable: bool,
) -> None:
    authorization_server.answer_token_with = (status, body)
    attempt = await attempt_delivery(lead(1), oauth_destination(authorization_server), sender)
    assert attempt.outcome.kind is OutcomeKind.ERROR
    assert attempt.outcome.reason == "Authentication failed (token)"
    assert attempt.outcome.retryable is retryable


async def test_a_token_answered_with_201_is_a_token(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    """RFC 6749 says 200; some endpoints answer 201 with the same token. It was refused
    as an authentication error, which opened the destination's circuit at once."""
    authorization_server.answer_token_with = (201, {"access_token": "t-201", "expires_in": 3600})
    attempt = await attempt_delivery(lead(1), oauth_destination(authorization_server), sender)
    assert attempt.outcome.kind is OutcomeKind.SUCCESS, attempt.outcome


async def test_a_lifetime_written_as_text_is_the_tokens_lifetime(
    authorization_server: AuthorizationServer, sender: HttpSender
) -> None:
    """``"expires_in": "1"``, as Azure AD's v1 endpoint writes it: taken for an hour, the
    token was sent after it expired, until a 401 renewed it."""
    authorization_server.answer_token_with = (200, {"access_token": "short", "expires_in": "1"})
    dest = oauth_destination(authorization_server, refresh_margin_s=0)
    tokens = TokenCache()
    await attempt_delivery(lead(1), dest, sender, tokens=tokens)
    await attempt_delivery(lead(2), dest, sender, tokens=tokens)
    assert len(authorization_server.token_requests) == 1
    await asyncio.sleep(1.2)
    await attempt_delivery(lead(3), dest, sender, tokens=tokens)
    assert len(authorization_server.token_requests) == 2
