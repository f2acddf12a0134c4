"""Ping-post: leads per second from one partition through an auction of five buyers, each
answering its pings and posts in 100 ms, as a ratio of a single destination answering in
100 ms, measured in the same run (issue #16's target: at least 0.8).

Both run one worker, one partition and the same in-flight limit, so the figure is what an
auction costs a partition: its lead waits for the pings (in parallel), then its post.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from streams.cli.broker import EmbeddedBroker
from tests.bench.delivery import create_topics, outcome_rate, produce_leads
from tests.bench.mapping import sample_leads
from tests.bench.worker import process_usage, start_courier
from tests.integration.local_server import LocalServer

LATENCY_S = 0.1
BUYERS = 5
IN_FLIGHT = 256


class Buyers(LocalServer):
    """Five buyers on one port: ``/ping/<n>`` bids 10 + n after 100 ms, ``/post/<n>`` buys
    after 100 ms (as does ``/single``, the baseline's one destination)."""

    backlog = 2048

    def url(self, path: str) -> str:
        return self.base_url(path)

    def build_app(self) -> web.Application:
        async def ping(request: web.Request) -> web.Response:
            await request.read()
            await asyncio.sleep(LATENCY_S)
            n = int(request.match_info["n"])
            return web.json_response({"bid": 10 + n, "bid_id": f"bid-{n}-{uuid.uuid4().hex}"})

        async def buy(request: web.Request) -> web.Response:
            await request.read()
            await asyncio.sleep(LATENCY_S)
            return web.json_response({"id": "R-1", "status": "accepted"}, status=201)

        app = web.Application()
        app.router.add_post("/ping/{n}", ping)
        app.router.add_post("/post/{n}", buy)
        app.router.add_post("/single", buy)
        return app


def single_yaml(buyers: Buyers) -> str:
    return f"""
destinations:
  - id: single
    url: {buyers.url("/single")}
    mapping: {{lead_id: id, state: lead.state, email: lead.email}}
"""


def auction_yaml(buyers: Buyers) -> str:
    blocks = "".join(
        f"""
  - id: buyer_{n}
    url: {buyers.url(f"/post/{n}")}
    mapping: {{lead_id: id, bid_id: "{{{{appended.buyer_{n}.bid_id}}}}", email: lead.email}}
    ping:
      url: {buyers.url(f"/ping/{n}")}
      mapping: {{state: lead.state}}
"""
        for n in range(BUYERS)
    )
    names = ", ".join(f"buyer_{n}" for n in range(BUYERS))
    return f"""
destinations:{blocks}
flows:
  - id: auction
    plan:
      ping_post: {{buyers: [{names}], ping_timeout_ms: 2000, floor: 1.00}}
"""


class Run(NamedTuple):
    leads_per_s: float
    # CPU ms a lead, from the worker's start to its last outcome: the worker's, the
    # broker's, and this process's (the buyers answer from here: aiohttp servers in Python,
    # whose cost grows with the requests a lead makes, on the same two cores as the worker).
    worker_cpu_ms: float
    broker_cpu_ms: float
    buyers_cpu_ms: float


async def one_run(
    broker: EmbeddedBroker, destinations: str, leads: list[bytes], workdir: Path
) -> Run:
    tag = uuid.uuid4().hex[:8]
    await create_topics(broker.bootstrap, f"leads-{tag}", partitions=1)
    await produce_leads(broker.bootstrap, f"leads-{tag}", leads)
    broker_cpu_s, own_cpu_s = process_usage(broker.pid)[0], time.process_time()
    worker = start_courier(broker, tag, workdir, destinations, IN_FLIGHT, partitions=1)
    try:
        await worker.wait_for(len(leads), 600)
        worker_cpu_s = process_usage(worker.pid)[0]
        broker_cpu_s = process_usage(broker.pid)[0] - broker_cpu_s
        own_cpu_s = time.process_time() - own_cpu_s
        rate = await outcome_rate(broker.bootstrap, f"outcomes-{tag}", len(leads), 60)
    finally:
        await worker.stop()
    return Run(
        rate, *(cpu_s * 1000 / len(leads) for cpu_s in (worker_cpu_s, broker_cpu_s, own_cpu_s))
    )


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> dict[str, Any]:
    count = 1_500 if quick else 6_000
    rounds = 1 if quick else 3
    leads = [orjson.dumps(lead.envelope) for lead in sample_leads(count)]
    single: list[Run] = []
    auction: list[Run] = []
    async with Buyers() as buyers:
        with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as workdir:
            for _ in range(rounds):  # alternate: drift on a noisy machine hits both alike
                single.append(await one_run(broker, single_yaml(buyers), leads, Path(workdir)))
                auction.append(await one_run(broker, auction_yaml(buyers), leads, Path(workdir)))
    single_rate = statistics.median(run.leads_per_s for run in single)
    auction_rate = statistics.median(run.leads_per_s for run in auction)

    def cpu_ms(runs: list[Run]) -> dict[str, float]:
        return {
            name: round(statistics.median(getattr(run, name) for run in runs), 2)
            for name in ("worker_cpu_ms", "broker_cpu_ms", "buyers_cpu_ms")
        }

    return {
        "leads": count,
        "rounds": rounds,
        "buyers": BUYERS,
        "recipient_ms": LATENCY_S * 1000,
        "single_leads_per_s": round(single_rate),
        "auction_leads_per_s": round(auction_rate),
        "auction_vs_single": round(auction_rate / single_rate, 3),
        "requests_per_lead": {"single": 1, "auction": BUYERS + 1},
        "cpu_ms_per_lead": {"single": cpu_ms(single), "auction": cpu_ms(auction)},
        "targets": {"auction_vs_single": 0.8},
    }
