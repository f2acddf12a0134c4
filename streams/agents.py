"""Agents: read a record → its handler (streams/handlers.py) → send what it returned.

A lead is routed and delivered in its own partition (streams/control/home.py): the leads
topic's partition when the record is keyed by the lead id (as a Kafka producer's default
partitioner puts it), else the routing topic's, one hop away. Four agents:

- ``intake`` (leads topic): parse the envelope (malformed → dead-letter topic), pick the
  flow; at home, run its plan; elsewhere, pass it to its routing partition.
- ``routing`` (routing topic, keyed by lead id): leads passed on, answers from capped
  destinations, and parked retries that are due: the plan goes on.
- ``work`` (work topic, keyed by destination id): deliveries to destinations with caps,
  where the destination's counts are exact (streams/control/desk.py).
- ``feedback`` (feedback topic): recipients' notices about leads they took, passed to the
  lead's routing partition (or its reference's, to find the lead), judged there.

Every record is handled as its own task, so no record waits for another: a slow
destination holds only its own in-flight slots (streams/stages/delivery.py), never the
agent. A record is acknowledged when everything it sent is confirmed and every record
before it in its partition is acknowledged (``InOrder``), so a partition's committed
offset never passes a record in progress, and a restart redoes what was in flight (at least once; the lead's state makes repeats
harmless). Whatever a handler raises ends that record's lead alone (``Handlers.failed``).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from streams import telemetry
from streams.errors import SenderClosed
from streams.handlers import Handlers, Origin, Out, Stage
from streams.progress import Progress
from streams.topics import Topics

if TYPE_CHECKING:
    from streams.control.desk import DeliveryDesk
    from streams.control.messages import WorkItem

log = logging.getLogger(__name__)

PARKED_CHECK_S = 0.2  # how often parked work is looked at: the lateness of a retry
HAND_BACK_BATCH = 500  # due parked items written at once, then released from their table
FORGET_CHECK_S = 300.0
CAP_REPORT_S = 2.0
# Rankings are by the minute over windows of minutes to days: a tally every 10 s is fresh
# enough, and keeps small the part of the control topic a starting worker reads again.
TALLY_S = 10.0
IDLE_S = 1.0  # an agent that took nothing for this long (slots free) has nothing queued
POLL_CHECK_S = 5.0  # how often polls are looked at: at most this late
REPLAYED_HEADER = "courier.replayed.from"  # set by ``courier replay``

# A handler yields what to send, batch by batch (a lead's fast destination's event goes
# out while its slow one is still under way).
Handle = Callable[[bytes | None, bytes | None, Origin], AsyncIterator[list[Out]]]


def register_agents(
    app: Any,
    topics: Topics,
    handlers: Callable[[], Awaitable[Handlers]],
    *,
    held_per_agent: int,
    owns_destination: Callable[[], Callable[[str], bool]],
    owns_lead: Callable[[], Callable[[str], bool]],
    remember_delivered_s: float,
    abandon: Callable[[Any], None],
    track_writes: Callable[[], None],
    progress: Progress,
    holds: Holds,
) -> None:
    """``handlers``: built once per worker when first needed (encoders may register schemas);
    ``held_per_agent``: records an agent may hold unacknowledged at once (then it waits);
    ``abandon(message)``: a stopping worker gives up a record without acknowledging it;
    ``track_writes()``: the table writes of the record's task are the ones it confirms;
    ``progress``: told of every record taken and finished (a stalled worker is not ready);
    ``holds``: where the consumer learns which records are still held (``safe_commit``)."""

    names = {field: getattr(topics, field).get_topic_name() for field in vars(topics)}

    async def send_all(records: list[Out]) -> None:
        confirmations = []
        producer = await app.maybe_start_producer()
        for out in records:
            name = names[out.topic]
            span, headers = telemetry.producing(name, out.headers)
            # Straight to the producer: Faust's Topic.send wraps each record in a pending
            # message, a future message and a callback chain, for sensors we do not read;
            # what we need is the broker's confirmation, awaited below before the record
            # that sent it is acknowledged (so a commit never passes an unwritten record).
            confirmation = await producer.send(
                name, out.key, out.value, out.partition, None, headers
            )
            if span is not None:
                confirmation.add_done_callback(partial(telemetry.produced, span))
            confirmations.append(confirmation)
        await asyncio.gather(*confirmations)

    def each_record(topic: Any, stage: Stage, handle: Callable[[Handlers], Handle]) -> None:
        acks = holds.add(topic.get_topic_name(), InOrder(abandon))

        async def one(event: Any, slots: asyncio.Semaphore, held: list[Any]) -> None:
            message = event.message
            replayed = REPLAYED_HEADER in dict(message.headers or ())
            at_ms = int((message.timestamp or 0) * 1000)  # Faust gives seconds
            origin = Origin(message.topic, message.partition, message.offset, replayed, at_ms)
            track_writes()
            try:
                with telemetry.consuming(
                    message.topic, message.partition, message.offset, message.headers
                ):
                    finished = await handled(event, origin)
            finally:
                slots.release()
                progress.finished()
            if finished == "done":
                acks.done(held)
            elif finished == "given up":
                acks.give_up(held)

        async def handled(event: Any, origin: Origin) -> Literal["done", "given up", "held"]:
            """``given up``: the worker is stopping; ``held``: in progress until a restart."""
            try:
                on = await handlers()
                try:
                    async for records in handle(on)(event.value, event.key, origin):
                        await send_all(records)
                except Exception as exc:
                    if _stopping(exc):
                        raise
                    await send_all(on.failed(stage, event.value, event.key, origin, exc))
            except Exception as exc:
                # Stopping (our HTTP sender drained), or even the failure's records could not
                # be sent: left unacknowledged, so the record is handled again after a restart.
                if _stopping(exc):
                    return "given up"
                log.exception("%s: a record stays unacknowledged", stage)
                return "held"
            return "done"

        async def agent(stream: Any) -> None:
            slots = asyncio.Semaphore(held_per_agent)
            running: set[asyncio.Task[None]] = set()
            try:
                async for event in stream.events():
                    if acks.seen(event.message):
                        # Handed over twice (the pick-up of records left behind took one
                        # waiting in Faust's queue), or fetched again after a commit that
                        # never reached the broker: its lead is handled, or being handled.
                        # Faust's own ack on the next iteration lets it go.
                        message = event.message
                        log.info(
                            "%s[%d]: offset %d is handled already by this worker; not again",
                            message.topic, message.partition, message.offset,
                        )  # fmt: skip
                        continue
                    # Held before it waits for a slot: a record waiting here is not left
                    # behind (``streams.commits.left_behind``), nor taken twice.
                    held = acks.hold(event)
                    acks.waiting_for_slot = True
                    try:
                        await slots.acquire()
                    except BaseException:  # the worker stops: the next one takes it
                        acks.give_up(held)
                        raise
                    finally:
                        acks.waiting_for_slot = False
                    # Ours until handled: Faust's own ack on the next iteration leaves one
                    # reference, which ``one`` drops when everything it sent is confirmed.
                    event.message.incref()
                    progress.taken()
                    task = asyncio.ensure_future(one(event, slots, held))
                    running.add(task)
                    task.add_done_callback(running.discard)
            finally:
                for task in running:
                    task.cancel()

        agent.__name__ = agent.__qualname__ = stage
        app.agent(topic, name=stage)(agent)

    each_record(topics.leads, "intake", lambda on: on.take_in)
    each_record(topics.routing, "routing", lambda on: on.go_on)
    each_record(topics.work, "work", lambda on: on.work_on)
    each_record(topics.feedback, "feedback", lambda on: on.take_feedback)

    @periodic(app, PARKED_CHECK_S, "release_parked")
    async def release_parked() -> None:
        """Due retries and held leads go back as records: at home to the lead's partition,
        with caps to the destination's. Each is confirmed before it leaves its table."""
        on = await handlers()
        await hand_back(on.home.desk, on.home.desk.due(owns_lead()), on.retry)
        await hand_back(on.desk, on.desk.due(owns_destination()), on.to_work)

    async def hand_back(
        desk: DeliveryDesk,
        due: list[tuple[str, Any, WorkItem]],
        record: Callable[[WorkItem], Out],
    ) -> None:
        """Due items as records, written a batch at a time and each released from its table
        once the broker has confirmed its batch. One at a time, each waited for the
        confirmation of the one before: ~300 a second, so thousands due at once (a
        recipient back from maintenance) came back at 0.65x the rate they left
        (``python -m tests.bench --only release``)."""
        for start in range(0, len(due), HAND_BACK_BATCH):
            batch = due[start : start + HAND_BACK_BATCH]
            for key, value, _ in batch:
                desk.handing_back(key, value)
            try:
                await send_all([record(item) for _, _, item in batch])
            except BaseException:
                for key, value, _ in batch:
                    desk.not_handed_back(key, value)
                raise
            for key, value, _ in batch:
                desk.release(key, value)

    @periodic(app, POLL_CHECK_S, "poll_feedback")
    async def poll_feedback() -> None:
        """Polled recipients asked about the leads they accepted, when each is due."""
        on = await handlers()
        await send_all(await on.polls_due(owns_lead()))

    @periodic(app, CAP_REPORT_S, "report_caps")
    async def report_caps() -> None:
        """How full each capped destination is, for every worker (``capacity``
        distributions, the dashboard): from the worker that counts it, when it changed."""
        on = await handlers()
        await send_all(on.cap_reports(owns_destination()))

    @periodic(app, TALLY_S, "tell_performance")
    async def tell_performance() -> None:
        """This worker's attempts to destinations ranked by ``performance``, the minutes
        that changed, for every worker."""
        on = await handlers()
        await send_all(on.performance_tallies())
        on.performance_told()  # not reached when the send fails: told again next time

    @periodic(app, FORGET_CHECK_S, "forget_delivered")
    async def forget_delivered() -> None:
        on = await handlers()
        on.home.forget(remember_delivered_s, owns_lead())
        on.desk.forget_delivered(remember_delivered_s, owns_destination())


