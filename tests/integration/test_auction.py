"""A ping-post auction through a real worker and a double of three buyers that bid by
state and loan amount: pings carry no contact data, the full lead goes to the best bid at
or above the floor, a refused post moves to the next bid, no bid falls to the flow's else;
billing sees one sale per lead, at the winning bid."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from decimal import Decimal
from typing import Any

from streams.cli.broker import free_port
from streams.cli.console import read_records
from tests.integration.auction_buyers import AuctionBuyers, Buyer
from tests.integration.conftest import collect, decode_with_schema_file, publish, trail
from tests.integration.kafka import KafkaTarget
from tests.integration.recipients import Recipient
from tests.integration.test_telemetry import scrape, total


def buyer_yaml(name: str, url: str) -> str:
    return f"""
  - id: {name}
    url: {url}/{name}/post
    mapping: {{lead_id: id, bid_id: "{{{{appended.{name}.bid_id}}}}", email: email}}
    ping:
      url: {url}/{name}/ping
      mapping: {{state: state, loan_amount: {{from: loan_amount, type: number}}}}
"""


async def test_each_lead_is_sold_once_to_the_best_bid_that_takes_it(
    kafka: KafkaTarget, recipient: Recipient, topics: Any, start_worker: Any
) -> None:
    buyers = await AuctionBuyers(
        rich=Buyer(Decimal("1.5"), refuses_posts=True),  # bids highest, refuses every post
        steady=Buyer(Decimal("1.2")),
        cheap=Buyer(Decimal("0.3"), states=frozenset({"CA", "TX"})),  # under the floor in TX
    ).start()
    base = buyers.url("").rstrip("/")
    try:
        start_worker(
            "destinations:"
            + "".join(buyer_yaml(name, base) for name in ("rich", "steady", "cheap"))
            + f"""
  - id: house
    url: {recipient.url("/house")}
flows:
  - id: auction
    plan:
      ping_post:
        buyers: [rich, steady, cheap]
        ping_timeout_ms: 2000
        floor: 5.00
        else: house
