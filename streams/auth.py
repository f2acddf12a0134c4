"""How a request proves who we are: API key, Basic, Bearer, OAuth 2.0, JWT, HMAC signature.

The models are a destination's ``auth:`` block; every credential in them must be a
reference (``${env:NAME}``, ``${file:/path}``), resolved once at start. ``sign`` adds the
credentials to a built request and marks the headers that carry them as secret, so every
summary, event and log masks them. Pure functions: OAuth tokens are fetched by oauth.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

import jwt
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    model_validator,
)

from streams.compiled_model import CompiledModel
from streams.model import HttpRequest
from streams.secrets import (
    REFERENCE,
    SCRUBBER,
    has_reference,
    resolve_references,
    single_line,
)


def _reference_only(value: object) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str) or not has_reference(value):
        raise ValueError("credentials must be a reference like ${env:NAME}, never a literal")
    return SecretStr(resolve_references(value))


def _single_line_secret(value: SecretStr) -> SecretStr:
    single_line(value.get_secret_value(), "credential")
    return value


# A credential: given as ${env:NAME} or ${file:/path}, held resolved and masked.
Secret = Annotated[SecretStr, BeforeValidator(_reference_only)]
# One that travels in a header or a URL: one line, no control characters (a PEM key for
# signing may have many lines; a token sent as it is may not).
HeaderSecret = Annotated[
    SecretStr, BeforeValidator(_reference_only), AfterValidator(_single_line_secret)
]


class _Auth(CompiledModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ApiKeyAuth(_Auth):
    type: Literal["api_key"]
    value: HeaderSecret
    name: str = "X-Api-Key"
    location: Literal["header", "query"] = Field(default="header", alias="in")


class BasicAuth(_Auth):
    type: Literal["basic"]
    username: str
    password: Secret

    @model_validator(mode="after")
    def _known_to_scrubber(self) -> BasicAuth:
        SCRUBBER.keep_basic(self.username, self.password.get_secret_value())
        return self


class BearerAuth(_Auth):
    type: Literal["bearer"]
    token: HeaderSecret


class OAuth2Auth(_Auth):
    """RFC 6749 client credentials (§4.4), refresh token (§6) or resource owner password
    (§4.3: older CRMs' and lead systems' ``/token`` endpoints, Salesforce's username-password
    flow) grant; tokens are cached."""

    type: Literal["oauth2"]
    grant: Literal["client_credentials", "refresh_token", "password"] = "client_credentials"
    token_url: HttpUrl
    client_id: str
    client_secret: Secret
    refresh_token: Secret | None = None
    username: str | None = Field(default=None, min_length=1)
    password: Secret | None = None
    scope: str | None = None
    audience: str | None = None
    # RFC 6749 §2.3.1: HTTP Basic is the method servers must support; "body" for others.
    client_auth: Literal["basic", "body"] = "basic"
    # Refresh this long before expiry, so no request leaves with a token about to lapse.
    refresh_margin_s: float = Field(default=60.0, ge=0)

    # The file a ``refresh_token: ${file:/path}`` names: a token endpoint that rotates refresh
    # tokens (RFC 6749 §6) has the new one written there, so a restart sends it.
    _refresh_token_file: Path | None = PrivateAttr(default=None)

    @property
    def refresh_token_file(self) -> Path | None:
        return self._refresh_token_file

    @model_validator(mode="wrap")
    @classmethod
    def _remember_the_refresh_token_file(
        cls, data: Any, handler: ModelWrapValidatorHandler[OAuth2Auth]
    ) -> OAuth2Auth:
        auth = handler(data)
        reference = data.get("refresh_token") if isinstance(data, dict) else None
        found = REFERENCE.fullmatch(reference.strip()) if isinstance(reference, str) else None
        if found is not None and found.group(1) == "file":
            auth._refresh_token_file = Path(found.group(2).strip())
        return auth

    @model_validator(mode="after")
    def _grant_has_what_it_sends(self) -> OAuth2Auth:
        # Without them the token endpoint would refuse every request, lead after lead.
        if self.grant == "refresh_token" and self.refresh_token is None:
            raise ValueError("grant refresh_token needs refresh_token: ${env:NAME}")
        if self.grant == "password" and (self.username is None or self.password is None):
            raise ValueError("grant password needs username and password: ${env:NAME}")
        if self.grant != "password" and (self.username is not None or self.password is not None):
            raise ValueError("username and password are for grant: password")
        return self


class JwtAuth(_Auth):
    """A JWT (RFC 7519) we sign ourselves, sent as a bearer token; reused until shortly
    before it expires. HS256 signs with a shared secret, RS256 with our private key (PEM)."""

    type: Literal["jwt"]
    algorithm: Literal["HS256", "RS256"] = "HS256"
    key: Secret
    issuer: str | None = None
    subject: str | None = None
    audience: str | None = None
    key_id: str | None = None  # the "kid" header, for recipients holding several keys
    claims: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float = Field(default=300.0, gt=30, le=86_400)

    _minted: tuple[str, float] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _key_signs(self) -> JwtAuth:
        try:
            self.token(0.0)  # a key that cannot sign stops start-up, not a lead
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ValueError(f"key cannot sign {self.algorithm}: {type(exc).__name__}") from None
        self._minted = None
        return self

    def token(self, now: float) -> str:
        if self._minted is not None and now < self._minted[1] - 30:
            return self._minted[0]
        claims: dict[str, Any] = {**self.claims, "iat": int(now), "exp": int(now + self.ttl_s)}
        for name, value in (("iss", self.issuer), ("sub", self.subject), ("aud", self.audience)):
            if value is not None:
                claims[name] = value
        headers = {"kid": self.key_id} if self.key_id else None
        token = jwt.encode(claims, self.key.get_secret_value(), self.algorithm, headers=headers)
        self._minted = (token, now + self.ttl_s)
        SCRUBBER.keep_secret(token, runtime=True)
        return token


class HmacAuth(_Auth):
    """A signature the recipient recomputes with the shared secret.

    The signed text is the body (``body``), ``<timestamp>.<body>`` (``timestamp.body``), or
    ``<METHOD>\\n<path?query>\\n<timestamp>\\n<body>`` (``method.path.timestamp.body``);
    the timestamp (Unix seconds) travels in ``timestamp_header``.
    """

    type: Literal["hmac"]
    secret: Secret
    algorithm: Literal["sha256", "sha512", "sha1"] = "sha256"
    header: str = "X-Signature"
    sign: Literal["body", "timestamp.body", "method.path.timestamp.body"] = "body"
    timestamp_header: str = "X-Timestamp"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""  # e.g. "sha256=" as GitHub's webhooks write it


AuthConfig = Annotated[
    ApiKeyAuth | BasicAuth | BearerAuth | OAuth2Auth | JwtAuth | HmacAuth,
    Field(discriminator="type"),
]


def sign(
    request: HttpRequest,
    auth: AuthConfig | None,
    token: str | None = None,
    now: float | None = None,
) -> HttpRequest:
    """Add ``auth``'s credentials to ``request``; ``token`` is the OAuth access token."""
    if auth is None:
        return request
    if isinstance(auth, ApiKeyAuth):
        if auth.location == "query":
            separator = "&" if urlsplit(request.url).query else "?"
            query = urlencode({auth.name: auth.value.get_secret_value()})
            return replace(request, url=f"{request.url}{separator}{query}")
        return _with_secret(request, auth.name, auth.value.get_secret_value())
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        return _with_secret(request, "Authorization", f"Basic {base64.b64encode(pair).decode()}")
    if isinstance(auth, BearerAuth):
        return _with_secret(request, "Authorization", f"Bearer {auth.token.get_secret_value()}")
    if isinstance(auth, JwtAuth):
        bearer = auth.token(time.time() if now is None else now)
        return _with_secret(request, "Authorization", f"Bearer {bearer}")
    if isinstance(auth, OAuth2Auth):
        if token is None:  # pragma: no cover - attempt.py always fetches one first
            raise ValueError("an OAuth 2.0 destination needs a token")
        return _with_secret(request, "Authorization", f"Bearer {token}")
    return _hmac_signed(request, auth, int(time.time() if now is None else now))


def signed_text(request: HttpRequest, auth: HmacAuth, timestamp: int) -> bytes:
    """The exact bytes the signature covers (documented in docs/integrations.md for recipients)."""
    if auth.sign == "body":
        return request.body
    if auth.sign == "timestamp.body":
        return f"{timestamp}.".encode() + request.body
    parts = urlsplit(request.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{request.method}\n{path}\n{timestamp}\n".encode() + request.body


def _hmac_signed(request: HttpRequest, auth: HmacAuth, timestamp: int) -> HttpRequest:
    digest = hmac.new(
        auth.secret.get_secret_value().encode(),
        signed_text(request, auth, timestamp),
        getattr(hashlib, auth.algorithm),
    ).digest()
    encoded = digest.hex() if auth.encoding == "hex" else base64.b64encode(digest).decode()
    signed = _with_secret(request, auth.header, f"{auth.prefix}{encoded}")
    if auth.sign == "body":
        return signed
    return replace(signed, headers={**signed.headers, auth.timestamp_header: str(timestamp)})


def _with_secret(request: HttpRequest, name: str, value: str) -> HttpRequest:
    return replace(
        request,
        headers={**request.headers, name: value},
        secret_headers=request.secret_headers | {name.lower()},
    )
