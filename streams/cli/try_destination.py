"""``courier destinations test``: one lead to one destination, the request shown masked,
so a user can check a connection (or, with --dry-run, the request) before going live."""

from __future__ import annotations

from collections.abc import Callable

from streams.auth import OAuth2Auth
from streams.config import Destination
from streams.config.policies import EgressPolicy
from streams.errors import MappingError
from streams.stages.attempt import attempt_delivery, invalid_data
from streams.stages.delivery import HttpSender, RequestSummary, summarize
from streams.stages.envelope import Rejected, parse_envelope
from streams.stages.request import build_request

Echo = Callable[[str], None]


async def run_destination_test(
    destination: Destination,
    raw_lead: bytes,
    dry_run: bool,
    echo: Echo,
    egress: EgressPolicy | None = None,
) -> int:
    """Exit status: 0 accepted (or built, for a dry run), 1 otherwise."""
    lead = parse_envelope(raw_lead, 16 * 1024 * 1024)
    if isinstance(lead, Rejected):
        echo(f"lead: {lead.reason}: {lead.detail}")
        return 1
    if dry_run:
        try:
            payload = destination.compiled_mapping.apply(lead)
            # A placeholder token: a dry run must not ask the token endpoint for one.
            token = "****" if isinstance(destination.auth, OAuth2Auth) else None
            request = build_request(lead, payload, destination, token)
        except MappingError as exc:
            echo(f"outcome: failure — {invalid_data(exc).reason}")
            return 1
        _show(summarize(request), echo)
        echo(request.body.decode("utf-8", errors="replace"))
        echo("(dry run: nothing sent)")
        return 0
    sender = HttpSender(max_connections=2, egress=egress)
    try:
        attempt = await attempt_delivery(lead, destination, sender)
    finally:
        await sender.close()
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
