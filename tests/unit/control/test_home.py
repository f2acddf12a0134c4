"""A lead at home with plain dicts for tables: one write for a lead to one destination, one
outcome per lead, nothing resent after a crash to who answered, retries and caps waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from streams.config import Destination, DestinationsFile
from streams.control.desk import DeliveryDesk, Unremembered
from streams.control.home import Home, LeadStates, Report
from streams.control.messages import attempt_to_dict
from streams.model import Lead, Outcome, OutcomeKind
from streams.stages.attempt import Attempt, not_sent
from tests.unit.control.test_desk import CountingTable

LEAD = Lead("L1", {"id": "L1", "lead": {}})
SOURCE = "leads:0:1"  # the record a lead came in


# A table that counts its writes (each one a changelog record in the worker).
Writes = CountingTable


class Recipients:
    """Each destination answers with ``answers[destination_id]``; every call is kept."""

    def __init__(self, **answers: Callable[[], Outcome]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, lead: Lead, dest: Destination, number: int) -> Attempt:
        self.calls.append((dest.id, number))
        await asyncio.sleep(0)
        return not_sent(lead, dest, self.answers[dest.id](), number)


def home(
    plan: Any,
    recipients: Recipients,
    leads: dict[str, Any] | None = None,
    parked: dict[str, Any] | None = None,
    **settings: dict[str, Any],
) -> Home:
    ids = sorted(recipients.answers)
    file = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": d, "url": f"http://127.0.0.1:9/{d}", **settings.get(d, {})} for d in ids
            ],
            "flows": [{"id": "f", "plan": plan}],
        }
    )
    by_id = file.by_id()
    desk = DeliveryDesk(
        by_id,
        recipients,
        circuits={},
        caps={},
        delivered=Unremembered(),
        parked={} if parked is None else parked,
        draw=lambda low, high: high,
    )
    flows = {flow.id: flow for flow in file.compiled_flows}
    return Home(
        flows,
        lambda d: by_id[d].caps is not None,
        LeadStates(Writes() if leads is None else leads, Writes()),
        desk,
    )


async def merged(reports: AsyncIterator[Report], lead_id: str = "L1") -> Report:
    """Every report of one record as one: attempts and asks in order, the last ending."""
    whole = Report(lead_id, run=0)
    async for report in reports:
        whole.attempts += report.attempts
        whole.changes += report.changes
        whole.asks += report.asks
        whole.finished, whole.lead, whole.run = report.finished, report.lead, report.run
    return whole


def accepted() -> Outcome:
    return Outcome.success(reference_id="R-1")


def rejected() -> Outcome:
    return Outcome.failure("Outside service area")


def unavailable() -> Outcome:
    return Outcome.error("Recipient error (HTTP 503)", retryable=True)


async def test_a_lead_to_one_destination_costs_one_table_write_and_ends_once() -> None:
    recipients = Recipients(crm=accepted)
    at_home = home("crm", recipients)
    flow = at_home.flow("f")
    assert flow is not None
    report = await merged(at_home.take(LEAD, flow, SOURCE))
    assert report.finished is not None and report.finished.accepted
    assert [a.destination_id for a, _ in report.attempts] == ["crm"]
    # Written once, in the table of finished leads (never in that of leads in progress).
    assert (at_home.leads.waiting.writes, at_home.leads.finished.writes) == (0, 1)  # type: ignore[attr-defined]
    assert at_home.leads["L1"]["finished"] is not None
    repeat = await merged(at_home.take(LEAD, flow, "leads:0:7"))  # upstream sent it again
    assert repeat.finished is None and repeat.attempts == []  # no second outcome
    # The record that ended it, handled again (its worker died before acknowledging it):
    # its last records again, as they were, and nothing sent to anyone.
    redo = await merged(at_home.take(LEAD, flow, SOURCE))
    assert redo.finished is not None and redo.finished.accepted
    assert [(a.destination_id, a.outcome.reference_id) for a, _ in redo.attempts] == [
        ("crm", "R-1")
    ]
    assert recipients.calls == [("crm", 1)]


async def test_a_replayed_lead_runs_again_without_resending_to_who_accepted() -> None:
    recipients = Recipients(crm=accepted, buyer=unavailable)
    at_home = home({"sequence": ["crm", "buyer"]}, recipients, buyer={"retry": {"max_attempts": 1}})
    flow = at_home.flow("f")
    assert flow is not None
    first = await merged(at_home.take(LEAD, flow, SOURCE))
    assert first.finished is not None and first.run == 1
    recipients.answers["buyer"] = accepted
    second = await merged(at_home.take(LEAD, flow, "leads:0:9", replayed=True))
    assert second.run == 2 and second.finished is not None and second.finished.accepted
    assert recipients.calls == [("crm", 1), ("buyer", 1), ("buyer", 1)]
    assert [a.destination_id for a, _ in second.attempts] == ["buyer"]  # crm remembered


async def test_after_a_crash_the_plan_goes_on_from_what_was_known() -> None:
    recipients = Recipients(a=rejected, b=accepted)
    leads = Writes()
    at_home = home({"waterfall": ["a", "b"]}, recipients, leads)
    flow = at_home.flow("f")
    assert flow is not None
    # The state a crashed worker left: a had answered; b was under way.
    dest_a = Destination.model_validate({"id": "a", "url": "http://127.0.0.1:9/a"})
    leads["L1"] = {
        "flow": "f",
        "run": 1,
        "lead": LEAD.envelope,
        "known": {"plan.0": attempt_to_dict(not_sent(LEAD, dest_a, rejected()))},
        "asked": [],
        "accepted": {},
        "finished": None,
    }
    report = await merged(at_home.take(LEAD, flow, SOURCE))
    assert recipients.calls == [("b", 1)]  # a is not asked again
    assert report.finished is not None and report.finished.accepted


async def test_a_retry_waits_in_its_table_and_comes_back_with_its_number() -> None:
    recipients = Recipients(buyer=unavailable)
    parked: dict[str, Any] = {}
    at_home = home("buyer", recipients, parked=parked, buyer={"retry": {"max_attempts": 3}})
    flow = at_home.flow("f")
    assert flow is not None
    report = await merged(at_home.take(LEAD, flow, SOURCE))
    ((attempt, next_at),) = report.attempts
    assert attempt.outcome.kind is OutcomeKind.ERROR and next_at is not None
    assert report.finished is None
    assert at_home.leads["L1"]["lead"] == LEAD.envelope  # it waits: the lead goes with it
    parked_again = await merged(at_home.take(LEAD, flow, SOURCE))  # parked: not resent
    assert parked_again.attempts == [] and parked_again.finished is None
    _make_due(at_home)
    ((key, value, item),) = at_home.desk.due(lambda _: True)
    at_home.desk.release(key, value)
    recipients.answers["buyer"] = accepted
    report = await merged(at_home.retry(item, "routing:0:3"))
    assert item.number == 2
    assert report.finished is not None and report.finished.accepted
    assert recipients.calls == [("buyer", 1), ("buyer", 2)]


async def test_a_retrys_record_written_twice_makes_its_attempt_once() -> None:
    """A worker stopped after writing a due retry's record and before taking the retry
    from its table: the next one writes it again. The copy handled after the first had
    parked the lead again (its next attempt) is stale: no third request."""
    recipients = Recipients(buyer=unavailable)
    at_home = home("buyer", recipients, buyer={"retry": {"max_attempts": 5}})
    flow = at_home.flow("f")
    assert flow is not None
    await merged(at_home.take(LEAD, flow, SOURCE))
    _make_due(at_home)
    ((_, _, item),) = at_home.desk.due(lambda _: True)  # written, never released
    first = await merged(at_home.retry(item, "routing:0:3"))
    assert [a.number for a, _ in first.attempts] == [2]  # parked again, for attempt 3
    copy = await merged(at_home.retry(item, "routing:0:4"))
    assert copy.attempts == [] and copy.finished is None
    assert recipients.calls == [("buyer", 1), ("buyer", 2)]
    _make_due(at_home)
    ((_, _, third),) = at_home.desk.due(lambda _: True)
    assert third.number == 3 and not at_home.desk.superseded(third)


def _make_due(at_home: Home) -> None:
    """Every parked item due now (rather than moving the desk's clock)."""
    for value in at_home.desk.parked.values():
        value["due"] = 0.0


async def test_a_capped_destination_is_asked_in_its_partition_and_its_answer_goes_on() -> None:
    recipients = Recipients(buyer=accepted)
    at_home = home("buyer", recipients, buyer={"caps": {"day": 10}})
    flow = at_home.flow("f")
    assert flow is not None
    report = await merged(at_home.take(LEAD, flow, SOURCE))
    ((ask,),) = [report.asks]
    assert (ask.destination_id, ask.path) == ("buyer", "plan")
    assert recipients.calls == []  # not delivered here: its counts live elsewhere
    again = await merged(at_home.take(LEAD, flow, SOURCE))  # seen again while it waits: asked again
    assert [a.path for a in again.asks] == ["plan"]
    dest = Destination.model_validate({"id": "buyer", "url": "http://127.0.0.1:9/b"})
    answer = attempt_to_dict(not_sent(LEAD, dest, accepted()))
    done = await merged(at_home.answer("L1", "plan", answer, "routing:0:5"))
    assert done.finished is not None and done.finished.accepted
    repeat = await merged(at_home.answer("L1", "plan", answer, "routing:0:8"))
    assert repeat.finished is None  # another copy of the answer: nothing


async def test_records_of_one_lead_are_handled_one_at_a_time() -> None:
    gate = asyncio.Event()

    class Slow(Recipients):
        async def __call__(self, lead: Lead, dest: Destination, number: int) -> Attempt:
            await gate.wait()
            return await super().__call__(lead, dest, number)

    recipients = Slow(crm=accepted, buyer=accepted)
    at_home = home({"parallel": ["crm", "buyer"]}, recipients, buyer={"caps": {"day": 5}})
    flow = at_home.flow("f")
    assert flow is not None
    first = asyncio.ensure_future(merged(at_home.take(LEAD, flow, SOURCE)))
    await asyncio.sleep(0.01)
    dest = Destination.model_validate({"id": "buyer", "url": "http://127.0.0.1:9/b"})
    answer = asyncio.ensure_future(
        merged(
            at_home.answer(
                "L1", "plan.1", attempt_to_dict(not_sent(LEAD, dest, accepted())), "routing:0:6"
            )
        )
    )
    await asyncio.sleep(0.01)
    assert not answer.done()  # waits for the record before it
    gate.set()
    taken, answered = await asyncio.gather(first, answer)
    assert taken.finished is None and [a.path for a in taken.asks] == ["plan.1"]
    assert answered.finished is not None
    assert sorted(answered.finished.lead.envelope.get("appended", {})) == ["buyer", "crm"]


def test_a_lead_state_is_looked_up_waiting_first_then_finished() -> None:
    waiting = {"L1": {"finished": None, "run": 2}}
    finished = {"L1": {"finished": 1.0, "run": 1}, "L2": {"finished": 2.0, "run": 1}}
    states = LeadStates(waiting, finished)
    assert states.get("L1") == waiting["L1"]  # a replayed lead runs again while its end is kept
    assert states.get("L2") == finished["L2"]
    assert states.get("L3") is None
    assert states.get("L3", "none") == "none"
