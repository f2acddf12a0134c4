"""``courier admin`` against a running worker: a pause holds a destination's leads (each
with a skip event saying so) until the resume delivers them; a circuit reset lets
deliveries through before the cool-down; ``courier admin log`` is the audit trail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from streams.cli.broker import free_port
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient
from tests.integration.test_engine import both_working


def courier_admin(worker: Any, topics: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return courier(worker, topics, "admin", *args)


def courier(worker: Any, topics: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COURIER_BROKER": worker.kafka.url,
        "COURIER_CONTROL_TOPIC": topics.control,
        "COURIER_CONFIG_TOPIC": topics.config,
        "COURIER_ADMIN_TOPIC": topics.admin,
        "COURIER_DESTINATIONS": str(worker.destinations),
    }
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def crm_at(recipient: Recipient, *settings: str) -> str:
    """A destinations file of one destination, ``crm``, at ``recipient``, with these
    settings (a line of YAML each)."""
    lines = [f"url: {recipient.url('/crm')}", *settings]
    return "destinations:\n  - id: crm\n" + "".join(f"    {line}\n" for line in lines)


async def applied(worker: Any, line: str) -> None:
    async with asyncio.timeout(30):
        while line not in worker.log_path.read_text():
            await asyncio.sleep(0.2)


async def test_pause_resume_reset_and_the_audit_trail(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    failing = [True]

    async def answer(recipient: Recipient, received: Received) -> web.Response:
        if failing[0]:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"id": "R-1"}, status=201)

    recipient = await Recipient(answer=answer).start()
    try:
        worker = start_worker(
            crm_at(
                recipient,
                "retry: {max_attempts: 1}",
                "circuit: {consecutive_errors: 2, cool_down_s: 3600}",
            )
        )
        # Two failures open the circuit for an hour.
        await publish(kafka, topics.leads, [{"id": f"E-{i}", "lead": {}} for i in range(2)])
        await collect(kafka, topics.control, 1)  # the circuit opened
        failing[0] = False
        reset = courier_admin(worker, topics, "reset-circuit", "crm", "--by", "bob")
        assert reset.returncode == 0, reset.stderr
        assert "crm: reset circuit by bob, sent to every worker" in reset.stdout
        await applied(worker, "crm: reset_circuit by bob")
        await publish(kafka, topics.leads, [{"id": "OK-1", "lead": {}}])
        await recipient.wait_for(3, timeout_s=30)  # delivered: no hour's wait

        paused = courier_admin(
            worker, topics, "pause", "crm", "--reason", "CRM maintenance", "--by", "alice"
        )
        assert paused.returncode == 0, paused.stderr
        await applied(worker, "crm: pause by alice (CRM maintenance)")
        await publish(kafka, topics.leads, [{"id": f"P-{i}", "lead": {}} for i in range(3)])
        # The events topic has several partitions: a record read later is not
        # necessarily written later, so the paused leads' events are picked by lead id.
        events = await collect(kafka, topics.events, 2 + 1 + 3)
        every_event = [decode_with_schema_file(r.value, "delivery_event") for r in events]
        reasons = [e for e in every_event if e["lead_id"].startswith("P-")]
        assert {(e["lead_id"], e["reason"], e["raw"]) for e in reasons} == {
            (f"P-{i}", "Destination paused", "paused by alice: CRM maintenance") for i in range(3)
        }
        assert len(recipient.requests) == 3  # nothing sent while paused

        resumed = courier_admin(worker, topics, "resume", "crm", "--by", "alice")
        assert resumed.returncode == 0, resumed.stderr
        outcomes = await collect(kafka, topics.outcomes, 6)  # the held leads went at once
        sold = {
            decoded["lead_id"]: decoded["accepted_by"]
            for decoded in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        }
        assert {sold[f"P-{i}"][0] for i in range(3)} == {"crm"}

        log = courier_admin(worker, topics, "log")
        assert log.returncode == 0, log.stderr
        lines = log.stdout.splitlines()
        assert [line.split()[3] for line in lines[:3]] == ["reset", "pause", "resume"]
        assert "alice@" not in log.stdout and "CRM maintenance" in lines[1]
        assert lines[-1] == "paused now: none"
        unknown = courier_admin(worker, topics, "pause", "nobody")
        assert unknown.returncode == 2 and "no destination 'nobody'" in unknown.stderr
    finally:
        await recipient.stop()


async def test_leads_waiting_for_a_slot_when_the_pause_comes_are_held_not_sent(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """One in-flight slot: while the first lead is with the CRM, three wait for the slot;
    an operator pauses the CRM then. The three are held, not sent, and go on the resume."""
    pause_applied = asyncio.Event()

    async def answer(recipient: Recipient, received: Received) -> web.Response:
        if len(recipient.requests) == 1:  # the first answers once the pause is in force
            await pause_applied.wait()
        return web.json_response({"id": "R-1"}, status=201)

    recipient = await Recipient(answer=answer).start()
    try:
        worker = start_worker(crm_at(recipient, "limits: {concurrency: 1}"))
        await publish(kafka, topics.leads, [{"id": f"W-{i}", "lead": {}} for i in range(4)])
        await recipient.wait_for(1)
        paused = courier_admin(worker, topics, "pause", "crm", "--by", "al", "--reason", "audit")
        assert paused.returncode == 0, paused.stderr
        await applied(worker, "crm: pause by al (audit)")
        pause_applied.set()
        events = [
            decode_with_schema_file(r.value, "delivery_event")
            for r in await collect(kafka, topics.events, 4)
        ]
        reasons = Counter(e["reason"] for e in events)
        assert reasons == {"Accepted": 1, "Destination paused": 3}
        assert {e["lead_id"] for e in events} == {f"W-{i}" for i in range(4)}
        assert len(recipient.requests) == 1  # the three waiting were not sent

        resumed = courier_admin(worker, topics, "resume", "crm", "--by", "al")
        assert resumed.returncode == 0, resumed.stderr
        outcomes = [
            decode_with_schema_file(r.value, "lead_outcome")
            for r in await collect(kafka, topics.outcomes, 4)
        ]
        assert {(o["lead_id"], tuple(o["accepted_by"])) for o in outcomes} == {
            (f"W-{i}", ("crm",)) for i in range(4)
        }
        # Each lead sent once: the first before the pause, the three after the resume.
        assert len({r.headers["Idempotency-Key"] for r in recipient.requests}) == 4
        assert len(recipient.requests) == 4
    finally:
        pause_applied.set()
        await recipient.stop()


async def test_the_api_acts_as_its_tokens_name_and_the_audit_trail_says_before_and_after(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    recipient = await Recipient().start()
    port = free_port()
    try:
        worker = start_worker(
            f"destinations:\n  - id: crm\n    url: {recipient.url('/crm')}\n"
            "    circuit: {cool_down_s: 3600, when_open: park}\n",
            env={"COURIER_WEB_PORT": str(port), "COURIER_WEB_BIND": "0.0.0.0",
                 "COURIER_API_TOKENS": '{"ops-bot": "a-token-for-the-ops-bot"}'},
        )  # fmt: skip
        api = f"http://127.0.0.1:{port}/api/admin"
        bot = {"Authorization": "Bearer a-token-for-the-ops-bot"}
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(60):
                while True:  # the web port answers once the worker is up
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{api}", headers=bot) as res:
                            if res.status == 200:
                                break
                    await asyncio.sleep(0.5)

            async def act(path: str, headers: dict[str, str], body: Any = None) -> Any:
                async with http.post(f"{api}/{path}", headers=headers, json=body) as res:
                    return res.status, await res.json()

            assert (await act("crm/open_circuit", {}))[0] == 401
            assert (await act("crm/open_circuit", {"Authorization": "Bearer guess"}))[0] == 401
            status, answer = await act("crm/close_everything", bot)
            assert status == 400 and "pause, resume, reset_circuit, open_circuit" in answer["error"]
            status, answer = await act("nobody/pause", bot)
            assert (status, answer["error"]) == (404, "no destination 'nobody'")

            status, answer = await act("crm/open_circuit", bot, {"reason": "vendor incident"})
            assert status == 202, answer
            assert (answer["by"], answer["reason"]) == ("ops-bot", "vendor incident")
            assert (answer["before"], answer["after"]) == (
                "delivering; circuit closed", "delivering; circuit open",
            )  # fmt: skip
            await applied(worker, "crm: open_circuit by ops-bot (vendor incident)")
            async with http.get(api, headers=bot) as res:
                assert (await res.json())["circuits"] == {"crm": "open"}

            # Open: a lead waits (an hour's cool-down) instead of going.
            await publish(kafka, topics.leads, [{"id": "W-1", "lead": {}}])
            waited = await collect(kafka, topics.events, 1)
            assert decode_with_schema_file(waited[0].value, "delivery_event")["outcome"] == "skip"
            assert recipient.requests == []

            status, answer = await act("crm/reset_circuit", bot)
            assert status == 202 and answer["before"] == "delivering; circuit open"
            await recipient.wait_for(1, timeout_s=30)  # the waiting lead goes at once

        audit = await asyncio.to_thread(courier, worker, topics, "audit")
        assert audit.returncode == 0, audit.stderr
        lines = audit.stdout.splitlines()
        assert " config " in lines[0] and "v1 (start)" in lines[0]
        assert lines[1].endswith(
            "ops-bot                  crm: open circuit (vendor incident): "
            "delivering; circuit closed → delivering; circuit open"
        ), lines[1]
        assert (
            "crm: reset circuit: delivering; circuit open → delivering; circuit closed" in lines[2]
        )
    finally:
        await recipient.stop()


async def test_a_drain_ends_the_waiting_retries_and_the_waterfall_moves_on(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    down = await Recipient(
        answer=lambda server, received: web.json_response({"error": "down"}, status=503)
    ).start()
    backup = await Recipient().start()
    try:
        worker = start_worker(
            f"""
