"""``courier demo``: the whole path on one machine, started and stopped in one command.

Embedded broker → a real worker process → two demo recipients on 127.0.0.1 (a CRM that
refuses duplicates, a buyer that pays and is sometimes down) → Avro events read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from streams.cli.broker import EmbeddedBroker, free_port, owned_process_options, stop_process
from streams.cli.console import decoded_events, publish_lines, read_records

DEMO_TIMEOUT_S = 120.0
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
STATES = ("CA", "TX", "NY", "FL", "WA")


def sample_leads(count: int) -> list[dict[str, Any]]:
    """Deterministic leads; every 5th has an e-mail the demo CRM already holds."""
    leads = []
    for i in range(1, count + 1):
        name = FIRST_NAMES[i % len(FIRST_NAMES)]
        email = f"{name.lower()}.{i}@example.com" if i % 5 else f"dup.{i}@example.com"
        leads.append(
            {
                "id": f"L-{i:04d}",
                "submission": {"timestamp": "2026-11-22T10:00:00Z"},
                "source": {"name": "demo-form", "type": "organic"},
                "lead": {
                    "first_name": name,
                    "last_name": "Example",
                    "email": email,
                    "phone_1": f"555010{i % 10}{i % 7}",
                    "state": STATES[i % len(STATES)],
                },
            }
        )
    return leads


class LocalRecipients:
    """A demo's recipients: one aiohttp server on 127.0.0.1, a free port; ``routes`` says
    which paths answer."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)  # for the ids their answers give
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class DemoRecipients(LocalRecipients):
    """Two recipients: ``/crm`` and ``/buyer``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/crm", self._crm)
        app.router.add_post("/buyer", self._buyer)

    async def _crm(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.json()
        if str(body.get("email", "")).startswith("dup."):
            return web.json_response({"message": "Duplicate lead"}, status=409)
        return web.json_response({"id": f"crm-{next(self._ids)}"}, status=201)

    async def _buyer(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("X-Api-Key") != "demo-key":
            return web.json_response({"error": "bad key"}, status=401)
        body = await request.json()
        if body.get("state") == "TX":
            return web.json_response({"message": "Outside service area"}, status=422)
        if body.get("ref", "").endswith("7"):
            return web.json_response({"error": "maintenance"}, status=503)
        return web.json_response({"lead_id": f"buy-{next(self._ids)}", "price": "12.50"})


def destinations_yaml(port: int) -> str:
    return f"""\
destinations:
  - id: demo_crm
    integration: json_post
    url: http://127.0.0.1:{port}/crm
    insecure: true   # a development recipient: plain http, on loopback
    mapping:
      firstName: lead.first_name
      lastName: last_name
      email: email
      phone: phone_1
      source: source.name
  - id: demo_buyer
    url: http://127.0.0.1:{port}/buyer
    insecure: true
    headers:
      X-Api-Key: ${{env:DEMO_BUYER_KEY}}
    retry: {{max_attempts: 2, base_s: 0.2}}  # its 503s are for good: a short retry shows it
    mapping:
      ref: id
      contact.email: email
      state: lead.state
