"""Distribution steps: a waterfall whose order is chosen per lead (weighted, round robin,
priority by price, performance) and kept in the lead's state."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from streams.config import DestinationsFile
from streams.config.flows import Distribute, performance_windows
from streams.control.distribution import Distributor
from streams.model import Lead, Outcome
from streams.stages.attempt import Attempt, not_sent
from streams.stages.events import performance_tally
from streams.stages.routing import advance
from tests.unit.control.test_home import (
    LEAD,
    SOURCE,
    Recipients,
    Writes,
    accepted,
    home,
    merged,
    rejected,
)

IDS = ("a", "b", "c")


def step(kind: str, weights: tuple[int, ...] = (), by: str = "", window_s: float = 0) -> Distribute:
    return Distribute("f", "plan", kind, IDS[: len(weights) or 3], weights, by, window_s)  # type: ignore[arg-type]


def flow(plan: Any, **destinations: dict[str, Any]) -> Any:
    file = DestinationsFile.model_validate(
        {
            "destinations": [
                {"id": d, "url": f"https://{d}.example.com", **destinations.get(d, {})} for d in IDS
            ],
            "flows": [{"id": "f", "plan": plan}],
        }
    )
    return file.compiled_flows[0].plan


def test_weighted_gives_each_its_exact_share_interleaved() -> None:
    distributor = Distributor({})
    weighted = step("weighted", (7, 3))
    firsts = [distributor.order(weighted)[0] for _ in range(100)]
    for window in range(0, 100, 10):  # exact in every run of sum(weights) leads
        assert Counter(firsts[window : window + 10]) == {"a": 7, "b": 3}
    assert "".join(firsts[:10]) == "abaaabaaba"  # interleaved, never 7 a's in a row
    assert distributor.order(weighted) == ["a", "b"]  # the rest follows: a fallback order


def test_round_robin_takes_turns_and_counts_per_step() -> None:
    distributor = Distributor({})
    rotation = flow({"round_robin": ["a", "b", "c"]})
    other = Distribute("g", "plan", "weighted", IDS, (1, 1, 1))
    assert [distributor.order(rotation)[0] for _ in range(6)] == list("abcabc")
    assert distributor.order(other)[0] == "a"  # another step's turns are its own
    assert distributor.order(rotation) == ["a", "b", "c"]


def test_priority_puts_the_highest_fixed_price_first() -> None:
    prices = {"a": Decimal("5"), "b": None, "c": Decimal("12.5")}
    order = Distributor(prices).order(flow({"priority": {"by": "price", "among": list(IDS)}}))
    assert order == ["c", "a", "b"]  # no price: last


def attempt_at(destination_id: str, outcome: Outcome, at: float) -> Attempt:
    sent = not_sent(Lead("L", {}), _destination(destination_id), outcome)
    moment = datetime.fromtimestamp(at, UTC)
    return replace(sent, finished_at=moment, started_at=moment)


def _destination(destination_id: str) -> Any:
    return DestinationsFile.model_validate(
        {"destinations": [{"id": destination_id, "url": "https://x.example.com"}]}
    ).destinations[0]


RANKED = {"a": 600.0, "b": 600.0, "c": 600.0}  # what performance_windows gives for these


def test_performance_prefers_who_accepts_over_its_window() -> None:
    now = [10_000.0]
    distributor = Distributor({}, clock=lambda: now[0], windows=RANKED)
    best = step("performance", by="acceptance", window_s=600)
    assert distributor.order(best) == ["a", "b", "c"]  # nothing seen: as listed
    for _ in range(5):
        distributor.saw(attempt_at("a", Outcome.failure("Outside service area"), now[0]))
        distributor.saw(attempt_at("b", Outcome.success(), now[0]))
    distributor.saw(attempt_at("c", Outcome.skip("Circuit open"), now[0]))  # not sent
    assert distributor.order(best) == ["b", "c", "a"]  # c: untried, the prior's 1 in 2
    now[0] += 660  # the window (to the minute) moved on: what they did is forgotten
    assert distributor.order(best) == ["a", "b", "c"]


def test_performance_by_revenue_per_attempt() -> None:
    distributor = Distributor({}, clock=lambda: 0.0, windows=RANKED)
    revenue = step("performance", by="revenue", window_s=600)
    distributor.saw(attempt_at("b", Outcome.success(price=Decimal("10")), 0.0))
    distributor.saw(attempt_at("c", Outcome.success(price=Decimal("30")), 0.0))
    distributor.saw(attempt_at("c", Outcome.failure("Duplicate lead"), 0.0))
    assert distributor.order(revenue) == ["c", "b", "a"]  # 10 a try, 5 a try, nothing


def test_performance_by_revenue_counts_returns_against_the_buyer() -> None:
    """b pays more a lead, but sends a sale back: what it keeps paying for is less than c's."""
    one = Distributor({}, clock=lambda: 0.0, windows=RANKED, worker="w1")
    two = Distributor({}, clock=lambda: 0.0, windows=RANKED, worker="w2")
    revenue = step("performance", by="revenue", window_s=600)
    for _ in range(2):
        one.saw(attempt_at("b", Outcome.success(price=Decimal("30")), 0.0))
        one.saw(attempt_at("c", Outcome.success(price=Decimal("20")), 0.0))
    assert one.order(revenue) == ["b", "c", "a"]  # 20 a try against 13.33
    two.returned("b", Decimal("30"), 30.0)  # judged in another worker's partition
    two.returned("a", Decimal("5"), 30.0)  # a sale of before the window: below nothing
    for record in told(two, "w2"):
        one.heard(record)
    assert one.order(revenue) == ["c", "b", "a"]  # b: (60 - 30) / 3 = 10 a try
    assert one.known()["b"] == (2, 2)  # its acceptance stays as it answered


