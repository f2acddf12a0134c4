"""A lead's routing as a table entry: resumable after any attempt; a repeat asks again for
what is still out, in case the first asks were lost with the worker that made them."""

from __future__ import annotations

from typing import Any

from streams.config import DestinationsFile
from streams.control.messages import attempt_to_dict
from streams.control.router import Router
from streams.model import Lead, Outcome
from streams.stages.attempt import not_sent

FILE = DestinationsFile.model_validate(
    {
        "destinations": [
            {"id": d, "url": f"http://127.0.0.1:9/{d}"} for d in ("crm", "a", "b", "c")
        ],
        "flows": [{"id": "sell", "plan": {"parallel": ["crm", {"waterfall": ["a", "b", "c"]}]}}],
    }
)
BY_ID = FILE.by_id()
LEAD = Lead("L1", {"id": "L1", "lead": {}})


def answer(destination_id: str, outcome: Outcome) -> dict[str, Any]:
    """An attempt as the work agent sends it back."""
    return attempt_to_dict(not_sent(LEAD, BY_ID[destination_id], outcome))


def test_a_plan_goes_on_one_attempt_at_a_time_from_a_table() -> None:
    (flow,) = FILE.compiled_flows
    routes: dict[str, Any] = {}
    router = Router({flow.id: flow}, routes)
    step = router.start(LEAD, flow)
    assert [(n.destination_id, n.has_fallback) for n in step.needed] == [
        ("crm", False),
        ("a", True),
    ]
    again = router.start(LEAD, flow)  # seen again while in flight: ask again, change nothing
    assert [n.path for n in again.needed] == [n.path for n in step.needed]
    assert routes["L1"]["asked"] == ["plan.0", "plan.1.0"]
    # A new router over the same table (another worker, after a restart) goes on.
    router = Router({flow.id: flow}, routes)
    step = router.record("L1", "plan.1.0", answer("a", Outcome.failure("Outside service area")))
    assert [n.destination_id for n in step.needed] == ["b"]
    repeat = router.record("L1", "plan.1.0", answer("a", Outcome.failure("Outside service area")))
    assert [n.destination_id for n in repeat.needed] == ["crm", "b"]  # all that is still out
    assert repeat.finished is None
    step = router.record("L1", "plan.1.1", answer("b", Outcome.success(reference_id="B-1")))
    assert step.needed == [] and step.finished is None  # the CRM copy is still out
    step = router.record("L1", "plan.0", answer("crm", Outcome.success()))
    assert step.finished is not None and step.finished.accepted
    assert [a.destination_id for a in step.finished.attempts] == ["crm", "a", "b"]
    assert step.finished.lead.envelope["appended"] == {"b": {"reference_id": "B-1"}}
    assert routes == {}  # finished leads leave the table
