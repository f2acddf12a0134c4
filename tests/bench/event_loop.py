"""The worker on asyncio's own loop (its default) against uvloop (``COURIER_EVENT_LOOP``):
the delivery benchmark's set-up (nginx recipient, embedded broker, 4 partitions),
alternating the two in pairs so a noisy machine's drift hits both alike. Ratio: the
default's leads per second over uvloop's (≥ 1.0 while the default is the right one), and
CPU per lead the other way round."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import orjson

from streams.cli.broker import EmbeddedBroker
from tests.bench.delivery import Nginx, courier
from tests.bench.mapping import sample_leads

LOOPS = ("asyncio", "uvloop")


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> dict[str, Any]:
    count, pairs = (3_000, 2) if quick else (10_000, 3)
    leads = [orjson.dumps(lead.envelope) for lead in sample_leads(count)]
    rates: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    cpu: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    with Nginx() as nginx, EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as wd:
        for pair in range(pairs):
            for loop in LOOPS if pair % 2 == 0 else LOOPS[::-1]:
                figures = await courier(
                    broker, nginx.url(), leads, Path(wd), env={"COURIER_EVENT_LOOP": loop}
                )
                rates[loop].append(figures["leads_per_s"])
                cpu[loop].append(figures["cpu_s_per_10k"])
    rate = {loop: statistics.median(r) for loop, r in rates.items()}
    cost = {loop: statistics.median(c) for loop, c in cpu.items()}
    return {
        "leads": count,
        "pairs": pairs,
        **{f"{loop}_leads_per_s": round(rate[loop]) for loop in LOOPS},
        **{f"{loop}_cpu_s_per_10k_leads": round(cost[loop], 1) for loop in LOOPS},
        "asyncio_vs_uvloop_rate": round(rate["asyncio"] / rate["uvloop"], 3),
        "uvloop_vs_asyncio_cpu": round(cost["uvloop"] / cost["asyncio"], 3),
        "targets": {"asyncio_vs_uvloop_rate": 1.0},
    }
