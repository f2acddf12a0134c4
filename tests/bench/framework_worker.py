"""One side of the framework benchmark (tests/bench/framework.py), run as its own process:
``python -m tests.bench.framework_worker BOOTSTRAP faust|courier|aiokafka COUNT TAG``
(``courier``: Faust with our worker's app class, ``streams.app.CourierApp``).

Reads ``COUNT`` records of ``src-TAG`` and, for each, writes three records to ``dst-TAG``
(a delivery engine's minimum per lead: its delivery event, its outcome, its state), each
confirmed before the next record counts as done; prints the process's CPU seconds per
record from the first record to the last. No HTTP, no mapping, no tables: what the
framework's per-record path costs by itself."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

WRITES_PER_RECORD = 3
# Sends are confirmed in bulk on both sides (per fetched batch; every 500 records on
# Faust's): the figure is the per-record path's CPU, not the wait for a broker's answer.
CONFIRM_EVERY = 1_500


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(count: int, started: tuple[float, float]) -> None:
    wall, cpu = time.perf_counter() - started[0], cpu_s() - started[1]
    print(f"RESULT {cpu / count * 1e6:.1f} {count / wall:.1f}", flush=True)


async def aiokafka_loop(bootstrap: str, count: int, tag: str) -> None:
    consumer = AIOKafkaConsumer(
        f"src-{tag}", bootstrap_servers=bootstrap, group_id=f"plain-{tag}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    done, started = 0, (0.0, 0.0)
    pending: list[Any] = []  # confirmations, awaited once per fetched batch
    try:
        while done < count:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if not done:
                        started = (time.perf_counter(), cpu_s())
                    pending += [
                        await producer.send(f"dst-{tag}", key=record.key, value=record.value)
                        for _ in range(WRITES_PER_RECORD)
                    ]
                    done += 1
            await asyncio.gather(*pending)
            pending = []
            if batch:
                await consumer.commit()
        report(count, started)
    finally:
        await consumer.stop()
        await producer.stop()


def faust_worker(bootstrap: str, count: int, tag: str, courier: bool) -> None:
    import faust

    app_class: Any = faust.App
    if courier:  # imported only for its side: the Faust side runs Faust alone
        from streams.app import CourierApp

        app_class = CourierApp
    app = app_class(
        f"faust-{tag}", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
        topic_partitions=4, producer_linger_ms=5,
    )  # fmt: skip
    source = app.topic(f"src-{tag}", key_serializer="raw", value_serializer="raw")
    sink = app.topic(f"dst-{tag}", key_serializer="raw", value_serializer="raw")
    state: dict[str, Any] = {"done": 0, "pending": []}

    @app.agent(source)  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            if not state["done"]:
                # As our worker does (streams.app.worker_class): mode leaves the root logger
                # at DEBUG, and every library's debug call would build a record.
                logging.getLogger().setLevel(logging.WARNING)
                state["started"] = (time.perf_counter(), cpu_s())
            state["pending"] += [
                await sink.send(key=event.key, value=event.value, force=True)
                for _ in range(WRITES_PER_RECORD)
            ]
            state["done"] += 1
            if len(state["pending"]) >= CONFIRM_EVERY or state["done"] == count:
                await asyncio.gather(*state["pending"])
                state["pending"] = []
            if state["done"] == count:
                report(count, state["started"])
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    bootstrap, kind, count, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if kind in ("faust", "courier"):
        faust_worker(bootstrap, count, tag, courier=kind == "courier")
    else:
        asyncio.run(aiokafka_loop(bootstrap, count, tag))
