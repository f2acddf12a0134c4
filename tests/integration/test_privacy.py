"""Personal data stays out of what we report: a run with known values, a recipient that
echoes the lead back, a URL and a header filled from the lead; the events, the outcomes
and the worker's debug log are searched for the values.

Reproduced first (issue #13): templated URL paths (``/ok/jane.doe%40example.com``) and
header values appeared in events, and a recipient's echo put the lead into ``raw``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from streams.cli.console import read_records
from tests.integration.conftest import collect, publish
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Received, Recipient

PERSON = {
    "first_name": "Janelle",
    "last_name": "Doevinsky",
    "email": "jane.doevinsky@example.com",
    "phone_1": "2015550187",
    "ssn": "123-45-6789",
}


async def echo(recipient: Recipient, received: Received) -> web.Response:
    body = received.json()
    if body.get("behaviour") == "reject":
        return web.json_response({"message": f"Refused {orjson.dumps(body).decode()}"}, 400)
    return web.json_response({"id": body["email"], "name": body["last"]}, status=201)


def destinations_yaml(url: str) -> str:
    return f"""
privacy:
  redact: [lead.email, lead.last_name, lead.ssn]
destinations:
  - id: crm
    url: {url}/ok/{{{{lead.email}}}}/x
    headers: {{X-Name: "{{{{lead.last_name}}}}"}}
    privacy: {{redact: [lead.phone_1]}}
    retry: {{max_attempts: 1}}
    circuit: {{enabled: false}}
    mapping:
      email: email
      last: last_name
      phone: phone_1
      ssn: lead.ssn
      behaviour: lead.behaviour
"""


def leaks(text: str) -> list[str]:
    values = [v for v in PERSON.values() if v != PERSON["first_name"]]
    return [v for v in values if v in text or quote(v, safe="") in text]


async def test_redacted_values_appear_in_no_event_outcome_or_log(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    recipient = await Recipient(echo).start()
    try:
        worker = start_worker(
            destinations_yaml(recipient.base_url()), env={"COURIER_LOG_LEVEL": "debug"}
        )
        leads = [
            {"id": f"P-{n}", "lead": {**PERSON, "behaviour": behaviour}}
            for n, behaviour in enumerate(["ok", "reject"])
        ]
        await publish(kafka, topics.leads, leads)
        await collect(kafka, topics.outcomes, len(leads), settle_s=1.0)
        # The values did reach the recipient, in the path, a header and the body.
        assert PERSON["email"] in recipient.requests[0].path
        assert recipient.requests[0].headers["X-Name"] == PERSON["last_name"]
        await worker.stopped()
    finally:
        await recipient.stop()
    found: dict[str, list[str]] = {}
    for topic in (topics.events, topics.outcomes, topics.control):
        async for record in read_records(kafka.bootstrap, topic, follow=False):
            text = (record.value or b"").decode("utf-8", errors="replace")
            if leaks(text):
                found.setdefault(topic, []).extend(leaks(text))
    assert found == {}
    assert leaks(worker.log()) == []
