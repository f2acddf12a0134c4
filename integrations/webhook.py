"""A generic signed webhook, as the Standard Webhooks specification (standardwebhooks.com)
defines it, so any receiver with a Standard Webhooks library can verify us:

    webhook-id:        a message id, the same on every resend of the same body
    webhook-timestamp: Unix seconds
    webhook-signature: "v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))

The secret is given as ``whsec_`` + base64 (the spec's format), by reference.
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
from streams.outcome import default_outcome

NAME = "webhook"
DEFAULT_MAPPING: dict[str, str] = {}
SECRET_PREFIX = "whsec_"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: Secret

    @field_validator("secret")
    @classmethod
    def _spec_format(cls, secret: SecretStr) -> SecretStr:
        try:
            signing_key(secret)
        except (binascii.Error, ValueError):
            raise ValueError(
                "must be whsec_ followed by base64, as Standard Webhooks writes it"
            ) from None
        return secret


def signing_key(secret: SecretStr) -> bytes:
    return base64.b64decode(secret.get_secret_value().removeprefix(SECRET_PREFIX), validate=True)


def validate(lead: Lead, settings: Config) -> str | None:
    return None


def request(payload: dict[str, Any], settings: Config, target: Target) -> HttpRequest:
    unsigned = HttpRequest.json("POST", target.url, payload)
    message_id = "msg_" + hashlib.sha256(unsigned.body).hexdigest()[:32]
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
    return default_outcome(res)