def told(distributor: Distributor, worker: str) -> list[dict[str, Any]]:
    """Its tallies as the other workers decode them from the control topic (sent)."""
    records = [
        performance_tally(destination_id, minutes, worker)
        for destination_id, minutes in distributor.tallies()
    ]
    distributor.told()
    return records


def test_performance_ranks_by_every_workers_attempts() -> None:
    now = [10_000.0]
    one = Distributor({}, clock=lambda: now[0], windows=RANKED, worker="w1")
    two = Distributor({}, clock=lambda: now[0], windows=RANKED, worker="w2")
    best = step("performance", by="acceptance", window_s=600)
    for _ in range(4):  # worker 1's partitions: a accepts, b refuses
        one.saw(attempt_at("a", Outcome.success(), now[0]))
        one.saw(attempt_at("b", Outcome.failure("Duplicate lead"), now[0]))
    two.saw(attempt_at("b", Outcome.success(), now[0]))  # worker 2: b accepted once
    assert two.order(best) == ["b", "a", "c"]  # before it hears of worker 1 (a, c: 1/2)
    for record in told(one, "w1"):
        two.heard(record)
        two.heard(record)  # read twice (a re-read control topic): counted once
    assert two.order(best) == ["a", "c", "b"]  # a: 5/6; c: 1/2; b: 2/7
    assert one.tallies() == []  # nothing new since its last tally
    one.saw(attempt_at("b", Outcome.success(), now[0]))
    [later] = told(one, "w1")
    assert later["minutes"][0]["attempts"] == 5  # the minute's count so far: it replaces
    two.heard(later)
    assert two.order(best)[-1] == "b"  # b: 3/8 (not 7/13: the earlier tally is replaced)
    now[0] += 660  # the window moves on for what was heard too
    assert two.order(best) == ["a", "b", "c"]


def test_tallies_not_sent_are_tallied_again() -> None:
    distributor = Distributor({}, clock=lambda: 0.0, windows=RANKED, worker="w")
    distributor.saw(attempt_at("a", Outcome.success(), 0.0))
    first = distributor.tallies()
    assert distributor.tallies() == first  # the send failed: nothing was told
    distributor.saw(attempt_at("a", Outcome.success(), 0.0))  # while the next one is sent
    distributor.told()
    [(_, [(_, attempts, _, _)])] = distributor.tallies()  # that minute changed: again
    assert attempts == 2
    distributor.told()
    assert distributor.tallies() == []


def test_a_worker_reads_back_its_own_tallies_only_after_a_restart() -> None:
    before = Distributor({}, clock=lambda: 0.0, windows=RANKED, worker="courier-0:1")
    for _ in range(3):
        before.saw(attempt_at("c", Outcome.success(), 0.0))
    tallies = told(before, "courier-0:1")
    for record in tallies:
        before.heard(record)  # its own echo: already counted
    assert before.tallies() == []
    # The same name after a restart (a container's pid 1): what it told before counts.
    after = Distributor({}, clock=lambda: 0.0, windows=RANKED, worker="courier-0:1")
    for record in tallies:
        after.heard(record)
    after.saw(attempt_at("c", Outcome.failure("Duplicate lead"), 0.0))
    [again] = told(after, "courier-0:1")
    assert (again["minutes"][0]["attempts"], again["minutes"][0]["accepted"]) == (4, 3)


def test_only_destinations_a_performance_step_ranks_are_counted() -> None:
    distributor = Distributor({}, clock=lambda: 0.0, windows={"a": 600.0}, worker="w")
    distributor.saw(attempt_at("a", Outcome.success(), 0.0))
    distributor.saw(attempt_at("b", Outcome.success(), 0.0))
    distributor.heard(performance_tally("c", [(0, 9, 9, Decimal(0))], "other"))
    assert [d for d, _ in distributor.tallies()] == ["a"]
    assert distributor.order(step("performance", window_s=600)) == ["a", "b", "c"]


