"""OAuth 2.0 access tokens for destinations: fetched through the same sender as leads, cached
(aiocache) until shortly before they expire, and fetched once however many deliveries
want one at the same moment. The I/O here is the token request, and the refresh token's
file when a token endpoint rotates refresh tokens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlencode, urlsplit

from aiocache import SimpleMemoryCache

from streams.auth import OAuth2Auth
from streams.errors import DeliveryError
from streams.model import HttpRequest
from streams.secrets import SCRUBBER, single_line
from streams.stages.delivery import Send

if TYPE_CHECKING:
    from streams.config import Destination

DEFAULT_EXPIRES_IN_S = 3600.0  # RFC 6749 §5.1: expires_in is only recommended
LONGEST_REFRESH_TOKEN = 4096

log = logging.getLogger(__name__)


class TokenError(DeliveryError):
    """The token endpoint refused us or answered something that is not a token."""

    reason = "Authentication failed (token)"
    credentials_refused = True

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class _Rotated:
    """The refresh token a token endpoint last gave a destination in place of the one sent
    (RFC 6749 §6: "the client MUST discard the old refresh token and replace it"), and what
    the refresh token's file said when it was kept (None: no file, or one not read)."""

    token: str
    file_said: str | None


class TokenCache:
    """One per worker. ``token()`` returns a valid access token for a destination."""

    def __init__(self) -> None:
        self._cache = SimpleMemoryCache()
        self._locks: dict[str, asyncio.Lock] = {}
        self.requests = 0  # token requests made, for tests and metrics
        # The API host each destination's last token answer named (``instance_url``).
        self._instances: dict[str, str] = {}
        # By destination and its configured refresh token: a file reloaded with another
        # configured token starts from that one.
        self._rotated: dict[tuple[str, str], _Rotated] = {}

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
            ttl = cached_for(expires_in, auth.refresh_margin_s)
            await self._cache.set(key, token, ttl=ttl)
            return token

    async def _fetch(self, destination: Destination, send: Send) -> tuple[str, float]:
        auth = destination.auth
        assert isinstance(auth, OAuth2Auth)
        shared = auth.refresh_token_file if auth.grant == "refresh_token" else None
        async with _one_refresh_at_a_time(shared, destination.id):
            return await self._fetch_token(destination, auth, send)

    async def _fetch_token(
        self, destination: Destination, auth: OAuth2Auth, send: Send
    ) -> tuple[str, float]:
        self.requests += 1
        refresh_token, file_said = self._refresh_token(destination.id, auth)
        response = await send(token_request(auth, refresh_token), destination)
        body = response.json()
        # Any 2xx: RFC 6749 says 200, and some endpoints answer 201 with the same token.
        if not 200 <= response.status < 300 or not isinstance(body, dict):
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
        if refresh_token is not None:
            self._keep_rotated(destination.id, auth, refresh_token, file_said, body)
        instance = body.get("instance_url")
        if isinstance(instance, str) and _may_send_token_to(instance, destination):
            self._instances[destination.id] = instance.rstrip("/")
        return token, lifetime(body.get("expires_in"))

    def _refresh_token(
        self, destination_id: str, auth: OAuth2Auth
    ) -> tuple[str | None, str | None]:
        """The refresh token to send (None: not the refresh grant), and what its file said:
        the file when it says something new (an operator, or another worker that shares
        it, put a newer one there), else the one the endpoint last gave, else the
        configured one."""
        if auth.grant != "refresh_token" or auth.refresh_token is None:
            return None, None
        configured = auth.refresh_token.get_secret_value()
        rotated = self._rotated.get((destination_id, configured))
        file_said = _read(auth.refresh_token_file)
        if rotated is not None and file_said == rotated.file_said:
            return rotated.token, file_said
        if file_said:
            SCRUBBER.keep_secret(file_said, runtime=True)
            return file_said, file_said
        return (rotated.token if rotated else configured), file_said

    def _keep_rotated(
        self,
        destination_id: str,
        auth: OAuth2Auth,
        sent: str,
        file_said: str | None,
        body: dict[str, Any],
    ) -> None:
        """A new refresh token in the answer replaces the one sent: for this worker's next
        refresh, and in the refresh token's file when it has one, for the next start.
        Without, the next refresh sent a token the endpoint had voided, and every lead was
        an authentication error from then on."""
        new = body.get("refresh_token")
        if not isinstance(new, str) or new in ("", sent) or len(new) > LONGEST_REFRESH_TOKEN:
            return
        try:
            single_line(new, "refresh_token")
        except ValueError:
            return  # not a token: it could not be written to a file or sent again as one
        assert auth.refresh_token is not None
        path = auth.refresh_token_file
        if path is None:
            log.warning(
                "destination %s: the token endpoint rotated its refresh token; the new one is "
                "used until this worker stops. Give refresh_token as a ${file:} the worker "
                "can write, so a restart sends it",
                destination_id,
            )
        else:
            try:
                _write(path, new)
                file_said = new
            except OSError as exc:
                log.warning(
                    "destination %s: the token endpoint rotated its refresh token, and %s "
                    "cannot be written (%s): the new one is used until this worker stops",
                    destination_id,
                    path,
                    exc.strerror or type(exc).__name__,
                )
        key = (destination_id, auth.refresh_token.get_secret_value())
        self._rotated[key] = _Rotated(new, file_said)


