"""A local double of lead buyers that take part in ping-post auctions (JSON, the
convention our ``ping`` defaults read): ``POST /<buyer>/ping`` with a partial lead answers
``{"bid": 12.5, "bid_id": "...", "expires_at": "..."}`` or ``{"bid": null}``; ``POST
/<buyer>/post`` with the full lead and the ``bid_id`` answers 201, or 409 for an unknown
or expired bid, 422 when the buyer refuses the lead after all.

Each buyer bids by state and loan amount: a base price per state plus 1 per 10,000 of
the loan, times its appetite; a state it does not buy in gets no bid."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web

from tests.integration.recipients import Received, Recipient

BASE_BY_STATE = {"CA": Decimal(20), "TX": Decimal(12), "FL": Decimal(10)}


@dataclass
class Buyer:
    appetite: Decimal  # multiplies the base bid
    states: frozenset[str] = frozenset(BASE_BY_STATE)
    refuses_posts: bool = False
    # Answers every post 503 with this Retry-After (seconds): a buyer down after bidding.
    down_for_s: int | None = None
    bid_ttl_s: float = 60.0
    # (pings, seconds): its API's rate limit on pings, said as the IETF draft's headers
    # (``RateLimit-Remaining``, ``RateLimit-Reset``); a ping past it answers 429.
    ping_window: tuple[int, int] | None = None
    refused_pings: int = 0  # answered 429
    bids: dict[str, tuple[Decimal, float]] = field(default_factory=dict)  # bid id → (bid, until)
    pings: list[dict[str, object]] = field(default_factory=list)
    posts: list[dict[str, object]] = field(default_factory=list)
    # Idempotency-Key → the answer it got: a post sent again gets the same answer, as the
    # key asks (a lead sold to this buyer stays sold to it, once).
    answered: dict[str, tuple[int, dict[str, object]]] = field(default_factory=dict)
    sold: list[str] = field(default_factory=list)  # lead ids, once per sale


class AuctionBuyers(Recipient):
    def __init__(self, **buyers: Buyer) -> None:
        super().__init__(answer=self._answer)
        self.buyers = buyers
        self.keys: dict[tuple[str, str], str] = {}  # (buyer, Idempotency-Key) → its request
        self._ids = itertools.count(1)

    async def _answer(self, recipient: Recipient, received: Received) -> web.Response:
        _, name, step = received.path.split("/")
        buyer = self.buyers[name]
        body = received.json()
        # As the IETF's Idempotency-Key draft (and Stripe) have it: a key is one request; the
        # same key on another request is refused (draft-ietf-httpapi-idempotency-key-header,
        # 2.7: 422). A ping and its post are two requests.
        key = received.headers.get("Idempotency-Key", "")
        if self.keys.setdefault((name, key), step) != step:
            return web.json_response(
                {"message": "Idempotency-Key reused for a different request"}, status=422
            )
        if step == "ping":
            said: dict[str, str] = {}
            if buyer.ping_window is not None:
                allowed, reset_s = buyer.ping_window
                left = allowed - len(buyer.pings) - 1
                if left < 0:
                    buyer.refused_pings += 1
                    retry = {"Retry-After": str(reset_s)}
                    return web.json_response({"message": "Too many"}, status=429, headers=retry)
                said = {"RateLimit-Remaining": str(left), "RateLimit-Reset": str(reset_s)}
            buyer.pings.append(body)
            state, amount = str(body.get("state", "")), Decimal(str(body.get("loan_amount", 0)))
            if state not in buyer.states or state not in BASE_BY_STATE:
                return web.json_response({"bid": None}, headers=said)
            price = ((BASE_BY_STATE[state] + amount / 10_000) * buyer.appetite).quantize(
                Decimal("0.01")
            )
            bid_id = f"{name}-{next(self._ids)}"
            until = time.time() + buyer.bid_ttl_s
            buyer.bids[bid_id] = (price, until)
            expires = datetime.fromtimestamp(until, UTC).isoformat()
            answer = {"bid": str(price), "bid_id": bid_id, "expires_at": expires}
            return web.json_response(answer, headers=said)
        buyer.posts.append(body)
        if buyer.down_for_s is not None:
            retry_after = {"Retry-After": str(buyer.down_for_s)}
            return web.json_response({"message": "Down"}, status=503, headers=retry_after)
        if key in buyer.answered:
            status, answer = buyer.answered[key]
            return web.json_response(answer, status=status)
        known = buyer.bids.pop(str(body.get("bid_id")), None)
        if known is None or known[1] < time.time():
            status, answer = 409, {"message": "Unknown or expired bid"}
        elif buyer.refuses_posts:
            status, answer = 422, {"message": "Outside service area"}
        else:
            status, answer = 201, {"id": f"{name}-sale-{body['lead_id']}"}
            buyer.sold.append(str(body["lead_id"]))
        buyer.answered[key] = (status, answer)
        return web.json_response(answer, status=status)
