"""End-to-end delivery throughput: courier against a bare HTTP client (the ceiling) and a
hand-written consumer loop (naive), in one run, alternating, on the embedded broker and a
local nginx that answers a small JSON body (so the recipient is never the bottleneck).

- ceiling: aiohttp POSTs the pre-mapped bodies, same pool size and in-flight limit;
- naive: aiokafka consumer → asyncio.gather of POSTs per batch → aiokafka producer of a
  JSON outcome per lead: what a user might write instead of Lead Courier;
- courier: the real worker process, a realistic destination (20-field mapping with 6
  templates, an auth header, a response rule, its circuit breaker on), Avro events.

Courier's and naive's rates are measured between the broker timestamps of the first and
the last outcome they wrote, so start-up and group joins are not counted.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.cli.broker import EmbeddedBroker, free_port
from tests.bench.mapping import COPIES, TEMPLATES, sample_leads
from tests.bench.worker import IN_FLIGHT, PARTITIONS, process_usage, start_courier
from tests.integration.local_server import LocalServer

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      client_body_buffer_size 64k;
      default_type application/json;
      return 201 '{{"id":"R-1","status":"accepted"}}';
    }}
  }}
}}
"""


class Nginx:
    """nginx from Debian's packages, with its own config in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("the delivery benchmark needs nginx: apt-get install nginx-light")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="courier-bench-nginx-")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, path: str = "/leads") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Nginx:
        conf = Path(self.dir.name) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.dir.name, port=self.port))
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf), "-p", self.dir.name, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start")

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        self.dir.cleanup()


def destinations_yaml(url: str) -> str:
    mapping = "\n".join(f'      {k}: "{v}"' for k, v in {**COPIES, **TEMPLATES}.items())
    return f"""
destinations:
  - id: bench_crm
    url: {url}
    headers:
      X-Api-Key: ${{env:BENCH_API_KEY}}
    mapping:
{mapping}
    response:
      rules:
        - when: {{json: {{path: $.status, equals: accepted}}}}
          outcome: success