def test_a_tally_that_cannot_be_is_ignored() -> None:
    distributor = Distributor({}, clock=lambda: 600.0, windows=RANKED, worker="w")
    best = step("performance", window_s=600)
    for bad in (
        (10, -2, 0, Decimal(0)),  # attempts below zero: (accepted + 1) / 0
        (10, 1, 3, Decimal(0)),  # more accepted than attempts
        (10_000, 50, 50, Decimal(0)),  # a minute far ahead: it would never be forgotten
    ):
        distributor.heard(performance_tally("c", [bad], "other"))
    assert distributor.known() == {}
    assert distributor.order(best) == ["a", "b", "c"]


def test_performance_windows_are_the_longest_each_destination_is_ranked_over() -> None:
    file = DestinationsFile.model_validate(
        {
            "destinations": [{"id": d, "url": f"https://{d}.example.com"} for d in IDS],
            "flows": [
                {"id": "f", "plan": {"performance": {"among": ["a", "b"], "window_min": 10}}},
                {
                    "id": "g",
                    "plan": {
                        "waterfall": [
                            "c",
                            {"performance": {"among": ["b"], "window_min": 30}},
                        ]
                    },
                },
            ],
        }
    )
    assert performance_windows(file.compiled_flows) == {"a": 600.0, "b": 1800.0}


def test_a_distribution_is_a_waterfall_in_the_chosen_order() -> None:
    plan = flow({"weighted": {"a": 1, "b": 1, "c": 1}})

    def order(_: Distribute, path: str) -> list[str]:
        return ["c", "a", "b"]

    progress = advance(plan, LEAD, {}, order=order)
    [need] = progress.needed
    assert (need.destination_id, need.path, need.has_fallback) == ("c", "plan.c", True)
    c = attempt_at("c", Outcome.failure("Outside service area"), 0)
    a = attempt_at("a", Outcome.success(), 0)
    progress = advance(plan, LEAD, {"plan.c": c}, order=order)
    assert [n.path for n in progress.needed] == ["plan.a"]
    progress = advance(plan, LEAD, {"plan.c": c, "plan.a": a}, order=order)
    assert progress.finished and progress.accepted  # b is never asked


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        ({"weighted": {"a": 1, "x": 1}}, "plan.weighted[1]: no destination 'x'"),
        ({"weighted": {"a": 0}}, "plan.weighted.a: a weight is a whole number"),
        ({"round_robin": ["a", "a"]}, "plan.round_robin: a destination is named twice"),
        ({"priority": {"by": "cost", "among": ["a"]}}, "priority.by"),
        ({"performance": {"among": []}}, "performance.among"),
    ],
)
def test_a_bad_distribution_names_its_place(plan: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        flow(plan)


async def test_the_order_a_lead_got_is_written_before_anything_is_sent_and_kept() -> None:
    leads = Writes()
    orders_seen: list[Any] = []

    def rejected_after_looking() -> Outcome:
        orders_seen.append(leads["L1"]["orders"])  # what a crash now would leave
        return rejected()

    recipients = Recipients(a=rejected_after_looking, b=accepted, c=accepted)
    at_home = home({"round_robin": ["a", "b", "c"]}, recipients, leads)
    flow_ = at_home.flow("f")
    assert flow_ is not None
    report = await merged(at_home.take(LEAD, flow_, SOURCE))
    assert recipients.calls == [("a", 1), ("b", 1)]  # a rejected it: b, next in line
    assert report.finished is not None and report.finished.accepted
    assert orders_seen == [{"plan": ["a", "b", "c"]}]  # written before a was asked
    assert leads.writes == 2  # the order; a's answer before b is asked
    assert at_home.leads["L1"]["finished"] is not None
    second = Lead("L2", {"id": "L2", "lead": {}})
    await merged(at_home.take(second, flow_, "leads:0:2"))
    assert recipients.calls[2] == ("b", 1)  # the next lead's turn starts at b


async def test_after_a_crash_the_lead_keeps_its_order() -> None:
    recipients = Recipients(a=accepted, b=accepted, c=accepted)
    leads = Writes()
    at_home = home({"round_robin": ["a", "b", "c"]}, recipients, leads)
    flow_ = at_home.flow("f")
    assert flow_ is not None
    # The state a crashed worker left: the lead's order chosen (b first), nothing known.
    leads["L1"] = {
        "flow": "f",
        "run": 1,
        "lead": LEAD.envelope,
        "known": {},
        "asked": [],
        "accepted": {},
        "finished": None,
        "orders": {"plan": ["b", "c", "a"]},
    }
    await merged(at_home.take(LEAD, flow_, SOURCE))
    assert recipients.calls == [("b", 1)]  # not a, whose turn it would be now
