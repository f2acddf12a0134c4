"""The engine's promises on a real broker with real recipients: a destination's deliveries
spread over every worker, a slow destination slows no other, a circuit opened in one worker
is open in all, and a worker killed with SIGKILL at any point loses nothing, resends
nothing a recipient accepted before its outcome was written, and writes one outcome per lead.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections import Counter
from email.utils import formatdate
from typing import Any

from aiohttp import web

from streams.cli.console import read_records
from streams.control.tables import partition_of
from tests.integration.conftest import collect, decode_with_schema_file, publish, trail
from tests.integration.recipients import Received, Recipient
from tests.integration.worker import TopicNames, WorkerProcess

PARTITIONS = 4


def one_buyer(recipient: Recipient, **extra: str) -> str:
    more = "".join(f"\n    {key}: {value}" for key, value in extra.items())
    return f"""
destinations:
  - id: buyer
    url: {recipient.url("/buyer")}
    headers:
      X-Worker: ${{env:WORKER_TAG}}
    mapping: {{ref: id}}{more}
"""


async def both_working(recipient: Recipient, kafka: Any, topics: Any, tag: str) -> None:
    """Leads until each worker has delivered one: both hold partitions from here on."""
    for n in range(60):
        await publish(kafka, topics.leads, [{"id": f"{tag}-{n}-{i}", "lead": {}} for i in range(8)])
        await asyncio.sleep(1.0)
        if {r.headers.get("X-Worker") for r in recipient.requests} >= {"a", "b"}:
            return
    raise AssertionError("the second worker never got a partition")


async def test_one_destination_is_delivered_by_every_worker(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    first = start_worker(one_buyer(recipient), name="a", env={"WORKER_TAG": "a"})
    start_worker(one_buyer(recipient), name="b", app_id=first.app_id, env={"WORKER_TAG": "b"})
    await both_working(recipient, kafka, topics, "warm")
    before = len(recipient.requests)
    await publish(kafka, topics.leads, [{"id": f"ONE-{i:03d}", "lead": {}} for i in range(400)])
    await recipient.wait_for(before + 400, timeout_s=120)
    shares = Counter(r.headers["X-Worker"] for r in recipient.requests[before:])
    # Leads are delivered where they live: a destination is no longer one partition's.
    assert shares["a"] >= 100 and shares["b"] >= 100, shares


def fast_and_slow(
    fast: Recipient, slow: Recipient, fast_caps: str = "", slow_caps: str = ""
) -> str:
    """A parallel flow to both; the slow one's answers may take minutes (``*_caps``: a
    ``caps:`` block for one, if any)."""
    fast_capped = f"\n    caps: {fast_caps}" if fast_caps else ""
    slow_capped = f"\n    caps: {slow_caps}" if slow_caps else ""
    return f"""
destinations:
  - id: fast
    url: {fast.url("/fast")}
    mapping: {{ref: id}}{fast_capped}
  - id: slow
    url: {slow.url("/slow")}
    timeouts: {{total: 300, read: 300}}
    mapping: {{ref: id}}{slow_capped}
flows:
  - id: both
    plan: {{parallel: [fast, slow]}}
"""


def by_destination(events: list[Any]) -> Counter[str]:
    """Delivery event records, counted by destination."""
    decoded = (decode_with_schema_file(r.value, "delivery_event") for r in events)
    return Counter(event["destination_id"] for event in decoded)


def accepting_once(released: asyncio.Event) -> Any:
    """A recipient's answer: 201, once ``released`` is set."""

    async def held(server: Recipient, received: Received) -> web.Response:
        await released.wait()
        return web.json_response({"id": "S-1"}, status=201)

    return held