"""


async def create_topics(bootstrap: str, *names: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce_leads(bootstrap: str, topic: str, leads: list[bytes]) -> None:
    """Keyed by lead id, as upstream services key them (a lead then needs no repartition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=262144)
    await producer.start()
    try:
        for value in leads:
            key = orjson.loads(value)["id"].encode()
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def outcome_rate(
    bootstrap: str,
    topic: str,
    count: int,
    timeout_s: float,
    keep: Callable[[Any], bool] = lambda record: True,
) -> float:
    """Records per second between the first and the last ``count`` records' broker
    timestamps (those ``keep`` takes; by default, every outcome)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    stamps: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not consumer.partitions_for_topic(topic):
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} never appeared")
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while len(stamps) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(stamps)} of {count} outcomes on {topic}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                stamps += [r.timestamp for r in records if keep(r)]
    finally:
        await consumer.stop()
    span_s = (max(stamps) - min(stamps)) / 1000
    return (count - 1) / span_s if span_s > 0 else float("inf")


async def ceiling(url: str, bodies: list[bytes]) -> float:
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    slots = asyncio.Semaphore(IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes) -> None:
            async with (
                slots,
                session.post(url, data=body, headers={"Content-Type": "application/json"}) as res,
            ):
                await res.read()

        started = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return len(bodies) / (time.perf_counter() - started)


async def naive(
    bootstrap: str, url: str, leads_topic: str, outcome_topic: str, count: int
) -> float:
    """What a user might write: consume a batch, POST each lead, produce a JSON outcome each."""
    consumer = AIOKafkaConsumer(
        leads_topic,
        bootstrap_servers=bootstrap,
        group_id=f"naive-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=IN_FLIGHT)
        ) as session:

            async def deliver(value: bytes) -> None:
                envelope = orjson.loads(value)
                fields = envelope["lead"]
                body = orjson.dumps(
                    {target: fields.get(source) for target, source in COPIES.items()}
                )
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as res:
                    status = res.status
                    await res.read()
                outcome = {"lead_id": envelope["id"], "status": status, "ok": status < 300}
                await producer.send(
                    outcome_topic, value=orjson.dumps(outcome), key=envelope["id"].encode()
                )

            while done < count:
                batch = await consumer.getmany(timeout_ms=1000, max_records=IN_FLIGHT)
                records = [r for rs in batch.values() for r in rs]
                await asyncio.gather(*(deliver(r.value) for r in records))
                done += len(records)
            await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return await outcome_rate(bootstrap, outcome_topic, count, 60)


async def courier(
    broker: EmbeddedBroker,
    url: str,
    leads: list[bytes],
    workdir: Path,
    in_flight: int = IN_FLIGHT,
    partitions: int = PARTITIONS,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    await create_topics(broker.bootstrap, f"leads-{tag}", partitions=partitions)
    await produce_leads(broker.bootstrap, f"leads-{tag}", leads)
    worker = start_courier(
        broker, tag, workdir, destinations_yaml(url), in_flight, partitions, env=env
    )
    try:
        await worker.wait_for(len(leads), 300)
        cpu_s, peak_rss_mb = process_usage(worker.pid)
        rate = await outcome_rate(broker.bootstrap, f"outcomes-{tag}", len(leads), 60)
    finally:
        await worker.stop()
    return {
        "leads_per_s": rate,
        "cpu_s_per_10k": cpu_s * 10_000 / len(leads),
        "peak_rss_mb": peak_rss_mb,
        "records_per_lead": await records_per_lead(broker.bootstrap, tag, len(leads)),
    }


async def records_per_lead(bootstrap: str, tag: str, leads: int) -> float:
    """Records the worker wrote and read, per lead: every record of the run's topics (the
    leads it read; what it wrote to events, outcomes, internal topics and changelogs) plus
    the internal ones once more (it read them back). One worker: no standby replicas."""
    from streams.broker_offsets import fetched_end_offsets

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if tag in t]
    finally:
        await admin.close()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        await reader._client.force_metadata_update()
        partitions = [
            TopicPartition(t, p) for t in names for p in reader.partitions_for_topic(t) or ()
        ]
        ends = await fetched_end_offsets(reader, await reader.end_offsets(partitions))
    finally:
        await reader.stop()
    internal = ("routing-", "work-")
    total = sum(ends.values())
    total += sum(n for tp, n in ends.items() if tp.topic.startswith(internal))
    return round(total / leads, 2)


class SlowRecipient(LocalServer):
    """Answers after a fixed latency (an aiohttp server is fine here: it mostly waits)."""

    backlog = 1024

    def __init__(self, latency_s: float) -> None:
        super().__init__()
        self.latency_s = latency_s

    def url(self) -> str:
        return self.base_url("/leads")

    def build_app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            await asyncio.sleep(self.latency_s)
            return web.json_response({"id": "R-1", "status": "accepted"}, status=201)

        app = web.Application()
        app.router.add_post("/leads", answer)
        return app


SLOW_LATENCY_S = 0.2
SLOW_IN_FLIGHT = 256


async def slow_partition(broker: EmbeddedBroker, leads: list[bytes], workdir: Path) -> float:
    """Leads/s from ONE partition to a recipient that takes 200 ms per lead."""
    async with SlowRecipient(SLOW_LATENCY_S) as recipient:
        figures = await courier(broker, recipient.url(), leads, workdir, SLOW_IN_FLIGHT, 1)
    return figures["leads_per_s"]


async def latency(
    broker: EmbeddedBroker, url: str, leads: list[bytes], rate: float, workdir: Path
) -> dict[str, float]:
    """Lead produced → its outcome written (broker timestamps), at a steady ``rate``."""
    tag = uuid.uuid4().hex[:8]
    await create_topics(broker.bootstrap, f"leads-{tag}")
    worker = start_courier(broker, tag, workdir, destinations_yaml(url))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
    await producer.start()
    sent: dict[bytes, int] = {}
    try:
        warm_up = orjson.dumps({"id": "warm-up", "lead": {}})
        await producer.send_and_wait(f"leads-{tag}", warm_up, key=b"warm-up")
        await worker.wait_for(1, 120)  # the worker is up
        started = time.perf_counter()
        for n, value in enumerate(leads):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = orjson.loads(value)["id"].encode()
            record = await producer.send_and_wait(f"leads-{tag}", value, key=key)
            sent[key] = record.timestamp
        await worker.wait_for(len(leads) + 1, 120)
        written = await _outcome_times(broker.bootstrap, f"outcomes-{tag}", len(leads) + 1)
    finally:
        await producer.stop()
        await worker.stop()
    delays = sorted(written[k] - t for k, t in sent.items() if k in written)
    return {
        "rate": rate,
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[int(len(delays) * 0.99) - 1],
    }


async def _outcome_times(bootstrap: str, topic: str, count: int) -> dict[bytes, int]:
    """Each outcome's broker timestamp, by lead id. Called once the worker has counted them
    all, so one read finds them (again only for the last few: an outcome is counted just
    before it is handed to the producer)."""
    from streams.cli.console import read_records

    deadline = time.monotonic() + 60
    while True:
        times = {r.key: r.timestamp async for r in read_records(bootstrap, topic, follow=False)}
        if len(times) >= count or time.monotonic() > deadline:
            return times
        await asyncio.sleep(0.5)


def run(quick: bool = False) -> dict[str, Any]:
    return asyncio.run(_run(quick))


async def _run(quick: bool) -> dict[str, Any]:
    count = 3_000 if quick else 20_000
    rounds = 1 if quick else 3
    leads = [orjson.dumps(lead.envelope) for lead in sample_leads(count)]
    bodies = [
        orjson.dumps({target: orjson.loads(v)["lead"].get(src) for target, src in COPIES.items()})
        for v in leads
    ]
    results: dict[str, list[float]] = {"ceiling": [], "naive": [], "courier": []}
    usage: list[dict[str, float]] = []
    with Nginx() as nginx, EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as workdir:
        for _ in range(rounds):  # alternate, so drift on a noisy machine hits all alike
            results["ceiling"].append(await ceiling(nginx.url(), bodies))
            tag = uuid.uuid4().hex[:8]
            await create_topics(broker.bootstrap, f"naive-leads-{tag}")
            await produce_leads(broker.bootstrap, f"naive-leads-{tag}", leads)
            results["naive"].append(
                await naive(
                    broker.bootstrap, nginx.url(), f"naive-leads-{tag}", f"naive-out-{tag}", count
                )
            )
            figures = await courier(broker, nginx.url(), leads, Path(workdir))
            results["courier"].append(figures["leads_per_s"])
            usage.append(figures)
        half_load = statistics.median(results["courier"]) / 2
        timing = await latency(
            broker,
            nginx.url(),
            leads[: int(half_load * (5 if quick else 20))],
            half_load,
            Path(workdir),
        )
        slow = await slow_partition(broker, leads[: 2_000 if quick else 10_000], Path(workdir))
    median = {name: statistics.median(rates) for name, rates in results.items()}
    return {
        "leads": count,
        "rounds": rounds,
        "partitions": PARTITIONS,
        "in_flight": IN_FLIGHT,
        **{f"{name}_leads_per_s": round(rate) for name, rate in median.items()},
        **{f"{name}_spread": [round(min(r)), round(max(r))] for name, r in results.items()},
        "courier_vs_ceiling": round(median["courier"] / median["ceiling"], 3),
        "courier_vs_naive": round(median["courier"] / median["naive"], 3),
        "courier_cpu_s_per_10k_leads": round(
            statistics.median(u["cpu_s_per_10k"] for u in usage), 2
        ),
        "courier_peak_rss_mb": round(max(u["peak_rss_mb"] for u in usage)),
        "courier_records_per_lead": statistics.median(u["records_per_lead"] for u in usage),
        "latency_at_leads_per_s": round(timing["rate"]),
        "latency_p50_ms": timing["p50_ms"],
        "latency_p99_ms": timing["p99_ms"],
        "slow_recipient_ms": round(SLOW_LATENCY_S * 1000),
        "slow_one_partition_leads_per_s": round(slow),
        "slow_in_flight": SLOW_IN_FLIGHT,
        "targets": {
            "courier_vs_ceiling": 0.5,
            "courier_vs_naive": 1.0,
            "slow_one_partition_leads_per_s": 500,
            "courier_records_per_lead": 4,
            "latency_p50_ms": 60,
        },
    }
