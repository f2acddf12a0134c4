"""Flows through a real worker: a buyer waterfall beside a CRM copy, and a lead-level outcome."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.integration.conftest import collect, decode_with_schema_file, publish
from tests.integration.recipients import Received, Recipient


async def outside_area(recipient: Recipient, received: Received) -> web.Response:
    return web.json_response({"message": "Lead is outside our service area"}, status=422)


async def unavailable(recipient: Recipient, received: Received) -> web.Response:
    return web.Response(text="maintenance", status=503)


async def test_waterfall_beside_a_crm_copy_end_to_end(
    kafka: Any, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    """First buyer rejects, second's circuit is open, third accepts; a CRM copy beside it. The
    flow takes leads whose state is in a list."""
    first = await Recipient(answer=outside_area).start()
    second = await Recipient(answer=unavailable).start()
    try:
        start_worker(
            f"""
destinations:
  - id: crm
    url: {recipient.url("/crm")}
  - id: buyer_a
    url: {first.url("/a")}
  - id: buyer_b
    url: {second.url("/b")}
    retry: {{max_attempts: 1}}
    circuit: {{consecutive_errors: 1, cool_down_s: 600}}
  - id: buyer_c
    url: {recipient.url("/c")}
    mapping:
      lead_id: id
      previous_offer: "{{{{default(appended.buyer_a.reference_id, 'none')}}}}"
flows:
  - id: sell
    when: "lead.state in ['CA', 'TX']"
    plan:
      parallel:
        - crm
        - waterfall: [buyer_a, buyer_b, buyer_c]
  - id: keep
    plan: crm
"""
        )
        # Sold where the state is one of the flow's (as == compares: " tx " is TX); kept
        # elsewhere, and where it is missing.
        states = ["CA", "NY", " tx ", None]
        leads = [{"id": f"W-{i}", "lead": {"state": states[i % 4]}} for i in range(10)]
        # W-0 alone first: its 503 at buyer_b opens buyer_b's circuit for all that follow.
        await publish(kafka, topics.leads, leads[:1])
        await collect(kafka, topics.outcomes, 1)
        await publish(kafka, topics.leads, leads[1:])
        outcomes = await collect(kafka, topics.outcomes, 10)
        events = await collect(kafka, topics.events, 5 * 4 + 5, settle_s=1.0)
        changes = await collect(kafka, topics.control, 1)
    finally:
        await first.stop()
        await second.stop()

    by_lead = {r.key.decode(): decode_with_schema_file(r.value, "lead_outcome") for r in outcomes}
    for i in range(10):
        outcome = by_lead[f"W-{i}"]
        if i % 2 == 0:
            assert sorted(outcome["accepted_by"]) == ["buyer_c", "crm"]
            reasons = {
                d["destination_id"]: (d["outcome"], d["reason"]) for d in outcome["destinations"]
            }
            assert reasons["buyer_a"] == ("failure", "Outside service area")
            if i == 0:
                assert reasons["buyer_b"] == ("error", "Recipient error (HTTP 503)")
            else:
                assert reasons["buyer_b"] == ("skip", "System unavailable (circuit open)")
        else:
            assert outcome["accepted_by"] == ["crm"] and outcome["attempts"] == 1
    assert len(events) == 25  # 5 sold leads x 4 attempts + 5 kept leads x 1
    assert len(second.requests) == 1  # nothing is sent while the circuit is open
    change = decode_with_schema_file(changes[0].value, "circuit_event")
    assert (change["destination_id"], change["after"]) == ("buyer_b", "open")
    paths = sorted(r.path for r in recipient.requests)
    assert paths.count("/c") == 5 and paths.count("/crm") == 10
    assert {r.json()["previous_offer"] for r in recipient.requests if r.path == "/c"} == {"none"}