destinations:
  - id: crm
    url: {down.url("/crm")}
    retry: {{max_attempts: 5, base_s: 3600, max_delay_s: 3600}}
    circuit: {{enabled: false}}
  - id: backup
    url: {backup.url("/backup")}
flows:
  - id: f
    plan: {{waterfall: [crm, backup]}}
"""
        )
        await publish(kafka, topics.leads, [{"id": f"D-{i}", "lead": {}} for i in range(3)])
        await down.wait_for(3)
        await asyncio.sleep(1.0)  # the three retries are parked for an hour
        drained = courier_admin(
            worker, topics, "drain", "crm", "--reason", "API down", "--by", "al"
        )
        assert drained.returncode == 0, drained.stderr
        await backup.wait_for(3, timeout_s=30)  # each went on to the next in its waterfall
        outcomes = await collect(kafka, topics.outcomes, 3)
        sold = {
            o["lead_id"]: o["accepted_by"]
            for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
        }
        assert sold == {f"D-{i}": ["backup"] for i in range(3)}
        events = [decode_with_schema_file(r.value, "delivery_event")
                  for r in await collect(kafka, topics.events, 9)]  # fmt: skip
        ended = [e for e in events if e["reason"] == "Waiting work drained"]
        assert {(e["lead_id"], e["destination_id"], e["outcome"], e["raw"]) for e in ended} == {
            (f"D-{i}", "crm", "skip", "drained by al: API down") for i in range(3)
        }
        assert len(down.requests) == 3  # the drained retries never went

        # Work that waits from after the drain is not drained.
        await publish(kafka, topics.leads, [{"id": "D-late", "lead": {}}])
        await down.wait_for(4)
        await asyncio.sleep(1.5)
        assert len(backup.requests) == 3
    finally:
        await down.stop()
        await backup.stop()


async def test_a_pause_holds_in_both_of_two_workers_and_across_a_kill(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    recipient = await Recipient().start()
    try:
        crm = f"""
