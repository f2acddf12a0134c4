"""The API beyond health and metrics: a bearer token, or loopback only."""

from __future__ import annotations

from typing import Any

from streams.config import Settings
from streams.insight.app import api_refusal
from streams.secrets import SCRUBBER


def test_without_a_token_only_a_loopback_port_answers() -> None:
    assert api_refusal(Settings(web_bind="127.0.0.1"), None) is None
    status, why = api_refusal(Settings(web_bind="0.0.0.0"), None) or (0, "")
    assert status == 403 and "COURIER_API_TOKEN" in why


def test_with_a_token_it_must_be_given() -> None:
    settings = Settings(web_bind="0.0.0.0", api_token="t0ken")  # type: ignore[arg-type]
    assert api_refusal(settings, "Bearer t0ken") is None
    assert api_refusal(settings, None) == (
        401, "a bearer token is required (COURIER_API_TOKEN or COURIER_API_TOKENS)",
    )  # fmt: skip
    assert api_refusal(settings, "Bearer t0ke") is not None
    assert api_refusal(Settings(api_token="t0ken"), None) is not None  # loopback too  # type: ignore[arg-type]


def test_named_tokens_say_who_calls(monkeypatch: Any) -> None:
    monkeypatch.setenv("COURIER_API_TOKENS", '{"alice": "alices-token", "ops-bot": "bots-token"}')
    settings = Settings(web_bind="0.0.0.0", api_token="shared-token")  # type: ignore[arg-type]
    assert settings.api_caller("Bearer bots-token") == ("ops-bot", None)
    assert settings.api_caller("Bearer alices-token") == ("alice", None)
    assert settings.api_caller("Bearer shared-token") == ("api", None)
    assert settings.api_caller("Bearer alices-tokeN")[0] is None
    monkeypatch.delenv("COURIER_API_TOKENS")
    assert Settings(web_bind="127.0.0.1").api_caller(None) == ("local", None)
    assert SCRUBBER.scrub("token alices-token") == "token ****"
