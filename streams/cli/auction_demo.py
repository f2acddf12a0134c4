"""``courier demo --auction``: the selling side on one machine, started and stopped in one
command.

Embedded broker → a real worker process → three lead buyers on 127.0.0.1 that bid by
state and loan amount (one refuses large loans at the post, one answers late in WA) and a
house CRM for leads nobody bids on → then one buyer returns a lead it bought, signed, and
the return is judged and credited; an unsigned return and a return of a lead the buyer
never bought are refused.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from streams.cli.console import decoded_events, publish_lines
from streams.cli.demo import FIRST_NAMES, LocalRecipients, collect, print_rows, running_demo
from streams.stages.feedback import sign

STATES = ("CA", "TX", "FL", "NY", "WA")
BASE_BID_BY_STATE = {"CA": Decimal(20), "TX": Decimal(12), "FL": Decimal(10), "NY": Decimal(16)}
FLOOR = Decimal("15.00")
FEEDBACK_SECRET = "demo-feedback-secret-0123456789abcdef"


class DemoBuyer:
    """How one buyer bids: (base of the state + 1 per 10,000 of the loan) times its appetite."""

    def __init__(
        self,
        appetite: str,
        states: set[str],
        max_loan: int | None = None,
        late_in: str | None = None,
    ) -> None:
        self.appetite = Decimal(appetite)
        self.states = states
        self.max_loan = max_loan  # refuses the post of a larger loan, after bidding
        self.late_in = late_in  # answers pings from this state after the auction closed

    def bid(self, state: str, loan_amount: Decimal) -> Decimal | None:
        if state not in self.states or state not in BASE_BID_BY_STATE:
            return None
        price = (BASE_BID_BY_STATE[state] + loan_amount / 10_000) * self.appetite
        return price.quantize(Decimal("0.01"))


BUYERS = {
    "acme_loans": DemoBuyer("1.0", {"CA", "TX", "FL"}),
    "bright_lending": DemoBuyer("1.15", {"CA", "FL", "NY"}, max_loan=300_000),
    "cove_finance": DemoBuyer("0.9", {"TX", "NY", "WA"}, late_in="WA"),
}


LOAN_AMOUNTS = (20_000, 110_000, 200_000, 360_000, 290_000, 45_000, 150_000)


def sample_leads(count: int) -> list[dict[str, Any]]:
    """Deterministic leads in five states with loans from 20,000 to 360,000."""
    return [
        {
            "id": f"A-{i:04d}",
            "source": {"name": "demo-auction", "type": "paid"},
            "lead": {
                "first_name": FIRST_NAMES[i % len(FIRST_NAMES)],
                "last_name": "Example",
                "email": f"buyer.demo.{i}@example.com",
                "phone_1": f"555020{i % 10}{i % 7}",
                "state": STATES[i % len(STATES)],
                "loan_amount": LOAN_AMOUNTS[i % len(LOAN_AMOUNTS)],
            },
        }
        for i in range(1, count + 1)
    ]


class AuctionRecipients(LocalRecipients):
    """The buyers (``/<buyer>/ping``, ``/<buyer>/post``) and ``/house`` on one server."""

    def __init__(self) -> None:
        super().__init__()
        self._bids: dict[str, Decimal] = {}  # bid id → the bid, until posted to

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/house", self._house)
        app.router.add_post("/{buyer}/{step:ping|post}", self._buyer)

    async def _house(self, request: web.Request) -> web.Response:
        return web.json_response({"id": f"house-{next(self._ids)}"}, status=201)

    async def _buyer(self, request: web.Request) -> web.Response:
        name, step = request.match_info["buyer"], request.match_info["step"]
        buyer = BUYERS[name]
        body = await request.json()
        state = str(body.get("state", ""))
        if step == "ping":
            if set(body) - {"state", "loan_amount"}:  # the ping's mapping keeps contact data out
                return web.json_response({"error": "a ping carries no contact data"}, status=400)
            if state == buyer.late_in:
                await asyncio.sleep(1.5)
            price = buyer.bid(state, Decimal(str(body.get("loan_amount", 0))))
            if price is None:
                return web.json_response({"bid": None})
            bid_id = f"{name}-bid-{next(self._ids)}"
            self._bids[bid_id] = price
            return web.json_response({"bid": str(price), "bid_id": bid_id})
        if self._bids.pop(str(body.get("bid_id")), None) is None:
            return web.json_response({"message": "Unknown or expired bid"}, status=409)
        if buyer.max_loan is not None and float(body.get("loan_amount", 0)) > buyer.max_loan:
            return web.json_response({"message": "Loan amount over our limit"}, status=422)
        return web.json_response({"id": f"{name}-sale-{next(self._ids)}"}, status=201)


def destinations_yaml(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    buyers = "".join(
        f"""
  - id: {name}
    url: {base}/{name}/post
    insecure: true   # a development recipient: plain http, on loopback
    mapping:         # the post: the full lead, with the winning bid's id
      lead_id: id
      bid_id: "{{{{appended.{name}.bid_id}}}}"
      email: email
      phone: phone_1
      state: state
      loan_amount: {{from: loan_amount, type: number}}
    ping:            # what every buyer may see before it pays: no contact data
      url: {base}/{name}/ping
      mapping: {{state: state, loan_amount: {{from: loan_amount, type: number}}}}
    feedback:        # returns of leads it bought, signed with its own secret
      secret: ${{env:DEMO_FEEDBACK_SECRET}}
      return_window_days: 7
"""
        for name in BUYERS
    )
    return f"""\
destinations:{buyers}
  - id: house_crm
    url: {base}/house
    insecure: true
    mapping: {{lead_id: id, email: email, state: state}}
