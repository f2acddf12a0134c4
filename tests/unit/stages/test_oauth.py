"""How long an OAuth 2.0 token is kept, from what its endpoint says."""

from __future__ import annotations

from typing import Any

import pytest

from streams.stages.oauth import DEFAULT_EXPIRES_IN_S, cached_for, lifetime


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (3600, 3600.0),
        (299.5, 299.5),
        ("3599", 3599.0),  # Azure AD v1's token answer writes it as text
        (" 300 ", 300.0),
        (None, DEFAULT_EXPIRES_IN_S),
        ("soon", DEFAULT_EXPIRES_IN_S),
        (True, DEFAULT_EXPIRES_IN_S),
        (0, DEFAULT_EXPIRES_IN_S),
        (-5, DEFAULT_EXPIRES_IN_S),
        (1e30, DEFAULT_EXPIRES_IN_S),
        ({"s": 1}, DEFAULT_EXPIRES_IN_S),
    ],
)
def test_a_tokens_lifetime_is_read_as_its_endpoint_writes_it(
    expires_in: Any, seconds: float
) -> None:
    assert lifetime(expires_in) == seconds


def test_a_token_is_kept_until_its_margin_but_at_least_half_its_life() -> None:
    assert cached_for(3600.0, 60.0) == 3540.0
    assert cached_for(60.0, 60.0) == 30.0  # was 1 s: a token request every second
    assert cached_for(1.0, 60.0) == 1.0
