"""The config topic from the worker's side and the command line's: versions of the
destinations file (streams/config/versions.py) read, published, and followed.

A worker starts with the newest of its file and the topic's last version
(``starting_config``), then applies every version published after it (``follow_config``)
between leads; a change to its file is published as a version, not applied alone, so every
worker runs the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from streams.broker_offsets import fetched_end_offsets
from streams.config import DestinationsFile
from streams.config.kafka import KafkaSecurity
from streams.config.versions import (
    CONFIG_TOPIC_CONFIG,
    ConfigVersion,
    load_text,
    read_version,
    version_record,
)
from streams.errors import ConfigError
from streams.kafka_clients import (
    client_options,
    ensure_topics,
    send_one,
    started,
    stop_consumer,
)

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 200  # a new version is taken within this (and the worker's next lead)
READER_STOP_S = 5.0


def _reader(bootstrap: str, security: KafkaSecurity | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **client_options(security),
    )


async def config_versions(
    bootstrap: str, topic: str, security: KafkaSecurity | None = None
) -> list[ConfigVersion]:
    """Every version of the destinations file on the config topic, oldest first."""
    reader = _reader(bootstrap, security)
    await started(reader)
    try:
        await reader._client.force_metadata_update()
        if not reader.partitions_for_topic(topic):
            return []  # no worker has started yet, and nobody applied a file
        where = TopicPartition(topic, 0)
        end = (await fetched_end_offsets(reader, await reader.end_offsets([where]))).get(where, 0)
        await reader.seek_to_beginning(where)  # the look for the end moved it
        found = []
        while await reader.position(where) < end:
            batch = await reader.getmany(where, timeout_ms=1000)
            for record in batch.get(where, []):
                version = read_version(record.offset, record.value)
                if version is not None:
                    found.append(version)
        return found
    finally:
        await stop_consumer(reader)


async def publish_version(
    bootstrap: str,
    topic: str,
    text: str,
    *,
    by: str,
    note: str = "",
    source: str = "apply",
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> int:
    """A new version on the config topic (made if missing); returns its number."""
    await ensure_config_topic(bootstrap, topic, replication, security)
    return await _append_version(bootstrap, topic, text, by, note, source, security)


async def _append_version(
    bootstrap: str,
    topic: str,
    text: str,
    by: str,
    note: str,
    source: str,
    security: KafkaSecurity | None,
) -> int:
    """A new version on the config topic, which exists; returns its number."""
    key, value = version_record(text, by, note, source)
    return await send_one(bootstrap, topic, value, key, security, partition=0) + 1


@dataclass(frozen=True, slots=True)
class StartingConfig:
    """What a worker starts with: the destinations, the number of the last version it has
    seen (it follows the topic from the next one), and what to tell the operator."""

    destinations: DestinationsFile
    seen: int
    said: str
    text: str  # the destinations file as written: what a change of the worker's file is to differ from


async def ensure_config_topic(
    bootstrap: str, topic: str, replication: int = 1, security: KafkaSecurity | None = None
) -> None:
    """The config topic, made if missing: one partition (versions in order), compacted."""
    wanted = NewTopic(topic, 1, replication, topic_configs=CONFIG_TOPIC_CONFIG)
    await ensure_topics(bootstrap, [wanted], security)


async def starting_config(
    bootstrap: str,
    topic: str,
    file: Path,
    file_destinations: DestinationsFile,
    file_text: str,
    file_changed_at: datetime,
    *,
    by: str,
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> StartingConfig:
    """The newest of the worker's file and the config topic's last version.

    No version yet: the file becomes the first. A file changed after the last version
    (edited, then the worker restarted) becomes the next one. Otherwise the topic's version
    is what every worker runs: a file that differs is left alone, and said."""
    await ensure_config_topic(bootstrap, topic, replication, security)
    text = file_text
    versions = await config_versions(bootstrap, topic, security)
    last = versions[-1] if versions else None
    if last is not None and last.text == text:
        return StartingConfig(file_destinations, last.number, f"destinations v{last.number}", text)
    if last is None or file_changed_at > last.at:
        source = "start"
        note = f"{file} at a worker's start" + (
            "" if last is None else f", newer than v{last.number}"
        )
        number = await _append_version(bootstrap, topic, text, by, note, source, security)
        return StartingConfig(
            file_destinations, number, f"destinations v{number} (from {file})", text
        )
    try:
        running = load_text(last.text, f"config v{last.number}")
    except ConfigError as exc:
        return StartingConfig(
            file_destinations, last.number,
            f"config v{last.number} is refused here, so {file} is used: {exc}", text,
        )  # fmt: skip
    return StartingConfig(
        running, last.number,
        f"destinations v{last.number} from the config topic (by {last.by}); {file} differs "
        f"and is older: `courier config apply {file}` to use it", last.text,
    )  # fmt: skip


async def follow_config(
    bootstrap: str,
    topic: str,
    after: int | None,
    apply: Callable[[ConfigVersion], None],
    security: KafkaSecurity | None = None,
) -> None:
    """Every version published after number ``after`` (None: all), in order, to ``apply``."""
    reader = _reader(bootstrap, security)
    await started(reader)
    try:
        where = TopicPartition(topic, 0)
        reader.assign([where])
        if after is None:
            await reader.seek_to_beginning(where)
        else:
            reader.seek(where, after)  # version N is at offset N - 1: the next is at N
        async for record in reader:
            version = read_version(record.offset, record.value)
            if version is None:
                log.warning("config topic: a record at %d that is not a version", record.offset)
                continue
            apply(version)
    finally:
        await stop_consumer(reader, READER_STOP_S)
