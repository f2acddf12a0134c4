"""Ping-post auctions as plain steps: every buyer pinged at once, the full lead posted to
the best bid at or above the floor, the next valid bid when a post is refused, the flow's
``else`` when nobody bids; pings are never sales."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams.config import Destination, DestinationsFile
from streams.control.capacity import CapacityBoard
from streams.control.desk import DeliveryDesk, Unremembered
from streams.control.home import Home, LeadStates
from streams.model import HttpResponse, Lead, Outcome, OutcomeKind
from streams.stages.attempt import Attempt, not_sent
from streams.stages.events import delivery_event, lead_outcome
from streams.stages.routing import advance, bid_of, bid_valid_until, phase_at
from tests.unit.control.test_home import LEAD, SOURCE, merged

BUYERS = ("a", "b", "c")


def file(plan: Any, **extra: dict[str, Any]) -> DestinationsFile:
    return DestinationsFile.model_validate(
        {
            "destinations": [
                {
                    "id": d,
                    "url": f"https://{d}.example.com/post",
                    "ping": {"url": f"https://{d}.example.com/ping", "mapping": {"state": "state"}},
                    **extra.get(d, {}),
                }
                for d in (*BUYERS, "fallback")
            ],
            "flows": [{"id": "f", "plan": plan}],
        }
    )


AUCTION = {"ping_post": {"buyers": list(BUYERS), "floor": 5, "bid_ttl_s": 60, "else": "fallback"}}


def answer(
    destination_id: str, outcome: Outcome, phase: str, at: datetime | None = None
) -> Attempt:
    dest = Destination.model_validate({"id": destination_id, "url": "https://x.example.com"})
    made = not_sent(LEAD, dest, outcome)
    moment = at or datetime.now(UTC)
    return replace(made, phase=phase, started_at=moment, finished_at=moment)


def bid(amount: str, **captured: str) -> Outcome:
    return Outcome.success(price=Decimal(amount), reference_id=f"BID-{amount}", appended=captured)


def test_every_buyer_is_pinged_at_once_then_the_best_bid_is_posted() -> None:
    plan = file(AUCTION).compiled_flows[0].plan
    progress = advance(plan, LEAD, {})
    assert [(n.path, n.destination_id, n.ping_timeout_s) for n in progress.needed] == [
        (f"plan.ping:{d}", d, 0.8) for d in BUYERS
    ]
    answered = datetime.now(UTC)
    soon = (answered + timedelta(seconds=30)).isoformat()  # b's own end, before bid_ttl_s
    known = {
        "plan.ping:a": answer("a", bid("7.00"), "ping", at=answered),
        "plan.ping:b": answer("b", bid("12.50", expires_at=soon), "ping", at=answered),
        "plan.ping:c": answer("c", bid("4.99"), "ping"),  # under the floor
    }
    [post] = advance(plan, LEAD, known).needed
    assert (post.path, post.destination_id, post.ping_timeout_s) == ("plan.post:b", "b", None)
    # It is not sent, or retried, past the earlier of bid_ttl_s and the buyer's expires_at.
    assert post.deadline == answered.timestamp() + 30
    assert phase_at(post.path) == "post" and phase_at("plan.ping:b") == "ping"
    # The post carries the bid and its id for the buyer's mapping.
    assert post.lead.envelope["appended"]["b"] == {
        "bid": "12.50",
        "bid_id": "BID-12.50",
        "expires_at": soon,
    }
    known["plan.post:b"] = answer("b", Outcome.failure("Bid expired"), "post")
    [second] = advance(plan, LEAD, known).needed
    assert second.path == "plan.post:a"  # the next best; c stays under the floor
    assert second.deadline == answered.timestamp() + 60
    known["plan.post:a"] = answer("a", Outcome.success(), "post")
    done = advance(plan, LEAD, known)
    assert done.finished and done.accepted


def test_no_bid_at_the_floor_goes_to_else_and_an_old_bid_is_passed_over() -> None:
    plan = file(AUCTION).compiled_flows[0].plan
    old = datetime.now(UTC) - timedelta(seconds=61)
    known = {
        "plan.ping:a": answer("a", bid("9.00"), "ping", at=old),  # past bid_ttl_s
        "plan.ping:b": answer("b", Outcome.failure("No bid"), "ping"),
        "plan.ping:c": answer("c", bid("30.00", expires_at="2000-01-01T00:00:00Z"), "ping"),
    }
    [need] = advance(plan, LEAD, known).needed
    assert (need.path, need.destination_id) == ("plan.else", "fallback")


@pytest.mark.parametrize(
    ("captured", "valid_for"),
    [
        ({"expires_in": "30"}, 30.0),  # seconds from the answer, as buyers write it
        ({"TTL": "12.5"}, 12.5),
        ({"bid_ttl": "600"}, 60.0),  # later than bid_ttl_s: bid_ttl_s
        ({"expires_in": "30", "expires_at": "2000-01-01T00:00:00Z"}, None),  # the earlier
        ({"ttl": "0"}, 60.0),  # nothing said
        ({"ttl": "soon"}, 60.0),  # unreadable: no limit
        ({"ttl": "nan"}, 60.0),
        ({"expires_in": "-5"}, 60.0),
    ],
)
def test_a_bids_lifetime_in_seconds_ends_it(captured: dict[str, str], valid_for: float) -> None:
    """``expires_in: 30`` was not read: the bid was posted for the whole ``bid_ttl_s``,
    and the buyer refused it as expired."""
    answered = datetime.now(UTC)
    ping = answer("b", bid("12.50", **captured), "ping", at=answered)
    until = bid_valid_until(ping, 60.0)
    if valid_for is None:
        assert until == datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    else:
        assert until == answered.timestamp() + valid_for


def test_a_buyer_without_a_ping_cannot_be_in_an_auction() -> None:
    config = {
        "destinations": [{"id": "a", "url": "https://a.example.com"}],
        "flows": [{"id": "f", "plan": {"ping_post": {"buyers": ["a"]}}}],
    }
    with pytest.raises(ValueError, match=r"plan.ping_post.buyers\[0\]: 'a' has no ping"):
        DestinationsFile.model_validate(config)


def test_then_post_best_as_the_feature_writes_it_is_taken_and_nothing_else() -> None:
    """The feature's own example ends ``then: post_best``: it was an unknown option."""
    written = {"ping_post": {**AUCTION["ping_post"], "then": "post_best"}}
    assert file(written).compiled_flows[0].plan == file(AUCTION).compiled_flows[0].plan
    with pytest.raises(ValueError, match=r"ping_post.then\n  Input should be 'post_best'"):
        file({"ping_post": {**AUCTION["ping_post"], "then": "post_first"}})


