"""A managed Kafka's TLS listener, with client certificates required (mutual TLS), on
127.0.0.1: the worker and the commands reach it with ``COURIER_KAFKA_SSL_*`` and nothing
else; without TLS, or trusting another CA, they say so in one line (issue #14).

Reproduced first: ``COURIER_BROKER`` took only ``kafka://host:port``: no TLS, no SASL, so
no Confluent Cloud, MSK, Aiven or Redpanda Cloud."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.cli.broker import EmbeddedBroker, free_port
from streams.cli.console import publish_lines, read_records
from streams.config.kafka import KafkaSecurity
from tests.integration.conftest import decode_with_schema_file
from tests.integration.https_recipient import private_ca
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.tls_proxy import TlsProxy, make_pki
from tests.integration.worker import TopicNames, WorkerProcess


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedBroker, dict[str, Path]]]:
    pki = make_pki(tmp_path)
    port = free_port()
    broker = EmbeddedBroker(advertised_port=port)
    broker.start()
    proxy = await TlsProxy(port, broker.port, pki, client_certs=True).start()
    yield broker, pki
    await proxy.stop()
    broker.stop()


def tls_env(pki: dict[str, Path], ca: str = "ca") -> dict[str, str]:
    return {
        "COURIER_KAFKA_SSL_CA_FILE": str(pki[ca]),
        "COURIER_KAFKA_SSL_CERT_FILE": str(pki["client_cert"]),
        "COURIER_KAFKA_SSL_KEY_FILE": str(pki["client_key"]),
    }


async def test_a_worker_and_the_commands_deliver_over_mutual_tls(
    tls_broker: tuple[EmbeddedBroker, dict[str, Path]], recipient: Recipient, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    security = KafkaSecurity(
        ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"]
    )
    assert security.effective_protocol == "SSL"
    topics = TopicNames.unique()
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email}}
"""
    worker = WorkerProcess(
        KafkaTarget("tansu behind TLS", broker.bootstrap), yaml, tmp_path, topics, env=tls_env(pki)
    ).start()
    try:
        leads = [
            orjson.dumps({"id": f"S-{n}", "lead": {"email": f"s{n}@example.com"}}) for n in range(5)
        ]
        assert await publish_lines(broker.bootstrap, topics.leads, leads, security) == 5
        outcomes: list[Any] = []
        async with asyncio.timeout(90):
            while len(outcomes) < 5:
                outcomes = [
                    r
                    async for r in read_records(
                        broker.bootstrap, topics.outcomes, follow=False, security=security
                    )
                ]
                await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(worker.stop)
    decoded = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
    assert sorted(o["lead_id"] for o in decoded) == [f"S-{n}" for n in range(5)]
    assert all(o["outcome"] == "delivered" for o in decoded)
    assert len(recipient.requests) == 5
    assert ", SSL with a client certificate" in worker.log_path.read_text()  # its summary


@pytest.mark.parametrize("how", ["no TLS", "another CA"])
async def test_without_tls_or_trusting_another_ca_it_is_one_line_and_exit_code_2(
    tls_broker: tuple[EmbeddedBroker, dict[str, Path]], how: str, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_KAFKA_")}
    env["COURIER_BROKER"] = broker.url
    if how == "another CA":
        env.update(tls_env(pki, ca="other_ca"))
    destinations = tmp_path / "d.yaml"
    destinations.write_text("destinations: [{id: crm, url: 'https://crm.example.com'}]\n")
    for command in (["worker", "--destinations", str(destinations)], ["events"]):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "streams.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("courier: cannot reach the Kafka broker")


def events_refused(kafka_settings: dict[str, str]) -> str:
    """``courier events`` with these Kafka settings (and no others) against a broker that is
    never reached: what it says, once it has exited 2 without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURIER_KAFKA_")}
    env.update({"COURIER_BROKER": "kafka://127.0.0.1:1", **kafka_settings})
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "events"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,  # OpenSSL would ask a terminal for a key's pass phrase
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_inconsistent_settings_are_named_before_anything_connects() -> None:
    said = events_refused(
        {"COURIER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "COURIER_KAFKA_SASL_USERNAME": "svc"}
    )
    assert "kafka_sasl_mechanism SCRAM-SHA-512 needs kafka_sasl_username and" in said


def test_kafka_tls_files_that_cannot_load_are_named_before_anything_connects(
    tmp_path: Path,
) -> None:
    """Before, an encrypted client key without its password, or a CA file that holds a key,
    passed the settings and raised from the first Kafka client made: OpenSSL's bare error,
    or its prompt for a PEM pass phrase on the terminal."""
    pki = private_ca(tmp_path)  # its client key is encrypted
    said = events_refused(
        {
            "COURIER_KAFKA_SSL_CERT_FILE": str(pki.client_cert),
            "COURIER_KAFKA_SSL_KEY_FILE": str(pki.client_key),
        }
    )
    assert "kafka_ssl_key_password (COURIER_KAFKA_SSL_KEY_PASSWORD): " in said
    assert f"{pki.client_key.name} is an encrypted key; give its password\n" in said


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"ca_file": "client_key"}, "kafka_ssl_ca_file: {client_key} holds no certificate"),
        (
            {"cert_file": "client_cert", "key_file": "server_key"},
            "kafka_ssl_cert_file: {client_cert} and its key could not be loaded together",
        ),
    ],
)
def test_a_kafka_ca_or_key_that_does_not_fit_is_named(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    pki = private_ca(tmp_path)
    paths = {name: getattr(pki, name) for name in ("client_key", "client_cert", "server_key")}
    with pytest.raises(ValueError, match=re.escape(problem.format(**paths))):
        KafkaSecurity(**{option: paths[name] for option, name in files.items()})
