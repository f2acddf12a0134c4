"""A recipient that fails every request, then recovers: the circuit opens, sends nothing
while open, half-opens after the cool-down, and closes on a successful trial."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from schemas import ADMIN_ACTION, CIRCUIT_EVENT, schema_json
from streams.avro import EventEncoder
from streams.config import Destination, parse_destinations
from streams.control.desk import DeliveryDesk
from streams.control.messages import WorkItem
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import Attempt, attempt_delivery
from streams.stages.delivery import HttpSender
from tests.avro_spec import far_future
from tests.integration.conftest import collect, create_topic, decode_with_schema_file, publish
from tests.integration.recipients import Received, Recipient


class Flaky:
    def __init__(self) -> None:
        self.healthy = False

    async def answer(self, recipient: Recipient, received: Received) -> web.Response:
        if self.healthy:
            return web.json_response({"id": "R"}, status=201)
        return web.json_response({"error": "down"}, status=503)


def desk_on_a_clock(dest: Destination, sender: HttpSender, clock: list[float]) -> DeliveryDesk:
    """A desk delivering to ``dest`` through ``sender``, its time ``clock[0]``."""

    async def attempt_at(lead: Lead, destination: Destination, number: int) -> Attempt:
        return await attempt_delivery(lead, destination, sender, number)

    return DeliveryDesk(
        {dest.id: dest},
        attempt_at,
        circuits={},
        caps={},
        delivered={},
        parked={},
        clock=lambda: clock[0],
    )


async def test_circuit_opens_stays_quiet_half_opens_and_closes(sender: HttpSender) -> None:
    flaky = Flaky()
    server = await Recipient(answer=flaky.answer).start()
    clock = [1000.0]
    (dest,) = parse_destinations(
        {
            "destinations": [
                {
                    "id": "buyer",
                    "url": server.url(),
                    "circuit": {"consecutive_errors": 5, "cool_down_s": 30},
                    "retry": {"max_attempts": 1},
                }
            ]
        }
    ).destinations
    desk = desk_on_a_clock(dest, sender, clock)

    async def deliver(n: int) -> tuple[OutcomeKind, str, tuple[str, ...]]:
        lead = Lead(f"L-{n}", {"id": f"L-{n}", "lead": {}})
        handled = await desk.handle(WorkItem(lead, dest.id, "plan", 1, False))
        assert handled.result is not None
        outcome = handled.result.outcome
        return outcome.kind, outcome.reason, tuple(c.after for c in handled.changes)

    try:
        first = [await deliver(n) for n in range(5)]
        assert [c for _, _, c in first] == [(), (), (), (), ("open",)]
        sent_when_opened = len(server.requests)

        clock[0] += 10
        while_open = [await deliver(n) for n in range(5, 25)]
        assert {(k, r) for k, r, _ in while_open} == {
            (OutcomeKind.SKIP, "System unavailable (circuit open)")
        }
        assert len(server.requests) == sent_when_opened  # nothing reached the recipient

        clock[0] += 25  # 35 s after opening: half-open (an event too), one trial, still failing
        trial = await deliver(25)
        assert trial == (OutcomeKind.ERROR, "Recipient error (HTTP 503)", ("half_open", "open"))
        assert (await deliver(26))[0] is OutcomeKind.SKIP

        flaky.healthy = True
        clock[0] += 31
        assert await deliver(27) == (OutcomeKind.SUCCESS, "Accepted", ("half_open", "closed"))
        assert [k for k, _, _ in [await deliver(n) for n in range(28, 33)]] == [
            OutcomeKind.SUCCESS
        ] * 5
        assert len(server.requests) == sent_when_opened + 1 + 1 + 5
    finally:
        await server.stop()


async def test_a_buyer_out_of_funds_gets_one_lead_not_every_lead(sender: HttpSender) -> None:
    """A 402 ("Insufficient funds") opens the buyer's circuit at the first lead: the leads
    after it are not sent to a buyer that refuses them all (a waterfall moves on), and the
    half-open probe finds when the account is paid. Before, every lead was sent and each
    ended refused, as if for itself."""
    paid = [False]

    async def buyer(_: Recipient, __: Received) -> web.Response:
        if paid[0]:
            return web.json_response({"id": "S-1", "status": "sold"})
        return web.json_response({"error": "Insufficient funds"}, status=402)

    server = await Recipient(answer=buyer).start()
    clock = [1000.0]
    (dest,) = parse_destinations(
        {"destinations": [{"id": "buyer", "url": server.url(), "circuit": {"cool_down_s": 60}}]}
    ).destinations
    desk = desk_on_a_clock(dest, sender, clock)

    async def deliver(n: int) -> tuple[str, tuple[str, ...]]:
        lead = Lead(f"L-{n}", {"id": f"L-{n}", "lead": {}})
        handled = await desk.handle(WorkItem(lead, dest.id, "plan", 1, True))
        assert handled.result is not None
        return handled.result.outcome.reason, tuple(c.after for c in handled.changes)

    try:
        assert await deliver(0) == ("Payment required (HTTP 402: Insufficient funds)", ("open",))
        later = [await deliver(n) for n in range(1, 6)]
        assert later == [("System unavailable (circuit open)", ())] * 5
        assert len(server.requests) == 1

        paid[0] = True
        clock[0] += 61
        assert await deliver(6) == ("Accepted", ("half_open", "closed"))
    finally:
        await server.stop()


def one_slot_desk(dest: Destination) -> tuple[DeliveryDesk, HttpSender]:
    """A desk for ``dest`` whose real HTTP sender asks it again after each wait for a
    slot, as the worker's does."""
    desk: DeliveryDesk | None = None

    def lets_through(destination: Destination) -> bool:
        assert desk is not None
        return desk.lets_through(destination)

    sender = HttpSender(lets_through=lets_through)

    async def attempt_at(lead: Lead, destination: Destination, number: int) -> Attempt:
        return await attempt_delivery(lead, destination, sender, number)

    desk = DeliveryDesk({dest.id: dest}, attempt_at, circuits={}, caps={}, delivered={}, parked={})
    return desk, sender


