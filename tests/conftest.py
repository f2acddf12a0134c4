"""Shared by unit and integration tests: a destinations document builder."""

from __future__ import annotations

import os
from typing import Any

import pytest

from streams.config import DestinationsFile, parse_destinations

# The tests' recipients live on 127.0.0.1, which the default egress policy refuses: every
# worker and command the tests start may reach it. tests/integration/test_egress.py turns
# the policy on and checks it refuses loopback and private addresses.
os.environ.setdefault("COURIER_EGRESS", "any")


def destination(**fields: Any) -> dict[str, Any]:
    """A valid destination document; tests override only what they are about."""
    return {"id": "crm", "url": "http://127.0.0.1:9/leads", **fields}


@pytest.fixture
def make_destinations() -> Any:
    def build(*destinations: dict[str, Any]) -> DestinationsFile:
        return parse_destinations({"destinations": list(destinations) or [destination()]})

    return build
