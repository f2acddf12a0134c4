"""Configuration, validated once at start: settings, destinations, flows, policies,
schedules and response rules. A leaf of the engine: it imports the integrations, the
template language and the model, and nothing that runs deliveries.
"""

from streams.config.destinations import (
    Destination,
    DestinationsFile,
    Limits,
    Timeouts,
    load_destinations,
    parse_destinations,
)
from streams.config.settings import Settings

__all__ = [
    "Destination",
    "DestinationsFile",
    "Limits",
    "Settings",
    "Timeouts",
    "load_destinations",
    "parse_destinations",
]
