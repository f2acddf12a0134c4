"""The command line's side of Kafka: publish JSON-lines leads, read decoded events back."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.avro import (
    AvroDecodeError,
    EventDecoder,
    SchemaRegistry,
)
from streams.broker_offsets import fetched_end_offsets
from streams.config.kafka import KafkaSecurity
from streams.control.admin import AdminState, circuit_after
from streams.handlers import (
    UNREADABLE_FEEDBACK,
    UNREADABLE_NOTICE,
    UNREADABLE_ROUTING,
    UNREADABLE_WORK,
)
from streams.kafka_clients import (
    client_options,
    ensure_topics,
    seek_to_time,
    started,
    stop_consumer,
)


def lead_key(line: bytes) -> bytes | None:
    """Key a lead by its id so a lead's events stay in one partition; None if unreadable."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    lead_id = document.get("id") if isinstance(document, dict) else None
    return str(lead_id).encode() if isinstance(lead_id, str | int) and lead_id != "" else None


async def _each_line(lines: Iterable[bytes] | BinaryIO) -> AsyncIterator[bytes]:
    """Lines as they arrive: a file (stdin) is read in a thread, so the producer sends each
    line while we wait for the next, instead of when the input ends."""
    if hasattr(lines, "readline"):
        while line := await asyncio.to_thread(lines.readline):
            yield line
        return
    for line in lines:
        yield line


async def publish_lines(
    bootstrap: str,
    topic: str,
    lines: Iterable[bytes] | BinaryIO,
    security: KafkaSecurity | None = None,
    not_objects: list[int] | None = None,
) -> int:
    """Publish each non-empty line as-is (malformed ones too: the worker dead-letters them).
    ``not_objects``: where to note the numbers of the lines that are not one JSON object
    (a pretty-printed file, a JSON array), for the user to hear of before the worker does."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        max_request_size=16 * 1024 * 1024,
        **client_options(security),
    )
    await started(producer)
    count = 0
    try:
        number = 0
        async for line in _each_line(lines):
            number += 1
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            if not_objects is not None and not _is_object(line):
                not_objects.append(number)
            await producer.send(topic, value=line, key=lead_key(line))
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


NOT_REPLAYED_TRUNCATED = "not replayed: kept only in part (too large)"
ALREADY_REPLAYED = "not replayed: replayed before"
NOT_REPLAYED_NOTICE = "not replayed: a recipient's notice (post it to its /feedback/ again)"
# Dead letters of records that were never leads go back to the topic they were read from
# (a notice on the feedback topic for a destination added since, a routing or work record
# an older release wrote): they were published to the leads topic, and dead-lettered
# there again as leads they never were.
READ_BACK_WHERE_FROM = frozenset({UNREADABLE_FEEDBACK, UNREADABLE_ROUTING, UNREADABLE_WORK})


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters a replay takes: by reason, lead id, and time written (ms)."""

    reasons: frozenset[str] | None = None
    lead_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def takes(self, record: Any, reason: str) -> bool:
        if self.reasons is not None and reason not in self.reasons:
            return False
        if self.lead_id is not None and record.key != self.lead_id.encode():
            return False
        if self.since_ms is not None and record.timestamp < self.since_ms:
            return False
        return self.until_ms is None or record.timestamp < self.until_ms


