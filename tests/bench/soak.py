"""Memory over a long run: the worker's RSS after 100k and after 1M leads (target: growth
under 10 %, the run under 15 minutes), delivering to the local nginx, tables on RocksDB.
``--quick`` runs 20k and 200k instead. ``soak_two_workers``: the same with two worker
processes in one group (each its partitions, its RSS, its tables): what a deployment does
to go faster, on a machine with a core to spare for it."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer

from streams.cli.broker import EmbeddedBroker
from tests.bench.delivery import Nginx, create_topics, destinations_yaml
from tests.bench.mapping import sample_leads
from tests.bench.worker import (
    LEADS,
    Courier,
    memory_mb,
    process_usage,
    scrape,
    start_courier,
    summed,
)


def _scrape(port: int) -> tuple[int, float]:
    """Lead outcomes the worker has counted (``courier_leads_total``) and what its RocksDB
    tables hold (``courier_store_memory_bytes``, in MB), from its ``/metrics``."""
    samples = scrape(port)
    if samples is None:  # its web port is not open yet
        return 0, float("nan")
    store_bytes = summed(samples, "courier_store_memory_bytes", part="total")
    return int(summed(samples, LEADS)), store_bytes / 1024 / 1024


def _heap_and_anon_mb(pid: int) -> tuple[float, float]:
    """RSS of the main malloc arena (``[heap]``) and of all anonymous memory, from smaps:
    whether growth outside the tables' budget is the C heap or mapped memory."""
    heap_kb = anon_kb = 0
    in_heap = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if not line[0].isupper():  # a mapping's header line: address range first
            in_heap = line.endswith("[heap]")
        elif line.startswith("Anonymous:"):
            kb = int(line.split()[1])
            anon_kb += kb
            heap_kb += kb if in_heap else 0
    return heap_kb / 1024, anon_kb / 1024


async def _produce(bootstrap: str, topic: str, total: int) -> None:
    """Leads made on the fly from a small set of templates: the bench holds no million."""
    templates = [lead.envelope for lead in sample_leads(1000)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=524288)
    await producer.start()
    try:
        for n in range(total):
            envelope = {**templates[n % 1000], "id": f"S-{n}"}
            await producer.send(topic, orjson.dumps(envelope), key=f"S-{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()


class Mark(NamedTuple):
    """What was read as a mark of outcomes was passed: memory of each worker, CPU of them
    all together."""

    rss_mb: tuple[float, ...]
    store_mb: tuple[float, ...]
    at: float  # time.monotonic()
    worker_cpu_s: float
    broker_cpu_s: float
    heap_mb: tuple[float, ...]
    anon_mb: tuple[float, ...]


async def _count_until(
    marks: list[int], workers: list[Courier], broker_pid: int
) -> dict[int, Mark]:
    """Count the workers' outcomes; their RSS, their tables' memory, the time and the CPU
    of the workers and of the broker as each mark of outcomes is passed.

    Counted from the worker's metrics, not by reading the outcomes topic or asking its end
    offsets: on Tansu both cost more the more batches a partition holds (docs/brokers.md),
    so the counting itself would take ever more of the broker's, and this machine's, CPU
    from the worker being measured."""
    passed: dict[int, Mark] = {}
    pending = list(marks)
    while pending:
        await asyncio.sleep(0.5)
        for worker in workers:
            worker.raise_if_exited(f"before {pending[0]}")
        scraped = [await asyncio.to_thread(_scrape, worker.web_port) for worker in workers]
        seen = sum(count for count, _ in scraped)
        if seen < pending[0]:
            continue
        # Read once a mark is passed, not at every poll: /proc reads of the worker are
        # work done beside it.
        at = time.monotonic()
        rss_mb = tuple(memory_mb(worker.pid, "VmRSS") for worker in workers)
        worker_cpu_s = sum(process_usage(worker.pid)[0] for worker in workers)
        broker_cpu_s = process_usage(broker_pid)[0]
        heap, anon = zip(*(_heap_and_anon_mb(worker.pid) for worker in workers), strict=True)
        store_mb = tuple(store for _, store in scraped)
        while pending and seen >= pending[0]:
            passed[pending.pop(0)] = Mark(
                rss_mb, store_mb, at, worker_cpu_s, broker_cpu_s, tuple(heap), tuple(anon)
            )
    return passed


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick, workers=1))


def run_two_workers(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick, workers=2))


async def _run(quick: bool, workers: int) -> dict[str, Any]:
    early, total = (20_000, 200_000) if quick else (100_000, 1_000_000)
    tag = uuid.uuid4().hex[:8]
    started = time.monotonic()
    with Nginx() as nginx, EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as workdir:
        await create_topics(broker.bootstrap, f"leads-{tag}")
        running = [
            start_courier(
                broker,
                tag,
                Path(workdir),
                destinations_yaml(nginx.url()),
                # Each its own RocksDB directory, as each pod has its own volume.
                env={"COURIER_DATA_DIR": str(Path(workdir) / f"data-{n}")},
                log_name=f"worker-{tag}-{n}.log",
            )
            for n in range(workers)
        ]
        try:
            producing = asyncio.ensure_future(_produce(broker.bootstrap, f"leads-{tag}", total))
            marks = list(range(early, total + 1, early))
            passed = await _count_until(marks, running, broker.pid)
            await producing
        finally:
            for worker in running:
                await worker.stop()
    growth = max(
        (after - before) / before
        for before, after in zip(passed[early].rss_mb, passed[total].rss_mb, strict=True)
    )
    steps = list(itertools.pairwise(marks))

    def each(values: tuple[float, ...]) -> float | list[float]:
        """One worker's figure as a number, several workers' as a list (one each)."""
        return round(values[0], 1) if workers == 1 else [round(v, 1) for v in values]

    return {
        "leads": total,
        "workers": workers,
        f"rss_mb_after_{early}": each(passed[early].rss_mb),
        f"rss_mb_after_{total}": each(passed[total].rss_mb),
        "rss_growth": round(growth, 3),  # the worker that grew most
        # Of it, the RocksDB tables' (COURIER_STORE_MEMORY_MB): blocks read and memtables
        f"store_mb_after_{early}": each(passed[early].store_mb),
        f"store_mb_after_{total}": each(passed[total].store_mb),
        "minutes": round((time.monotonic() - started) / 60, 1),
        # The worker's RSS and its tables' memory at every mark: where growth happens.
        "rss_mb_by_mark": [each(passed[mark].rss_mb) for mark in marks],
        "store_mb_by_mark": [each(passed[mark].store_mb) for mark in marks],
        "heap_mb_by_mark": [each(passed[mark].heap_mb) for mark in marks],
        "anon_mb_by_mark": [each(passed[mark].anon_mb) for mark in marks],
        # Outcomes a second between consecutive marks (every ``early`` leads): whether the
        # worker, or the embedded broker holding every record in memory, slows as it goes.
        "leads_per_s_by_step": [round(early / (passed[b].at - passed[a].at)) for a, b in steps],
        # CPU ms a lead in each step, of the workers and of the broker: whether one of them
        # costs more a lead as the run goes, or both (a machine with no idle CPU left).
        "worker_cpu_ms_per_lead_by_step": [
            round((passed[b].worker_cpu_s - passed[a].worker_cpu_s) / early * 1000, 2)
            for a, b in steps
        ],
        "broker_cpu_ms_per_lead_by_step": [
            round((passed[b].broker_cpu_s - passed[a].broker_cpu_s) / early * 1000, 2)
            for a, b in steps
        ],
        "target_growth_below": 0.10,
        "target_minutes_below": 15,
    }
