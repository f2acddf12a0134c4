"""``courier insight``: a Faust app of its own that reads back what the workers wrote (delivery
events, lead outcomes, dead letters) into a history table keyed by lead id, and answers
``GET /api/leads/{id}``.

Its own consumer group, so the delivery workers stay at four records a lead and the
insight side scales by partitions on its own: the events, outcomes and dead-letter topics
are keyed by lead id, so a lead's records and its history share a partition number, and
a request for a lead is routed to the insight worker that holds it (Faust's table
routing, over the workers' web ports)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from streams import telemetry
from streams.agents import periodic
from streams.app import check_web_port, faust_options
from streams.avro import AvroDecodeError, EventDecoder
from streams.config import DestinationsFile, Settings
from streams.config.versions import ConfigVersion, load_text
from streams.control.tables import table_options
from streams.errors import ConfigError
from streams.insight.dashboard import register_dashboard
from streams.insight.history import (
    added,
    from_dead_letter,
    from_delivery_event,
    from_feedback,
    from_lead_outcome,
)
from streams.live_config import config_versions, follow_config

log = logging.getLogger(__name__)

HISTORY_TABLE = "lead_history"
EXPIRY_CHECK_S = 3600.0


def api_refusal(settings: Settings, authorization: str | None) -> tuple[int, str] | None:
    """Why a request to the API is refused, if it is (``Settings.api_caller``)."""
    return settings.api_caller(authorization)[1]


def create_insight_app(
    settings: Settings,
    destinations: DestinationsFile | None = None,
    idempotent_producer: bool = False,
) -> Any:
    """``destinations``: the file whose alert rules and schedules apply (defaults without).
    ``idempotent_producer``: the broker takes one (``kafka_idempotence``)."""
    telemetry.start()
    app_id = f"{settings.app_id}-insight"
    port = settings.web_port or 6067
    check_web_port(settings, port)
    host = settings.web_bind if settings.web_bind not in ("0.0.0.0", "::") else None
    app: Any = faust.App(
        app_id,
        **faust_options(settings, app_id),
        web_enabled=True,
        web_port=port,
        # Where the other insight workers reach this one when a lead's history is here.
        canonical_url=f"http://{host or socket.gethostname()}:{port}",
    )
    app.idempotent_producer = idempotent_producer  # read when its producer is made

    def raw(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    keep_s = settings.history_days * 86400
    # On RocksDB a history goes ``keep_s`` after its last write by itself (a TTL database,
    # and a changelog that drops older records): no scan. The memory store needs the scan.
    history = app.Table(
        HISTORY_TABLE,
        default=None,
        partitions=settings.partitions,
        key_type=str,
        value_type=None,
        **table_options(keep_s),
    )
    decoder = EventDecoder()

    def keep(lead_id: str, entry: dict[str, Any]) -> bool:
        """Files ``entry`` under its lead; False when the lead's history holds its id
        already (a record read again after a restart, or written again by a worker)."""
        entries = _entries(history, lead_id)
        if any(known["id"] == entry["id"] for known in entries):
            return False
        history[lead_id] = {"seen": time.time(), "entries": added(entries, entry)}
        return True

    # Set once the config topic has been read to its end at start: until then the rules
    # in force may be an older file's, so no alert is judged (a firing said without the
    # webhook the workers' configuration names would never be posted).
    rules_known = asyncio.Event()
    on_event, on_feedback, on_dead_letter, use = register_dashboard(
        app,
        settings,
        raw,
        lambda authorization: api_refusal(settings, authorization),
        destinations,
        rules_known,
    )

    def apply_version(version: ConfigVersion) -> None:
        """The workers' configuration as it changes: its alert rules and schedules."""
        try:
            running = load_text(version.text, f"config v{version.number}")
        except ConfigError as exc:
            log.error(
                "destinations v%d is refused here; keeping the rules in force", version.number
            )
            for problem in exc.problems:
                log.error("  %s", problem)
            return
        use(running)
        log.warning("alert rules and schedules of destinations v%d (by %s)", version.number,
                    version.by)  # fmt: skip

    @app.task
    async def _follow_config() -> None:
        bootstrap, security = settings.bootstrap_servers(), settings.kafka_security()
        versions = await config_versions(bootstrap, settings.config_topic, security)
        for version in versions:
            apply_version(version)
        rules_known.set()
        last = versions[-1].number if versions else 0
        await follow_config(bootstrap, settings.config_topic, last, apply_version, security)

    def decoded(
        topic: str,
        name: str,
        entry: Callable[[dict[str, Any]], dict[str, Any]],
        then: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        """An agent filing each Avro record of ``topic`` under its lead (and passing it to
        ``then``, the dashboard's count)."""

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                try:
                    _, record = await decoder.decode(event.value)
                    if record["lead_id"] is None:
                        continue  # feedback naming a reference that matched no lead
                    # Counted once per event id: the lead's history knows it (a table,
                    # so this holds across a restart of this worker too).
                    if keep(record["lead_id"], entry(record)) and then is not None:
                        await then(record)
                except (AvroDecodeError, KeyError, ValueError, TypeError) as exc:
                    log.warning("%s: a record we cannot file under a lead (%s)", topic, exc)

        agent.__name__ = agent.__qualname__ = name
        app.agent(raw(topic), name=name)(agent)

    decoded(settings.events_topic, "history_events", from_delivery_event, on_event)
    decoded(settings.outcomes_topic, "history_outcomes", from_lead_outcome)
    decoded(settings.feedback_events_topic, "history_feedback", from_feedback, on_feedback)

    @app.agent(raw(settings.dlq_topic), name="history_dead_letters")
    async def dead_letters(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            headers = {k: v.decode(errors="replace") for k, v in message.headers or ()}
            await on_dead_letter(headers.get("courier.dlq.reason", "?"))
            if not message.key:
                continue  # no lead id to file it under
            at_ms = int(message.timestamp * 1000)  # Faust gives seconds
            entry = from_dead_letter(headers, message.partition, message.offset, at_ms)
            keep(message.key.decode(errors="replace")[:200], entry)

    @periodic(app, EXPIRY_CHECK_S, "forget_old_histories")
    async def forget_old() -> None:
        """Histories not added to for ``history_days`` are dropped (this worker's
        partitions; a scan of the table, once an hour): with the memory store only."""
        if settings.store == "rocksdb":
            return
        horizon = time.time() - keep_s
        mine = {tp.partition for tp in app.consumer.assignment()}
        old = [
            key
            for key, value in list(history.items())
            if value["seen"] < horizon and history.partition_for_key(key) in mine
        ]
        for key in old:
            del history[key]

    @app.page("/api/leads/{lead_id}")
    @app.table_route(table=history, match_info="lead_id")
    async def lead(web: Any, request: Any, lead_id: str) -> Any:
        refused = api_refusal(settings, request.headers.get("Authorization"))
        if refused is not None:
            return web.json({"error": refused[1]}, status=refused[0])
        return web.json({"lead_id": lead_id, "history": _entries(history, lead_id)})

    @app.page("/healthz")
    async def live(web: Any, request: Any) -> Any:
        return web.json({"status": "live"})

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body, content_type = telemetry.prometheus_text()
        return web.bytes(body, headers={"Content-Type": content_type})

    return app


def _entries(history: Any, lead_id: str) -> list[dict[str, Any]]:
    value = history.get(lead_id)
    return list(value["entries"]) if value else []
