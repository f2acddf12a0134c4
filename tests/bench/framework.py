"""The framework's floor: what Faust's per-record path costs, against aiokafka's.

Each side reads records and writes three per record (a lead's delivery event, outcome
and state: the fewest a delivery engine writes), with no HTTP and no work in between,
in its own process on the embedded broker; the figure is CPU per record. Measured while
looking for the delivery benchmark's missing factor (2026-12-01): a Faust agent that
does nothing costs ~225 µs of CPU a record, and each Faust send ~165 µs against ~17 µs
for aiokafka's. So a worker built on Faust's per-record path spends more on the
framework alone than the naive loop of the delivery benchmark spends on a whole lead
(~350 µs, its HTTP exchange included): the naive rate cannot be reached on that path.
A third side runs the same agent on our worker's app class (``CourierApp``): Faust asks
for its producer through a ``stampede`` guard that yields to the loop three times a
send; ours skips it once the producer runs (2026-12-02, quick run: 913 → 698 µs a record).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

from streams.cli.broker import EmbeddedBroker
from tests.bench.delivery import create_topics, produce_leads


def _side(bootstrap: str, kind: str, count: int, tag: str) -> tuple[float, float]:
    """(CPU µs per record, records per second) of one side."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.framework_worker", bootstrap, kind, str(count), tag],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    # Faust's worker sends what a process prints to its log (stderr).
    for line in (done.stdout + done.stderr).splitlines():
        if "RESULT " in line:
            cpu_us, rate = line.split("RESULT ", 1)[1].split()[:2]
            return float(cpu_us), float(rate)
    raise RuntimeError(f"{kind} side gave no result: {done.stderr[-2000:]}")


def run(quick: bool = False) -> dict[str, Any]:
    count = 5_000 if quick else 20_000
    records = [b'{"id": "%d", "lead": {"email": "a@example.com"}}' % i for i in range(count)]
    figures: dict[str, tuple[float, float]] = {}
    with EmbeddedBroker() as broker:
        for kind in ("aiokafka", "faust", "courier"):
            tag = uuid.uuid4().hex[:8]
            asyncio.run(create_topics(broker.bootstrap, f"src-{tag}", f"dst-{tag}"))
            asyncio.run(produce_leads(broker.bootstrap, f"src-{tag}", records))
            figures[kind] = _side(broker.bootstrap, kind, count, tag)
    (plain_cpu, plain_rate), (faust_cpu, faust_rate) = figures["aiokafka"], figures["faust"]
    courier_cpu, courier_rate = figures["courier"]
    return {
        "records": count,
        "writes_per_record": 3,
        "aiokafka_cpu_us_per_record": round(plain_cpu),
        "faust_cpu_us_per_record": round(faust_cpu),
        "aiokafka_records_per_s": round(plain_rate),
        "faust_records_per_s": round(faust_rate),
        "faust_vs_aiokafka_cpu": round(faust_cpu / plain_cpu, 2),
        # Faust with our app class (its producer asked for without the stampede guard)
        "courier_app_cpu_us_per_record": round(courier_cpu),
        "courier_app_records_per_s": round(courier_rate),
        "courier_app_vs_faust_cpu": round(courier_cpu / faust_cpu, 2),
    }
