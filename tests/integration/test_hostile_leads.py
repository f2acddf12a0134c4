"""One lead's failure is that lead's alone: hostile data among good leads, through a real worker.

Each trigger below once made a handler raise, and the agent took the leads around it down
with it (no outcome, no dead letter, offsets committed). Now every good lead is delivered,
every bad one ends with an outcome or a dead letter, and a restart finds nothing missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.cli.console import (
    NOT_REPLAYED_TRUNCATED,
    ReplayFilter,
    read_records,
    replay_dead_letters,
)
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient

SEVENTEEN_MB = 17 * 1024 * 1024


def destinations_for(recipient: Recipient) -> str:
    return f"""
destinations:
  - id: crm
    url: {recipient.url()}
    headers:
      X-Name: "{{{{lead.name}}}}"
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    mapping:
      ref: id
      n: {{from: lead.n, type: number}}
      m: "{{{{lead.m * 100}}}}"
      r: "{{{{round(lead.r)}}}}"
      i: "{{{{integer(lead.i)}}}}"
      dt: {{from: lead.dt, type: date}}
      extra: lead.extra
"""


GOOD_FIELDS: dict[str, Any] = {
    "n": "12",
    "m": 5,
    "r": 2.5,
    "i": "7",
    "dt": "2026-11-22T10:00:00Z",
    "name": "Ada",
    "extra": {"a": 1},
}


def nested(depth: int) -> str:
    """A placeholder that ``dumps`` writes as an object nested ``depth`` deep (orjson writes
    at most 254 levels; the stdlib's writer recurses in Python)."""
    return f"__NESTED_{depth}__"


def dumps(document: Any) -> bytes:
    """JSON as an upstream service may write it: integers of any size, any depth."""
    text = json.dumps(document)
    for depth in (300, 1000):
        text = text.replace(f'"{nested(depth)}"', '{"a": ' * depth + '"bottom"' + "}" * depth)
    return text.encode()


# Every trigger of issue #12, point 0: each made the worker lose the leads around it.
TRIGGERS: dict[str, dict[str, Any]] = {
    "20-digit number": {"n": "12345678901234567890"},
    "bigger than 64 bits": {"n": 123456789012345678901234},
    "18 digits times 100": {"m": 123456789012345678},
    "round of 1e28": {"r": 1e28},
    "integer of 1e28": {"i": "1" + "0" * 28},
    "date of 4,400 digits": {"dt": "1" * 4400},
    "control character in a header": {"name": "Ada\r\nX-Injected: yes"},
    "nested 300 deep": {"extra": nested(300)},
    "nested 1,000 deep": {"extra": nested(1000)},
}


def envelope(lead_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"id": lead_id, "lead": {**GOOD_FIELDS, **fields}}


async def publish_keyed(kafka: KafkaTarget, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, linger_ms=5, max_request_size=32 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def record_keys(kafka: KafkaTarget, topic: str) -> list[str]:
    return [r.key.decode() async for r in read_records(kafka.bootstrap, topic, follow=False)]


async def endings(kafka: KafkaTarget, topics: Any, keys: set[str]) -> tuple[Counter[str], ...]:
    """Outcomes and dead letters of ``keys`` (by record key), once every key has one."""
    outcomes: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    waiting = set(keys)
    for _ in range(240):
        outcomes = Counter(k for k in await record_keys(kafka, topics.outcomes) if k in keys)
        dead = Counter(k for k in await record_keys(kafka, topics.dlq) if k in keys)
        waiting = {k for k in keys if not (outcomes[k] or dead[k])}
        if not waiting:
            return outcomes, dead
        await asyncio.sleep(0.5)
    raise AssertionError(f"no outcome nor dead letter for {sorted(waiting)}")


async def test_hostile_leads_end_alone_and_their_neighbours_are_delivered(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    records: list[tuple[str, bytes]] = []
    bad: dict[str, str] = {}
    triggers = list(TRIGGERS.items())
    for i in range(100):
        lead_id = f"H-{i:03d}"
        if i % 10 == 5 and triggers:
            name, fields = triggers.pop()
            bad[lead_id] = name
            records.append((lead_id, dumps(envelope(lead_id, fields))))
        else:
            records.append((lead_id, dumps(envelope(lead_id, {}))))
    # Larger than the dead-letter topic takes: kept as its first bytes, its size and why.
    bad["H-huge"] = "record over 16 MiB"
    huge = orjson.dumps({"id": "H-huge", "lead": {"notes": "x" * SEVENTEEN_MB}})
    records.insert(50, ("H-huge", huge))
    good = {key for key, _ in records} - set(bad)

    worker = start_worker(destinations_for(recipient))
    await publish_keyed(kafka, topics.leads, records)
    outcomes, dead = await endings(kafka, topics, {key for key, _ in records})

    delivered = Counter(body["ref"] for body in recipient.bodies())
    # A trigger that a stage now handles (a 20-digit number as a number) may be delivered.
    assert good <= set(delivered), worker.log()
    assert all(n == 1 for n in delivered.values())
    for key, _ in records:
        assert outcomes[key] <= 1, (key, bad.get(key))
        assert outcomes[key] or dead[key], (key, bad.get(key))
    assert all(outcomes[key] == 1 and not dead[key] for key in good)
    assert not any(r.headers.get("X-Injected") for r in recipient.requests)

    letters = read_records(kafka.bootstrap, topics.dlq, follow=False)
    (huge_letter,) = [r async for r in letters if r.key == b"H-huge"]
    headers = {k: v.decode() for k, v in huge_letter.headers}
    assert headers["courier.dlq.reason"] == "Record too large"
    assert headers["courier.dlq.truncated"] == "true"
    assert int(headers["courier.dlq.size"]) == len(huge)
    assert huge_letter.value == huge[: len(huge_letter.value)]
    replayed = await replay_dead_letters(
        kafka.bootstrap,
        topics.dlq,
        f"{topics.leads}-replayed",
        ReplayFilter(frozenset({"Record too large"})),
    )
    assert replayed == {NOT_REPLAYED_TRUNCATED: 1}

    # A restart finds nothing left undone and repeats nothing.
    assert await worker.stopped(signal.SIGTERM) == 0, worker.log()
    worker.start()
    await asyncio.sleep(8)
    after_outcomes, after_dead = await endings(kafka, topics, {key for key, _ in records})
    assert after_outcomes == outcomes
    assert after_dead == dead
    assert Counter(body["ref"] for body in recipient.bodies()) == delivered


# ── fuzz: random envelopes and values through the same worker ─────────────────
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "\r\n", "1e999", "2026-13-45", "NaN", "yes", "1" * 5000])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
lead_fields = st.dictionaries(
    st.sampled_from(["n", "m", "r", "i", "dt", "name", "extra", "email"]),
    json_values | st.sampled_from([v for fields in TRIGGERS.values() for v in fields.values()]),
    max_size=7,
)


bad_ids = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.just("")
    | st.text(min_size=201, max_size=210)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@st.composite
def records(draw: st.DrawFn, tag: str) -> list[tuple[str, bytes]]:
    """Keyed by ``tag-i``; a record with a good id has that key as its id, so its outcome
    (keyed by lead id) and its dead letter (keyed as the record) both carry the key."""
    out: list[tuple[str, bytes]] = []
    for i in range(draw(st.integers(min_value=20, max_value=40))):
        key = f"{tag}-{i}"
        shape = draw(st.sampled_from(["lead", "lead", "lead", "section", "bad id", "garbage"]))
        document: Any
        if shape == "lead":
            document = {"id": key, "lead": draw(lead_fields)}
        elif shape == "section":
            section = draw(st.sampled_from(["source", "appended", "submission"]))
            document = {"id": key, "lead": draw(lead_fields), section: draw(json_values)}
        elif shape == "bad id":
            document = {"id": draw(bad_ids), "lead": draw(lead_fields)}
        else:
            out.append((key, draw(st.binary(max_size=64))))
            continue
        out.append((key, dumps(document)))
    return out


@pytest.fixture
def fuzz_worker(recipient: Recipient, start_worker: Any) -> Any:
    """One worker for every example of the fuzz test (Hypothesis runs them in one test)."""
    return start_worker(destinations_for(recipient))


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_fuzzed_envelopes_each_get_exactly_one_ending(
    data: st.DataObject, kafka: KafkaTarget, topics: Any, fuzz_worker: Any
) -> None:
    batch = data.draw(records(uuid.uuid4().hex[:8]))
    await publish_keyed(kafka, topics.leads, batch)
    outcomes, dead = await endings(kafka, topics, {key for key, _ in batch})
    for key, _ in batch:
        assert outcomes[key] <= 1, key
        assert dead[key] <= 1, key
        assert outcomes[key] or dead[key], key
