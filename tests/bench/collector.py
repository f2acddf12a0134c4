"""The worker's garbage-collector threshold (``COURIER_GC_YOUNG``, 10,000 allocations
between young collections) against Python's own (700), where it matters: a fast
destination beside a peer answering in 1 s (the isolation benchmark's set-up), so that
thousands of leads are held for the peer at once. Alternating pairs; figures: the fast
destination's leads per second, the worker's CPU per lead, and the seconds its collector
held it (``courier_gc_duration_seconds_total`` from its /metrics)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson

from streams.cli.broker import EmbeddedBroker
from streams.config import Settings
from tests.bench.delivery import (
    Nginx,
    SlowRecipient,
    create_topics,
    outcome_rate,
    produce_leads,
)
from tests.bench.isolation import destinations_yaml, to_fast
from tests.bench.mapping import sample_leads
from tests.bench.worker import ATTEMPTS, process_usage, scrape, start_courier, summed

THRESHOLDS = {"ours": str(Settings.model_fields["gc_young"].default), "python": "700"}


async def one_run(
    broker: EmbeddedBroker,
    fast_url: str,
    peer_url: str,
    leads: list[bytes],
    workdir: Path,
    threshold: str,
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    await create_topics(broker.bootstrap, f"leads-{tag}")
    await produce_leads(broker.bootstrap, f"leads-{tag}", leads)
    worker = start_courier(
        broker,
        tag,
        workdir,
        destinations_yaml(fast_url, peer_url),
        env={"COURIER_GC_YOUNG": threshold},
    )
    try:
        await worker.wait_for(len(leads), 300, ATTEMPTS, destination="fast")
        cpu_s, _ = process_usage(worker.pid)
        collected_s = await asyncio.to_thread(_collector_seconds, worker.web_port)
        # Read before the kill: the last events counted may still be in its producer.
        rate = await outcome_rate(broker.bootstrap, f"events-{tag}", len(leads), 60, to_fast)
    finally:
        await worker.kill()  # its peer's backlog is not what is measured
    return {
        "leads_per_s": rate,
        "cpu_s_per_10k": cpu_s * 10_000 / len(leads),
        "gc_s_per_10k": collected_s * 10_000 / len(leads),
    }


def _collector_seconds(port: int) -> float:
    return summed(scrape(port) or [], "courier_gc_duration_seconds_total")


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> dict[str, Any]:
    count, pairs = (6_000, 1) if quick else (8_000, 3)
    leads = [orjson.dumps(lead.envelope) for lead in sample_leads(count)]
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in THRESHOLDS}
    with Nginx() as nginx, EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as wd:
        async with SlowRecipient(1.0) as slow:
            for pair in range(pairs):
                names = list(THRESHOLDS) if pair % 2 == 0 else list(THRESHOLDS)[::-1]
                for name in names:
                    figures[name].append(
                        await one_run(
                            broker, nginx.url(), slow.url(), leads, Path(wd), THRESHOLDS[name]
                        )
                    )

    def median(name: str, figure: str) -> float:
        return statistics.median(run[figure] for run in figures[name])

    result: dict[str, Any] = {"leads": count, "pairs": pairs}
    for name, threshold in THRESHOLDS.items():
        result[f"{name}_threshold"] = int(threshold)
        result[f"{name}_fast_leads_per_s"] = round(median(name, "leads_per_s"))
        result[f"{name}_cpu_s_per_10k_leads"] = round(median(name, "cpu_s_per_10k"), 1)
        result[f"{name}_gc_s_per_10k_leads"] = round(median(name, "gc_s_per_10k"), 2)
    result["ours_vs_python_rate"] = round(
        median("ours", "leads_per_s") / median("python", "leads_per_s"), 3
    )
    result["python_vs_ours_cpu"] = round(
        median("python", "cpu_s_per_10k") / median("ours", "cpu_s_per_10k"), 3
    )
    result["targets"] = {"ours_vs_python_rate": 1.0}
    return result