async def deliver(desk: DeliveryDesk, dest: Destination, n: int) -> tuple[str, bool]:
    """Lead ``L-n`` to ``dest`` (even ``n``: a waterfall's, with a next destination): its
    outcome's reason and whether it has an event, or ("parked", whether it is)."""
    lead = Lead(f"L-{n}", {"id": f"L-{n}", "lead": {}})
    handled = await desk.handle(WorkItem(lead, dest.id, "plan", 1, n % 2 == 0))
    if handled.result is None:  # no waterfall after it: it waits
        return "parked", desk.is_parked(WorkItem(lead, dest.id, "plan", 1, False))
    return handled.result.outcome.reason, handled.attempt is not None


async def test_leads_waiting_for_a_slot_when_the_circuit_opens_are_not_sent() -> None:
    """Eight leads at once, one in-flight slot, a recipient that fails slowly: the circuit
    (two errors in a row) lets all eight through before any answer, but when the second
    error opens it the six still waiting for the slot are not sent. A waterfall's lead
    moves on; a lead with nowhere else to go waits for the circuit (``when_open: park``)."""
    flaky = Flaky()
    server = await Recipient(answer=flaky.answer, delay_s=0.2).start()
    (dest,) = parse_destinations(
        {
            "destinations": [
                {
                    "id": "buyer",
                    "url": server.url(),
                    "circuit": {"consecutive_errors": 2, "cool_down_s": 600, "when_open": "park"},
                    "retry": {"max_attempts": 1},
                    "limits": {"concurrency": 1},
                }
            ]
        }
    ).destinations
    desk, sender = one_slot_desk(dest)
    try:
        ended = await asyncio.gather(*(deliver(desk, dest, n) for n in range(8)))
        assert len(server.requests) == 2
        assert ended.count(("Recipient error (HTTP 503)", True)) == 2
        assert (
            sorted(ended[2:])
            == [("System unavailable (circuit open)", True)] * 3 + [("parked", True)] * 3
        )
    finally:
        await sender.close()
        await server.stop()


async def test_leads_waiting_for_a_slot_when_the_destination_is_paused_are_not_sent() -> None:
    """Eight leads at once, one in-flight slot: an operator pauses the destination while
    the first is with the recipient. The seven waiting for the slot are not sent: a
    waterfall's lead moves on ("Destination paused"), the others wait for the resume."""
    desk: DeliveryDesk | None = None

    async def pause_at_first(recipient: Recipient, received: Received) -> web.Response:
        assert desk is not None
        at = datetime.now(UTC)
        desk.admin.apply(
            {"destination_id": "buyer", "action": "pause", "by": "al", "reason": "audit", "at": at}
        )
        return web.json_response({"id": "R"}, status=201)

    server = await Recipient(answer=pause_at_first, delay_s=0.2).start()
    (dest,) = parse_destinations(
        {"destinations": [{"id": "buyer", "url": server.url(), "limits": {"concurrency": 1}}]}
    ).destinations
    desk, sender = one_slot_desk(dest)
    try:
        ended = await asyncio.gather(*(deliver(desk, dest, n) for n in range(8)))
        assert len(server.requests) == 1
        assert ended[0] == ("Accepted", True)
        assert sorted(ended[1:]) == [("Destination paused", True)] * 3 + [("parked", True)] * 4
    finally:
        await sender.close()
        await server.stop()


