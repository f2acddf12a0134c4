"""The live dashboard in a real browser: Debian's headless Chromium, driven by selenium,
shows the numbers of the events the workers wrote (issue #15). A screenshot is kept in
``test-artifacts/`` (or ``$COURIER_TEST_ARTIFACTS``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from schemas import DELIVERY_EVENT
from streams.avro import EventEncoder
from streams.cli.broker import free_port
from streams.insight.lag import group_lag
from tests.integration.conftest import collect, create_topic, decode_with_schema_file, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.test_hostile_leads import publish_keyed
from tests.integration.worker import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("COURIER_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def chromium() -> webdriver.Chrome:
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver_path), options=options)


async def dashboard_shows(
    api: str, attempts: int, caught_up: str, returned: int = 0
) -> dict[str, Any]:
    """The dashboard's data once it counts ``attempts`` (and ``returned`` returns) and the
    workers have committed everything on topic ``caught_up``."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(90):
        while True:
            try:
                async with session.get(f"{api}/api/dashboard") as res:
                    if res.status == 200:
                        data = await res.json()
                        hour = data["windows"]["hour"]
                        lag = data["lag"].get(caught_up)
                        returns = sum(s["returned"] for s in hour.values())
                        if sum(s["attempts"] for s in hour.values()) >= attempts and (
                            lag is not None and lag["total"] == 0 and returns >= returned
                        ):
                            return dict(data)
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.5)


async def test_the_dashboard_in_chromium_shows_what_the_events_say(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email, behaviour: behaviour}}
    retry: {{max_attempts: 1}}
    feedback: {{secret: "${{env:CRM_FEEDBACK_SECRET}}"}}
  - id: buyer
    url: {recipient.url("/buyer")}
    mapping: {{email: email}}
