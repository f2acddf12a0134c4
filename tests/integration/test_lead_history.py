"""What happened to lead L-123? ``courier insight`` keeps each lead's history from the
events, outcomes and dead letters the workers write; ``courier lead`` and GET
/api/leads/ID show it (issue #15).

Reproduced first: there was no lookup by lead; the answer meant reading whole topics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streams.cli.broker import free_port
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.test_hostile_leads import publish_keyed
from tests.integration.worker import WorkerProcess


def courier(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


async def history_of(api: str, lead_id: str, token: str, count: int) -> list[dict[str, Any]]:
    """The lead's history once it holds ``count`` entries."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while True:
            try:
                async with session.get(f"{api}/api/leads/{lead_id}", headers=headers) as res:
                    if res.status == 200:
                        body = await res.json()
                        if len(body["history"]) >= count:
                            return list(body["history"])
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.3)


async def test_a_leads_timeline_from_the_cli_and_the_api(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email, behaviour: behaviour}}
    retry: {{max_attempts: 2, base_s: 0.2}}
    feedback: {{secret: "${{env:CRM_FEEDBACK_SECRET}}", return_window_days: 7}}
"""
    secret = {"CRM_FEEDBACK_SECRET": "feedback-secret-of-the-crm-0123456789"}
    start_worker(yaml, env=secret)
    port = free_port()
    token = "insight-test-token"
    env = {"COURIER_WEB_PORT": str(port), "COURIER_API_TOKEN": token, **secret}
    insight = WorkerProcess(
        kafka, yaml, tmp_path, topics, env=env, name="insight", command=("insight",)
    ).start()
    try:
        leads = [
            {
                "id": "H-ok",
                "source": {"name": "google-ads"},
                "lead": {"email": "ok@example.com", "behaviour": "ok"},
            },
            {
                "id": "H-reject",
                "source": {"name": "google-ads"},
                "lead": {"email": "no@example.com", "behaviour": "reject"},
            },
            {"id": "H-error", "lead": {"email": "err@example.com", "behaviour": "error"}},
        ]
        await publish(kafka, topics.leads, [*leads, b'{"id": "H-bad", "lead": 7}'])
        outcomes = await collect(kafka, topics.outcomes, 3)
        # Settled: an event written again (same id) must not stand in for one not read yet.
        events = [
            decode_with_schema_file(r.value, "delivery_event")
            for r in await collect(kafka, topics.events, 4, settle_s=3.0)
        ]
        api = f"http://127.0.0.1:{port}"
        # COURIER_KAFKA_IDEMPOTENCE=auto: as the broker answered (Tansu refuses one)
        kept = "not idempotent" if kafka.kind == "tansu" else "idempotent"
        await insight.logged(f"last record; producer {kept}\n")

        # H-error: two attempts (the first with its next try), its outcome, its dead letter.
        error = await history_of(api, "H-error", token, 4)
        assert [e["kind"] for e in error] == ["attempt", "attempt", "outcome", "dead_letter"]
        first, second, outcome, dead = error
        assert (first["attempt"], first["outcome"], first["http_status"]) == (1, "error", 500)
        assert first["next_attempt_at"] is not None and second["next_attempt_at"] is None
        assert (outcome["outcome"], outcome["attempts"]) == ("not_delivered", 2)
        assert dead["reason"] == "Delivery failed"
        by_id = {e["event_id"]: e for e in events}
        assert by_id[first["id"]]["reason"] == first["reason"]
        assert by_id[first["id"]]["trace_id"] == first["trace_id"]

        ok = await history_of(api, "H-ok", token, 2)
        assert [(e["kind"], e.get("outcome")) for e in ok] == [
            ("attempt", "success"),
            ("outcome", "delivered"),
        ]
        assert ok[1]["accepted_by"] == ["crm"] and ok[0]["reference_id"].startswith("R-")
        bad = await history_of(api, "H-bad", token, 1)
        assert [(e["kind"], e["reason"]) for e in bad] == [("dead_letter", "Invalid section")]

        # The command line: the same, as lines and as JSON; no lead value anywhere.
        cli_env = {"COURIER_API_URL": api, "COURIER_API_TOKEN": token}
        shown = await asyncio.to_thread(courier, "lead", "H-reject", env=cli_env)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == "lead H-reject"
        assert "crm try 1: failure (duplicate) 'Duplicate lead', HTTP 400" in lines[1]
        assert (
            "outcome: not_delivered (accepted by nobody; 1 attempt(s)) 'Duplicate lead'"
            in (lines[2])
        )
        as_json = await asyncio.to_thread(courier, "lead", "H-ok", "--json", env=cli_env)
        assert orjson.loads(as_json.stdout)["history"] == ok
        everything = str(ok + error + bad) + shown.stdout
        assert not any(f"{w}@example.com" in everything for w in ("ok", "no", "err"))
        unknown = await asyncio.to_thread(courier, "lead", "H-never", env=cli_env)
        assert "nothing known" in unknown.stdout

        # Without the token: refused, and the command says so in one line.
        refused = await asyncio.to_thread(
            courier, "lead", "H-ok", env={"COURIER_API_URL": api, "COURIER_API_TOKEN": "wrong"}
        )
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(
            "answered HTTP 401: a bearer token is required (COURIER_API_TOKEN or COURIER_API_TOKENS)"
        )
        assert Counter(o.key for o in outcomes) == {b"H-ok": 1, b"H-reject": 1, b"H-error": 1}

        # The crm returns H-ok (credited) and H-reject (it never took it: refused), and
        # says it converted H-ok first; written upstream to the feedback topic.
        def notice(lead_id: str, kind: str, at_s: int) -> tuple[str, bytes]:
            body = {"destination_id": "crm", "lead_id": lead_id, "kind": kind,
                    "reason": "wrong number", "at_ms": int(time.time() + at_s) * 1000}  # fmt: skip
            return lead_id, orjson.dumps(body)

        await publish_keyed(
            kafka,
            topics.feedback,
            [
                notice("H-ok", "converted", 0),
                notice("H-ok", "returned", 1),
                notice("H-reject", "returned", 1),
            ],
        )
        await collect(kafka, topics.feedback_events, 3)
        ok_later = await history_of(api, "H-ok", token, 4)
        assert [(e["kind"], e.get("feedback"), e.get("status")) for e in ok_later[2:]] == [
            ("feedback", "converted", "accepted"),
            ("feedback", "returned", "accepted"),
        ]
        assert (ok_later[3]["reason"], ok_later[3]["credit"]) == ("Bad phone", "2.5000")
        later = await asyncio.to_thread(courier, "lead", "H-reject", env=cli_env)
        assert later.stdout.splitlines()[3].endswith(
            "crm feedback: returned 'Bad phone': refused (Not accepted by this destination)"
        )

        # The report of the same run: the events' numbers, and the returns.
        report_env = {
            "COURIER_BROKER": kafka.url,
            "COURIER_EVENTS_TOPIC": topics.events,
            "COURIER_FEEDBACK_EVENTS_TOPIC": topics.feedback_events,
        }
        reported = await asyncio.to_thread(
            courier, "report", "--since", "1h", "--format", "json", env=report_env
        )
        assert reported.returncode == 0, reported.stderr
        (crm,) = orjson.loads(reported.stdout)
        # Each attempt once, however often its event was written (same id each time).
        attempts = len({e["event_id"] for e in events})
        assert (crm["destination"], crm["leads"], crm["attempts"]) == ("crm", 3, attempts)
        assert (crm["accepted"], crm["rejected"], crm["errors"]) == (1, 1, 2)
        assert crm["revenue"] == "2.5000" and crm["top_rejections"] == [["Duplicate lead", 1]]
        assert (crm["returned"], crm["net_revenue"], crm["converted"]) == (1, "0.0000", 1)
        # And per lead source (the events name it): H-error came without one.
        by_source = await asyncio.to_thread(
            courier, "report", "--by", "source", "--format", "json", env=report_env
        )
        assert by_source.returncode == 0, by_source.stderr
        rows = {row["source"]: row for row in orjson.loads(by_source.stdout)}
        assert set(rows) == {"google-ads", "(no source)"}
        assert (rows["google-ads"]["leads"], rows["google-ads"]["accepted"]) == (2, 1)
        assert rows["(no source)"]["errors"] == 2
    finally:
        await asyncio.to_thread(insight.stop)
