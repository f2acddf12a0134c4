"""The courier worker a benchmark runs, as its own process on the embedded broker, and what
it has done so far, read from its ``/metrics``.

Benchmarks wait on the worker's metrics, not by following the topics it writes: on Tansu a
fetch costs the broker more the more batches its partition holds (docs/brokers.md), and the
worker writes outcomes and events a few at a time, so a reader following them would take
more and more of the broker's CPU (and this two-core machine's) from the run it measures.
Where a figure needs the records' broker timestamps, the topic is read once, after the
count is reached. ``process_usage`` reads a process's CPU and peak RSS (the worker's, the
broker's) from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.cli.broker import EmbeddedBroker, free_port

PARTITIONS = 4
IN_FLIGHT = 64
LEADS = "courier_leads_total"  # lead outcomes, by outcome
ATTEMPTS = "courier_deliveries_total"  # delivery attempts, by destination and outcome


def scrape(port: int) -> list[Sample] | None:
    """Every sample of the worker's metrics; None while its web port is not open yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def summed(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@dataclass
class Courier:
    process: subprocess.Popen[bytes]
    web_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    async def counted(self, name: str = LEADS, **labels: str) -> int:
        """What the worker has counted so far (0 before its web port opens)."""
        samples = await asyncio.to_thread(scrape, self.web_port)
        return 0 if samples is None else int(summed(samples, name, **labels))

    async def wait_for(
        self, count: int, timeout_s: float, name: str = LEADS, **labels: str
    ) -> None:
        """Until the worker has counted ``count`` (by default, lead outcomes); raises if it
        exits first or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while (seen := await self.counted(name, **labels)) < count:
            self.raise_if_exited(f"at {seen}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen} of {count} {name} {labels or ''}")
            await asyncio.sleep(0.5)

    def raise_if_exited(self, when: str) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.process.returncode}) {when}")

    async def stop(self) -> None:
        """SIGTERM and wait: in a thread, so a recipient in this event loop answers while the
        worker drains."""
        self.process.terminate()
        await asyncio.to_thread(self.process.wait, 60)

    async def kill(self) -> None:
        """SIGKILL: for runs whose leftover backlog is not what is measured."""
        self.process.kill()
        await asyncio.to_thread(self.process.wait, 60)


def start_courier(
    broker: EmbeddedBroker,
    tag: str,
    workdir: Path,
    destinations: str,
    in_flight: int = IN_FLIGHT,
    partitions: int = PARTITIONS,
    env: dict[str, str] | None = None,
    log_name: str | None = None,
) -> Courier:
    """A worker on the run's own topics (``-<tag>``) with ``destinations`` (the file's
    text); ``env``: more settings for it (over this process's environment)."""
    path = workdir / f"destinations-{tag}.yaml"
    path.write_text(destinations)
    web_port = free_port()
    environment = {
        **os.environ,
        "BENCH_API_KEY": "bench-key",
        "COURIER_BROKER": broker.url,
        "COURIER_APP_ID": f"bench-{tag}",
        "COURIER_LEADS_TOPIC": f"leads-{tag}",
        "COURIER_EVENTS_TOPIC": f"events-{tag}",
        "COURIER_OUTCOMES_TOPIC": f"outcomes-{tag}",
        "COURIER_DLQ_TOPIC": f"dlq-{tag}",
        "COURIER_ROUTING_TOPIC": f"routing-{tag}",
        "COURIER_WORK_TOPIC": f"work-{tag}",
        "COURIER_CONTROL_TOPIC": f"control-{tag}",
        "COURIER_CONFIG_TOPIC": f"config-{tag}",
        "COURIER_ADMIN_TOPIC": f"admin-{tag}",
        "COURIER_IN_FLIGHT": str(in_flight),
        "COURIER_PARTITIONS": str(partitions),
        "COURIER_EGRESS": "any",  # the recipients are on 127.0.0.1
        **(env or {}),
        "COURIER_WEB_PORT": str(web_port),  # after ``env``: the port ``Courier`` reads
    }
    log = (workdir / (log_name or f"worker-{tag}.log")).open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--destinations", str(path)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Courier(process, web_port)


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds so far and peak RSS (MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks
    return cpu_s, memory_mb(pid, "VmHWM")


def memory_mb(pid: int, field: str) -> float:
    """One memory line of /proc/<pid>/status (``VmRSS``, ``VmHWM``…), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:"))
    return kb / 1024
