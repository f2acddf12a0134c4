"""A generic signed webhook, as the Standard Webhooks specification (standardwebhooks.com)
defines it, so any receiver with a Standard Webhooks library can verify us:

    webhook-id:        the message's id: one per lead and destination, the same on every
                       retry of it (so a receiver drops our resends), never shared by
                       two leads whose bodies happen to be equal
    webhook-timestamp: Unix seconds
    webhook-signature: "v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))

The secret is given as ``whsec_`` + base64 (the spec's format, padded or not), by
reference, and is 24 to 64 bytes as the spec asks. ``410 Gone`` means the receiver removed
the endpoint: a configuration error, so the destination's circuit opens at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from streams.auth import Secret
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, Target
from streams.outcome import configuration_refused, default_outcome
from streams.secrets import is_unresolved

NAME = "webhook"
DEFAULT_MAPPING: dict[str, str] = {}
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: Secret

    @field_validator("secret")
    @classmethod
    def _spec_format(cls, secret: SecretStr) -> SecretStr:
        if is_unresolved(secret.get_secret_value()):
            return secret  # courier check --no-secrets: the value is not here to check
        try:
            key = signing_key(secret)
        except (binascii.Error, ValueError):
            raise ValueError(
                "must be whsec_ followed by base64, as Standard Webhooks writes it"
            ) from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(
                f"the key is {len(key)} bytes; Standard Webhooks asks for "
                f"{MIN_KEY_BYTES} to {MAX_KEY_BYTES}"
            )
        return secret


def signing_key(secret: SecretStr) -> bytes:
    encoded = secret.get_secret_value().removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    unsigned = HttpRequest.json("POST", target.url, payload)
    message_id = "msg_" + target.message_id
    timestamp = str(int(time.time()))
    signed = f"{message_id}.{timestamp}.".encode() + unsigned.body
    digest = hmac.new(signing_key(settings.secret), signed, hashlib.sha256).digest()
    headers = {
        **unsigned.headers,
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return HttpRequest("POST", target.url, headers, unsigned.body, frozenset({"webhook-signature"}))


def response(req: HttpRequest, res: HttpResponse) -> Outcome:
    if res.status == 410:
        return configuration_refused("410 Gone: the receiver removed the endpoint", None)
    return default_outcome(res)
