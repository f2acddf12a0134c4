"""Which broker the integration tests use, in this order:

1. an external cluster: ``COURIER_TEST_BOOTSTRAP=host:port``;
2. Apache Kafka in a container (testcontainers) when a Docker engine answers;
3. the embedded Tansu broker (what runs on machines without Docker, CI included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from streams.cli.broker import EmbeddedBroker


@dataclass(frozen=True)
class KafkaTarget:
    kind: str  # "external", "testcontainers" or "tansu"
    bootstrap: str

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@contextmanager
def kafka_target() -> Iterator[KafkaTarget]:
    external = os.environ.get("COURIER_TEST_BOOTSTRAP")
    if external:
        yield KafkaTarget("external", external.removeprefix("kafka://"))
    elif docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield KafkaTarget("testcontainers", container.get_bootstrap_server())
    else:
        with EmbeddedBroker() as broker:
            yield KafkaTarget("tansu", broker.bootstrap)
