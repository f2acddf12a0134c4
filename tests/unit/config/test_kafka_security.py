"""COURIER_KAFKA_* settings: what each client is given, and every inconsistency named."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from streams.app import faust_credentials
from streams.config import Settings
from streams.config.kafka import ClientCredentialsTokens, KafkaSecurity
from streams.secrets import SCRUBBER


def test_plain_tcp_by_default() -> None:
    security = Settings().kafka_security()
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(security) is None


def test_scram_over_tls_with_the_password_from_a_mounted_secret(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret-from-a-file\n")
    security = Settings(
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc-courier",
        kafka_sasl_password=f"${{file:{secret}}}",  # type: ignore[arg-type]
    ).kafka_security()
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"  # SASL implies TLS unless told
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret-from-a-file"
    assert options["ssl_context"].check_hostname  # verified, always
    assert SCRUBBER.scrub("pw=s3cret-from-a-file") == "pw=****"
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert "s3cret" not in repr(credentials) and "s3cret" not in security.describe()


def test_sasl_plaintext_only_when_asked() -> None:
    security = KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        username="u",
        password="p",  # type: ignore[arg-type]
    )
    assert "ssl_context" not in security.client_options()
    credentials = faust_credentials(security)
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_oauthbearer_takes_tokens_from_a_client_credentials_endpoint() -> None:
    security = KafkaSecurity(
        sasl_mechanism="OAUTHBEARER",
        oauth_token_url="https://idp.example.com/oauth2/token",
        oauth_client_id="courier",
        oauth_client_secret="cs",  # type: ignore[arg-type]
    )
    options = security.client_options()
    assert isinstance(options["sasl_oauth_token_provider"], ClientCredentialsTokens)
    assert isinstance(faust_credentials(security), faust.OAuthCredentials)
    assert security.describe() == "SASL_SSL OAUTHBEARER as courier"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"kafka_sasl_mechanism": "PLAIN"}, "needs kafka_sasl_username and kafka_sasl_password"),
        ({"kafka_security_protocol": "SASL_SSL"}, "SASL_SSL needs kafka_sasl_mechanism"),
        (
            {"kafka_security_protocol": "SSL", "kafka_sasl_mechanism": "PLAIN"},
            "needs a SASL_SSL or SASL_PLAINTEXT kafka_security_protocol, not SSL",
        ),
        ({"kafka_ssl_ca_file": "/nonexistent/ca.pem"}, "kafka_ssl_ca_file: /nonexistent/ca.pem"),
        (
            {"kafka_sasl_mechanism": "OAUTHBEARER", "kafka_oauth_client_id": "c"},
            "needs kafka_oauth_token_url, kafka_oauth_client_secret",
        ),
        (
            {
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_oauth_token_url": "http://idp/token",
                "kafka_oauth_client_id": "c",
                "kafka_oauth_client_secret": "s",
            },
            "https only",
        ),
    ],
)
def test_every_inconsistency_is_named(settings: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(**settings)  # type: ignore[arg-type]


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(ValidationError, match="go together"):
        Settings(kafka_ssl_cert_file=cert)
