"""A real ``courier worker`` process for a test, with its own topics and consumer group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.integration.kafka import KafkaTarget


@dataclass(frozen=True)
class TopicNames:
    leads: str
    events: str
    outcomes: str
    dlq: str
    control: str
    routing: str
    work: str
    feedback: str
    feedback_events: str
    config: str
    admin: str

    @classmethod
    def unique(cls) -> TopicNames:
        tag = uuid.uuid4().hex[:8]
        names = (
            "leads",
            "events",
            "outcomes",
            "dlq",
            "control",
            "routing",
            "work",
            "feedback",
            "feedback-events",
            "config",
            "admin",
        )
        return cls(*(f"{name}-{tag}" for name in names))


class WorkerProcess:
    def __init__(
        self,
        kafka: KafkaTarget,
        destinations_yaml: str,
        workdir: Path,
        topics: TopicNames,
        app_id: str | None = None,
        in_flight: int = 32,
        env: dict[str, str] | None = None,
        name: str = "worker",
        command: tuple[str, ...] = ("worker",),
    ) -> None:
        """``command``: ``("insight",)`` runs ``courier insight`` instead (same settings)."""
        self.kafka = kafka
        self.topics = topics
        self.workdir = workdir
        self.app_id = app_id or f"courier-test-{uuid.uuid4().hex[:8]}"
        self.destinations = workdir / "destinations.yaml"
        self.destinations.write_text(destinations_yaml)
        self.in_flight = in_flight
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.name = name  # several workers of one app in one test: their own logs
        self.command = command

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.log"

    def start(self) -> WorkerProcess:
        self.starts += 1
        env = {
            **os.environ,
            "COURIER_BROKER": self.kafka.url,
            "COURIER_APP_ID": self.app_id,
            "COURIER_LEADS_TOPIC": self.topics.leads,
            "COURIER_EVENTS_TOPIC": self.topics.events,
            "COURIER_OUTCOMES_TOPIC": self.topics.outcomes,
            "COURIER_DLQ_TOPIC": self.topics.dlq,
            "COURIER_CONTROL_TOPIC": self.topics.control,
            "COURIER_ROUTING_TOPIC": self.topics.routing,
            "COURIER_WORK_TOPIC": self.topics.work,
            "COURIER_FEEDBACK_TOPIC": self.topics.feedback,
            "COURIER_FEEDBACK_EVENTS_TOPIC": self.topics.feedback_events,
            "COURIER_CONFIG_TOPIC": self.topics.config,
            "COURIER_ADMIN_TOPIC": self.topics.admin,
            "COURIER_IN_FLIGHT": str(self.in_flight),
            "COURIER_DATA_DIR": str(self.workdir / f"data-{self.name}"),
            "COURIER_LOG_LEVEL": "info",
            **self.extra_env,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                # ``worker`` and ``insight`` both read the destinations file
                [
                    sys.executable,
                    "-m",
                    "streams.cli",
                    *self.command,
                    "--destinations",
                    str(self.destinations),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    async def stopped(self, sig: int = signal.SIGTERM) -> int:
        """``stop`` from a thread: a recipient in the test's event loop must go on answering
        while the worker finishes what it has in flight."""
        return await asyncio.to_thread(self.stop, sig)

    async def logged(self, text: str, timeout_s: float = 90.0) -> None:
        """Waits until this run's log has ``text`` (a line the worker writes when it gets
        there); fails with the log if the worker ends first."""
        async with asyncio.timeout(timeout_s):
            while text not in self.log_path.read_text(errors="replace"):
                assert self.process is not None and self.process.poll() is None, self.log()
                await asyncio.sleep(0.3)

    def log(self) -> str:
        return "\n".join(
            (self.workdir / f"{self.name}-{n}.log").read_text(errors="replace")[-5000:]
            for n in range(1, self.starts + 1)
        )