"""


@dataclass(frozen=True)
class RunningDemo:
    broker: EmbeddedBroker
    recipients_port: int
    web_port: int  # the worker's (health, metrics, feedback)


@contextlib.asynccontextmanager
async def running_demo(
    recipients: LocalRecipients,
    destinations_yaml: Callable[[int], str],
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[RunningDemo]:
    """The recipients, an embedded broker and a worker on a destinations file of the
    recipients' port; all stopped on the way out. A TimeoutError inside prints the worker's
    log first (and goes on)."""
    await recipients.start()
    workdir = tempfile.TemporaryDirectory(prefix="courier-demo-")
    broker = EmbeddedBroker()
    broker.start()
    web_port = free_port()
    worker: subprocess.Popen[bytes] | None = None
    try:
        dest_file = Path(workdir.name) / "destinations.yaml"
        dest_file.write_text(destinations_yaml(recipients.port))
        env = {"COURIER_WEB_PORT": str(web_port), **(extra_env or {})}
        worker = start_worker(broker.url, dest_file, Path(workdir.name), env)
        yield RunningDemo(broker, recipients.port, web_port)
    except TimeoutError:
        print(f"the worker did not finish within {DEMO_TIMEOUT_S:.0f}s; its log:", file=sys.stderr)
        print((Path(workdir.name) / "worker.log").read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if worker is not None:
            stop_process(worker, timeout_s=30)
        await recipients.stop()
        broker.stop()
        workdir.cleanup()


async def run_demo(count: int) -> int:
    started = time.monotonic()
    try:
        async with running_demo(DemoRecipients(), destinations_yaml) as demo:
            bootstrap = demo.broker.bootstrap
            print(
                f"embedded broker at {demo.broker.url}; "
                f"demo recipients at 127.0.0.1:{demo.recipients_port}"
            )
            leads = sample_leads(count)
            lines = [orjson.dumps(lead) for lead in leads] + [b"{not json", b'{"lead": {}}']
            await publish_lines(bootstrap, "leads.processed", lines)
            print(f"published {count} leads and 2 malformed records; waiting for delivery ...")
            # One outcome per lead once its retries are done; then every attempt's event.
            outcomes = await collect(bootstrap, "leads.delivery.outcomes", count)
            events = [
                e async for e in decoded_events(bootstrap, "leads.delivery.events", follow=False)
            ]
            dead = await _collect_raw(bootstrap, "leads.delivery.dlq", 2)
            _print_table(events)
            _print_leads(outcomes)
            _print_summary(events, outcomes, dead, time.monotonic() - started)
            return 0
    except TimeoutError:
        return 1


def start_worker(
    broker_url: str, destinations: Path, workdir: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "COURIER_APP_ID": "courier-demo",
        "COURIER_DATA_DIR": str(workdir / "data"),
        "DEMO_BUYER_KEY": "demo-key",
        **(extra_env or {}),
    }
    log = (workdir / "worker.log").open("wb")
    command = [sys.executable, "-m", "streams.cli", "worker", "--broker", broker_url]
    return subprocess.Popen(
        [*command, "--destinations", str(destinations)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **owned_process_options(),
    )


async def collect(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(DEMO_TIMEOUT_S):
        async for event in decoded_events(bootstrap, topic, follow=True):
            found.append(event)
            if len(found) >= expected:
                break
    return found


async def _collect_raw(bootstrap: str, topic: str, expected: int) -> list[Any]:
    found: list[Any] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            async for record in read_records(bootstrap, topic, follow=True):
                found.append(record)
                if len(found) >= expected:
                    break
    return found


LEGEND = (
    "outcomes: success = accepted; failure = refused, not retried (duplicate, rejected, "
    "invalid data); error = no proper answer, retried (5xx, timeout, connection); "
    "skip = not sent (disabled, closed, circuit open)."
)


def print_rows(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _print_table(events: list[dict[str, Any]]) -> None:
    rows = [("lead", "destination", "try", "outcome", "reason", "HTTP", "ms")]
    for e in sorted(events, key=lambda e: (e["lead_id"], e["destination_id"], e["attempt"])):
        status = "-" if e["http_status"] is None else str(e["http_status"])
        elapsed = f"{e['recipient_ms'] + e['overhead_ms']:.1f}"
        cells = (e["lead_id"], e["destination_id"], str(e["attempt"]), e["outcome"], e["reason"])
        rows.append((*cells, status, elapsed))
    print_rows(rows)


def _print_leads(outcomes: list[dict[str, Any]]) -> None:
    """One row per lead: what billing reads."""
    print()
    rows = [("lead", "outcome", "accepted by", "attempts", "why")]
    for o in sorted(outcomes, key=lambda o: o["lead_id"]):
        accepted = ", ".join(o["accepted_by"]) or "-"
        rows.append((o["lead_id"], o["outcome"], accepted, str(o["attempts"]), o["reason"]))
    print_rows(rows)


def _print_summary(
    events: list[dict[str, Any]], outcomes: list[dict[str, Any]], dead: list[Any], elapsed_s: float
) -> None:
    by_outcome = Counter(e["outcome"] for e in events)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(by_outcome.items()))
    delivered = sum(o["outcome"] == "delivered" for o in outcomes)
    print(
        f"\n{len(outcomes)} leads: {delivered} delivered, {len(outcomes) - delivered} not; "
        f"{len(events)} delivery attempts ({counts})."
    )
    print(LEGEND)
    reasons = Counter(
        dict(record.headers or ()).get("courier.dlq.reason", b"?").decode(errors="replace")
        for record in dead
    )
    listed = ", ".join(f"{n} {reason!r}" for reason, n in sorted(reasons.items()))
    print(f"{len(dead)} record(s) in the dead-letter topic" + (f": {listed}." if dead else "."))
    print(f"done in {elapsed_s:.1f}s. Everything started by the demo has been stopped.")
