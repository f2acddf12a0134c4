"""Topic names (settings, with defaults) and their codecs: raw bytes in and out.

Leads are JSON we parse ourselves (a malformed record must reach the DLQ, not crash a
codec); events are Avro bytes we encode in stages/events.py + streams/avro.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.config import Settings

# Big enough for an oversized lead to reach the dead-letter topic intact.
DLQ_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Topics:
    leads: Any
    events: Any
    outcomes: Any
    dlq: Any
    control: Any
    routing: Any
    work: Any
    feedback: Any
    feedback_events: Any


# Actions are rare and each one may hold for years (a pause): nothing expires.
ADMIN_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}


def written_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The topics the worker writes and reads nowhere (so Faust never declares them), with
    their topic config: made before the worker starts, not left to a broker's
    auto-creation (off on many Apache Kafka clusters, and it would apply the broker's
    defaults, not the dead-letter topic's 16 MiB records)."""
    return {
        settings.events_topic: {},
        settings.outcomes_topic: {},
        settings.dlq_topic: {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)},
        settings.control_topic: {},
        settings.admin_topic: ADMIN_TOPIC_CONFIG,
        settings.feedback_events_topic: {},
    }


def declare_topics(app: Any, settings: Settings) -> Topics:
    written = written_topics(settings)

    def raw(name: str) -> Any:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            config=written.get(name) or None,
        )

    return Topics(
        leads=raw(settings.leads_topic),
        events=raw(settings.events_topic),
        outcomes=raw(settings.outcomes_topic),
        dlq=raw(settings.dlq_topic),
        control=raw(settings.control_topic),
        routing=raw(settings.routing_topic),
        work=raw(settings.work_topic),
        feedback=raw(settings.feedback_topic),
        feedback_events=raw(settings.feedback_events_topic),
    )
