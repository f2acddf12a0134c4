"""Shared by unit and integration tests: a destinations document builder."""

from __future__ import annotations

from typing import Any

import pytest

from streams.config import DestinationsFile, parse_destinations


def destination(**fields: Any) -> dict[str, Any]:
    """A valid destination document; tests override only what they are about."""
    return {"id": "crm", "url": "http://127.0.0.1:9/leads", **fields}


@pytest.fixture
def make_destinations() -> Any:
    def build(*destinations: dict[str, Any]) -> DestinationsFile:
        return parse_destinations({"destinations": list(destinations) or [destination()]})

    return build
