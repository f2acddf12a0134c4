"""Running a flow's plan (streams/config/flows.py) for a lead: which deliveries to make
next, and when the plan is finished.

``route`` runs a plan with a ``deliver`` function (one attempt at one destination), so it
is tested without Kafka or HTTP. Values a destination returns become
``appended.<destination>.*`` on the lead for the steps after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streams.config.flows import (
    CompiledFlow,
    Distribute,
    Evaluate,
    InOrder,
    Parallel,
    PingPost,
    Send,
    Step,
    Waterfall,
)
from streams.model import Lead, OutcomeKind
from streams.outcome import values_named
from streams.template.conversions import ConversionError, to_datetime
from streams.template.operators import is_true
from streams.template.parser import EvaluationError

if TYPE_CHECKING:
    from streams.stages.attempt import Attempt

Deliver = Callable[[Lead, str], Awaitable["Attempt"]]
# The order a distribution step (at a plan path) takes for this lead: the same every time
# it is asked for the same lead (the caller keeps the first answer).
Order = Callable[[Distribute, str], Sequence[str]]


def listed_order(step: Distribute, path: str) -> Sequence[str]:
    """The destinations as configured (no distribution state at hand)."""
    return step.destinations


def select_flow(lead: Lead, flows: Sequence[CompiledFlow]) -> CompiledFlow | None:
    """The first flow whose ``when`` holds for the lead (a flow without one takes all)."""
    for flow in flows:
        if flow.selects is None or _holds(flow.selects, lead):
            return flow
    return None


# ── running a plan ──────────────────────────────────────────────────────────
@dataclass(frozen=True, slots=True)
class Routed:
    attempts: list[Attempt]
    accepted: bool
    lead: Lead  # with appended.<destination>.* from every attempt so far


@dataclass(frozen=True, slots=True)
class Needed:
    """A delivery the plan waits for: where it sits in the plan, to whom, with which lead
    (the lead carries what earlier steps appended), and whether a waterfall has a fallback
    after it (then a closed door means "next", never "wait")."""

    path: str
    destination_id: str
    lead: Lead
    has_fallback: bool
    # A ping-post auction's ping (and how long the auction waits for its answer): never
    # counted, parked or remembered as a delivery.
    ping_timeout_s: float | None = None
    # An auction's post: when its bid stops being valid (epoch seconds); see WorkItem.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a plan has come with the attempts known so far (``known``: path → attempt)."""

    attempts: list[Attempt]  # the known ones the plan has used, in plan order
    accepted: bool
    lead: Lead
    needed: list[Needed]  # deliveries to make before the plan can go on; none: finished

    @property
    def finished(self) -> bool:
        return not self.needed


