"""How to reach a managed Kafka: TLS (a CA, a client certificate) and SASL (PLAIN,
SCRAM-SHA-256/512, OAUTHBEARER), as ``COURIER_KAFKA_*`` settings.

One ``KafkaSecurity`` gives the same options to every client the worker and the commands
make (Faust's consumer and producer, our readers and writers), so a setting that works for
one works for all. Passwords and client secrets are taken as given or as ``${file:…}`` /
``${env:…}`` references (a Kubernetes Secret mounted as a file), and are masked in every
log line and output like every other credential."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from aiokafka.abc import AbstractTokenProvider
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from streams.config.tls import checked_tls_context
from streams.secrets import SCRUBBER, has_reference, resolve_references, secrets_at_hand

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class KafkaSecurity(BaseModel):
    """``protocol`` unset: SASL_SSL with a mechanism, SSL with TLS files, else PLAINTEXT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Protocol | None = None
    ca_file: Path | None = None  # unset: the system's CAs (what managed services need)
    cert_file: Path | None = None  # a client certificate (mutual TLS), with key_file
    key_file: Path | None = None
    key_password: SecretStr | None = None
    sasl_mechanism: Mechanism | None = None
    username: str | None = None
    password: SecretStr | None = None
    # OAUTHBEARER: a token from an OAuth 2.0 client-credentials endpoint (OIDC)
    oauth_token_url: str | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    oauth_scope: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        protocol = self.effective_protocol
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"kafka_ssl_{name}: {path} is not a readable file")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file go together")
        if protocol.startswith("SASL_") and self.sasl_mechanism is None:
            raise ValueError(f"kafka_security_protocol {protocol} needs kafka_sasl_mechanism")
        if self.sasl_mechanism is not None and not protocol.startswith("SASL_"):
            raise ValueError(
                f"kafka_sasl_mechanism {self.sasl_mechanism} needs a SASL_SSL or "
                f"SASL_PLAINTEXT kafka_security_protocol, not {protocol}"
            )
        if self.sasl_mechanism == "OAUTHBEARER":
            missing = [
                f"kafka_{name}"
                for name in ("oauth_token_url", "oauth_client_id", "oauth_client_secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"kafka_sasl_mechanism OAUTHBEARER needs {', '.join(missing)}")
            if not str(self.oauth_token_url).startswith("https://"):
                raise ValueError("kafka_oauth_token_url: https only (it is sent a secret)")
        elif self.sasl_mechanism is not None and (self.username is None or self.password is None):
            raise ValueError(
                f"kafka_sasl_mechanism {self.sasl_mechanism} needs kafka_sasl_username "
                "and kafka_sasl_password"
            )
        for secret in (self.key_password, self.password, self.oauth_client_secret):
            if secret is not None:
                SCRUBBER.keep_secret(self.secret_value(secret))
        if protocol.endswith("SSL") and secrets_at_hand():
            # Loaded now, so a CA file with no certificate, an encrypted key without its
            # password or a key that is not the certificate's is named at start (and by
            # `courier check`), not raised by the first Kafka client made.
            self.ssl_context()
        return self

    @property
    def effective_protocol(self) -> Protocol:
        if self.protocol is not None:
            return self.protocol
        if self.sasl_mechanism is not None:
            return "SASL_SSL"
        if self.ca_file is not None or self.cert_file is not None:
            return "SSL"
        return "PLAINTEXT"

    @staticmethod
    def secret_value(secret: SecretStr) -> str:
        """The secret, its ``${file:…}``/``${env:…}`` reference resolved."""
        value = secret.get_secret_value()
        return resolve_references(value).strip() if has_reference(value) else value

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificates and host names verified, always; None over plain TCP."""
        if not self.effective_protocol.endswith("SSL"):
            return None
        password = self.key_password
        return checked_tls_context(
            self.ca_file,
            self.cert_file,
            self.key_file,
            self.secret_value(password) if password is not None else None,
            options="kafka_ssl_",
            password_by="",  # the option is named: kafka_ssl_key_password
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client (consumer, producer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.effective_protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = self.token_provider()
        elif self.sasl_mechanism is not None:
            assert self.password is not None  # checked above
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.secret_value(self.password)
        return options

    def token_provider(self) -> ClientCredentialsTokens | None:
        """OAUTHBEARER's tokens; None for other mechanisms."""
        return ClientCredentialsTokens(self) if self.sasl_mechanism == "OAUTHBEARER" else None

    def describe(self) -> str:
        """For the start-up summary: no secret, no file content."""
        text: str = self.effective_protocol
        if self.sasl_mechanism is not None:
            who = self.username or self.oauth_client_id
            text += f" {self.sasl_mechanism} as {who}"
        if self.cert_file is not None:
            text += " with a client certificate"
        return text


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER tokens from an OAuth 2.0 token endpoint (client-credentials grant, the
    client id and secret in the form body, as Confluent Cloud, Aiven and Redpanda Cloud
    document for OIDC), kept until a minute before they expire. aiokafka asks at each
    (re)authentication."""

    REFRESH_EARLY_S = 60.0

    def __init__(self, security: KafkaSecurity) -> None:
        super().__init__()
        self._security = security
        self._token: str | None = None
        self._expires_at = 0.0

    async def token(self) -> str:
        import time

        import aiohttp

        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        security = self._security
        assert security.oauth_client_secret is not None and security.oauth_token_url
        form = {
            "grant_type": "client_credentials",
            "client_id": security.oauth_client_id or "",
            "client_secret": security.secret_value(security.oauth_client_secret),
        }
        if security.oauth_scope:
            form["scope"] = security.oauth_scope
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(security.oauth_token_url, data=form) as res,
        ):
            body = await res.json(content_type=None)
            if res.status != 200 or not isinstance(body, dict) or "access_token" not in body:
                raise PermissionError(
                    f"Kafka OAUTHBEARER: the token endpoint answered HTTP {res.status}"
                )
        token = str(body["access_token"])
        SCRUBBER.keep_secret(token)
        lifetime = float(body.get("expires_in") or 3600)
        self._token = token
        self._expires_at = time.monotonic() + max(lifetime - self.REFRESH_EARLY_S, 1.0)
        return token

    def extensions(self) -> dict[str, str]:  # aiokafka's AbstractTokenProvider asks for it
        return {}