async def test_a_fast_destination_finishes_while_a_slow_one_is_still_in_flight(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    released = asyncio.Event()
    fast = await Recipient().start()
    slow = await Recipient(answer=accepting_once(released)).start()
    try:
        start_worker(fast_and_slow(fast, slow), in_flight=8)
        await publish(kafka, topics.leads, [{"id": f"F-{i:03d}", "lead": {}} for i in range(200)])
        await fast.wait_for(200, timeout_s=90)
        events = await collect(kafka, topics.events, 200)
        # Every fast delivery and its event, while the slow one holds its 8 slots.
        assert len(slow.requests) <= 8 * PARTITIONS
        assert by_destination(events) == {"fast": 200}
        released.set()
        outcomes = await collect(kafka, topics.outcomes, 200, timeout_s=120)
        assert len({r.key for r in outcomes}) == 200
    finally:
        released.set()
        await fast.stop()
        await slow.stop()


async def park_a_slow_backlog_then_kill(
    kafka: Any,
    topics: Any,
    start_worker: Any,
    destinations: str,
    fast: Recipient,
    slow: Recipient,
    prefix: str,
) -> list[dict[str, Any]]:
    """200 leads to a fast and a slow destination through an agent that holds at most 30
    records, the slow one with 5 waiting in memory: the fast one gets every lead while the
    slow one answers none (the rest of its backlog is parked); then a SIGKILL, and a new
    worker started. The leads sent."""
    worker = start_worker(
        destinations,
        in_flight=2,
        env={"COURIER_HELD_PER_AGENT": "30", "COURIER_QUEUED_PER_DESTINATION": "5"},
    )
    leads = [{"id": f"{prefix}-{i:03d}", "lead": {}} for i in range(200)]
    await publish(kafka, topics.leads, leads)
    await fast.wait_for(200, timeout_s=90)  # 200 leads through 30 held records
    # Their events are written once each acceptance is stored: none is sent again.
    events = await collect(kafka, topics.events, 200)
    assert by_destination(events) == {"fast": 200}  # parked: none
    assert len(slow.requests) <= 2
    assert await worker.stopped(signal.SIGKILL) == -signal.SIGKILL
    worker.start()
    return leads


async def test_a_slow_destinations_backlog_waits_in_its_table_not_in_the_agent(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """An agent holds at most 30 records here, and a slow destination may have 5 waiting in
    memory beside its 2 in flight: its other leads are parked, so the fast destination
    gets every lead while the slow one answers none. A SIGKILL with the backlog parked
    loses none of it: after a restart the slow one gets each lead, the fast one none
    again, and every lead has one outcome."""
    released = asyncio.Event()
    fast = await Recipient().start()
    slow = await Recipient(answer=accepting_once(released)).start()
    try:
        leads = await park_a_slow_backlog_then_kill(
            kafka, topics, start_worker, fast_and_slow(fast, slow), fast, slow, "B"
        )
        released.set()
        await slow.wait_for(200, timeout_s=120)
        outcomes = await settled_outcomes(kafka, topics, len(leads))
        assert outcomes == {lead["id"]: 1 for lead in leads}
        assert Counter(r.json()["ref"] for r in fast.requests) == outcomes  # none twice
        to_slow = Counter(r.json()["ref"] for r in slow.requests)
        assert set(to_slow) == set(outcomes)
        # Sent again: only the two the slow one had not answered when the worker died.
        assert sum(n - 1 for n in to_slow.values()) <= 2, to_slow.most_common(4)
    finally:
        released.set()
        await fast.stop()
        await slow.stop()


async def test_a_slow_capped_destinations_backlog_waits_in_its_owners_table(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """Capped destinations are delivered from their own partitions, by one agent that
    holds at most 30 records here: a slow capped one's backlog past its 5 waiting is
    parked in that agent's table, so a fast capped one gets every lead meanwhile. After a
    SIGKILL with the backlog parked, the slow one's cap of 150 still holds exactly: 150
    leads accepted, the other 50 "Cap exceeded", one outcome each."""
    released = asyncio.Event()
    fast = await Recipient().start()
    slow = await Recipient(answer=accepting_once(released)).start()
    try:
        capped = fast_and_slow(fast, slow, fast_caps="{day: 1000}", slow_caps="{day: 150}")
        leads = await park_a_slow_backlog_then_kill(
            kafka, topics, start_worker, capped, fast, slow, "C"
        )
        released.set()
        outcomes = await settled_outcomes(kafka, topics, len(leads))
        assert outcomes == {lead["id"]: 1 for lead in leads}
        assert Counter(r.json()["ref"] for r in fast.requests) == outcomes  # none twice
        records = read_records(kafka.bootstrap, topics.outcomes, follow=False)
        decoded = [decode_with_schema_file(r.value, "lead_outcome") async for r in records]
        sold = {o["lead_id"] for o in decoded if "slow" in o["accepted_by"]}
        assert len(sold) == 150
        # Sent to it: the 150 it took, and at most the 2 it had not answered at the kill.
        assert len({r.json()["ref"] for r in slow.requests}) <= 152
    finally:
        released.set()
        await fast.stop()
        await slow.stop()


async def test_leads_waiting_for_an_hourly_allowance_wait_in_the_table(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """A buyer that takes 5 leads an hour beside a fast one: 5 go, 3 wait in memory for
    the next hour and the rest in the table, and the fast one gets every lead meanwhile
    (an agent holds only 20 records here)."""
    fast = await Recipient().start()
    hourly = await Recipient().start()
    try:
        start_worker(
            f"""
destinations:
  - id: fast
    url: {fast.url("/fast")}
    mapping: {{ref: id}}
  - id: hourly
    url: {hourly.url("/hourly")}
    limits: {{per_hour: 5}}
    mapping: {{ref: id}}
flows:
  - id: both
    plan: {{parallel: [fast, hourly]}}
""",
            env={"COURIER_HELD_PER_AGENT": "20", "COURIER_QUEUED_PER_DESTINATION": "3"},
        )
        await publish(kafka, topics.leads, [{"id": f"H-{i:03d}", "lead": {}} for i in range(100)])
        await fast.wait_for(100, timeout_s=90)
        events = await collect(kafka, topics.events, 105, settle_s=1.0)
        assert by_destination(events) == {"fast": 100, "hourly": 5}
        assert len(hourly.requests) == 5
    finally:
        await fast.stop()
        await hourly.stop()


async def test_a_circuit_opened_by_one_worker_skips_in_the_other(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    healthy = True

    async def failing(server: Recipient, received: Received) -> web.Response:
        if healthy:
            return web.json_response({"id": "B-1"}, status=201)
        return web.Response(text="down", status=500)

    recipient = await Recipient(answer=failing).start()
    try:
        circuit = "{consecutive_errors: 3, cool_down_s: 300}"
        destinations = one_buyer(recipient, circuit=circuit, retry="{max_attempts: 1}")
        first = start_worker(destinations, name="a", env={"WORKER_TAG": "a"})
        start_worker(destinations, name="b", app_id=first.app_id, env={"WORKER_TAG": "b"})
        await both_working(recipient, kafka, topics, "warm")
        healthy = False
        # Failing leads in one partition only: one worker opens its circuit.
        one_partition = [f"C-{i}" for i in range(200) if partition_of(f"C-{i}", PARTITIONS) == 0]
        await publish(kafka, topics.leads, [{"id": i, "lead": {}} for i in one_partition[:5]])
        (opened,) = await collect(kafka, topics.control, 1)
        assert decode_with_schema_file(opened.value, "circuit_event")["after"] == "open"
        await asyncio.sleep(2.0)  # the other worker hears of it
        sent_before = len(recipient.requests)
        spread = [{"id": f"X-{i:03d}", "lead": {}} for i in range(40)]
        await publish(kafka, topics.leads, spread)
        outcomes = await collect(kafka, topics.outcomes, 1, settle_s=0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            outcomes = await collect(kafka, topics.outcomes, len(outcomes), settle_s=0.5)
            later = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
            later = [o for o in later if o["lead_id"].startswith("X-")]
            if len(later) == 40:
                break
        assert {o["reason"] for o in later} == {"System unavailable (circuit open)"}
        assert len(recipient.requests) == sent_before  # neither worker sent one
    finally:
        await recipient.stop()


# ── SIGKILL at several points ─────────────────────────────────────────────────
IN_FLIGHT = 16


async def outcome_ids(kafka: Any, topics: Any) -> Counter[str]:
    """Outcomes per lead, by event id: a record written again after a kill, in the moment
    between writing it and committing its offset, is the same event (same id)."""
    records = read_records(kafka.bootstrap, topics.outcomes, follow=False)
    events = {
        decode_with_schema_file(r.value, "lead_outcome")["event_id"]: r.key.decode()
        async for r in records
    }
    return Counter(events.values())


async def settled_outcomes(kafka: Any, topics: Any, count: int) -> Counter[str]:
    """``outcome_ids`` once ``count`` leads have one (or two minutes have passed), and
    three seconds more: a second outcome written late would show by then."""
    outcomes = await outcome_ids(kafka, topics)
    deadline = time.monotonic() + 120
    while len(outcomes) < count and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        outcomes = await outcome_ids(kafka, topics)
    await asyncio.sleep(3.0)
    return await outcome_ids(kafka, topics)


async def test_sigkill_early_middle_and_late_keeps_every_promise(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    recipient.delay_s = 0.02
    worker = start_worker(one_buyer(recipient), in_flight=IN_FLIGHT, env={"WORKER_TAG": "a"})
    leads = [{"id": f"K-{i:03d}", "lead": {}} for i in range(300)]
    await publish(kafka, topics.leads, leads)
    # Requests each lead had had when its outcome was first seen written.
    at_outcome: dict[str, int] = {}
    for at in (40, 150, 260):
        await recipient.wait_for(at, timeout_s=120)
        assert await worker.stopped(signal.SIGKILL) == -signal.SIGKILL
        received = Counter(r.json()["ref"] for r in recipient.requests)
        for lead in await outcome_ids(kafka, topics):
            at_outcome.setdefault(lead, received[lead])
        worker.start()
    outcomes = await settled_outcomes(kafka, topics, len(leads))
    missing = {lead["id"] for lead in leads} - set(outcomes)
    if missing:
        # Once lost in CI (stop 63: 8 of 300 leads sent before the third kill had no
        # outcome 2 min after the restart; 3 of 3 local runs passed): where they stopped,
        # and the last worker's log, for whoever sees it next.
        where = await trail(kafka, topics, worker.app_id, missing)
        raise AssertionError(f"a lead was lost: {sorted(missing)}\n{where}\n{worker.log()}")
    assert all(n == 1 for n in outcomes.values()), "a lead has two outcomes"
    received = Counter(r.json()["ref"] for r in recipient.requests)
    assert set(received) == set(outcomes)
    resent = {lead for lead, n in at_outcome.items() if received[lead] != n}
    assert not resent, "sent again after its outcome was written"
    repeated = sum(n - 1 for n in received.values())
    # Only what was under way at each kill: requests in flight, and answers whose record
    # in the lead's table was not yet stored (at most as many again).
    assert repeated <= 3 * 2 * IN_FLIGHT, repeated


async def test_sigkill_while_retries_wait_keeps_retry_after_and_max_attempts(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    seen: Counter[str] = Counter()
    times: dict[str, list[float]] = {}

    async def busy_then_ok(server: Recipient, received: Received) -> web.Response:
        ref = received.json()["ref"]
        seen[ref] += 1
        times.setdefault(ref, []).append(time.monotonic())
        if seen[ref] == 1:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "3"}
            )
        return web.json_response({"id": "B-1"}, status=201)

    recipient = await Recipient(answer=busy_then_ok).start()
    try:
        worker = start_worker(
            one_buyer(recipient, retry="{max_attempts: 2}", circuit="{enabled: false}"),
            env={"WORKER_TAG": "a"},
        )
        leads = [{"id": f"R-{i:02d}", "lead": {}} for i in range(40)]
        await publish(kafka, topics.leads, leads)
        await recipient.wait_for(40)
        await asyncio.sleep(0.5)  # every first answer is in; the retries are parked
        assert await worker.stopped(signal.SIGKILL) == -signal.SIGKILL
        worker.start()
        outcomes = await collect(kafka, topics.outcomes, 40, timeout_s=120, settle_s=2.0)
        decoded = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
        assert Counter(o["lead_id"] for o in decoded) == {lead["id"]: 1 for lead in leads}
        assert {o["reason"] for o in decoded} == {"Delivered"}
        assert all(n == 2 for n in seen.values()), seen  # max_attempts held, none lost
        gaps = [t[1] - t[0] for t in times.values()]
        assert min(gaps) >= 3.0, min(gaps)  # Retry-After held across the kill
    finally:
        await recipient.stop()


async def test_sigkill_while_a_crowd_of_due_retries_is_handed_back_repeats_none(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    """400 leads refused with one Retry-After date for all are due at once and handed back
    in batches; the worker is killed mid-way through that pass and started again, which
    hands back again what it had written and not yet taken from its table. A copy whose
    delivery had been made meanwhile (and parked for its third attempt) is dropped: every
    lead gets its three requests, plus at most the few in flight at the kill."""
    seen: Counter[str] = Counter()
    back_at: list[float] = []

    async def down_twice(server: Recipient, received: Received) -> web.Response:
        ref = received.json()["ref"]
        seen[ref] += 1
        if seen[ref] == 1:
            back_at.append(back_at[0] if back_at else time.time() + 6)
            date = formatdate(math.ceil(back_at[0]), usegmt=True)
            return web.json_response(
                {"error": "maintenance"}, status=503, headers={"Retry-After": date}
            )
        if seen[ref] == 2:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "2"})
        return web.json_response({"id": ref}, status=201)

    recipient = await Recipient(answer=down_twice, delay_s=0.02).start()
    try:
        worker = start_worker(
            one_buyer(recipient, retry="{max_attempts: 3}", circuit="{enabled: false}"),
            in_flight=4,
            env={"WORKER_TAG": "a"},
        )
        leads = [{"id": f"D-{i:03d}", "lead": {}} for i in range(400)]
        await publish(kafka, topics.leads, leads)
        await recipient.wait_for(400 + 150, timeout_s=120)  # mid-way through the release
        assert await worker.stopped(signal.SIGKILL) == -signal.SIGKILL
        worker.start()
        outcomes = await settled_outcomes(kafka, topics, len(leads))
        assert outcomes == {lead["id"]: 1 for lead in leads}
        assert set(seen) == set(outcomes) and min(seen.values()) == 3
        repeated = sum(n - 3 for n in seen.values())
        assert repeated <= 2 * 4 * PARTITIONS, seen.most_common(5)  # in flight at the kill
    finally:
        await recipient.stop()


SHARE_OF_HALF = "share of each destination's limits: 0.50"


async def test_a_limit_per_second_holds_for_two_workers_together(
    kafka: Any, topics: Any, start_worker: Any
) -> None:
    times: list[float] = []

    async def counting(server: Recipient, received: Received) -> web.Response:
        times.append(time.monotonic())
        return web.json_response({"id": "B-1"}, status=201)

    recipient = await Recipient(answer=counting).start()
    try:
        destinations = one_buyer(recipient, limits="{per_second: 10}")
        first = start_worker(destinations, name="a", env={"WORKER_TAG": "a"})
        second = start_worker(destinations, name="b", app_id=first.app_id, env={"WORKER_TAG": "b"})
        await both_working(recipient, kafka, topics, "warm")
        async with asyncio.timeout(60):  # both have taken their half since the rebalance
            while not all(SHARE_OF_HALF in w.log_path.read_text() for w in (first, second)):
                await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # what waited on a worker's whole allowance is out
        start, expected = len(times), len(recipient.requests) + 80
        await publish(kafka, topics.leads, [{"id": f"L-{i:03d}", "lead": {}} for i in range(80)])
        await recipient.wait_for(expected, timeout_s=60)
        # From the second second on: requests that waited for a worker's allowance while
        # it still had all the partitions (before the other joined) go out at the old rate.
        burst = [t for t in times[start:] if t >= times[start] + 1.0]
        # 10 a second for both together. Times are taken where the recipient reads each
        # request, in this busy test process: a late read can bunch a few together, but
        # can never make them earlier. So the span of the rest of the run is the sharp
        # check (n requests at 10/s span ≥ (n - 1) / 10 s; each worker alone would allow
        # 20/s); any 2 s holds 20 (each alone: 40), and the bound leaves room for reads
        # bunched by a busy moment here (27 and 35 were seen in full-suite runs).
        span = burst[-1] - burst[0]
        shares = [line for w in (first, second) for line in w.log_path.read_text().splitlines()
                  if "share of each" in line]  # fmt: skip
        assert span >= (len(burst) - 2) / 10, (len(burst), span, shares)
        busiest = max(sum(1 for t in burst if s <= t < s + 2.0) for s in burst)
        assert busiest <= 36, busiest
        assert {r.headers["X-Worker"] for r in recipient.requests[-80:]} == {"a", "b"}
    finally:
        await recipient.stop()


async def test_two_apps_sharing_a_data_directory_keep_their_own_tables(
    kafka: Any, recipient: Recipient, tmp_path: Any
) -> None:
    """Faust names RocksDB files by table and partition only: each app id gets its own
    directory, or the second app would find the first one's leads finished."""
    for app in ("first", "second"):
        topics = TopicNames.unique()
        worker = WorkerProcess(
            kafka, one_buyer(recipient), tmp_path, topics, app_id=f"{app}-{topics.leads}",
            env={"WORKER_TAG": app}, name="shared",
        ).start()  # fmt: skip
        try:
            await publish(kafka, topics.leads, [{"id": "SAME-1", "lead": {}}])
            (outcome,) = await collect(kafka, topics.outcomes, 1)
            record = decode_with_schema_file(outcome.value, "lead_outcome")
            assert record["accepted_by"] == ["buyer"], app
        finally:
            assert await worker.stopped() == 0, worker.log()
    assert [r.headers["X-Worker"] for r in recipient.requests] == ["first", "second"]
