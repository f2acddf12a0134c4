"""Live configuration: a worker reads its destinations file again when it changes (or on
SIGHUP), publishes it as a version on the config topic and delivers by it, without a
restart; a file that does not validate is refused, line by line in the log, and the
running configuration kept. ``courier config apply`` publishes a version to every worker;
``history``, ``show`` and ``rollback`` read and republish them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.config.versions import load_text
from streams.live_config import StartingConfig, config_versions, publish_version, starting_config
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.test_engine import both_working


def crm_at(url: str) -> str:
    return f"destinations:\n  - id: crm\n    url: {url}\n"


async def logged(worker: Any, line: str, times: int = 1) -> None:
    async with asyncio.timeout(30):
        while worker.log_path.read_text().count(line) < times:
            await asyncio.sleep(0.2)


async def test_a_changed_file_is_delivered_by_without_a_restart(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    first = await Recipient().start()
    second = await Recipient().start()
    try:
        worker = start_worker(crm_at(first.url("/first")))
        await publish(kafka, topics.leads, [{"id": "LC-1", "lead": {}}])
        await first.wait_for(1)
        os.utime(worker.destinations)  # touched, not changed (another pod's mount, an editor)
        await asyncio.sleep(2.5)
        assert "published as destinations" not in worker.log_path.read_text()

        worker.destinations.write_text(
            crm_at(second.url("/second"))
            + f"  - id: backup\n    url: {second.url('/backup')}\n"
            + "flows:\n  - id: f\n    plan: {waterfall: [crm, backup]}\n"
        )
        await logged(worker, "changed: published as destinations v2")
        await logged(worker, "destinations v2 (by worker")
        assert "added: backup; changed: crm" in worker.log_path.read_text()
        await publish(kafka, topics.leads, [{"id": "LC-2", "lead": {}}])
        await second.wait_for(1)

        # A file with a mistake is refused; the running configuration delivers on.
        worker.destinations.write_text(crm_at("http://plain.example.com/leads"))
        await logged(worker, "destinations file changed but is refused")
        assert "plain http to plain.example.com is refused" in worker.log_path.read_text()
        # So are a file that is not text and one nested past what the YAML reader takes
        # (each ended the worker's watch of its file, and with it the worker, before).
        worker.destinations.write_bytes(b"destinations: \xff\xfe\n")
        await logged(worker, "is not UTF-8 text (byte 14)")
        worker.destinations.write_text("[" * 100_000)
        await logged(worker, "is nested too deeply to be read as YAML")
        await logged(worker, "destinations file changed but is refused", times=3)
        await publish(kafka, topics.leads, [{"id": "LC-3", "lead": {}}])
        await second.wait_for(2)

        # SIGHUP reads it again even when nothing on disk seems to have changed: the same
        # size and time, another path.
        worker.destinations.write_text(crm_at(first.url("/fir2t")))
        await logged(worker, "destinations v3 (by worker")
        stamp = worker.destinations.stat()
        worker.destinations.write_text(crm_at(first.url("/first")))
        os.utime(worker.destinations, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        await asyncio.sleep(2.5)  # a look at the file's stamp sees nothing new
        assert "destinations v4" not in worker.log_path.read_text()
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGHUP)
        await logged(worker, "destinations v4 (by worker")
        await publish(kafka, topics.leads, [{"id": "LC-4", "lead": {}}])
        outcomes = await collect(kafka, topics.outcomes, 4)
    finally:
        await first.stop()
        await second.stop()
    assert [r.path for r in first.requests] == ["/first", "/first"]
    assert [r.path for r in second.requests] == ["/second", "/second"]
    sold = {
        o["lead_id"]: o["accepted_by"]
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert sold == {"LC-1": ["crm"], "LC-2": ["crm"], "LC-3": ["crm"], "LC-4": ["crm"]}


def crm_version(url: str, version: int) -> str:
    return f"""
destinations:
  - id: crm
    url: {url}
    headers:
      X-Worker: ${{env:WORKER_TAG}}
      X-Version: "{version}"
    mapping: {{ref: id}}
