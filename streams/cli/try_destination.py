"""``courier destinations test``: one lead to one destination, the request shown masked,
so a user can check a connection (or, with --dry-run, the request) before going live.
A ping-post buyer is pinged first, as an auction does, and posted to with its bid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from streams.auth import OAuth2Auth
from streams.config import Destination
from streams.config.policies import EgressPolicy, ForwardProxy
from streams.errors import MappingError
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import Attempt, attempt_delivery, invalid_data
from streams.stages.delivery import HttpSender, RequestSummary, summarize
from streams.stages.envelope import Rejected, parse_envelope
from streams.stages.request import build_request
from streams.stages.routing import bid_of, bid_valid_until, with_appended

Echo = Callable[[str], None]


# A dry run's stand-in for what a ping would answer, for the post's mapping.
DRY_RUN_BID = {"bid": "0.00", "bid_id": "bid-id-of-the-ping"}


async def run_destination_test(
    destination: Destination,
    raw_lead: bytes,
    dry_run: bool,
    echo: Echo,
    egress: EgressPolicy | None = None,
    ping_only: bool = False,
    proxy: ForwardProxy | None = None,
) -> int:
    """Exit status: 0 accepted (or built, for a dry run; a bid, with ``ping_only``), 1
    otherwise. A destination with a ``ping`` is pinged first; no bid, no post."""
    lead = parse_envelope(raw_lead, 16 * 1024 * 1024)
    if isinstance(lead, Rejected):
        echo(f"lead: {lead.reason}: {lead.detail}")
        return 1
    if dry_run:
        return _dry_run(lead, destination, ping_only, echo)
    sender = HttpSender(max_connections=2, egress=egress, proxy=proxy)
    try:
        if destination.ping is not None:
            ping = replace(await attempt_delivery(lead, destination.pinged, sender), phase="ping")
            echo("ping:")
            bid = _show_ping(ping, echo)
            if bid is None or ping_only:
                return 0 if bid is not None else 1
            lead = with_appended(lead, ping)
            echo("post:")
        attempt = await attempt_delivery(lead, destination, sender)
    finally:
        await sender.close()
    return _show_attempt(attempt, echo)


def _dry_run(lead: Lead, destination: Destination, ping_only: bool, echo: Echo) -> int:
    """The requests as they would go, masked: a buyer's ping, then its post with a stand-in
    bid (the ping alone with ``ping_only``)."""
    if destination.ping is not None:
        echo("ping:")
        if not _show_built(lead, destination.pinged, echo):
            return 1
        if ping_only:
            echo("(dry run: nothing sent)")
            return 0
        appended = {**lead.envelope.get("appended", {}), destination.id: DRY_RUN_BID}
        lead = Lead(lead.id, {**lead.envelope, "appended": appended})
        echo(f"post (with a stand-in bid: {DRY_RUN_BID}):")
    if not _show_built(lead, destination, echo):
        return 1
    echo("(dry run: nothing sent)")
    return 0


def _show_built(lead: Lead, destination: Destination, echo: Echo) -> bool:
    try:
        payload = destination.compiled_mapping.apply(lead)
        # A placeholder token: a dry run must not ask the token endpoint for one.
        token = "****" if isinstance(destination.auth, OAuth2Auth) else None
        request = build_request(lead, payload, destination, token)
    except MappingError as exc:
        echo(f"outcome: failure — {invalid_data(exc).reason}")
        return False
    _show(summarize(request), echo)
    echo(request.body.decode("utf-8", errors="replace"))
    return True


def _show_ping(ping: Attempt, echo: Echo) -> Decimal | None:
    """The ping's request and its answer read as an auction reads it; → its bid, if any."""
    if ping.request is not None:
        _show(ping.request, echo)
    status = ping.http_status if ping.http_status is not None else "-"
    echo(f"HTTP {status} in {ping.recipient_ms:.0f} ms")
    bid = bid_of(ping)
    if bid is None:
        said = "a bid of nothing" if ping.outcome.kind is OutcomeKind.SUCCESS else None
        echo(f"no bid — {said or ping.outcome.reason}")
        if ping.outcome.raw:
            echo(f"answer: {ping.outcome.raw[:500]}")
        return None
    # As an auction with the default bid_ttl_s (60 s) would hold it.
    until = datetime.fromtimestamp(bid_valid_until(ping, 60.0), UTC)
    echo(
        f"bid: {bid:.2f}, bid id: {ping.outcome.reference_id or '-'}, valid until {until:%H:%M:%S} UTC"
    )
    return bid


def _show_attempt(attempt: Attempt, echo: Echo) -> int:
    if attempt.request is not None:
        _show(attempt.request, echo)
    outcome = attempt.outcome
    status = attempt.http_status if attempt.http_status is not None else "-"
    echo(f"outcome: {outcome.kind.value} ({outcome.category.value}) — {outcome.reason}")
    echo(f"HTTP {status} in {attempt.recipient_ms:.0f} ms")
    if outcome.reference_id:
        echo(f"reference id: {outcome.reference_id}")
    if outcome.raw:
        echo(f"answer: {outcome.raw[:500]}")
    return 0 if outcome.kind.value == "success" else 1


def _show(request: RequestSummary, echo: Echo) -> None:
    echo(f"{request.method} {request.url}")
    for name, value in request.headers.items():
        echo(f"{name}: {value}")
    echo(f"({request.body_bytes} bytes of body)")