class InOrder:
    """Records handled in any order, acknowledged in each partition's order.

    Faust commits the first run of consecutive acknowledged offsets it finds, even with an
    earlier record still in progress (and it forgives a gap of one after the committed
    offset): acknowledged out of order, a crash would skip records that never finished."""

    def __init__(
        self, abandon: Callable[[Any], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._abandon = abandon
        self._clock = clock
        self._last_taken = float("-inf")
        self.waiting_for_slot = False  # the agent has taken a record and waits for a slot
        self._queues: dict[Any, deque[list[Any]]] = defaultdict(deque)
        self._holding: dict[Any, set[int]] = defaultdict(set)  # the queues' offsets
        self._done: dict[Any, OffsetRanges] = defaultdict(OffsetRanges)
        self._stopping: set[Any] = set()
        self._given_up: dict[Any, int] = {}  # the first offset given up, per partition

    def hold(self, event: Any) -> list[Any]:
        held = [event, None]  # None: in progress; then "done" or "given up"
        self._last_taken = self._clock()
        message = event.message
        self._queues[message.tp].append(held)
        self._holding[message.tp].add(message.offset)
        return held

    def idle(self) -> bool:
        """Has the agent taken nothing for ``IDLE_S``, with slots free? Only then is its
        queue in Faust empty: while it is busy, records wait there, in no agent's hands
        and not acknowledged, and are not left behind (``streams.commits.left_behind``)."""
        return not self.waiting_for_slot and self._clock() - self._last_taken >= IDLE_S

    def seen(self, message: Any) -> bool:
        """Has this worker taken the record at ``message``'s offset already: held now, or
        handled to the end (its records confirmed)? Handling it again would only repeat
        what it wrote. One given up by a stopping worker was not handled: not seen."""
        tp = message.tp
        return message.offset in self._holding[tp] or message.offset in self._done[tp]

    def forget(self, tp: Any) -> None:
        """``tp`` was taken from this worker (a rebalance; Faust committed what was handled
        there first): its handled offsets go. The partition may come back as another log,
        whose records would look handled at the same offsets: a topic deleted and created
        again starts at 0 (on Kafka the group's offsets go with the topic and it is read
        from its beginning)."""
        self._done.pop(tp, None)

    def held(self, tp: Any) -> list[int]:
        """The offsets of ``tp`` not acknowledged yet: in progress, done behind one in
        progress, or given up by a stopping worker (for the next one to handle)."""
        offsets = sorted(self._holding.get(tp, ()))
        given_up = self._given_up.get(tp)
        return offsets if given_up is None else [*offsets, given_up]

    def done(self, held: list[Any]) -> None:
        held[1] = "done"
        self._release(held[0].message.tp)

    def give_up(self, held: list[Any]) -> None:
        """Stopping: this record is left for the next worker, and so is every record after
        it in its partition (acknowledging one would commit past it)."""
        held[1] = "given up"
        self._stopping.add(held[0].message.tp)
        self._release(held[0].message.tp)

    def _release(self, tp: Any) -> None:
        queue = self._queues[tp]
        while queue and queue[0][1] is not None:
            event, finished = queue.popleft()
            self._holding[tp].discard(event.message.offset)
            if finished == "done":
                self._done[tp].add(event.message.offset)
            if tp in self._stopping:
                offset = event.message.offset
                self._given_up[tp] = min(offset, self._given_up.get(tp, offset))
                self._abandon(event.message)
            else:
                event.ack()


class OffsetRanges:
    """A set of offsets kept as sorted runs ``[start, end)``: a partition's handled
    offsets are one or a few runs, however many records the worker handles."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def add(self, offset: int) -> None:
        at = bisect.bisect_right(self._starts, offset) - 1  # the run starting at or before
        if at >= 0 and offset < self._ends[at]:
            return
        joins_before = at >= 0 and self._ends[at] == offset
        joins_after = at + 1 < len(self._starts) and self._starts[at + 1] == offset + 1
        if joins_before and joins_after:
            self._ends[at] = self._ends[at + 1]
            del self._starts[at + 1], self._ends[at + 1]
        elif joins_before:
            self._ends[at] = offset + 1
        elif joins_after:
            self._starts[at + 1] = offset
        else:
            self._starts.insert(at + 1, offset)
            self._ends.insert(at + 1, offset + 1)

    def __contains__(self, offset: object) -> bool:
        if not isinstance(offset, int):
            return False
        at = bisect.bisect_right(self._starts, offset) - 1
        return at >= 0 and offset < self._ends[at]

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


class Holds:
    """Every agent's ``InOrder``, by topic: what the consumer asks before it commits."""

    def __init__(self) -> None:
        self._by_topic: dict[str, InOrder] = {}

    def add(self, topic: str, acks: InOrder) -> InOrder:
        self._by_topic[topic] = acks
        return acks

    def held(self, tp: Any) -> list[int]:
        acks = self._by_topic.get(tp.topic)
        return [] if acks is None else acks.held(tp)

    def forget(self, revoked: Collection[Any]) -> None:
        """Partitions taken from this worker: see ``InOrder.forget``."""
        for tp in revoked:
            acks = self._by_topic.get(tp.topic)
            if acks is not None:
                acks.forget(tp)

    def idle(self, topic: str) -> bool:
        acks = self._by_topic.get(topic)
        return acks is None or acks.idle()


def safe_commit(
    proposed: int, committed: int | None, held: Collection[int]
) -> tuple[int | None, list[int]]:
    """The offset to commit instead of Faust's ``proposed`` (None: nothing new), and the
    offsets below ``proposed`` to keep counted as acknowledged for a later commit.

    Faust counts more than acknowledgements: a jump in the offsets it reads is taken for
    records that do not exist (a transaction marker, a compacted record) and counted as
    done. Should such a jump cover records this worker is still handling (the rest of a
    batch fetched before the seek that follows a group join could make one: reproduced in
    tests/unit/test_agents.py, not seen in a run), Faust would commit past them and a crash
    would lose them. So the commit stops at the first record still ``held``; what Faust
    counted above it, other than the held records (acknowledged when they finish), stays
    counted."""
    start = committed or 0
    holding = {offset for offset in held if offset >= start}  # below: committed already
    floor = min(holding, default=None)
    if floor is None or proposed <= floor:
        return proposed, []
    keep = [offset for offset in range(floor, proposed) if offset not in holding]
    return (floor if floor > start else None), keep


def _stopping(exc: BaseException) -> bool:
    return isinstance(exc, SenderClosed)


TIMER_LOG_EVERY_S = 60.0  # a timer that keeps failing is logged this often, with a count


def periodic(
    app: Any, interval_s: float, name: str
) -> Callable[[Callable[[], Awaitable[None]]], Callable[[], Awaitable[None]]]:
    """``@app.timer``, except that what a run raises is logged (its type, not its text,
    which may quote a lead) and the next run comes as usual. Faust ends the worker when a
    timer raises: one parked entry it cannot read, or a send that timed out once, would
    stop every lead of every partition the worker owns, again after each restart."""

    def register(run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        failures = [0, 0.0]  # since the last log line; when that was

        async def guarded() -> None:
            try:
                await run()
            except Exception as exc:
                if _stopping(exc):
                    raise
                failures[0] += 1
                now = asyncio.get_running_loop().time()
                if not failures[1] or now - failures[1] >= TIMER_LOG_EVERY_S:
                    log.error(
                        "%s failed (%s), %d time(s) since the last report; it runs again in %g s",
                        name, type(exc).__name__, failures[0], interval_s,
                    )  # fmt: skip
                    failures[0], failures[1] = 0, now

        guarded.__name__ = guarded.__qualname__ = name
        app.timer(interval_s, name=name)(guarded)
        return run

    return register
