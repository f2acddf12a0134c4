"""The Faust app and its settings: the one place that knows how we talk to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    Producer,
    Transport,
    credentials_to_aiokafka_auth,
    server_list,
)
from mode.services import WaitResults

from streams import telemetry
from streams.agents import Holds, periodic, register_agents, safe_commit
from streams.auth import OAuth2Auth
from streams.avro import AvroDecodeError, Encoders, EventDecoder, SchemaRegistry
from streams.broker_offsets import fetched_end_offsets
from streams.commits import UnhandledRecords, left_behind, read_range, unhandled
from streams.config import Destination, DestinationsFile, Settings
from streams.config.destinations import read_text_file
from streams.config.flows import CompiledFlow, performance_windows
from streams.config.kafka import KafkaSecurity
from streams.config.versions import ConfigVersion, changes, load_text
from streams.control.admin import MAX_ADMIN_BODY, AdminState, admin_request
from streams.control.capacity import CapacityBoard
from streams.control.circuit import heard
from streams.control.crowds import Crowds
from streams.control.desk import DeliveryDesk, Unremembered, lead_key, owner_key
from streams.control.distribution import Distributor
from streams.control.home import Home, LeadStates
from streams.control.lookback import control_lookback_s
from streams.control.tables import (
    ROCKSDB_SCHEME,
    ROCKSDB_SCHEMES,
    Owned,
    budget_store_memory,
    confirmed,
    kafka_partitioner,
    keyed_table,
    partition_of,
    store_memory,
    track_writes,
)
from streams.errors import ConfigError, DeliveryError, StoppedWhileWaiting
from streams.handlers import Handlers, Origin, unread_notice
from streams.kafka_clients import seek_to_time, send_admin_action, stop_consumer
from streams.live_config import follow_config, publish_version
from streams.logs import JsonLogFormatter
from streams.model import Lead
from streams.progress import Progress
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.batching import Batches
from streams.stages.delivery import HttpSender
from streams.stages.events import ADMIN_ACTION_NAME, CAP_USAGE_NAME, PERFORMANCE_TALLY_NAME
from streams.stages.feedback import Received, poll_request, receive_feedback
from streams.stages.oauth import TokenCache
from streams.topics import DLQ_MAX_MESSAGE_BYTES, Topics, declare_topics

log = logging.getLogger(__name__)

# Group membership timings. Faust's defaults (60 s) made joins on Tansu take ~30 s and a
# restarted worker could wait a full session timeout for its partitions; these keep
# start, restart and rebalance within seconds on Tansu and are ordinary values for Kafka.
REBALANCE_TIMEOUT_S = 6.0
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0
COMMIT_INTERVAL_S = 1.0
LEFT_BEHIND_CHECK_S = 5.0

# Faust fixes the consumer's fetch_max_wait_ms at 1500. Apache Kafka answers a fetch as soon
# as data is there, so that only bounds idle polling; Tansu holds the fetch for much of the
# wait, which put ~0.4 s between a lead being produced and delivered. 100 ms keeps idle
# polling cheap on both. Faust has no setting for it, hence a transport of our own.
FETCH_MAX_WAIT_MS = 100
TRANSPORT_SCHEME = "courier"
READER_STOP_S = 2.0


class CourierConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # aiokafka reads it at start()
        return consumer

    async def on_thread_stop(self) -> None:
        """Stops the consumer even when a fetch to an unreachable broker is under way.

        aiokafka 0.14's ``Fetcher.close`` cancels its pending fetch requests and awaits them
        without catching their ``CancelledError``: with the broker gone (a request waiting
        out its retry backoff), that error ended this thread's loop, the thread never said it
        had stopped and the worker waited out mode's 60 s stop timeout, printing the
        traceback line by line (measured: 63.7 s). A cancellation that is not this task's
        own is that request's: the rest of the stop goes on."""
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.info("consumer: stopped with a fetch to the broker still pending")
            consumer = self._consumer
            if consumer is not None:
                await consumer._client.close()  # what aiokafka's stop does after the fetcher


async def done_at_once(
    wait_first: Callable[..., Awaitable[Any]],
    *coros: Any,
    timeout: Any = None,  # noqa: ASYNC109 (passed on to mode's wait_first)
) -> Any:
    """``wait_first(*coros)``, unless the first coroutine is done at its first step.

    Faust hands every record to the agents through mode's ``wait_first(hand_over, flow
    suspended)``: a task for each, two more for "stopped" and "crashed", a wait and three
    cancellations, ~2 % of a lead's CPU, so that a hand-over blocked on a full queue gives
    way to a rebalance. A hand-over with room in the queue is done at its first step, and
    nothing can have given way to it: only one still waiting takes the full wait (with
    its task in place of the coroutine). mode's answer either way (``WaitResults``)."""
    if not coros or not asyncio.iscoroutine(coros[0]):
        return await wait_first(*coros, timeout=timeout)
    first = asyncio.ensure_future(coros[0])
    try:
        await asyncio.sleep(0)  # the task's first step runs before this resumes
    except BaseException:
        first.cancel()
        raise
    if not first.done():
        return await wait_first(first, *coros[1:], timeout=timeout)
    for other in coros[1:]:
        if asyncio.iscoroutine(other):
            other.close()  # never started: not left "never awaited"
    return WaitResults([coros[0]], [first.result()], False)


class CourierConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return CourierConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109 (mode's)
        """mode's ``wait_first``, without its four tasks when the first coroutine is done
        at its first step (``done_at_once``)."""
        if self.should_stop:
            return await super().wait_first(*coros, timeout=timeout)
        return await done_at_once(super().wait_first, *coros, timeout=timeout)

    def _new_offset(self, tp: Any) -> int | None:
        """Faust's next offset to commit, never past a record an agent still holds
        (``streams.agents.safe_commit``) nor past one nobody handled (``streams.commits``)."""
        holds: Holds | None = getattr(self.app, "holds", None)
        records: UnhandledRecords | None = getattr(self.app, "unhandled", None)
        if holds is None or records is None:
            return super()._new_offset(tp)
        held = holds.held(tp)
        committed = self._committed_offset.get(tp)
        found = unhandled(tp, committed, self._acked.get(tp, []), self._gap.get(tp), held)
        if found is not None and not records.may_pass(found):
            return None
        proposed: int | None = super()._new_offset(tp)
        if proposed is None:
            return None
        offset, keep = safe_commit(proposed, committed, held)
        if keep:
            self._acked[tp].extend(keep)
            self._acked[tp].sort()
            self._acked_index[tp].update(keep)
        if offset != proposed:
            log.info(
                "%s[%d]: commit held at %s, not %d: a record below is still in progress",
                tp.topic, tp.partition, offset, proposed,
            )  # fmt: skip
        if offset is not None:
            records.forget(tp, offset)
        return offset

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]:
        """End offsets for table recovery, checked against a fetch's high watermark.

        Tansu 0.6 answers ListOffsets with the last record batch's base offset + 1, so
        Faust's recovery would stop before the last changes of a table (a cap one short).
        A fetch's high watermark is right on every broker; on Kafka both agree."""
        listed = await super().highwaters(*partitions)
        if not partitions:
            return listed
        conf = self.app.conf
        transport: Any = self.transport
        reader = AIOKafkaConsumer(
            bootstrap_servers=server_list(transport.url, transport.default_port),
            enable_auto_commit=False,
            **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        await reader.start()
        try:
            return await fetched_end_offsets(reader, dict(listed))
        finally:
            # Inside Faust's worker this stop has been seen to hang (standalone it does not;
            # cause not found). The reader is in no group and holds nothing: bound the wait.
            await stop_consumer(reader, READER_STOP_S)


class CourierProducer(Producer):
    """Faust's aiokafka producer, with every topic it writes to tracked for metadata.

    aiokafka refreshes metadata only for the topics its client tracks, and a refresh
    replaces all it knew. A topic is tracked only if it was unknown at its first send; one
    that was known (from the all-topics fetch at start) loses its partitions at the next
    refresh, and a batch already queued for it waits for a leader that no refresh brings
    back. When that batch holds the only sends every actor awaits, nothing sends to the
    topic again and the worker stalls (seen on Tansu; the client logic is the same on
    Kafka). Tracking each topic before its first record keeps it in every refresh."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tracked_topics: set[str] = set()

    def _settings_extra(self) -> Mapping[str, Any]:
        # Idempotent when the worker was started so (``kafka_idempotence``): a batch the
        # producer sends again (a timeout, a dropped connection) is kept once by the broker.
        extra = super()._settings_extra()
        if getattr(self.app, "idempotent_producer", False):
            return {**extra, "acks": "all", "enable_idempotence": True}
        return extra

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        if topic not in self._tracked_topics:
            self._tracked_topics.add(topic)
            self._ensure_producer().client.add_topic(topic)
        return await super().send(topic, *args, **kwargs)


class CourierTransport(Transport):
    Consumer = CourierConsumer
    Producer = CourierProducer


TRANSPORTS[TRANSPORT_SCHEME] = f"{__name__}:CourierTransport"


class CourierApp(faust.App):
    """Faust's app, whose HTTP sender drains as soon as it starts to stop: requests under
    way finish, queued ones are given up (handled again after the restart), so a stop
    takes as long as the slowest request in flight, not as long as every record read."""

    sender: HttpSender | None = None
    idempotent_producer = False  # set before the producer starts (``kafka_idempotence``)
    holds: Holds | None = None  # the agents' records in progress, for the consumer's commits
    unhandled: UnhandledRecords | None = None  # offsets a commit would pass unacknowledged

    async def on_stop(self) -> None:
        if self.sender is not None:
            self.sender.drain()
        await super().on_stop()

    async def maybe_start_producer(self) -> Any:
        """The producer, without Faust's stampede guard once it runs.

        Every record Faust sends asks for the producer through a ``stampede`` wrapper that
        yields to the event loop three times (``asyncio.sleep(0)`` before and after) even
        when the producer is long started: three loop turns and three resumptions of the
        sender's whole coroutine chain per record, ~90 µs of CPU each send here (measured:
        `--only framework`, 913 → 698 µs a record). Only the first start needs the guard."""
        producer = self.producer
        if not self.in_transaction and producer.started:
            return producer
        return await super().maybe_start_producer()


def faust_credentials(security: KafkaSecurity) -> Any:
    """``KafkaSecurity`` as Faust's credentials (None: plain TCP, no SASL)."""
    context = security.ssl_context()
    if security.sasl_mechanism == "OAUTHBEARER":
        return faust.OAuthCredentials(oauth_cb=security.token_provider(), ssl_context=context)
    if security.sasl_mechanism is not None:
        options = security.client_options()
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=context,  # SASL_SSL when set
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def abandon(app: Any, message: Any) -> None:
    """Stop waiting for a record a stopping worker gives up: Faust waits at shutdown until
    every record it handed out is acknowledged, and this one never will be (so its offset
    is not committed and the next worker handles it)."""
    app.consumer._unacked_messages.discard(message)


def readiness(app: Any, progress: Progress, stall_s: float) -> str:
    """What GET /readyz says: ``ready`` or why not."""
    if app.rebalancing:
        return "rebalancing"
    if app.in_recovery or not app.tables.recovery.completed.is_set():
        return "recovering"
    if not app.consumer.assignment():
        return "no partitions"
    stalled = progress.stalled_for(sum(lag for lag, _ in consumer_lag(app)))
    if stalled > stall_s:
        return f"stalled: no record finished for {stalled:.0f} s with {progress.held} held"
    return "ready"