flows:
  - id: auction
    plan:
      ping_post:
        buyers: [{", ".join(BUYERS)}]
        ping_timeout_ms: 800   # cove_finance answers WA too late: no bid
        floor: {FLOOR}
        bid_ttl_s: 60
        else: {{waterfall: [house_crm]}}
"""


async def run_auction_demo(count: int) -> int:
    started = time.monotonic()
    secret = {"DEMO_FEEDBACK_SECRET": FEEDBACK_SECRET}
    try:
        async with running_demo(AuctionRecipients(), destinations_yaml, secret) as demo:
            bootstrap = demo.broker.bootstrap
            print(
                f"embedded broker at {demo.broker.url}; buyers at 127.0.0.1:{demo.recipients_port}"
            )
            leads = sample_leads(count)
            await publish_lines(bootstrap, "leads.processed", map(orjson.dumps, leads))
            print(f"published {count} leads to auction; pinging buyers ...")
            outcomes = await collect(bootstrap, "leads.delivery.outcomes", count)
            events = [
                e async for e in decoded_events(bootstrap, "leads.delivery.events", follow=False)
            ]
            _print_auctions(leads, events, outcomes)
            answers = await _send_returns(f"http://127.0.0.1:{demo.web_port}", outcomes)
            stored = sum(status == 202 for _, _, status in answers)
            judged = await collect(bootstrap, "leads.delivery.feedback", stored)
            _print_returns(answers, judged)
            print(
                f"done in {time.monotonic() - started:.1f}s. Everything started has been stopped."
            )
            return 0
    except TimeoutError:
        return 1


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _said(ping: dict[str, Any]) -> str:
    """A ping's answer in a few words: its bid, or why there is none."""
    if ping["outcome"] == "bid":
        bid: Decimal = ping["price"]
        return _money(bid) + (" (under floor)" if bid < FLOOR else "")
    if ping["outcome"] == "no_bid":
        return "no bid"
    return str(ping["reason"]).lower()


def _print_auctions(
    leads: list[dict[str, Any]], events: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> None:
    pings: dict[str, list[str]] = {}
    for e in sorted(events, key=lambda e: (e["lead_id"], e["destination_id"])):
        if e["phase"] == "ping":
            pings.setdefault(e["lead_id"], []).append(f"{e['destination_id']} {_said(e)}")
    by_lead = {o["lead_id"]: o for o in outcomes}
    rows = [
        ("lead", "state", "loan", "pings: bid, or why none", "refused posts", "sold to", "price")
    ]
    for lead in leads:
        outcome = by_lead[lead["id"]]
        tried = ", ".join(
            f"{d['destination_id']} ({d['reason']})"
            for d in outcome["destinations"]
            if d["outcome"] != "success"
        )
        sold = [d for d in outcome["destinations"] if d["outcome"] == "success"]
        body = lead["lead"]
        rows.append(
            (
                lead["id"],
                body["state"],
                f"{body['loan_amount']:,}",
                ", ".join(pings.get(lead["id"], [])),
                tried or "-",
                ", ".join(outcome["accepted_by"]) or "-",
                _money(sold[0]["price"]) if sold else "-",
            )
        )
    print_rows(rows)
    print(
        f"\nfloor {FLOOR}: a lead goes to the best bid at or above it; a refused post goes "
        "to the next best bid; no bid (or every post refused) goes to the flow's else "
        "(house_crm). Pings carry only state and loan amount."
    )


async def _send_returns(base: str, outcomes: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """One buyer returns a lead it bought (signed), the same unsigned, and a lead it did not buy."""
    sold = [
        (o["lead_id"], d["destination_id"])
        for o in sorted(outcomes, key=lambda o: o["lead_id"])
        for d in o["destinations"]
        if d["outcome"] == "success" and d["destination_id"] in BUYERS
    ]
    if not sold:
        return []
    lead_id, buyer = sold[0]
    other = next((lead for lead, by in sold if by != buyer), None)
    notices = [("signed", lead_id, True), ("unsigned", lead_id, False)]
    if other is not None:
        notices.append(("not theirs", other, True))
    answers = []
    async with aiohttp.ClientSession() as session:
        for label, lead, signed in notices:
            body = orjson.dumps({"lead_id": lead, "kind": "return", "reason": "wrong number"})
            headers = {"Content-Type": "application/json"}
            if signed:
                headers["X-Courier-Signature"] = sign(FEEDBACK_SECRET, body)
            url = f"{base}/feedback/{buyer}"
            async with session.post(url, data=body, headers=headers) as answer:
                answers.append((f"{buyer} returns {lead} ({label})", lead, answer.status))
    return answers


def _print_returns(answers: list[tuple[str, str, int]], judged: list[dict[str, Any]]) -> None:
    if not answers:
        print("\nno lead was sold to a buyer, so none was returned.")
        return
    print(
        "\nreturns: POST /feedback/<buyer> on the worker's web port, judged in the lead's partition"
    )
    by_lead = {f["lead_id"]: f for f in judged}
    rows = [("notice", "HTTP", "judged", "reason", "credit")]
    for notice, lead, status in answers:
        verdict = by_lead.get(lead) if status == 202 else None
        rows.append(
            (
                notice,
                str(status),
                "-" if verdict is None else verdict["status"],
                "-" if verdict is None else (verdict["refusal"] or verdict["reason"] or "-"),
                "-" if verdict is None else _money(verdict["credit"]),
            )
        )
    print_rows(rows)
    print(
        "a signed return inside the window credits the sale's price (a LeadFeedback event on "
        "leads.delivery.feedback, which billing subtracts); 401 = the signature does not match."
    )