destinations:
  - id: crm
    url: {recipient.url("/crm")}
    headers: {{X-Worker: "${{env:WORKER_TAG}}"}}
    mapping: {{ref: id}}
"""
        first = start_worker(crm, name="a", env={"WORKER_TAG": "a"})
        second = start_worker(crm, name="b", app_id=first.app_id, env={"WORKER_TAG": "b"})
        await both_working(recipient, kafka, topics, "warm")

        def delivered_held() -> Counter[str]:
            refs = (r.json()["ref"] for r in recipient.requests)
            return Counter(ref for ref in refs if ref.startswith("H-"))

        paused = courier_admin(first, topics, "pause", "crm", "--reason", "audit", "--by", "al")
        assert paused.returncode == 0, paused.stderr
        for worker in (first, second):
            await applied(worker, "crm: pause by al (audit)")
        held = [f"H-{i}" for i in range(12)]  # spread over every partition, so both workers
        await publish(kafka, topics.leads, [{"id": ref, "lead": {}} for ref in held])
        await asyncio.sleep(2.0)

        # A worker killed and started again learns the pause from the control topic.
        assert await second.stopped(signal.SIGKILL) == -signal.SIGKILL
        second.start()
        await applied(second, "crm: pause by al (audit)")
        await asyncio.sleep(3.0)
        assert delivered_held() == {}  # nothing went from either while paused

        resumed = courier_admin(first, topics, "resume", "crm", "--by", "al")
        assert resumed.returncode == 0, resumed.stderr
        async with asyncio.timeout(90):
            while len(delivered_held()) < len(held):
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        assert delivered_held() == dict.fromkeys(held, 1)
        assert {r.headers["X-Worker"] for r in recipient.requests if r.json()["ref"] in held} == {
            "a",
            "b",
        }
        audit = courier(first, topics, "audit")
        assert "crm: pause (audit)" in audit.stdout and "crm: resume" in audit.stdout
    finally:
        await recipient.stop()