# How long a refresh waits for another worker's on the same file: its token request is
# bounded by the destination's timeout, so past this the other worker is stuck, not busy.
REFRESH_LOCK_WAIT_S = 30.0
_REFRESH_LOCK_POLL_S = 0.05


@contextlib.asynccontextmanager
async def _one_refresh_at_a_time(path: Path | None, destination_id: str) -> AsyncIterator[None]:
    """Workers that share a rotating refresh token's file refresh one at a time: each
    refresh holds an exclusive lock (flock) on the file's directory from reading the file to
    writing the new token. Without it, two workers that read the same token both sent it,
    the endpoint voided it at the first answer and refused the second (``invalid_grant``):
    an authentication error, which opens the destination's circuit at once. The directory,
    not the file, because the file is replaced whole (a lock on it would stay on the old
    one), and a directory is locked without a file of our own in it. Polled, not waited
    for, so the event loop goes on; a filesystem without locks refreshes without one."""
    if path is None:
        yield
        return
    try:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + REFRESH_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.warning(
                        "destination %s: another worker's token refresh has held %s for "
                        "%.0f s; refreshing without waiting for it",
                        destination_id,
                        path.parent,
                        REFRESH_LOCK_WAIT_S,
                    )
                    break
                await asyncio.sleep(_REFRESH_LOCK_POLL_S)
            except OSError:
                break  # no locks here (some network filesystems)
        yield
    finally:
        os.close(directory)  # and with it the lock


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: Path, token: str) -> None:
    """The token in place of the file's, whole or not at all (a crash mid-write leaves the
    old one), readable by its owner only. Blocking, but a rotation comes once a token's
    lifetime at most."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def lifetime(expires_in: Any) -> float:
    """A token's lifetime in seconds from its ``expires_in``: a number (RFC 6749 §5.1), or
    a number in text as Azure AD's v1 endpoint and others write it (``"3599"``: taken for
    an hour before, so a five-minute token was sent expired until a 401 renewed it). An
    hour when it is absent, unreadable or not positive."""
    if isinstance(expires_in, str) and _SECONDS.fullmatch(expires_in.strip()):
        expires_in = float(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return DEFAULT_EXPIRES_IN_S
    return float(expires_in) if 0 < expires_in < _LIFETIME_LIMIT_S else DEFAULT_EXPIRES_IN_S


_SECONDS = re.compile(r"\d{1,9}(?:\.\d{1,6})?")
_LIFETIME_LIMIT_S = 10 * 365 * 86_400.0


def cached_for(lifetime_s: float, margin_s: float) -> float:
    """How long a token is kept: until ``margin_s`` before it expires, but at least half its
    life: a 60-second token with the 60-second margin was fetched again for every second."""
    return max(lifetime_s - min(margin_s, lifetime_s / 2), 1.0)


def token_request(auth: OAuth2Auth, refresh_token: str | None = None) -> HttpRequest:
    """The token request as RFC 6749 §4.4.2 / §6 / §4.3.2 describe it (form-encoded POST);
    ``refresh_token``: the one to send, when the endpoint rotated the configured one."""
    form: dict[str, str] = {"grant_type": auth.grant}
    if auth.grant == "refresh_token" and auth.refresh_token is not None:
        form["refresh_token"] = refresh_token or auth.refresh_token.get_secret_value()
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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port past 65535 raises here, and later in every request)
    except ValueError:  # "https://[::1": the token endpoint's word, not a URL
        return False
    if parts.scheme == "https" and parts.hostname:
        return True
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return parts.scheme == "http" and (loopback or destination.insecure)