"""


def courier_config(worker: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COURIER_BROKER": worker.kafka.url,
           "COURIER_CONFIG_TOPIC": worker.topics.config}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "config", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


async def test_a_version_applied_while_two_workers_run_is_used_by_both(
    kafka: KafkaTarget, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    old = await Recipient().start()
    new = await Recipient().start()
    try:
        first = start_worker(crm_version(old.url("/crm"), 1), name="a", env={"WORKER_TAG": "a"})
        second = start_worker(
            crm_version(old.url("/crm"), 1), name="b", app_id=first.app_id,
            env={"WORKER_TAG": "b"},
        )  # fmt: skip
        await both_working(old, kafka, topics, "warm")
        workers = (first, second)

        # Leads keep coming while the version is applied: none lost, none sent twice.
        published: list[str] = []

        async def stream() -> None:
            for n in range(40):
                batch = [f"S-{n}-{i}" for i in range(5)]
                await publish(kafka, topics.leads, [{"id": ref, "lead": {}} for ref in batch])
                published.extend(batch)
                await asyncio.sleep(0.1)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(1.0)
        applied_file = tmp_path / "new.yaml"
        applied_file.write_text(crm_version(new.url("/crm"), 2))
        applied = await asyncio.to_thread(
            courier_config, first, "apply", str(applied_file), "--by", "tester", "--note", "new crm"
        )
        assert applied.returncode == 0, applied.stderr
        # Both workers may have published the file they started with (each found no version
        # yet): the applied one is the next after those.
        number = int(applied.stdout.split(":", 1)[0].removeprefix("v"))
        assert number in (2, 3) and applied.stdout.startswith(f"v{number}: changed: crm")
        for worker in workers:
            await logged(worker, f"destinations v{number} (by tester: new crm): changed: crm")
        await streaming
        after = [f"A-{i}" for i in range(20)]
        await publish(kafka, topics.leads, [{"id": ref, "lead": {}} for ref in after])
        published.extend(after)
        await new.wait_for(20)
        outcomes = await collect(kafka, topics.outcomes, len(published) + 1, timeout_s=60,
                                 settle_s=2.0)  # fmt: skip

        # Every lead once, to one of the two; those after the switch to the new one, from
        # both workers.
        decoded = [decode_with_schema_file(r.value, "lead_outcome") for r in outcomes]
        counted = Counter(o["lead_id"] for o in decoded if not o["lead_id"].startswith("warm"))
        assert counted == dict.fromkeys(published, 1)
        sent = Counter(r.json()["ref"] for r in [*old.requests, *new.requests])
        assert all(sent[ref] == 1 for ref in published), [r for r in published if sent[r] != 1]
        assert {r.json()["ref"] for r in new.requests} >= set(after)
        assert {r.headers["X-Version"] for r in new.requests} == {"2"}
        assert {r.headers["X-Worker"] for r in new.requests} == {"a", "b"}

        # The history says who, when, why and what; a rollback is the next version.
        history = await asyncio.to_thread(courier_config, first, "history", "--diff")
        assert history.returncode == 0, history.stderr
        lines = history.stdout.splitlines()
        assert lines[0].startswith("v1 ") and " start " in lines[0]
        applied_line = next(line for line in lines if line.startswith(f"v{number} "))
        assert "apply" in applied_line and "tester (new crm): changed: crm" in applied_line
        assert f"-    url: {old.url('/crm')}" in history.stdout
        assert f"+    url: {new.url('/crm')}" in history.stdout

        rolled = await asyncio.to_thread(courier_config, first, "rollback", "1", "--by", "tester")
        back = number + 1
        assert rolled.stdout.startswith(f"v{back}: v1 again"), rolled.stdout + rolled.stderr
        for worker in workers:
            await logged(worker, f"destinations v{back} (by tester: rollback to v1)")
        requests_before = len(old.requests)
        await publish(kafka, topics.leads, [{"id": "R-1", "lead": {}}])
        await old.wait_for(requests_before + 1)
        shown = await asyncio.to_thread(courier_config, first, "show", str(back))
        assert shown.stdout == crm_version(old.url("/crm"), 1)

        # A file with mistakes: every problem, and nothing published.
        broken = tmp_path / "broken.yaml"
        broken.write_text(
            "destinations:\n  - id: crm\n    url: https://crm.example.com\n    colour: blue\n"
            "  - id: other\n    url: http://plain.example.com/leads\n"
        )
        refused = await asyncio.to_thread(courier_config, first, "apply", str(broken))
        assert refused.returncode == 2
        assert "destinations[0].colour: unknown option (options here: auth, " in refused.stderr
        assert "plain http to plain.example.com is refused" in refused.stderr
        assert "nothing was published" in refused.stderr
        history = await asyncio.to_thread(courier_config, first, "history")
        assert len(history.stdout.splitlines()) == back
    finally:
        await old.stop()
        await new.stop()


async def test_a_starting_worker_takes_the_newest_of_its_file_and_the_topic(
    kafka: KafkaTarget, topics: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    file = tmp_path / "destinations.yaml"

    async def start_with(text: str, changed_at: datetime) -> StartingConfig:
        file.write_text(text)
        return await starting_config(
            kafka.bootstrap, topics.config, file, load_text(text, "file"), text, changed_at,
            by="worker w",
        )  # fmt: skip

    def crm_url(starting: StartingConfig) -> str:
        return str(starting.destinations.by_id()["crm"].url)

    now = datetime.now(UTC)
    first = await start_with(crm_at("https://a.example.com/"), now)
    assert (first.seen, first.said) == (1, f"destinations v1 (from {file})")
    again = await start_with(crm_at("https://a.example.com/"), now)
    assert (again.seen, again.said) == (1, "destinations v1")

    # Applied by an operator since: a worker restarted with its older file runs the topic's.
    await publish_version(kafka.bootstrap, topics.config, crm_at("https://b.example.com/"),
                          by="operator")  # fmt: skip
    restarted = await start_with(crm_at("https://a.example.com/"), now)
    assert (restarted.seen, crm_url(restarted)) == (2, "https://b.example.com/")
    assert "differs and is older: `courier config apply" in restarted.said

    # A file edited after the last version (then the worker restarted) is the next version.
    edited = await start_with(crm_at("https://c.example.com/"), datetime.now(UTC))
    assert (edited.seen, crm_url(edited)) == (3, "https://c.example.com/")
    versions = await config_versions(kafka.bootstrap, topics.config)
    assert [(v.number, v.source, v.by) for v in versions] == [
        (1, "start", "worker w"), (2, "apply", "operator"), (3, "start", "worker w"),
    ]  # fmt: skip

    # A version this worker cannot load (its environment lacks a reference): its file, said.
    monkeypatch.delenv("CRM_TOKEN_NOT_HERE", raising=False)
    needs_token = (
        crm_at("https://d.example.com/")
        + "    auth: {type: bearer, token: ${env:CRM_TOKEN_NOT_HERE}}\n"
    )
    await publish_version(kafka.bootstrap, topics.config, needs_token, by="operator")
    refused = await start_with(crm_at("https://c.example.com/"), now)
    assert (refused.seen, crm_url(refused)) == (4, "https://c.example.com/")
    assert "config v4 is refused here" in refused.said and "CRM_TOKEN_NOT_HERE" in refused.said