def consumer_lag(app: Any) -> list[tuple[int, Any]]:
    """(records not yet committed, topic-partition) for each partition this worker has."""
    consumer = app.consumer
    lags = []
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            committed = consumer._committed_offset.get(tp)
            lags.append((max(highwater - (committed or 0), 0), tp))
    return lags


def measure(
    app: Any,
    sender: HttpSender,
    circuits: Mapping[str, Any],
    capped: DeliveryDesk,
    home: DeliveryDesk,
    destinations: Mapping[str, Destination],
    progress: Progress,
    capacity: CapacityBoard,
    distributor: Distributor,
) -> None:
    """The gauges read at each scrape: in flight, circuits, parked retries, consumer lag,
    a stall, caps used, what performance distributions rank by."""

    def in_flight() -> Iterable[tuple[float, dict[str, Any]]]:
        return [(n, {"destination": d}) for d, n in sender.in_flight.items()]

    def circuit_states() -> Iterable[tuple[float, dict[str, Any]]]:
        for destination_id, destination in destinations.items():
            # Capped destinations' circuits live in their partition's table (when this
            # worker owns it); the others' in every worker, shared by the control topic.
            source = capped.circuits if destination.caps is not None else circuits
            stored = source.get(destination_id)
            state = "closed" if stored is None else stored["state"]
            yield CIRCUIT_STATES.index(state), {"destination": destination_id}

    def parked() -> Iterable[tuple[float, dict[str, Any]]]:
        return [(capped.waiting + home.waiting, {})]

    def caps(limit: bool) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def read() -> Iterable[tuple[float, dict[str, Any]]]:
            for destination_id, windows in list(capacity.reported.items()):
                for window, used, cap in windows:
                    kind = window.split(" ", 1)[0]  # hour, day, week, month
                    yield cap if limit else used, {"destination": destination_id, "window": kind}

        return read

    def ranked(accepted: bool) -> Callable[[], Iterable[tuple[float, dict[str, Any]]]]:
        def read() -> Iterable[tuple[float, dict[str, Any]]]:
            for destination_id, (attempts, sales) in distributor.known().items():
                yield sales if accepted else attempts, {"destination": destination_id}

        return read

    def lag() -> Iterable[tuple[float, dict[str, Any]]]:
        return [(n, {"topic": tp.topic, "partition": tp.partition}) for n, tp in consumer_lag(app)]

    def stalled() -> Iterable[tuple[float, dict[str, Any]]]:
        return [(progress.stalled_for(sum(n for n, _ in consumer_lag(app))), {})]

    telemetry.gauge(
        "courier.deliveries.in_flight", "{request}", "Requests under way, by destination", in_flight
    )
    telemetry.gauge(
        "courier.circuit.state",
        "1",
        "Circuit state by destination: 0 closed, 1 half open, 2 open",
        circuit_states,
    )
    telemetry.gauge(
        "courier.retries.parked", "{delivery}", "Deliveries waiting for their retry time", parked
    )
    telemetry.gauge(
        "courier.cap.used",
        "{lead}",
        "Leads counted toward each cap window now, as its counting worker last reported",
        caps(limit=False),
    )
    telemetry.gauge("courier.cap.limit", "{lead}", "Each cap window's cap", caps(limit=True))
    telemetry.gauge(
        "courier.performance.attempts",
        "{attempt}",
        "Attempts of every worker a performance distribution ranks by (its longest window)",
        ranked(accepted=False),
    )
    telemetry.gauge(
        "courier.performance.accepted",
        "{attempt}",
        "Of them, accepted",
        ranked(accepted=True),
    )
    telemetry.gauge(
        "courier.worker.stalled",
        "s",
        "Seconds without a finished record while records wait (0: idle or moving)",
        stalled,
    )
    if app.conf.store.scheme in ROCKSDB_SCHEMES:
        telemetry.gauge(
            "courier.store.memory",
            "By",
            "Memory of the RocksDB tables (COURIER_STORE_MEMORY_MB): total, and of it memtables",
            lambda: [(n, {"part": part}) for part, n in store_memory().usage().items()],
        )
    telemetry.gauge(
        "courier.consumer.lag",
        "{record}",
        "Records not yet committed, by topic and partition (this worker's partitions)",
        lag,
    )


# The circuit gauge's values, in this order.
CIRCUIT_STATES = ("closed", "half_open", "open")


def check_web_port(settings: Settings, port: int) -> None:
    """The web port can be served, said before the worker starts: a port already taken
    surfaced as a traceback from deep inside the web server's start."""
    family = socket.AF_INET6 if ":" in settings.web_bind else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((settings.web_bind, port))
    except OSError as exc:
        where = f"{settings.web_bind}:{port} cannot be served ({exc.strerror})"
        raise ConfigError("settings", [f"web_port (COURIER_WEB_PORT): {where}"]) from None


