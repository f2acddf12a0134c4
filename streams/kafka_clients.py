"""Kafka clients as every command and the worker start them: TLS and SASL options, a
one-line failure for a client that cannot start, topics made before anything uses them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from schemas import ADMIN_ACTION
from streams.avro import EventEncoder, SchemaRegistry, registered_encoder
from streams.config.kafka import KafkaSecurity

log = logging.getLogger(__name__)


def client_options(security: KafkaSecurity | None) -> dict[str, Any]:
    """TLS and SASL options for an aiokafka client (none: plain TCP, no SASL)."""
    return security.client_options() if security is not None else {}


async def started(client: Any) -> None:
    """Start a Kafka client; one that cannot start is closed before the error goes on (else
    aiokafka complains of an unclosed client after our one-line message)."""
    try:
        await client.start()
    except BaseException:
        await (client.stop() if hasattr(client, "stop") else client.close())
        raise


async def stop_consumer(consumer: AIOKafkaConsumer, timeout_s: float | None = None) -> None:
    """Stop a started consumer, even in the same step it started in; with ``timeout_s``, a
    stop that takes longer is left behind (for readers that hold nothing).

    aiokafka 0.14's stop cancels the task that watches a group-less consumer's assignment,
    then awaits it; a task cancelled before its first step re-raises the cancellation
    (aio-libs/aiokafka#647), and the rest of the stop is skipped. A reader that found
    nothing to fetch (the empty changelogs of a first start) got there with no step in
    between. On Python 3.11, ``wait_for`` ran the stop in a task of its own, a loop turn
    later, which hid it where a stop was bounded; 3.12's ``wait_for`` awaits in place, so
    the CancelledError ended Faust's table recovery and the worker never took a record.
    One turn of the loop lets that task start; cancelled after, it ends quietly."""
    await asyncio.sleep(0)
    if timeout_s is None:
        await consumer.stop()
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(consumer.stop(), timeout_s)


IDEMPOTENCE_PROBE_S = 30.0


async def takes_idempotent_producer(bootstrap: str, security: KafkaSecurity | None) -> bool:
    """Does the broker start an idempotent producer (InitProducerId)? Apache Kafka does;
    Tansu 0.6 answers an unknown error (docs/brokers.md); no answer in time counts as a
    refusal. aiokafka's sender logs the refusal as an error: here it is only the answer."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, **client_options(security)
    )
    sender_log = logging.getLogger("aiokafka.producer.sender")
    was_disabled, sender_log.disabled = sender_log.disabled, True
    try:
        await asyncio.wait_for(producer.start(), IDEMPOTENCE_PROBE_S)
    except (KafkaError, TimeoutError):
        return False
    else:
        return True
    finally:
        sender_log.disabled = was_disabled
        await producer.stop()


class TopicsNotMade(Exception):
    """The cluster refused to create topics we need (no right to, a replication factor
    above its brokers, ...): each topic with the broker's error and message."""

    def __init__(self, refused: list[tuple[str, str, str | None]]) -> None:
        self.refused = refused
        super().__init__(
            "could not create "
            + "; ".join(
                f"topic {name!r}: {error}" + (f" ({message})" if message else "")
                for name, error, message in refused
            )
        )


async def ensure_topics(
    bootstrap: str, wanted: list[NewTopic], security: KafkaSecurity | None = None
) -> list[str]:
    """Create each topic that does not exist yet; an existing one is left as it is (its
    partitions and config are its owner's). Returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options(security))
    await started(admin)
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            answer = await admin.create_topics(missing)
            refused = [
                (error[0], for_code(error[1]).__name__, error[2] if len(error) > 2 else None)
                for error in answer.topic_errors
                # another worker may have made it between our look and our ask
                if error[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if refused:
                raise TopicsNotMade(refused)
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def send_admin_action(
    bootstrap: str,
    admin_topic: str,
    record: dict[str, Any],
    *,
    registry_url: str | None = None,
    security: KafkaSecurity | None = None,
) -> None:
    """An ``AdminAction`` on the admin topic, keyed by its destination (every worker
    follows the topic and applies it; the topic keeps it as the audit trail)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        if registry_url:
            registry = SchemaRegistry(registry_url, session)
            encoder = await registered_encoder(registry, admin_topic, ADMIN_ACTION)
        else:
            encoder = EventEncoder(ADMIN_ACTION)
        value = encoder.encode(record)
    await send_one(bootstrap, admin_topic, value, record["destination_id"].encode(), security)


async def send_one(
    bootstrap: str,
    topic: str,
    value: bytes,
    key: bytes,
    security: KafkaSecurity | None = None,
    partition: int | None = None,
) -> int:
    """One record, acknowledged by every in-sync replica, from a producer of its own (the
    commands' and rare actions' way to write); returns its offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client_options(security))
    await started(producer)
    try:
        written = await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()
    return int(written.offset)


async def seek_to_time(
    reader: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ms: int,
    ends: dict[Any, int] | None = None,
) -> None:
    """Each partition of ``reader`` (assigned) to its first record written at ``ms`` (epoch
    milliseconds) or later; its end (``ends``, else the broker's) when every record is
    older. Tansu 0.6 answers offset 0 whatever the time, and a broker that cannot look
    offsets up by time gets each read from its beginning: the reader reads all of it,
    never less, and drops older records by their own timestamps."""
    try:
        found = await reader.offsets_for_times(dict.fromkeys(partitions, ms))
    except Exception as exc:  # an old broker or a broker's error: nothing is skipped
        log.warning(
            "cannot look offsets up by time (%s): reading %s from the beginning",
            type(exc).__name__, ", ".join(sorted({tp.topic for tp in partitions})),
        )  # fmt: skip
        await reader.seek_to_beginning(*partitions)
        return
    older = [tp for tp in partitions if found.get(tp) is None]
    if older and ends is None:
        await reader.seek_to_end(*older)
    for tp in partitions:
        at = found.get(tp)
        if at is not None:
            reader.seek(tp, at.offset)
        elif ends is not None:
            reader.seek(tp, ends.get(tp, 0))