"""
    secret = {"CRM_FEEDBACK_SECRET": "feedback-secret-of-the-crm-0123456789"}
    worker = start_worker(yaml, env=secret)
    port = free_port()
    insight = WorkerProcess(
        kafka,
        yaml,
        tmp_path,
        topics,
        app_id=worker.app_id,  # the workers' group: its lag is shown
        env={"COURIER_WEB_PORT": str(port), **secret},  # on loopback: no token needed
        name="insight",
        command=("insight",),
    ).start()
    behaviours = ["ok"] * 6 + ["reject"] * 2 + ["error"] * 2
    leads = [
        {"id": f"D-{n}", "lead": {"email": f"d{n}@example.com", "behaviour": b}}
        for n, b in enumerate(behaviours)
    ]
    driver = None
    try:
        await publish(kafka, topics.leads, [*leads, b"{not json"])
        records = await collect(kafka, topics.events, 2 * len(leads), settle_s=1.0)
        events = [decode_with_schema_file(r.value, "delivery_event") for r in records]
        # The crm returns D-0, a sale (upstream, on the feedback topic): credited.
        await collect(kafka, topics.outcomes, len(leads))
        notice = {"destination_id": "crm", "lead_id": "D-0", "kind": "returned"}
        await publish_keyed(kafka, topics.feedback, [("D-0", orjson.dumps(notice))])
        api = f"http://127.0.0.1:{port}"
        data = await dashboard_shows(api, len(events), caught_up=topics.leads, returned=1)
        driver = await asyncio.to_thread(chromium)
        await asyncio.to_thread(driver.get, f"{api}/dashboard")

        def cell(destination: str, field: str) -> str:
            selector = f'td[data-destination="{destination}"][data-field="{field}"]'
            return str(driver.find_element(By.CSS_SELECTOR, selector).text)

        await asyncio.to_thread(
            WebDriverWait(driver, 30).until,
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true",
        )
        counts = Counter((e["destination_id"], e["outcome"]) for e in events)
        for destination in ("crm", "buyer"):
            total = sum(n for (d, _), n in counts.items() if d == destination)
            assert cell(destination, "attempts") == str(total)
            assert cell(destination, "accepted") == str(counts[(destination, "success")])
            assert cell(destination, "rejected") == str(counts[(destination, "failure")])
            assert cell(destination, "errors") == str(counts[(destination, "error")])
            assert cell(destination, "circuit") == "closed"
        assert cell("crm", "acceptance_rate") == "60.0%"
        assert cell("crm", "top_reasons") == "Duplicate lead (2)"
        assert cell("buyer", "acceptance_rate") == "100.0%"
        revenue = sum(float(e["price"] or 0) for e in events if e["destination_id"] == "crm")
        assert cell("crm", "revenue") == f"{revenue:.2f}"
        [d0_sale] = [e for e in events if (e["lead_id"], e["destination_id"]) == ("D-0", "crm")]
        assert cell("crm", "returned") == "1" and cell("buyer", "returned") == "0"
        assert cell("crm", "net_revenue") == f"{revenue - float(d0_sale['price']):.2f}"
        dead = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
        assert [r.text for r in dead] == ["Not JSON 1"]
        assert cell(topics.leads, "lag") == "0"  # every lead read and committed
        assert set(data["lag"]) == {topics.leads, topics.routing, topics.work}
        tail = driver.find_elements(By.CSS_SELECTOR, "#tail tbody tr")
        assert len(tail) == len(events)
        assert "@example.com" not in driver.page_source  # ids, never a lead's values
        assert driver.find_elements(By.CSS_SELECTOR, "#chart canvas")  # uPlot drew it
        assert data["windows"]["minute"] or data["windows"]["hour"]
        # All of it happened this hour: the day (read from hour buckets and the minutes of
        # the hours the window cuts) says the same as the hour (read from minutes).
        assert data["windows"]["day"] == data["windows"]["hour"]
        await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    finally:
        if driver is not None:
            await asyncio.to_thread(driver.quit)
        await asyncio.to_thread(insight.stop)


async def test_lag_is_what_the_group_has_yet_to_commit(kafka: KafkaTarget) -> None:
    read, unread = f"lag-read-{uuid.uuid4().hex[:8]}", f"lag-unread-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        for topic in (read, unread):
            await create_topic(kafka, topic, 2)
            for partition, count in ((0, 3), (1, 2)):
                for _ in range(count):
                    await producer.send_and_wait(topic, b"{}", partition=partition)
    finally:
        await producer.stop()
    group = f"lag-group-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([TopicPartition(read, p) for p in (0, 1)])
        await consumer.commit({TopicPartition(read, 0): 1, TopicPartition(read, 1): 2})
    finally:
        await consumer.stop()
    lag = await group_lag(kafka.bootstrap, group, [read, unread])
    assert lag == {read: {0: 2, 1: 0}, unread: {0: 3, 1: 2}}  # nothing committed: all waits


async def test_an_event_written_again_is_counted_once(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any, tmp_path: Path
) -> None:
    """Workers are at least once: after a restart (or a record handled again) a delivery
    event can be written again with its id. The dashboard counts each id once."""
    yaml = f"""
destinations:
  - id: crm
    url: {recipient.url()}
    mapping: {{email: email}}
"""
    worker = start_worker(yaml)
    port = free_port()
    insight = WorkerProcess(
        kafka, yaml, tmp_path, topics, app_id=worker.app_id,
        env={"COURIER_WEB_PORT": str(port)}, name="insight", command=("insight",),
    ).start()  # fmt: skip
    try:
        leads = [{"id": f"E-{n}", "lead": {"email": f"e{n}@example.com"}} for n in range(3)]
        await publish(kafka, topics.leads, leads)
        [first, *_] = await collect(kafka, topics.events, len(leads), settle_s=1.0)
        api = f"http://127.0.0.1:{port}"
        await dashboard_shows(api, len(leads), caught_up=topics.leads)
        # The same event again, then (behind it, in its lead's partition) a new one: once
        # the new one is counted, the repeat has been read too.
        again = decode_with_schema_file(first.value, "delivery_event")
        later = {**again, "event_id": str(uuid.uuid4()), "attempt": again["attempt"] + 1}
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topics.events, first.value, key=first.key)
            new = EventEncoder(DELIVERY_EVENT).encode(later)
            await producer.send_and_wait(topics.events, new, key=first.key)
        finally:
            await producer.stop()
        data = await dashboard_shows(api, len(leads) + 1, caught_up=topics.leads)
        assert sum(s["attempts"] for s in data["windows"]["hour"].values()) == len(leads) + 1
        assert len(data["tail"]) == len(leads) + 1
    finally:
        await asyncio.to_thread(insight.stop)