async def reach_broker(bootstrap: str, security: KafkaSecurity | None = None) -> None:
    """Connect to the cluster once; KafkaConnectionError when it cannot be reached (aiokafka's
    own log lines about each try are kept quiet: the caller says it once)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
        await started(admin)
        await admin.close()
    finally:
        quiet.setLevel(level)


async def ensure_topic(bootstrap: str, topic: str, security: KafkaSecurity | None = None) -> None:
    """Create a compacted one-partition topic unless it exists (a topic created by its
    first write may not have a leader yet when the write arrives)."""
    await ensure_topics(
        bootstrap, [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})], security
    )


def replayed_marks_topic(dlq_topic: str) -> str:
    """Where a replay notes each dead letter it took (key ``partition:offset``), so the
    next replay takes only what no replay has taken before."""
    return f"{dlq_topic}.replayed"


async def replay_dead_letters(
    bootstrap: str,
    dlq_topic: str,
    leads_topic: str,
    which: ReplayFilter | None = None,
    dry_run: bool = False,
    security: KafkaSecurity | None = None,
) -> dict[str, int]:
    """Publish dead letters' original bytes (and keys) to the leads topic again; those
    of records that were never leads (``READ_BACK_WHERE_FROM``) to the topic they were
    read from.

    ``which`` limits it; a dead letter replayed before is not replayed again (counted under
    ``ALREADY_REPLAYED``). Returns how many per reason. A record that is still malformed
    comes back to the dead-letter topic, with its reason. One kept only in part (too
    large for the topic) is not replayed: counted under ``NOT_REPLAYED_TRUNCATED``; nor is
    a recipient's notice no topic held (``NOT_REPLAYED_NOTICE``).
    ``dry_run``: count only, publish nothing."""
    which = which or ReplayFilter()
    marks_topic = replayed_marks_topic(dlq_topic)
    if not dry_run:
        await ensure_topic(bootstrap, marks_topic, security)
    done = {
        r.key async for r in read_records(bootstrap, marks_topic, follow=False, security=security)
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        max_request_size=16 * 1024 * 1024,
        **client_options(security),
    )
    await started(producer)
    replayed: dict[str, int] = {}

    def count(reason: str) -> None:
        replayed[reason] = replayed.get(reason, 0) + 1

    try:
        async for record in read_records(bootstrap, dlq_topic, follow=False, security=security):
            headers = dict(record.headers or ())
            reason = headers.get("courier.dlq.reason", b"").decode()
            if not which.takes(record, reason):
                continue
            position = f"{record.partition}:{record.offset}".encode()
            if position in done:
                count(ALREADY_REPLAYED)
                continue
            if headers.get("courier.dlq.truncated") == b"true":
                count(NOT_REPLAYED_TRUNCATED)
                continue
            if reason == UNREADABLE_NOTICE:
                count(NOT_REPLAYED_NOTICE)
                continue
            target = leads_topic
            if reason in READ_BACK_WHERE_FROM:
                target = headers.get("courier.dlq.topic", b"").decode(errors="replace") or target
            count(reason)
            if dry_run:
                continue
            origin = [("courier.replayed.from", position)]
            # Acknowledged before its mark is written: a mark means "on the leads topic".
            await producer.send_and_wait(target, value=record.value, key=record.key, headers=origin)
            await producer.send_and_wait(
                marks_topic, value=str(int(time.time())).encode(), key=position
            )
        await producer.flush()
    finally:
        await producer.stop()
    return replayed


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    follow: bool,
    idle_timeout_s: float = 1.0,
    security: KafkaSecurity | None = None,
    from_end: bool = False,
    since_ms: int | None = None,
) -> AsyncIterator[Any]:
    """Every record of ``topic`` from the beginning; without ``follow``, stop at today's end.
    ``from_end`` (with ``follow``): only records written from now on; ``since_ms``: start at
    the first record of that time (the broker's time index; Tansu 0.6 answers offset 0 with
    no timestamp, so there it starts at the beginning and the caller's own filter does the
    rest)."""
    consumer = AIOKafkaConsumer(
        **client_options(security),
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=32 * 1024 * 1024,
    )
    await started(consumer)
    try:
        partitions = await _partitions(consumer, topic, wait_forever=follow)
        if not partitions:
            return
        ends: dict[Any, int] = {}
        if not follow or from_end:  # today's end (Tansu's ListOffsets answer is short)
            ends = await fetched_end_offsets(consumer, await consumer.end_offsets(partitions))
        consumer.assign(partitions)
        if from_end:
            for tp in partitions:
                consumer.seek(tp, ends.get(tp, 0))
            ends = {}
        elif since_ms is not None:
            await seek_to_time(consumer, partitions, since_ms, ends)
        else:
            await consumer.seek_to_beginning(*partitions)
        remaining = {tp for tp in partitions if ends.get(tp, 0) > 0}
        while follow or remaining:
            batch = await consumer.getmany(timeout_ms=int(idle_timeout_s * 1000))
            for records in batch.values():
                for record in records:
                    yield record
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await stop_consumer(consumer)


async def _partitions(
    consumer: AIOKafkaConsumer, topic: str, *, wait_forever: bool
) -> list[TopicPartition]:
    """The topic's partitions; when following, wait for a topic the worker has yet to create."""
    for _ in itertools.count() if wait_forever else range(20):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await consumer._client.force_metadata_update()  # a topic created a moment ago
        await asyncio.sleep(0.1)
    return []