@pytest.mark.parametrize(
    "response",
    [
        # rules of its own (a "no bid" answer told apart): the default captures stay
        {"rules": [{"when": {"json": {"path": "$.status", "equals": "none"}}, "outcome": "skip"}]},
        # the bid named as an auction names it
        {"capture": {"bid": {"json": "$.bid"}, "bid_id": {"json": "$.bid_id"}}},
    ],
)
def test_a_ping_s_response_block_still_reads_the_bid(response: dict[str, Any]) -> None:
    """Either block left the bid unread before: every ping was "no bid"."""
    ping = {"url": "https://a.example.com/ping", "mapping": {"state": "state"}}
    buyer = file(AUCTION, a={"ping": {**ping, "response": response}}).by_id()["a"].pinged
    assert buyer.response is not None
    answer = HttpResponse(200, {}, b'{"bid": "12.50", "bid_id": "B-7", "expires_at": "soon"}')
    read = buyer.response.captured(Outcome.success(), answer)
    assert (read.price, read.reference_id) == (Decimal("12.50"), "B-7")
    assert read.appended == {"expires_at": "soon"}


def test_pings_are_bids_in_the_events_and_never_sales_in_the_outcome() -> None:
    ping = answer("b", bid("12.50"), "ping")
    silent = answer("a", Outcome.success(), "ping")  # answered, named no bid
    post = answer("b", Outcome.success(price=Decimal("12.50")), "post")
    assert delivery_event(ping)["outcome"] == "bid" and delivery_event(ping)["phase"] == "ping"
    assert delivery_event(silent)["outcome"] == "no_bid"
    assert delivery_event(post)["outcome"] == "success"  # billing counts this one
    outcome = lead_outcome("L1", [silent, ping, post])
    assert outcome["accepted_by"] == ["b"] and outcome["attempts"] == 1
    [result] = outcome["destinations"]
    assert (result["price"], result["bid"]) == (Decimal("12.5000"), Decimal("12.5000"))