def faust_options(settings: Settings, app_id: str) -> dict[str, Any]:
    """What every Faust app of ours is given: our transport, the group timings, TLS and
    SASL, the table store in a directory of the app's own, and a web port that shows no
    lead (``courier worker`` and ``courier insight`` alike)."""
    data_dir = settings.data_dir / app_id
    try:
        data_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    except OSError as exc:
        problem = f"{settings.data_dir} cannot hold the tables ({exc.strerror})"
        raise ConfigError("settings", [f"data_dir (COURIER_DATA_DIR): {problem}"]) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        problem = f"{data_dir} is not writable"
        raise ConfigError("settings", [f"data_dir (COURIER_DATA_DIR): {problem}"])
    if settings.store == "rocksdb":
        budget_store_memory(settings.store_memory_mb)
    return {
        # Our transport: Faust's aiokafka one with a shorter fetch wait (see above).
        "broker": settings.broker_url().replace("kafka://", f"{TRANSPORT_SCHEME}://", 1),
        # Our RocksDB store: Faust's, without a garbage collection at each rebalance.
        "store": f"{ROCKSDB_SCHEME if settings.store == 'rocksdb' else settings.store}://",
        "autodiscover": False,
        # Faust names a table's RocksDB files by table and partition only: a directory of
        # its own per app id, or two apps sharing a data dir would read each other's state.
        "datadir": str(data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        # Leader election needs an extra internal topic and we elect no leader.
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_rebalance_timeout": REBALANCE_TIMEOUT_S,
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "broker_commit_interval": COMMIT_INTERVAL_S,
        # TLS and SASL for a managed Kafka: the same options as every client of ours.
        "broker_credentials": faust_credentials(settings.kafka_security()),
        "web_bind": settings.web_bind,
        # Faust's table views answer GET /table/leads/<id> with the lead itself (name,
        # e-mail, SSN), unauthenticated: off, with the router and debug pages.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
    }


def own_owner(key: str) -> str:
    """A key that decides its own partition: a lead id, or a "destination|reference" (its
    routing record is keyed by it)."""
    return key


def create_app(
    settings: Settings,
    destinations: DestinationsFile,
    config_seen: int | None = None,
    config_text: str | None = None,
    idempotent_producer: bool = False,
) -> Any:
    """``config_seen``: the last version of the config topic the worker has taken into
    account at start (streams/live_config.py); it follows the topic from the next. None:
    from the first (tests that build an app without the command line). ``config_text``:
    the destinations file it starts with, as written (a file touched but not changed is
    not published again). ``idempotent_producer``: the broker takes one
    (``kafka_idempotence``)."""
    if settings.web_port is not None:
        check_web_port(settings, settings.web_port)
    telemetry.start()
    app = CourierApp(
        settings.app_id,
        **faust_options(settings, settings.app_id),
        consumer_max_fetch_size=DLQ_MAX_MESSAGE_BYTES,
        producer_max_request_size=DLQ_MAX_MESSAGE_BYTES,
        producer_partitioner=kafka_partitioner,
        # On shutdown, wait for in-flight leads to finish so their offsets are committed.
        stream_wait_empty=True,
        # The web port serves health and metrics only.
        web_enabled=settings.web_port is not None,
        web_port=settings.web_port or 6066,
    )
    app.idempotent_producer = idempotent_producer  # read when its producer is made
    holds = app.holds = Holds()

    def forget_handled(_: Any, /, *revoked: Any, signal: Any, **__: Any) -> None:
        holds.forget(revoked[0])  # the revoked partitions: what the signal sends

    app.on_partitions_revoked.connect(forget_handled)

    async def hand_over(tp: Any, record: Any) -> None:
        """A record Faust fetched and dropped, to the agents as Faust hands them over."""
        consumer: Any = app.consumer
        if tp in consumer.assignment():
            await consumer.callback(consumer._to_message(tp, record))

    unhandled_records = app.unhandled = UnhandledRecords(
        partial(read_range, settings.bootstrap_servers(), settings.kafka_security()), hand_over
    )
    topics = declare_topics(app, settings)

    def still_taking(destination: Destination) -> bool:
        """Asked when a delivery had to wait for its destination's turn: is it, in the
        desk that delivers to it, still taking leads (not paused, its circuit not open)?"""
        desk = capped_desk if destination.caps is not None else home_desk
        return desk.lets_through(destination)

    # No pool-wide connection limit: one destination's slow answers must not hold the
    # connections of another. Each destination is bounded by its own in-flight slots.
    sender = app.sender = HttpSender(
        max_connections=0,
        in_flight_per_destination=settings.in_flight,
        egress=settings.egress_policy(),
        lets_through=still_taking,
        proxy=settings.forward_proxy(),
    )
    partitions = settings.partitions
    worker_name = f"{socket.gethostname()}:{os.getpid()}"

    def table(name: str, owner: Callable[[str], str], keep_s: float | None = None) -> Any:
        return keyed_table(app, name, partitions, owner, keep_s)

    remember_s = settings.remember_h(destinations.feedback_window_h()) * 3600

    tokens = TokenCache()  # OAuth 2.0 tokens, shared by every delivery of this worker
    batches = Batches()  # open batches of batch-taking destinations

    async def poll_recipient(destination_id: str, url: str) -> tuple[int, bytes] | None:
        """A polled recipient's answer about one lead (None: it could not be asked)."""
        destination = by_id.get(destination_id)
        if destination is None:
            return None
        try:
            oauth = isinstance(destination.auth, OAuth2Auth)
            token = await tokens.token(destination, sender) if oauth else None
            answer = await sender(poll_request(url, destination.auth, token), destination)
        except (DeliveryError, StoppedWhileWaiting) as exc:
            log.info("%s: a poll could not be sent (%s)", destination_id, type(exc).__name__)
            return None
        return answer.status, answer.body

    async def attempt_at(lead: Lead, destination: Destination, number: int) -> Attempt:
        return await attempt_delivery(
            lead, destination, sender, number, tokens=tokens, batches=batches
        )

    by_id = destinations.by_id()
    # Destinations with caps: their deliveries in the destination's own partition, where
    # its counts are exact across workers.
    admin = AdminState()  # operators' pauses and circuit resets, from the control topic
    capacity = CapacityBoard()  # capped destinations' room, from the control topic
    capped_desk = DeliveryDesk(
        by_id,
        attempt_at,
        admin=admin,
        circuits=table("circuits", owner_key),
        caps=table("caps", owner_key),
        delivered=table("delivered", owner_key, keep_s=remember_s),
        parked=table("parked", owner_key),
        crowds=Crowds(sender.queued, settings.queued_per_destination),
        turn_in=sender.turn_in,
    )
    # Every other delivery: in the lead's partition. Circuits are this worker's own,
    # shared with the others through the control topic (``follow_control``).
    circuits: dict[str, Any] = {}
    home_desk = DeliveryDesk(
        by_id,
        attempt_at,
        circuits=circuits,
        caps={},
        delivered=Unremembered(),
        parked=table("held", lead_key),
        owner=lead_key,
        admin=admin,
        crowds=Crowds(sender.queued, settings.queued_per_destination),
        capacity=capacity,
        turn_in=sender.turn_in,
    )
    # Held as they are and changed in place by a reload (``follow_destinations_file``): every
    # desk, the home, the handlers and the distributor read these very objects.
    flows = list(destinations.compiled_flows)
    flows_by_id = {flow.id: flow for flow in flows}
    prices = {d.id: d.price for d in destinations.destinations}
    ranked = performance_windows(flows)  # destinations a performance step ranks
    distributor = Distributor(prices, capacity=capacity, windows=ranked, worker=worker_name)
    feedback_blocks = {d.id: d.feedback for d in destinations.destinations}
    home = Home(
        flows_by_id,
        lambda destination_id: by_id[destination_id].caps is not None,
        LeadStates(table("leads", own_owner), table("finished", own_owner, keep_s=remember_s)),
        home_desk,
        distributor=distributor,
        # Only for recipients whose feedback names leads by their own ids: one small record
        # and table entry per sale to them.
        references=table("references", own_owner, keep_s=remember_s),
        polls=table("polls", lead_key),
    )
    built: asyncio.Future[Handlers] | None = None
    progress = Progress()  # records taken and finished: a stalled worker is not ready

    def at_home(origin: Origin, lead_id: str) -> bool:
        """Read from the leads topic in the partition its id hashes to, with as many
        partitions as ours: its tables' partitions are this worker's (no repartition)."""
        return (
            origin.topic == settings.leads_topic
            and origin.partition == partition_of(lead_id, partitions)
            and app.consumer.topic_partitions(settings.leads_topic) == partitions
        )

    async def handlers() -> Handlers:
        # Built once per worker, by whichever agent gets here first (encoders may have to
        # register schemas with a registry).
        nonlocal built
        if built is None:
            built = asyncio.ensure_future(
                _handlers(
                    settings,
                    flows,
                    home,
                    capped_desk,
                    worker_name,
                    at_home,
                    feedback_blocks,
                    poll_recipient,
                )
            )
        return await built

    def owns(topic: str) -> Callable[[], Callable[[str], bool]]:
        def check() -> Callable[[str], bool]:
            """Is an id's partition this worker's now, with its tables recovered?

            Only then may a timer act on its keys: a table keeps keys of partitions that
            have moved to another worker until they come back and are recovered again."""
            if app.rebalancing or app.in_recovery:
                return Owned(frozenset(), partitions)
            mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
            return Owned(frozenset(mine), partitions)

        return check

    register_agents(
        app,
        topics,
        handlers,
        held_per_agent=settings.held_per_agent,
        owns_destination=owns(settings.work_topic),
        owns_lead=owns(settings.routing_topic),
        remember_delivered_s=remember_s,
        abandon=lambda message: abandon(app, message),
        track_writes=track_writes,
        progress=progress,
        holds=holds,
    )

    behind: dict[Any, Any] = {}  # partition → what was left behind at the last look
    # Partition → the log's end when the group's offset was last seen past it. Kafka answers
    # a fetch past the end "out of range" and the consumer starts from the beginning; Tansu
    # answers nothing, and the worker would wait there without a word (docs/brokers.md).
    past_the_end: dict[Any, int] = {}
    agent_topics = {
        settings.leads_topic, settings.routing_topic, settings.work_topic, settings.feedback_topic,
    }  # fmt: skip

    @periodic(app, LEFT_BEHIND_CHECK_S, "pick_up_left_behind")
    async def _pick_up_left_behind() -> None:
        """Records Faust dropped with nothing after them are read again and handed to
        the agents (``streams.commits.left_behind``): seen twice in a row first."""
        consumer: Any = app.consumer
        if app.rebalancing or app.in_recovery:
            behind.clear()
            return
        for tp in consumer.assignment():
            if tp.topic not in agent_topics:
                continue
            committed, end = consumer._committed_offset.get(tp), consumer.highwater(tp)
            if committed is not None and end is not None and committed > end:
                if past_the_end.get(tp) != end:  # said once for each end it sees
                    log.warning(
                        "%s[%d]: the group's offset %d is past the log's end %d: the topic "
                        "was deleted and created again? Restart the workers to read it "
                        "from its beginning (docs/operations.md)",
                        tp.topic, tp.partition, committed, end,
                    )  # fmt: skip
                past_the_end[tp] = end
                continue
            if not holds.idle(tp.topic):  # records wait in its queue: none left behind
                behind.pop(tp, None)
                continue
            found = left_behind(tp, committed, end, holds.held(tp), consumer._acked.get(tp, []))
            if found is not None and behind.get(tp) == found:
                unhandled_records.may_pass(found)  # the look and the handing over
            behind[tp] = found

    @periodic(app, 1.0, "share_limits")
    async def _share_limits() -> None:
        """Each worker takes its part of every destination's limits: the part of the
        partitions it delivers from, so the limits hold for the group as a whole."""
        routing = settings.routing_topic
        mine = sum(1 for tp in app.consumer.assignment() if tp.topic == routing)
        if mine and mine / partitions != sender.share:
            sender.share = mine / partitions
            log.info("this worker's share of each destination's limits: %.2f", sender.share)

    def reload(new: DestinationsFile) -> str:
        """The new file's destinations and flows, in place; what changed, in one line."""
        before = {d: destination.model_dump_json() for d, destination in by_id.items()}
        by_id.clear()
        by_id.update(new.by_id())
        flows[:] = new.compiled_flows
        flows_by_id.clear()
        flows_by_id.update({flow.id: flow for flow in flows})
        prices.clear()
        prices.update({d.id: d.price for d in new.destinations})
        ranked.clear()
        ranked.update(performance_windows(flows))
        feedback_blocks.clear()
        feedback_blocks.update({d.id: d.feedback for d in new.destinations})
        return changes(before, {d: dest.model_dump_json() for d, dest in by_id.items()})

    running_text: list[str | None] = [config_text]  # the text of the version applied last

    def apply_version(version: ConfigVersion) -> None:
        """A version from the config topic, between leads; one this worker cannot load (a
        reference its environment lacks) is refused here, and the running one kept."""
        try:
            new = load_text(version.text, f"config v{version.number}")
        except ConfigError as exc:
            log.error("destinations v%d is refused here; keeping the running one", version.number)
            for problem in exc.problems:
                log.error("  %s", problem)
            return
        running_text[0] = version.text
        note = f": {version.note}" if version.note else ""
        log.warning("destinations v%d (by %s%s): %s", version.number, version.by, note, reload(new))
        if new.feedback_window_h() > remember_s / 3600:
            # The tables' expiry is set when they open: a longer window needs a restart.
            log.warning(
                "destinations v%d takes feedback (returns, polls) for up to %g days, but this "
                "worker remembers sales %g h: later feedback is refused as 'Unknown lead' "
                "until it restarts",
                version.number, new.feedback_window_h() / 24, remember_s / 3600,
            )  # fmt: skip

    async def publish_file(text: str) -> None:
        """The worker's file changed: a new version for every worker (not for this one
        alone), unless it is the one running."""
        if text == running_text[0]:
            return
        number = await publish_version(
            settings.bootstrap_servers(), settings.config_topic, text,
            by=f"worker {worker_name}", note=f"{settings.destinations} changed", source="file",
            replication=settings.replication, security=settings.kafka_security(),
        )  # fmt: skip
        running_text[0] = text  # the others that see the same change publish nothing new
        log.warning("%s changed: published as destinations v%d", settings.destinations, number)

    @app.task  # type: ignore[untyped-decorator]
    async def _follow_config() -> None:
        await follow_config(
            settings.bootstrap_servers(), settings.config_topic, config_seen, apply_version,
            settings.kafka_security(),
        )  # fmt: skip

    @app.task  # type: ignore[untyped-decorator]
    async def _watch_destinations_file() -> None:
        await follow_destinations_file(settings.destinations, publish_file)

    @app.task  # type: ignore[untyped-decorator]
    async def _follow_control() -> None:
        lookback_s = control_lookback_s(by_id.values(), flows)
        await follow_control(
            settings, circuits, admin, capacity, distributor, worker_name, lookback_s
        )

    @app.page("/healthz")
    async def _live(web: Any, request: Any) -> Any:
        """Liveness: the event loop answers (a stalled loop does not)."""
        return web.json({"status": "live"})

    @app.page("/readyz")
    async def _ready(web: Any, request: Any) -> Any:
        """Readiness: partitions assigned, tables recovered, not in a rebalance."""
        state = readiness(app, progress, settings.stall_s)
        return web.json({"status": state}, status=200 if state == "ready" else 503)

    # The names of earlier releases (probes written for them keep working).
    app.page("/health/live")(_live)
    app.page("/health")(_ready)

    @app.page("/metrics")
    async def _metrics(web: Any, request: Any) -> Any:
        """Prometheus exposition of every metric (streams/telemetry.py)."""
        body, content_type = telemetry.prometheus_text()
        return web.bytes(body, headers={"Content-Type": content_type})

    @app.page("/feedback/{destination_id}")
    class _Feedback(faust.web.View):
        """A recipient's feedback: checked (its signature or token), read into a notice
        and written to the feedback topic before the 202: judged in the lead's partition."""

        async def post(self, request: Any, destination_id: str) -> Any:
            received = await take_feedback(by_id.get(destination_id), request, topics)
            return self.answer(received)

        async def get(self, request: Any, destination_id: str) -> Any:
            """A postback: what happened in the url's query (``?lead_id=…&kind=…``)."""
            received = await take_feedback(
                by_id.get(destination_id), request, topics, postback=True
            )
            return self.answer(received)

        def answer(self, received: Received) -> Any:
            if received.xml is not None:
                xml = {"Content-Type": "text/xml; charset=utf-8"}  # aiohttp: no charset apart
                return self.bytes(received.xml, status=received.status, headers=xml)
            status = received.status
            return self.json(received.answer, status=status, headers=retry_after(status))

    @app.page("/api/admin/{destination_id}/{verb}")
    class _AdminAction(faust.web.View):
        """An operator's action over HTTP (``courier admin``'s, for tools): the token's
        name is who acted; the action goes to every worker through the control topic."""

        async def post(self, request: Any, destination_id: str, verb: str) -> Any:
            caller, refusal = settings.api_caller(request.headers.get("Authorization"))
            body = b"" if refusal else await request.content.read(MAX_ADMIN_BODY)
            circuit = circuits.get(destination_id, {}).get("state")
            answer = admin_request(
                verb, destination_id, known=destination_id in by_id, caller=caller,
                refusal=refusal, body=body, admin=admin, circuit=circuit,
            )  # fmt: skip
            if answer.action is not None:
                sent = send_admin_action(
                    settings.bootstrap_servers(), settings.admin_topic, answer.action,
                    registry_url=settings.schema_registry_url,
                    security=settings.kafka_security(),
                )  # fmt: skip
                failed = await not_written(sent, f"{verb} of {destination_id}")
                if failed is not None:
                    # An action applies the same however often it is sent: try again.
                    error = f"the action was not recorded ({failed}); try again"
                    return self.json({"error": error}, status=503, headers=retry_after(503))
            return self.json(answer.body, status=answer.status)

    @app.page("/api/admin")
    async def _admin_state(web: Any, request: Any) -> Any:
        """What operators' actions and circuits hold now, as this worker knows them."""
        _, refusal = settings.api_caller(request.headers.get("Authorization"))
        if refusal is not None:
            return web.json({"error": refusal[1]}, status=refusal[0])
        return web.json(
            {
                "paused": {d: admin.pause_reason(d) for d in sorted(admin.paused)},
                "circuits": {d: c.get("state", "closed") for d, c in sorted(circuits.items())},
            }
        )

    measure(app, sender, circuits, capped_desk, home_desk, by_id, progress, capacity, distributor)

    # Signalled after the consumer has stopped and in-flight leads are done.
    @app.on_before_shutdown.connect
    async def _close_http(app: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        await sender.close()

    return app


RELOAD_CHECK_S = 2.0


async def follow_destinations_file(path: Path, publish: Callable[[str], Awaitable[None]]) -> None:
    """Live configuration from a file: it is read again when it changes (checked every 2 s;
    a Kubernetes ConfigMap is updated in place) or on SIGHUP, and published as a version
    for every worker. A file that does not validate is refused, each problem logged, and
    the running configuration kept."""
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, wake.set)

    def stamp() -> tuple[float, int] | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return found.st_mtime, found.st_size

    seen = stamp()
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), RELOAD_CHECK_S)
        asked = wake.is_set()
        wake.clear()
        now = stamp()
        if now == seen and not asked:
            continue
        seen = now
        try:
            text = await asyncio.to_thread(read_text_file, path)
            load_text(text, str(path))
        except ConfigError as exc:
            log.error("destinations file changed but is refused; keeping the running one")
            for problem in exc.problems:
                log.error("  %s", problem)
            continue
        try:
            await publish(text)
        except KafkaError as exc:
            log.error("destinations file changed but could not be published (%s)", exc)


