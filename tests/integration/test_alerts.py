"""Alerts from ``courier insight``: a circuit opened by refused credentials fires once, on
the alerts topic and to a signed webhook, and resolves once when deliveries succeed again
(issue #15)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.cli.broker import free_port
from streams.config.alerts import AlertWebhook
from streams.insight import dashboard
from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.local_server import LocalServer
from tests.integration.recipients import Received, Recipient
from tests.integration.worker import WorkerProcess

SECRET = "alert-hook-secret"


class Hook(LocalServer):
    """A Slack-style incoming webhook that keeps what it is posted, with its signature."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)  # answered in turn before 200s

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._post)
        return app

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(text="ok" if status == 200 else "no", status=status)


class RefusesThenAccepts:
    def __init__(self) -> None:
        self.refusing = True

    async def answer(self, recipient: Recipient, received: Received) -> web.Response:
        if self.refusing:
            return web.json_response({"error": "invalid api key"}, status=401)
        return web.json_response({"id": "R-1"}, status=201)


def signed_by(headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers["X-Courier-Signature"].split(","))
    mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(fields["v1"], mac.hexdigest())


async def test_a_circuit_alert_fires_once_and_resolves_once(
    kafka: KafkaTarget, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    script = RefusesThenAccepts()
    recipient = await Recipient(answer=script.answer).start()
    hook = await Hook().start()
    alerts_topic = f"alerts-{topics.leads}"
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    retry: {{max_attempts: 1}}
    circuit: {{cool_down_s: 2}}
alerts:
  error_rate: {{enabled: false}}
  no_acceptance: {{enabled: false}}
  webhook: {{url: "{hook.base_url("/hook")}", secret: "${{env:ALERT_HOOK_SECRET}}"}}
"""
    insight = None
    try:
        start_worker(yaml)
        # Insight is given an older file, without the rules or the hook: it takes the
        # workers' configuration from the config topic (the file the worker published).
        older = f"destinations:\n  - id: crm\n    url: {recipient.url()}\n"
        (tmp_path / "insight").mkdir()
        insight = WorkerProcess(
            kafka,
            older,
            tmp_path / "insight",
            topics,
            env={
                "COURIER_ALERTS_TOPIC": alerts_topic,
                "ALERT_HOOK_SECRET": SECRET,
                "COURIER_WEB_PORT": str(free_port()),
            },
            name="insight",
            command=("insight",),
        ).start()
        await publish(kafka, topics.leads, [{"id": "A-1", "lead": {}}])
        await collect(kafka, topics.control, 1)  # refused: the circuit opened at once
        script.refusing = False
        await asyncio.sleep(3)  # past the cool-down: the next lead is the trial
        await publish(kafka, topics.leads, [{"id": "A-2", "lead": {}}])
        await collect(kafka, topics.control, 3)  # open, half_open, closed
        try:
            records = await collect(kafka, alerts_topic, 3, timeout_s=120, settle_s=12.0)
        except TimeoutError:
            told = insight.log_path.read_text()[-6000:]
            raise AssertionError(f"fewer than 3 alerts; insight said:\n{told}") from None
    finally:
        if insight is not None:
            await asyncio.to_thread(insight.stop)
        await recipient.stop()
        await hook.stop()
    assert insight is not None
    told = insight.log_path.read_text()
    # Judged under the workers' rules only: an alert said before they were read would
    # have gone without their webhook.
    assert told.index("alert rules and schedules of destinations v1") < told.index(
        "alert circuit_open firing"
    )
    alerts = [decode_with_schema_file(r.value, "alert_event") for r in records]
    seen = Counter((a["rule"], a["state"]) for a in alerts)
    assert seen[("circuit_open", "firing")] == 1
    assert seen[("circuit_open", "resolved")] == 1
    assert seen[("auth_failure", "firing")] == 1
    circuit = [a for a in alerts if a["rule"] == "circuit_open"]
    assert circuit[0]["event_id"] == circuit[1]["event_id"]  # one episode
    assert [a["state"] for a in circuit] == ["firing", "resolved"]
    assert all(r.key == b"crm" for r in records)
    texts = [body.decode() for _, body in hook.posts]
    assert sum("circuit_open firing" in t for t in texts) == 1
    assert sum("circuit_open resolved" in t for t in texts) == 1
    assert all(signed_by(headers, body) for headers, body in hook.posts)


async def test_an_alert_webhook_post_is_tried_again_after_a_failure_it_may_get_over(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(dashboard, "WEBHOOK_PAUSES_S", (0.05, 0.05))
    monkeypatch.setenv("ALERT_HOOK_SECRET", SECRET)
    record = {"rule": "circuit_open", "state": "firing", "message": "crm: circuit open"}
    busy = await Hook(statuses=(503, 429)).start()
    refusing = await Hook(statuses=(400,)).start()
    down = await Hook(statuses=(502, 502, 502, 502)).start()
    try:
        for hook in (busy, refusing, down):
            webhook = AlertWebhook(url=hook.base_url("/hook"), secret="${env:ALERT_HOOK_SECRET}")
            await dashboard._post_alert(webhook, record)
    finally:
        for hook in (busy, refusing, down):
            await hook.stop()
    assert len(busy.posts) == 3  # 503, 429, then taken
    assert len(refusing.posts) == 1  # a 400 is not sent again
    assert len(down.posts) == 3  # tried three times in all
    assert all(signed_by(h, b) for hook in (busy, down) for h, b in hook.posts)