async def test_the_worker_writes_circuit_changes_as_avro_events(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    start_worker(
        """
destinations:
  - id: down_buyer
    url: http://127.0.0.1:9/leads
    timeouts: {connect: 1, read: 1, total: 1}
    circuit: {consecutive_errors: 3, cool_down_s: 600}
    retry: {max_attempts: 1}
""",
        in_flight=2,  # two actors of one lead each: at most one more try once it opens
    )
    await publish(kafka, topics.leads, [{"id": f"C-{i}", "lead": {}} for i in range(6)])
    (change,) = await collect(kafka, topics.control, 1, settle_s=2.0)
    outcomes = await collect(kafka, topics.outcomes, 6)

    assert change.key == b"down_buyer"
    event = decode_with_schema_file(change.value, "circuit_event")
    assert (event["before"], event["after"], event["reason"]) == (
        "closed",
        "open",
        "3 errors in a row",
    )
    reasons = [decode_with_schema_file(r.value, "lead_outcome")["reason"] for r in outcomes]
    failed = reasons.count("Connection failed")
    assert 3 <= failed <= 4
    assert reasons.count("System unavailable (circuit open)") == 6 - failed


def opened_by_another() -> dict[str, Any]:
    """A CircuitEvent another worker wrote just now: "down" opened."""
    return {
        "event_id": str(uuid.uuid4()),
        "destination_id": "down",
        "at": datetime.now(UTC),
        "before": "closed",
        "after": "open",
        "reason": "5 errors in a row",
        "worker": "another:1",
    }


async def skipped_for_the_heard_circuit(
    kafka: Any, topics: Any, start_worker: Any, down: Recipient
) -> str:
    """A worker started now learns that "down" is open (before it takes leads), and a lead
    for it ends "circuit open" with nothing sent; returns the worker's log."""
    worker = start_worker(  # unbuffered: the test reads the log while it runs
        env={"PYTHONUNBUFFERED": "1"},
        destinations_yaml=f"""
destinations:
  - id: down
    url: {down.url("/down")}
    circuit: {{cool_down_s: 30}}
""",
    )
    async with asyncio.timeout(60):  # it learns the circuit before taking leads
        while "circuit of down: open (heard from another:1)" not in worker.log_path.read_text():
            await asyncio.sleep(0.2)
    await publish(kafka, topics.leads, [{"id": "L-1", "lead": {}}])
    [outcome] = await collect(kafka, topics.outcomes, 1)
    assert decode_with_schema_file(outcome.value, "lead_outcome")["reason"] == (
        "System unavailable (circuit open)"
    )
    assert down.requests == []
    return worker.log_path.read_text()


async def test_a_starting_worker_reads_only_the_recent_control_topic(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """Weeks of capped destinations' counts are not read again by every worker that starts:
    it reads the last minutes the circuits, counts and rankings need (here the cap refresh
    and the 30 s cool-down), and still learns a circuit another worker opened just now."""
    down = await Recipient().start()
    try:
        await create_topic(kafka, topics.control, 4)
        now_ms = int(time.time() * 1000)
        days_ago_ms = now_ms - 3 * 24 * 3600 * 1000
        opened = EventEncoder(CIRCUIT_EVENT).encode(opened_by_another())
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=20)
        await producer.start()
        try:
            for i in range(2_000):  # days old, and nothing a worker could decode
                await producer.send(
                    topics.control, b"old", key=b"down", partition=i % 4, timestamp_ms=days_ago_ms
                )
            await producer.send_and_wait(topics.control, opened, key=b"down", timestamp_ms=now_ms)
        finally:
            await producer.stop()

        log = await skipped_for_the_heard_circuit(kafka, topics, start_worker, down)
        assert "the control topic from its last 180 s" in log, log[-3000:]
        # Never decoded: on Kafka never read (the lookup by time skips them); Tansu answers
        # a lookup by time with the partition's first offset whatever the time, so there
        # they are read and dropped by their timestamps.
        assert "a record that is not a circuit event" not in log, log[-3000:]
    finally:
        await down.stop()


async def test_records_a_worker_cannot_read_on_the_control_topics_never_stop_it(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """The control topic (read again at every start) and the admin topic (read from its
    beginning, kept for good) carry bad records: cut short, or with a timestamp no
    datetime holds. Each is said and skipped: the worker starts, learns the good circuit
    event after them and goes on; before, the first of them ended the worker at every
    start."""
    down = await Recipient().start()
    try:
        await create_topic(kafka, topics.control, 4)
        await create_topic(kafka, topics.admin, 1)
        record = opened_by_another()
        opened = EventEncoder(CIRCUIT_EVENT).encode(record)
        action = {
            "event_id": str(uuid.uuid4()),
            "action": "pause",
            "destination_id": "down",
            "by": "ops",
            "reason": "",
            "at": datetime.now(UTC),
            "before": "",
            "after": "",
        }
        paused = EventEncoder(ADMIN_ACTION).encode(action)
        bad = [
            (topics.control, opened[:-6]),
            (topics.control, far_future(opened, schema_json(CIRCUIT_EVENT), record)),
            (topics.admin, paused[:-4]),
            (topics.admin, far_future(paused, schema_json(ADMIN_ACTION), action)),
        ]
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for topic, value in bad:
                await producer.send_and_wait(topic, value, key=b"down", partition=0)
            await producer.send_and_wait(topics.control, opened, key=b"down", partition=0)
        finally:
            await producer.stop()

        log = await skipped_for_the_heard_circuit(kafka, topics, start_worker, down)
        assert log.count("an event that cannot be read") == 4, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        await down.stop()