async def decoded_events(
    bootstrap: str,
    topic: str,
    *,
    follow: bool,
    registry_url: str | None = None,
    security: KafkaSecurity | None = None,
    from_end: bool = False,
    since_ms: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Events as JSON-ready dicts; an undecodable record becomes ``{"error": ...}``."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        registry = SchemaRegistry(registry_url, session) if registry_url else None
        decoder = EventDecoder(registry)
        records = read_records(
            bootstrap, topic, follow=follow, security=security, from_end=from_end, since_ms=since_ms
        )
        async for record in records:
            try:
                name, event = await decoder.decode(record.value)
            except AvroDecodeError as exc:
                yield {"error": str(exc), "partition": record.partition, "offset": record.offset}
                continue
            yield {"type": name.rsplit(".", 1)[-1], **event}


def dead_letter(record: Any) -> dict[str, Any]:
    headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
    value = record.value or b""
    return {
        "reason": headers.get("courier.dlq.reason"),
        "detail": headers.get("courier.dlq.detail"),
        "source": {
            "topic": headers.get("courier.dlq.topic"),
            "partition": headers.get("courier.dlq.partition"),
            "offset": headers.get("courier.dlq.offset"),
            **(
                {"notice": headers["courier.dlq.notice"]} if "courier.dlq.notice" in headers else {}
            ),
        },
        "bytes": len(value),
        "value": value[:2000].decode(errors="replace"),
    }


@dataclass(frozen=True, slots=True)
class Wanted:
    """``courier tail`` filters; None: any."""

    lead_id: str | None = None
    destination: str | None = None
    outcome: str | None = None

    def event(self, event: dict[str, Any]) -> bool:
        """A delivery event, lead outcome or circuit event (as ``decoded_events`` gives)."""
        if self.lead_id is not None and event.get("lead_id") != self.lead_id:
            return False
        if self.destination is not None:
            named = {event.get("destination_id"), *event.get("accepted_by", ())}
            named |= {d.get("destination_id") for d in event.get("destinations", ())}
            if self.destination not in named:
                return False
        return self.outcome is None or event.get("outcome", event.get("after")) == self.outcome

    def dead_letter(self, record: Any) -> bool:
        if (
            self.lead_id is not None
            and (record.key or b"").decode(errors="replace") != self.lead_id
        ):
            return False
        return self.destination is None and self.outcome is None


def to_json_line(event: dict[str, Any]) -> str:
    return orjson.dumps(event, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError


async def admin_actions(
    bootstrap: str,
    admin_topic: str,
    *,
    registry_url: str | None = None,
    security: KafkaSecurity | None = None,
) -> list[dict[str, Any]]:
    """Every operator's action on the admin topic, oldest first: the audit trail."""
    found = [
        event
        async for event in decoded_events(
            bootstrap, admin_topic, follow=False, registry_url=registry_url, security=security
        )
        if event.get("type") == "AdminAction"
    ]
    return sorted(found, key=lambda event: event["at"])


async def control_state(
    bootstrap: str,
    admin_topic: str,
    control_topic: str,
    *,
    registry_url: str | None = None,
    security: KafkaSecurity | None = None,
) -> tuple[AdminState, dict[str, str]]:
    """What holds now: operators' actions in force (the admin topic), and each
    destination's circuit as last reported (the control topic); what an action's
    ``before`` describes."""
    admin = AdminState()
    circuits: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    for topic in (admin_topic, control_topic):
        events += [
            event
            async for event in decoded_events(
                bootstrap, topic, follow=False, registry_url=registry_url, security=security
            )
            if event.get("type") in ("AdminAction", "CircuitEvent")
        ]
    for event in sorted(events, key=lambda e: e["at"]):
        if event["type"] == "AdminAction":
            admin.apply(event)
            after = circuit_after(event["action"], circuits.get(event["destination_id"]))
            if after is not None:
                circuits[event["destination_id"]] = after
        else:
            circuits[event["destination_id"]] = event["after"]
    return admin, circuits