def advance(
    step: Step,
    lead: Lead,
    known: Mapping[str, Attempt],
    path: str = "plan",
    has_fallback: bool = False,
    order: Order = listed_order,
    clock: Callable[[], float] = time.time,
) -> Progress:
    """Replay ``step`` over the attempts already made and say what is still needed.

    Pure and deterministic: the same plan, lead, known attempts (and orders) give the same
    answer, so a lead's routing can stop after any attempt (its state is ``known`` and the
    orders it got), move to another worker, and go on. A distribution's children sit at
    ``<path>.<destination id>``, whatever their order."""
    if isinstance(step, Distribute):
        in_order = order(step, path)
        tried: list[Attempt] = []
        for i, destination_id in enumerate(in_order):
            fallback = has_fallback or i < len(in_order) - 1
            done = advance(Send(destination_id), lead, known, f"{path}.{destination_id}", fallback)
            tried += done.attempts
            lead = done.lead
            if not done.finished:
                return Progress(tried, False, lead, done.needed)
            if done.accepted:
                return Progress(tried, True, lead, [])
        return Progress(tried, False, lead, [])
    if isinstance(step, PingPost):
        return _auction(step, lead, known, path, has_fallback, order, clock())
    if isinstance(step, Send):
        attempt = known.get(path)
        if attempt is None:
            return Progress(
                [], False, lead, [Needed(path, step.destination_id, lead, has_fallback)]
            )
        accepted = attempt.outcome.kind is OutcomeKind.SUCCESS
        return Progress([attempt], accepted, with_appended(lead, attempt), [])
    if isinstance(step, Waterfall | InOrder):
        # Waterfall: on until one accepts (sold). Sequence: on while each accepts (a later
        # call needs what this one returned).
        stop_when = isinstance(step, Waterfall)
        attempts: list[Attempt] = []
        last = len(step.steps) - 1
        for i, child in enumerate(step.steps):
            fallback = has_fallback or (stop_when and i < last)
            done = advance(child, lead, known, f"{path}.{i}", fallback, order, clock)
            attempts += done.attempts
            lead = done.lead
            if not done.finished:
                return Progress(attempts, False, lead, done.needed)
            if done.accepted is stop_when:
                return Progress(attempts, stop_when, lead, [])
        return Progress(attempts, not stop_when, lead, [])
    if isinstance(step, Parallel):
        children = list(enumerate(step.steps))
    else:
        chosen = [(i, then) for i, (when, then) in enumerate(step.branches) if _holds(when, lead)]
        if step.first_only:
            chosen = chosen[:1]
        if not chosen and step.otherwise is not None:
            chosen = [(len(step.branches), step.otherwise)]
        children = chosen
    results = [
        advance(c, lead, known, f"{path}.{i}", has_fallback, order, clock) for i, c in children
    ]
    merged = _merge(lead, results)
    needed = [n for r in results for n in r.needed]
    return Progress(merged.attempts, merged.accepted, merged.lead, needed)


def _auction(
    step: PingPost,
    lead: Lead,
    known: Mapping[str, Attempt],
    path: str,
    has_fallback: bool,
    order: Order,
    now: float,
) -> Progress:
    """Pings at ``<path>.ping:<buyer>``, all at once; then posts at ``<path>.post:<buyer>``
    from the highest bid down (a bid no longer valid is passed over); else ``<path>.else``."""
    pings = {buyer: known.get(f"{path}.ping:{buyer}") for buyer in step.buyers}
    waiting = [
        Needed(f"{path}.ping:{buyer}", buyer, lead, True, step.ping_timeout_s)
        for buyer, ping in pings.items()
        if ping is None
    ]
    tried = [ping for ping in pings.values() if ping is not None]
    if waiting:
        return Progress(tried, False, lead, waiting)
    ranked = sorted(
        (
            (bid, -i, buyer)
            for i, (buyer, ping) in enumerate(pings.items())
            if ping is not None and (bid := bid_of(ping)) is not None and bid >= step.floor
        ),
        reverse=True,
    )
    for _, _, buyer in ranked:
        ping = pings[buyer]
        assert ping is not None
        post_path = f"{path}.post:{buyer}"
        valid_until = bid_valid_until(ping, step.bid_ttl_s)
        if post_path not in known and now > valid_until:
            continue
        done = advance(Send(buyer), with_appended(lead, ping), known, post_path, True)
        tried += done.attempts
        if not done.finished:
            posts = [replace(need, deadline=valid_until) for need in done.needed]
            return Progress(tried, False, lead, posts)
        if done.accepted:
            return Progress(tried, True, done.lead, [])
    if step.otherwise is None:
        return Progress(tried, False, lead, [])
    rest = advance(step.otherwise, lead, known, f"{path}.else", has_fallback, order)
    return Progress(tried + rest.attempts, rest.accepted, rest.lead, rest.needed)


def phase_at(path: str) -> str:
    """What a delivery at this plan path is: an auction's ``ping`` or ``post`` (their
    segments hold a ":", which no step number or destination id has), else ``delivery``."""
    last = path.rsplit(".", 1)[-1]
    if last.startswith("ping:"):
        return "ping"
    if last.startswith("post:"):
        return "post"
    return "delivery"