async def follow_control(
    settings: Settings,
    circuits: dict[str, Any],
    admin: AdminState,
    capacity: CapacityBoard,
    distributor: Distributor,
    worker_name: str,
    lookback_s: float,
) -> None:
    """Every worker reads every circuit change on the control topic and takes it as its
    own: a circuit one worker opened is open in all within a fetch wait. It reads the last
    ``lookback_s`` of it (``streams.control.lookback``): a worker that starts while a
    circuit is open learns it, and the latest counts of capped destinations and the
    performance tallies of every ranking's window. Operators' actions (``courier admin``,
    the API) are on the admin topic, kept for good and read from its beginning, applied
    in order."""

    async def take(decoder: EventDecoder, record: Any) -> None:
        """One record of either topic: a circuit change, counts, a tally or an action."""
        try:
            name, event = await decoder.decode(record.value)
        except (AvroDecodeError, ValueError, KeyError) as exc:
            log.warning("control topic: a record that is not a circuit event (%s)", exc)
            return
        if name == CAP_USAGE_NAME:
            capacity.heard(event)
            return
        if name == PERFORMANCE_TALLY_NAME:
            distributor.heard(event)
            return
        if name == ADMIN_ACTION_NAME:
            admin.apply(event)
            if event["action"] == "reset_circuit":
                circuits.pop(event["destination_id"], None)
            elif event["action"] == "open_circuit":
                opened = heard("open", event["at"].timestamp())
                if opened is not None:
                    circuits[event["destination_id"]] = opened.as_dict()
            log.warning(
                "%s: %s by %s (%s)",
                event["destination_id"],
                event["action"],
                event["by"],
                event["reason"] or "no reason given",
            )
            return
        if event.get("worker") == worker_name:
            return
        state = heard(event["after"], event["at"].timestamp())
        if state is not None:
            circuits[event["destination_id"]] = state.as_dict()
            log.warning(
                "circuit of %s: %s (heard from %s)",
                event["destination_id"],
                event["after"],
                event["worker"],
            )

    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers(),
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        **settings.kafka_security().client_options(),
    )
    await reader.start()
    session = aiohttp.ClientSession()
    try:
        registry = settings.schema_registry_url
        decoder = EventDecoder(SchemaRegistry(registry, session) if registry else None)
        followed = (settings.control_topic, settings.admin_topic)
        while not all(reader.partitions_for_topic(topic) for topic in followed):
            await reader._client.force_metadata_update()  # the topics are made at start
            await asyncio.sleep(0.5)
        control, actions = (
            [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic)]
            for topic in followed
        )
        reader.assign([*control, *actions])
        await reader.seek_to_beginning(*actions)
        since_ms = int((time.time() - lookback_s) * 1000)
        await seek_to_time(reader, control, since_ms)
        log.info(
            "following circuit changes and operators' actions on %s (the control topic from "
            "its last %.0f s)", ", ".join(followed), lookback_s,
        )  # fmt: skip
        async for record in reader:
            if record.topic == settings.control_topic and record.timestamp < since_ms:
                continue  # a broker that cannot seek by time (Tansu) reads it: not decoded
            try:
                await take(decoder, record)
            except Exception as exc:
                # One record must not end the follower (and with it the worker, again
                # at each start, which reads it again): said, and the next one read.
                log.error(
                    "%s[%d]: offset %d could not be taken (%s); going on",
                    record.topic, record.partition, record.offset, type(exc).__name__,
                )  # fmt: skip
    finally:
        await session.close()
        await stop_consumer(reader, READER_STOP_S)


