"""Lead + destinations → the destinations to try, in order.

For now every enabled destination gets every lead (fan-out); waterfall, conditional and
scheduled flows slot in here without touching the agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streams.model import Lead

if TYPE_CHECKING:
    from streams.config import Destination


def plan(lead: Lead, destinations: Sequence[Destination]) -> list[Destination]:
    return [d for d in destinations if d.enabled]
