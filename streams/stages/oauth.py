"""OAuth 2.0 access tokens for destinations: fetched through the same sender as leads, cached
(aiocache) until shortly before they expire, and fetched once however many deliveries
want one at the same moment. The only I/O here is the token request.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlencode, urlsplit

from aiocache import SimpleMemoryCache

from streams.auth import OAuth2Auth
from streams.errors import DeliveryError
from streams.model import HttpRequest
from streams.secrets import SCRUBBER
from streams.stages.delivery import Send

if TYPE_CHECKING:
    from streams.config import Destination

DEFAULT_EXPIRES_IN_S = 3600  # RFC 6749 §5.1: expires_in is only recommended


class TokenError(DeliveryError):
    """The token endpoint refused us or answered something that is not a token."""

    reason = "Authentication failed (token)"
    credentials_refused = True

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class TokenCache:
    """One per worker. ``token()`` returns a valid access token for a destination."""

    def __init__(self) -> None:
        self._cache = SimpleMemoryCache()
        self._locks: dict[str, asyncio.Lock] = {}
        self.requests = 0  # token requests made, for tests and metrics
        # The API host each destination's last token answer named (``instance_url``).
        self._instances: dict[str, str] = {}

    def instance_url(self, destination: Destination) -> str | None:
        """The ``instance_url`` of the destination's token answer, if it gave one."""
        return self._instances.get(destination.id)

    async def token(self, destination: Destination, send: Send, stale: str | None = None) -> str:
        """A cached token, or a new one. ``stale``: the token a recipient just refused with
        401; it is replaced once, by whichever delivery gets here first."""
        key = destination.id
        cached = await self._cache.get(key)
        if cached is not None and cached != stale:
            return str(cached)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = await self._cache.get(key)  # another delivery may have fetched it
            if cached is not None and cached != stale:
                return str(cached)
            token, expires_in = await self._fetch(destination, send)
            auth = destination.auth
            assert isinstance(auth, OAuth2Auth)
            ttl = max(expires_in - auth.refresh_margin_s, 1.0)
            await self._cache.set(key, token, ttl=ttl)
            return token

    async def _fetch(self, destination: Destination, send: Send) -> tuple[str, float]:
        auth = destination.auth
        assert isinstance(auth, OAuth2Auth)
        self.requests += 1
        response = await send(token_request(auth), destination)
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            retryable = response.status >= 500 or response.status == 429
            error = body.get("error") if isinstance(body, dict) else None
            raise TokenError(
                f"token endpoint answered HTTP {response.status} ({error or 'no error code'})",
                retryable,
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access_token", False)
        SCRUBBER.keep_secret(token, runtime=True)
        if isinstance(body.get("refresh_token"), str):
            SCRUBBER.keep_secret(body["refresh_token"], runtime=True)
        instance = body.get("instance_url")
        if isinstance(instance, str) and _may_send_token_to(instance, destination):
            self._instances[destination.id] = instance.rstrip("/")
        expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN_S)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            expires_in = DEFAULT_EXPIRES_IN_S
        return token, float(expires_in)


def token_request(auth: OAuth2Auth) -> HttpRequest:
    """The token request as RFC 6749 §4.4.2 / §6 / §4.3.2 describe it (form-encoded POST)."""
    form: dict[str, str] = {"grant_type": auth.grant}
    if auth.grant == "refresh_token" and auth.refresh_token is not None:
        form["refresh_token"] = auth.refresh_token.get_secret_value()
    if auth.grant == "password" and auth.username is not None and auth.password is not None:
        form["username"] = auth.username
        form["password"] = auth.password.get_secret_value()
    if auth.scope:
        form["scope"] = auth.scope
    if auth.audience:
        form["audience"] = auth.audience
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    secret = auth.client_secret.get_secret_value()
    if auth.client_auth == "basic":
        # §2.3.1: client id and secret are form-urlencoded before they are joined.
        pair = f"{quote_plus(auth.client_id)}:{quote_plus(secret)}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    else:
        form["client_id"] = auth.client_id
        form["client_secret"] = secret
    return HttpRequest(
        "POST",
        str(auth.token_url),
        headers,
        urlencode(form).encode(),
        frozenset({"authorization"}),
    )


def _may_send_token_to(url: str, destination: Destination) -> bool:
    """https, or plain http where the destination's own URL may be (loopback, or a
    development destination with ``insecure: true``): the token goes there."""
    if len(url) > 512:
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "http" and (loopback or destination.insecure)