async def _handlers(
    settings: Settings,
    flows: list[CompiledFlow],
    home: Home,
    desk: DeliveryDesk,
    worker_name: str,
    at_home: Callable[[Origin, str], bool],
    feedback_blocks: Mapping[str, Any],
    poll: Callable[[str, str], Awaitable[tuple[int, bytes] | None]],
) -> Handlers:
    codec = await Encoders.build(
        settings.schema_registry_url,
        settings.events_topic,
        settings.outcomes_topic,
        settings.control_topic,
        settings.feedback_events_topic,
    )
    return Handlers(
        flows=flows,
        home=home,
        desk=desk,
        codec=codec,
        partitions=settings.partitions,
        max_lead_bytes=settings.max_lead_bytes,
        leads_topic=settings.leads_topic,
        worker_name=worker_name,
        at_home=at_home,
        confirmed=confirmed,
        feedback=feedback_blocks,
        poll=poll,
    )


async def take_feedback(
    destination: Destination | None,
    request: Any,
    topics: Topics,
    postback: bool = False,
) -> Received:
    """POST /feedback/<destination>: read at most the allowed body, let the stage judge the
    request, and write its notice to the feedback topic before answering 202 (a list's
    notices that could not be read to the dead-letter topic). A postback (GET) has no
    body: its url's query says what happened."""
    config = destination.feedback if destination is not None else None
    limit = config.max_body_bytes if config is not None else 0
    declared = 0 if postback else request.content_length
    body = b""
    if not postback and (declared is None or declared <= limit):
        while len(body) <= limit:  # a read may return less than asked before the end
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body += chunk
    query: dict[str, str] = {}
    for name, value in request.query.items():
        query.setdefault(name, value)  # the first of a name given twice
    received = receive_feedback(
        destination.id if destination else "", config, request.headers, declared, body,
        query=query, postback=postback, raw_query=request.raw_path.partition("?")[2],
    )  # fmt: skip
    if received.notices:
        notices = received.notices

        dead = [unread_notice(notices[0].destination_id, unread) for unread in received.unread]

        async def write() -> None:
            sent = [
                await topics.feedback.send(key=notice.key.encode(), value=notice.to_json())
                for notice in notices
            ]
            sent += [
                await topics.dlq.send(key=out.key, value=out.value, headers=out.headers)
                for out in dead
            ]
            await asyncio.gather(*sent)

        failed = await not_written(write(), f"feedback from {notices[0].destination_id}")
        if failed is not None:
            # Sent again, a notice is judged again: a second return of a sale is refused
            # (``already returned``), so the sender's retry never credits twice.
            return Received(
                {"error": f"the feedback was not recorded ({failed}); send it again"}, 503
            )
        if received.unread:
            # The rest of the list was taken (the sender would resend it all if refused);
            # what was not is said here too, since a SOAP acknowledgement cannot say it.
            # Fields and indexes only: the reasons may quote the notice's values.
            refused = [f"{unread.index}: {unread.field}" for unread in received.unread]
            log.warning(
                "feedback from %s: %d notice(s) could not be read (%s), kept on the "
                "dead-letter topic",
                notices[0].destination_id, len(refused), ", ".join(refused[:10]),
            )  # fmt: skip
    return received


