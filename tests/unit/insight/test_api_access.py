"""The API beyond health and metrics: a bearer token, or loopback only."""

from __future__ import annotations

from streams.config import Settings
from streams.insight.app import api_refusal


def test_without_a_token_only_a_loopback_port_answers() -> None:
    assert api_refusal(Settings(web_bind="127.0.0.1"), None) is None
    status, why = api_refusal(Settings(web_bind="0.0.0.0"), None) or (0, "")
    assert status == 403 and "COURIER_API_TOKEN" in why


def test_with_a_token_it_must_be_given() -> None:
    settings = Settings(web_bind="0.0.0.0", api_token="t0ken")  # type: ignore[arg-type]
    assert api_refusal(settings, "Bearer t0ken") is None
    assert api_refusal(settings, None) == (401, "a bearer token is required (COURIER_API_TOKEN)")
    assert api_refusal(settings, "Bearer t0ke") is not None
    assert api_refusal(Settings(api_token="t0ken"), None) is not None  # loopback too  # type: ignore[arg-type]
