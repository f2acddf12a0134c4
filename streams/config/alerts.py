"""Alert rules (the destinations file's ``alerts:``), each with a default: what ``courier
insight`` watches per destination, and where it says so besides the alerts topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.config.policies import Share
from streams.secrets import has_reference


class ErrorRateRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    above: Share = 0.5  # errors and timeouts over attempts sent
    minutes: int = Field(default=10, ge=1, le=1440)
    min_attempts: int = Field(default=20, ge=1)  # fewer say too little


class NoAcceptanceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    minutes: int = Field(default=60, ge=1, le=1440)  # attempts sent, none accepted, this long
    min_attempts: int = Field(default=10, ge=1)


class DeadLetterRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    per_minute: float = Field(default=5, gt=0)  # over the last 10 minutes


class Toggle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class AlertWebhook(BaseModel):
    """A Slack-compatible incoming webhook (``{"text": …}``), signed with HMAC-SHA256."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    secret: str | None = None  # ${env:…}: X-Courier-Signature: t=<unix>,v1=<hex>

    @field_validator("secret")
    @classmethod
    def _by_reference(cls, secret: str | None) -> str | None:
        if secret is not None and not has_reference(secret):
            raise ValueError("credentials must be a reference like ${env:NAME}, never a literal")
        return secret


class AlertRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: ErrorRateRule = Field(default_factory=ErrorRateRule)
    auth_failure: Toggle = Field(default_factory=Toggle)  # at once
    circuit_open: Toggle = Field(default_factory=Toggle)
    cap_reached: Toggle = Field(default_factory=Toggle)
    no_acceptance: NoAcceptanceRule = Field(default_factory=NoAcceptanceRule)
    dead_letters: DeadLetterRule = Field(default_factory=DeadLetterRule)
    webhook: AlertWebhook | None = None