def test_a_bid_of_nothing_is_no_bid() -> None:
    """Buyers answer ``{"bid": 0}`` for "not interested": with no floor (the default) the
    auction posted the full lead to them, sold for nothing."""
    for amount in ("0", "0.00", "-1"):
        zero = answer("a", bid(amount), "ping")
        assert bid_of(zero) is None and delivery_event(zero)["outcome"] == "no_bid"
    plan = file({"ping_post": {"buyers": ["a", "b"], "else": "fallback"}}).compiled_flows[0].plan
    progress = advance(plan, LEAD, {})
    pings = {need.path: answer(need.destination_id, bid("0"), "ping") for need in progress.needed}
    assert [need.destination_id for need in advance(plan, LEAD, pings).needed] == ["fallback"]


class Auctioneer:
    """Buyers' ping and post URLs: a bids 7, b bids 12.50 but refuses the post, c is slow."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, lead: Lead, dest: Destination, number: int) -> Attempt:
        kind = "ping" if dest.url.endswith("/ping") else "post"
        self.calls.append(f"{kind}:{dest.id}")
        if kind == "ping":
            if dest.id == "c":
                await asyncio.sleep(5)  # past the auction's ping timeout
            outcome = {"a": bid("7.00"), "b": bid("12.50")}.get(dest.id, Outcome.failure("No"))
        else:
            assert lead.envelope["appended"][dest.id]["bid_id"]  # the post names the bid
            outcome = Outcome.failure("Bid expired") if dest.id == "b" else Outcome.success()
        return not_sent(lead, dest, outcome, number)


async def test_an_auction_at_home_posts_to_the_next_bid_and_sells_once() -> None:
    config = file(
        {"ping_post": {"buyers": list(BUYERS), "ping_timeout_ms": 200, "else": "fallback"}}
    )
    by_id = config.by_id()
    auctioneer = Auctioneer()
    desk = DeliveryDesk(
        by_id, auctioneer, circuits={}, caps={}, delivered=Unremembered(), parked={}
    )
    flows = {flow.id: flow for flow in config.compiled_flows}
    home = Home(flows, lambda d: False, LeadStates({}, {}), desk)
    flow = home.flow("f")
    assert flow is not None
    report = await merged(home.take(LEAD, flow, SOURCE))
    assert sorted(auctioneer.calls[:3]) == ["ping:a", "ping:b", "ping:c"]  # at once
    assert auctioneer.calls[3:] == ["post:b", "post:a"]
    assert report.finished is not None and report.finished.accepted
    phases = [(a.destination_id, a.phase, a.outcome.kind) for a, _ in report.attempts]
    assert ("c", "ping", OutcomeKind.ERROR) in phases  # timed out: no bid
    assert ("a", "post", OutcomeKind.SUCCESS) in phases
    outcome = lead_outcome(LEAD.id, report.finished.attempts)
    assert outcome["accepted_by"] == ["a"]
    sold = next(d for d in outcome["destinations"] if d["destination_id"] == "a")
    assert sold["bid"] == Decimal("7.0000")
    state = home.leads["L1"]
    assert list(state["accepted"]) == ["a"]  # a bid is never remembered as a sale


async def test_a_buyer_whose_cap_is_full_by_its_last_report_is_not_pinged() -> None:
    """The feature's check: "a buyer over its cap is not pinged". Its counts live in its
    own partition; every worker knows them as last reported (``CapUsage``). A report of a
    window that has passed says nothing (the new window starts empty)."""
    config = file(AUCTION, a={"caps": {"day": 3}}, b={"caps": {"day": 3}})
    now = datetime.now(UTC)
    a_day, b_day = (next(iter(config.by_id()[d].caps.limits(now))) for d in "ab")  # type: ignore[union-attr]
    board = CapacityBoard()
    board.heard({"destination_id": "a", "windows": [{"window": a_day, "used": 3, "cap": 3}]})
    board.heard(
        {"destination_id": "b", "windows": [{"window": "day 2020-01-01", "used": 3, "cap": 3}]}
    )
    auctioneer = Auctioneer()
    desk = DeliveryDesk(
        config.by_id(), auctioneer, circuits={}, caps={}, delivered=Unremembered(), parked={},
        capacity=board,
    )  # fmt: skip
    flows = {flow.id: flow for flow in config.compiled_flows}
    home = Home(flows, lambda d: False, LeadStates({}, {}), desk)
    flow = home.flow("f")
    assert flow is not None and b_day.startswith("day ")
    report = await merged(home.take(LEAD, flow, SOURCE))
    assert "ping:a" not in auctioneer.calls and "ping:b" in auctioneer.calls
    [a_ping] = [a for a, _ in report.attempts if a.destination_id == "a"]
    assert (a_ping.phase, a_ping.outcome.reason, a_ping.outcome.raw) == (
        "ping", "Cap exceeded", a_day
    )  # fmt: skip


async def test_a_buyer_whose_turn_comes_too_late_is_not_pinged_nor_posted_to() -> None:
    """``turn_in``: the sender's word on how long a request to a buyer would wait (its
    rate-limit window spent). b's turn comes after the ping's timeout: not pinged. a's
    comes within the ping's timeout but after its bid's 60 s: its post is not sent, and
    the lead goes to the fallback at once."""
    turns = {"a": 0.1, "b": 0.3}
    config = file({**AUCTION, "ping_post": {**AUCTION["ping_post"], "ping_timeout_ms": 200}})
    auctioneer = Auctioneer()
    desk = DeliveryDesk(
        config.by_id(), auctioneer, circuits={}, caps={}, delivered=Unremembered(), parked={},
        turn_in=lambda destination_id: turns.get(destination_id, 0.0),
    )  # fmt: skip
    flows = {flow.id: flow for flow in config.compiled_flows}
    home = Home(flows, lambda d: False, LeadStates({}, {}), desk)
    flow = home.flow("f")
    assert flow is not None
    pinged = asyncio.create_task(merged(home.take(LEAD, flow, SOURCE)))
    await asyncio.sleep(0.05)
    turns["a"] = 61.0  # a's answer said its window is spent for a minute
    report = await pinged
    assert "ping:b" not in auctioneer.calls and "ping:a" in auctioneer.calls
    assert "post:a" not in auctioneer.calls and "post:fallback" in auctioneer.calls
    said = {(a.destination_id, a.phase): a.outcome for a, _ in report.attempts}
    assert (said["b", "ping"].kind, said["b", "ping"].reason) == (OutcomeKind.SKIP, "Rate limited")
    assert said["b", "ping"].raw == "next request in 0.3 s"
    assert (said["a", "post"].kind, said["a", "post"].reason) == (OutcomeKind.SKIP, "Rate limited")


def test_a_ping_shares_its_buyers_limits_and_credentials() -> None:
    buyer = file(AUCTION, a={"limits": {"concurrency": 2}, "headers": {"X-Team": "a"}}).by_id()["a"]
    assert buyer.pinged.limits is buyer.limits  # one allowance for pings and posts
    assert buyer.pinged.id == "a" and buyer.pinged.headers == {"X-Team": "a"}
    assert buyer.pinged.retry.max_attempts == 1  # an auction does not wait for retries


@pytest.mark.parametrize(
    ("expires_at", "held_s"),
    [
        ("{iso}", 20.0),  # ISO 8601
        ("{seconds}", 20.0),  # a Unix time, as buyers' APIs often write it
        ("{milliseconds}", 20.0),
        ("soon", 60.0),  # unreadable: not a limit, the bid holds for bid_ttl_s
        ("0001-01-01T00:00:00+23:59", -63_000_000_000.0),  # long past: no bid to post to
    ],
)
def test_a_buyer_s_own_expiry_shortens_its_bid(expires_at: str, held_s: float) -> None:
    """An expiry given as a Unix time was unreadable, so the bid was held for the whole
    bid_ttl_s and the post went to a buyer whose bid had lapsed."""
    answered = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    expiry = answered + timedelta(seconds=20)
    written = expires_at.format(
        iso=expiry.isoformat(),
        seconds=int(expiry.timestamp()),
        milliseconds=int(expiry.timestamp() * 1000),
    )
    ping = answer("a", bid("12.50", expires_at=written), "ping", at=answered)
    held = bid_valid_until(ping, 60.0) - answered.timestamp()
    assert held == held_s if held_s > 0 else held < 0
