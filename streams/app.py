"""The Faust app and its settings: the one place that knows how we talk to Kafka."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

from streams.agents import register_agents
from streams.config import DestinationsFile, Settings
from streams.stages.delivery import HttpSender
from streams.topics import DLQ_MAX_MESSAGE_BYTES, declare_topics

# Group membership timings. Faust's defaults (60 s) made joins on Tansu take ~30 s and a
# restarted worker could wait a full session timeout for its partitions; these keep
# start, restart and rebalance within seconds on Tansu and are ordinary values for Kafka.
REBALANCE_TIMEOUT_S = 6.0
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0
COMMIT_INTERVAL_S = 1.0

# Faust fixes the consumer's fetch_max_wait_ms at 1500. Apache Kafka answers a fetch as soon
# as data is there, so that only bounds idle polling; Tansu holds the fetch for much of the
# wait, which put ~0.4 s between a lead being produced and delivered. 100 ms keeps idle
# polling cheap on both. Faust has no setting for it, hence a transport of our own.
FETCH_MAX_WAIT_MS = 100
TRANSPORT_SCHEME = "courier"


class CourierConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # aiokafka reads it at start()
        return consumer


class CourierConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return CourierConsumerThread(self, loop=self.loop, beacon=self.beacon)


class CourierTransport(Transport):
    Consumer = CourierConsumer


TRANSPORTS[TRANSPORT_SCHEME] = f"{__name__}:CourierTransport"


def create_app(settings: Settings, destinations: DestinationsFile) -> Any:
    app = faust.App(
        settings.app_id,
        # Our transport: Faust's aiokafka one with a shorter fetch wait (see below).
        broker=settings.broker_url().replace("kafka://", f"{TRANSPORT_SCHEME}://", 1),
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        # Leader election needs an extra internal topic and we elect no leader.
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        broker_commit_interval=COMMIT_INTERVAL_S,
        consumer_max_fetch_size=DLQ_MAX_MESSAGE_BYTES,
        producer_max_request_size=DLQ_MAX_MESSAGE_BYTES,
        # On shutdown, wait for in-flight leads to finish so their offsets are committed.
        stream_wait_empty=True,
        web_enabled=settings.web_port is not None,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,
    )
    topics = declare_topics(app, settings)
    sender = HttpSender(max_connections=max(settings.in_flight, 16))
    register_agents(app, topics, destinations, settings, sender)

    # Signalled after the consumer has stopped and in-flight leads are done.
    @app.on_before_shutdown.connect
    async def _close_http(app: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        await sender.close()

    return app


def worker_class() -> type[Any]:
    """Faust's Worker, with the root logger held at the configured level.

    mode leaves the root logger at DEBUG and filters in the handler, so every library's
    debug call on the hot path (aiokafka logs each record it sends, with its value: lead
    data) still builds a log record. Setting the level on the logger skips that work."""
    import faust

    class CourierWorker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level)

    return CourierWorker