# A web caller (an operator's tool, a recipient's webhook) waits this long for the broker
# to confirm what it asked for, then gets a 503 to try again: a broker that is down kept
# a feedback request open for minutes (Faust's producer waits), and an admin action
# answered 500 with a traceback in the log.
WEB_WRITE_TIMEOUT_S = 10.0
WEB_RETRY_AFTER_S = 5


async def not_written(write: Awaitable[Any], what: str) -> str | None:
    """None once ``write`` is confirmed within ``WEB_WRITE_TIMEOUT_S``; else why not (its
    error's type, never its text), logged as one line."""
    try:
        async with asyncio.timeout(WEB_WRITE_TIMEOUT_S):
            await write
    except Exception as exc:
        why = (
            f"the broker did not confirm it within {WEB_WRITE_TIMEOUT_S:g} s"
            if isinstance(exc, TimeoutError)
            else f"the broker could not be written to: {type(exc).__name__}"
        )
        log.warning("%s: not recorded (%s); answered 503", what, why)
        return why
    return None


def retry_after(status: int) -> dict[str, str] | None:
    return {"Retry-After": str(WEB_RETRY_AFTER_S)} if status == 503 else None


def worker_class(log_format: str = "text") -> type[Any]:
    """Faust's Worker, with the root logger held at the configured level, lines as JSON
    when asked, and no terminal spinner.

    mode leaves the root logger at DEBUG and filters in the handler, so every library's
    debug call on the hot path (aiokafka logs each record it sends, with its value: lead
    data) still builds a log record. Setting the level on the logger skips that work."""
    import faust
    from mode.utils.tracebacks import print_task_stack

    class CourierWorker(faust.Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Faust's start-up spinner writes terminal escape codes (a stray "\e[?25h" in
            # every log file, even with stdout not a terminal): none at all.
            self.spinner = None

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logger.setLevel(level)
            if log_format == "json":
                for handler in logger.handlers:
                    handler.setFormatter(JsonLogFormatter())

        async def _cry(self) -> None:
            """SIGUSR1: where every thread and asyncio task waits, to find a stall.

            mode's own dump prints each frame's local variables, which hold lead data;
            this one prints the stacks only."""
            for thread_id, frame in sys._current_frames().items():
                print(f"THREAD {thread_id}", file=self.stderr)
                traceback.print_stack(frame, file=self.stderr)
            for task in asyncio.all_tasks():
                print(f"TASK {task.get_name()}", file=self.stderr)
                print_task_stack(task, file=self.stderr, capture_locals=False)

    return CourierWorker