"""
        )
        leads = [
            {"id": "A-CA", "lead": {"state": "CA", "loan_amount": 50000, "email": "ca@x.com"}},
            {"id": "A-TX", "lead": {"state": "TX", "loan_amount": 0, "email": "tx@x.com"}},
            {"id": "A-NY", "lead": {"state": "NY", "loan_amount": 90000, "email": "ny@x.com"}},
        ]
        await publish(kafka, topics.leads, leads)
        outcomes = await collect(kafka, topics.outcomes, 3, settle_s=1.0)
        events = await collect(kafka, topics.events, 3 * 3 + 2 + 2 + 1, settle_s=1.0)
    finally:
        await buyers.stop()

    # Pings saw the state and the loan, never the e-mail.
    for buyer in buyers.buyers.values():
        assert len(buyer.pings) == 3
        assert all(set(ping) == {"state", "loan_amount"} for ping in buyer.pings)
    by_lead = {
        record.key.decode(): decode_with_schema_file(record.value, "lead_outcome")
        for record in outcomes
    }
    assert len(outcomes) == 3
    # CA: rich bid 37.50 but refused the post; steady's 30.00 won. cheap's 7.50 unused.
    ca = by_lead["A-CA"]
    assert ca["accepted_by"] == ["steady"]
    assert [(d["destination_id"], d["outcome"], d["bid"]) for d in ca["destinations"]] == [
        ("rich", "failure", Decimal("37.5000")),
        ("steady", "success", Decimal("30.0000")),
    ]
    assert ca["destinations"][1]["price"] == Decimal("30.0000")  # sold at the winning bid
    [posted] = [p for p in buyers.buyers["steady"].posts if p["lead_id"] == "A-CA"]
    assert posted["email"] == "ca@x.com" and posted["bid_id"]  # the full lead, and its bid
    # TX: cheap bid 3.60, under the floor: never posted to.
    assert by_lead["A-TX"]["accepted_by"] == ["steady"]
    assert not any(post["lead_id"] == "A-TX" for post in buyers.buyers["cheap"].posts)
    # NY: nobody bids: the flow's else.
    assert by_lead["A-NY"]["accepted_by"] == ["house"]

    decoded = [decode_with_schema_file(r.value, "delivery_event") for r in events]
    pings = [e for e in decoded if e["phase"] == "ping"]
    assert len(pings) == 9
    assert sorted(e["outcome"] for e in pings) == ["bid"] * 6 + ["no_bid"] * 3
    sales = [e for e in decoded if e["outcome"] == "success"]  # what billing counts
    assert sorted(e["lead_id"] for e in sales) == ["A-CA", "A-NY", "A-TX"]


async def test_a_buyer_over_its_cap_is_not_pinged(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """Once the worker that counts a capped buyer has reported its cap full, no worker
    pings it: the next lead's auction is among the others."""
    buyers = await AuctionBuyers(capped=Buyer(Decimal("1.5")), steady=Buyer(Decimal("1.2"))).start()
    base = buyers.url("").rstrip("/")
    port = free_port()
    try:
        start_worker(
            "destinations:"
            + buyer_yaml("capped", base)
            + "    caps: {day: 1}\n"
            + buyer_yaml("steady", base)
            + """
flows:
  - id: auction
    plan: {ping_post: {buyers: [capped, steady], ping_timeout_ms: 2000}}
""",
            env={"COURIER_WEB_PORT": str(port)},
        )
        first = {"id": "P-1", "lead": {"state": "CA", "loan_amount": 1000}}
        await publish(kafka, topics.leads, [first])
        await collect(kafka, topics.outcomes, 1)
        async with asyncio.timeout(30):  # its report has reached the worker's board
            while True:
                try:
                    samples = await scrape(f"http://127.0.0.1:{port}/metrics")
                except OSError:
                    samples = {}
                if samples and total(samples, "courier_cap_used", destination="capped") == 1:
                    break
                await asyncio.sleep(0.5)
        second = {"id": "P-2", "lead": {"state": "CA", "loan_amount": 1000}}
        await publish(kafka, topics.leads, [second])
        outcomes = await collect(kafka, topics.outcomes, 2)
        events = await collect(kafka, topics.events, 2 + 1 + 2 + 1, settle_s=1.0)
    finally:
        await buyers.stop()
    sold = {
        o["lead_id"]: o["accepted_by"]
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert sold == {"P-1": ["capped"], "P-2": ["steady"]}
    assert len(buyers.buyers["capped"].pings) == 1  # the first lead's only
    decoded = [decode_with_schema_file(r.value, "delivery_event") for r in events]
    [unpinged] = [e for e in decoded if e["lead_id"] == "P-2" and e["destination_id"] == "capped"]
    assert (unpinged["phase"], unpinged["reason"]) == ("ping", "Cap exceeded")


async def test_a_buyer_whose_rate_limit_window_is_spent_is_not_pinged_or_posted_to(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """A buyer that takes one request a minute says so on its answer to the first ping
    (``RateLimit-Remaining: 0``, ``RateLimit-Reset: 60``). Its best bid's post would wait
    past the bid, so the auction moves on at once to the next bid; the next leads'
    auctions do not ping it (a ping would only wait out the auction's timeout) and say why.
    Before, the post waited the minute out and the lead was sold to nobody (every bid had
    expired), and each later ping waited its 2 s and ended "Ping timed out"."""
    buyers = await AuctionBuyers(
        tight=Buyer(Decimal("1.5"), ping_window=(1, 60)), steady=Buyer(Decimal("1.2"))
    ).start()
    base = buyers.url("").rstrip("/")
    try:
        start_worker(
            "destinations:"
            + buyer_yaml("tight", base)
            + buyer_yaml("steady", base)
            + """
flows:
  - id: auction
    plan: {ping_post: {buyers: [tight, steady], ping_timeout_ms: 2000}}
"""
        )
        first = {"id": "W-1", "lead": {"state": "CA", "loan_amount": 1000}}
        await publish(kafka, topics.leads, [first])
        await collect(kafka, topics.outcomes, 1)
        later = [{"id": f"W-{n}", "lead": {"state": "CA", "loan_amount": 1000}} for n in (2, 3)]
        await publish(kafka, topics.leads, later)
        outcomes = await collect(kafka, topics.outcomes, 3)
        events = await collect(kafka, topics.events, 4 + 3 + 3, settle_s=1.0)
    finally:
        await buyers.stop()
    sold = {
        o["lead_id"]: o["accepted_by"]
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    assert sold == {"W-1": ["steady"], "W-2": ["steady"], "W-3": ["steady"]}
    tight = buyers.buyers["tight"]
    assert (len(tight.pings), tight.refused_pings, len(tight.posts)) == (1, 0, 0)
    decoded = [decode_with_schema_file(r.value, "delivery_event") for r in events]
    to_tight = sorted(
        (e["lead_id"], e["phase"], e["outcome"], e["reason"], e["http_status"])
        for e in decoded
        if e["destination_id"] == "tight"
    )
    assert to_tight == [
        ("W-1", "ping", "bid", "Accepted", 200),
        ("W-1", "post", "skip", "Rate limited", None),
        ("W-2", "ping", "skip", "Rate limited", None),
        ("W-3", "ping", "skip", "Rate limited", None),
    ]


async def test_a_post_is_not_retried_past_its_bid_the_next_bid_wins(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """The best bidder's post answers 503 "retry after 8 s", past the auction's 5 s
    ``bid_ttl_s``: no retry (the bid would be gone); the lead goes to the next bid while
    that is still valid, instead of waiting out the first buyer's retries."""
    buyers = await AuctionBuyers(
        down=Buyer(Decimal("1.5"), down_for_s=8), steady=Buyer(Decimal("1.2"))
    ).start()
    base = buyers.url("").rstrip("/")
    try:
        start_worker(
            "destinations:"
            + "".join(
                buyer_yaml(name, base) + "    retry: {max_attempts: 3}\n"
                for name in ("down", "steady")
            )
            + """
flows:
  - id: auction
    plan: {ping_post: {buyers: [down, steady], ping_timeout_ms: 2000, bid_ttl_s: 5}}
"""
        )
        lead = {"id": "D-1", "lead": {"state": "CA", "loan_amount": 1000, "email": "d@x.com"}}
        await publish(kafka, topics.leads, [lead])
        [record] = await collect(kafka, topics.outcomes, 1, settle_s=4.0)
    finally:
        await buyers.stop()
    outcome = decode_with_schema_file(record.value, "lead_outcome")
    assert outcome["accepted_by"] == ["steady"]
    assert [(d["destination_id"], d["outcome"]) for d in outcome["destinations"]] == [
        ("down", "error"),
        ("steady", "success"),
    ]
    assert len(buyers.buyers["down"].posts) == 1  # not retried past its bid


async def test_a_worker_killed_mid_auction_sells_each_lead_once(
    kafka: KafkaTarget, topics: Any, start_worker: Any
) -> None:
    """SIGKILL while pings and posts are under way, twice, and a new worker on the same
    tables: every lead ends once, and no lead is sold to two buyers (a post sent again
    carries the same Idempotency-Key and gets the answer the first got)."""
    buyers = await AuctionBuyers(
        east=Buyer(Decimal("1.0")), west=Buyer(Decimal("1.1"), states=frozenset({"CA"}))
    ).start()
    buyers.delay_s = 0.02
    base = buyers.url("").rstrip("/")
    try:
        worker = start_worker(
            "destinations:"
            + "".join(buyer_yaml(name, base) for name in ("east", "west"))
            + """
flows:
  - id: auction
    plan: {ping_post: {buyers: [east, west], ping_timeout_ms: 5000}}
""",
        )
        states = ("CA", "TX", "FL")
        leads = [
            {"id": f"K-{i:03d}", "lead": {"state": states[i % 3], "loan_amount": 10000 * i}}
            for i in range(60)
        ]
        await publish(kafka, topics.leads, leads)

        def posts() -> int:
            return sum(len(b.posts) for b in buyers.buyers.values())

        for at in (10, 35):
            async with asyncio.timeout(120):
                while posts() < at:
                    await asyncio.sleep(0.05)
            assert await worker.stopped(signal.SIGKILL) == -signal.SIGKILL
            worker.start()
        # Outcomes written again after a kill count toward the total: wait until every lead
        # has one (an auction cut by the kill waits out its 5 s pings again).
        wanted = {str(lead["id"]) for lead in leads}
        seen: set[str] = set()
        try:
            async with asyncio.timeout(180):
                while not seen >= wanted:
                    await asyncio.sleep(1.0)
                    outcomes = [
                        r
                        async for r in read_records(kafka.bootstrap, topics.outcomes, follow=False)
                    ]
                    seen = {
                        decode_with_schema_file(r.value, "lead_outcome")["lead_id"]
                        for r in outcomes
                    }
        except TimeoutError:
            missing = wanted - seen
            where = await trail(kafka, topics, worker.app_id, missing)
            raise AssertionError(f"no outcome for {sorted(missing)}:\n{where}") from None
    finally:
        await buyers.stop()

    # By event id: an outcome written again after a kill (between writing it and
    # committing its offset) is the same event, with the same id.
    decoded = {
        o["event_id"]: o
        for o in (decode_with_schema_file(r.value, "lead_outcome") for r in outcomes)
    }
    ended = Counter(o["lead_id"] for o in decoded.values())
    assert set(ended) == {lead["id"] for lead in leads}, "a lead was lost"
    assert all(n == 1 for n in ended.values()), "a lead has two outcomes"
    sold_to: dict[str, list[str]] = {}
    for name, buyer in buyers.buyers.items():
        for lead_id in buyer.sold:
            sold_to.setdefault(lead_id, []).append(name)
    assert set(sold_to) == set(ended)  # every lead here has a buyer
    assert all(len(names) == 1 for names in sold_to.values()), sold_to
    for outcome in decoded.values():
        assert outcome["accepted_by"] == sold_to[outcome["lead_id"]]