def bid_of(ping: Attempt) -> Decimal | None:
    """A ping's bid: the price of a successful answer (no price, or no success: no bid).
    A bid of nothing is none: buyers answer ``{"bid": 0}`` for "not interested", and an
    auction with no floor posted the full lead to them, sold for nothing."""
    price = ping.outcome.price
    if ping.outcome.kind is not OutcomeKind.SUCCESS or price is None or price <= 0:
        return None
    return price


# A bid's validity in seconds from its answer, by the names buyers give it.
# Ringba's RTB answer: "expireInSeconds".
_BID_LIFETIME = (
    "expires_in", "expiresIn", "expireInSeconds", "expiresInSeconds", "expires_in_seconds",
    "ttl", "bid_ttl", "valid_for",
)  # fmt: skip


def bid_valid_until(ping: Attempt, ttl_s: float) -> float:
    """When a bid stops being valid (epoch seconds): ``bid_ttl_s`` after the answer, or the
    buyer's own end if it gave an earlier one: ``expires_at`` (or ``expires``,
    ``valid_until``…: ``PING_FIELDS``), ISO 8601 or a Unix time in seconds or milliseconds
    as buyers' APIs write it (one without a zone is UTC), or seconds from its answer
    (``expires_in``, ``ttl``: a bid for 30 s was posted for a minute). What cannot be read
    is not a limit."""
    answered = ping.finished_at.timestamp()
    until = answered + ttl_s
    appended = ping.outcome.appended
    expires = appended.get("expires_at")
    if expires is not None:
        with contextlib.suppress(ConversionError, ValueError, OverflowError):
            until = min(until, to_datetime(expires).timestamp())
    lifetime = next(values_named(appended, _BID_LIFETIME), None)
    if lifetime is not None:
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            return until
        if math.isfinite(seconds) and seconds > 0:  # 0: none given, as some write it
            until = min(until, answered + seconds)
    return until


async def route(step: Step, lead: Lead, deliver: Deliver) -> Routed:
    """Run a plan to its end in this process, each delivery started as soon as the plan
    needs it (a waterfall in one parallel branch never waits for another branch)."""
    known: dict[str, Attempt] = {}
    running: dict[str, asyncio.Task[Attempt]] = {}
    try:
        while True:
            progress = advance(step, lead, known)
            if progress.finished:
                return Routed(progress.attempts, progress.accepted, progress.lead)
            for need in progress.needed:
                if need.path not in running:
                    running[need.path] = asyncio.ensure_future(
                        deliver(need.lead, need.destination_id)
                    )
            done, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for path, task in list(running.items()):
                if task in done:
                    known[path] = task.result()
                    del running[path]
    finally:
        for task in running.values():
            task.cancel()


def _merge(lead: Lead, results: Sequence[Routed | Progress]) -> Routed:
    attempts = [a for r in results for a in r.attempts]
    for attempt in attempts:
        lead = with_appended(lead, attempt)
    return Routed(attempts, any(r.accepted for r in results), lead)


def with_appended(lead: Lead, attempt: Attempt) -> Lead:
    """The lead with what ``attempt``'s destination returned, as appended.<destination>.*."""
    outcome = attempt.outcome
    captured: dict[str, Any] = dict(outcome.appended)
    # A ping's answer is a bid: its price and reference are the bid and the bid's id, for
    # the post's mapping (``{{appended.<buyer>.bid_id}}``).
    reference, price = ("bid_id", "bid") if attempt.phase == "ping" else ("reference_id", "price")
    if outcome.reference_id is not None:
        captured[reference] = outcome.reference_id
    if outcome.price is not None:
        captured[price] = str(outcome.price)
    if not captured:
        return lead
    section = lead.envelope.get("appended")
    appended = dict(section) if isinstance(section, dict) else {}
    appended[attempt.destination_id] = captured
    return Lead(lead.id, {**lead.envelope, "appended": appended})


def _holds(condition: Evaluate, lead: Lead) -> bool:
    try:
        return is_true(condition(lead.envelope))
    except EvaluationError:  # a rule that cannot be read for this lead does not hold for it
        return False
