"""What a worker says when it starts: where it reads and writes, who gets leads, and what
in its configuration a user would want to hear about before the first lead goes out.

Printed whatever the log level (at the default level the worker is otherwise silent), with
no credentials: the broker and recipients by host only."""

from __future__ import annotations

import asyncio
import gc
from urllib.parse import urlsplit

from streams.config import DestinationsFile, Settings
from streams.config.flows import (
    Conditional,
    Distribute,
    InOrder,
    Parallel,
    PingPost,
    Send,
    Step,
    Waterfall,
    destinations_in,
    in_no_flow,
    unreachable,
)
from streams.config.settings import DEFAULT_REMEMBER_H


def running_event_loop() -> str:
    """The loop this process's policy makes: uvloop, or asyncio's own."""
    policy = type(asyncio.get_event_loop_policy())
    return "uvloop" if policy.__module__.startswith("uvloop") else "asyncio"


def startup_summary(
    settings: Settings,
    destinations: DestinationsFile,
    embedded: bool = False,
    idempotent: bool = False,
) -> tuple[list[str], list[str]]:
    """(lines, warnings) about this worker's configuration. ``idempotent``: its producer
    is (``kafka_idempotence``, decided with the broker at start)."""
    remembered_h = settings.remember_h(destinations.feedback_window_h())
    lines = [
        f"broker {_broker_hosts(settings.broker)}"
        + (" (embedded Tansu, memory only)" if embedded else "")
        + f", {settings.kafka_security().describe()}",
        f"reads {settings.leads_topic} as group {settings.app_id}; writes events to "
        f"{settings.events_topic}, outcomes to {settings.outcomes_topic}, dead letters to "
        f"{settings.dlq_topic}",
        "producer: "
        + (
            "idempotent (a record sent again is kept once)"
            if idempotent
            else f"not idempotent (COURIER_KAFKA_IDEMPOTENCE={settings.kafka_idempotence})"
        ),
        f"tables: {settings.store}"
        + (f" in {settings.data_dir / settings.app_id}" if settings.store == "rocksdb" else "")
        + f"; finished leads remembered {remembered_h:g} h"
        + (
            " (the longest feedback window)"
            if settings.remember_delivered_h is None and remembered_h > DEFAULT_REMEMBER_H
            else ""
        ),
        f"event loop: {running_event_loop()}; young garbage collections every "
        f"{gc.get_threshold()[0]} allocations",
        "web port: "
        + (
            f"{settings.web_bind}:{settings.web_port} (/readyz, /healthz, /metrics)"
            if settings.web_port is not None
            else "off (COURIER_WEB_PORT)"
        ),
    ]
    warnings: list[str] = []
    enabled = [d for d in destinations.destinations if d.enabled]
    disabled = [d.id for d in destinations.destinations if not d.enabled]
    for destination in enabled:
        host = urlsplit(destination.url).hostname if destination.url else None
        where = f" → {host}" if host else ""
        caps = " (caps)" if destination.caps is not None else ""
        tls = f", TLS with {destination.tls.describe()}" if destination.tls is not None else ""
        own = destination.own_proxy
        through = (
            ""
            if own is None
            else ", direct (not through the worker's proxy)"
            if own == "direct"
            else f", through its own proxy {own.address}"
        )
        lines.append(
            f"destination {destination.id}: {destination.integration}{where}{caps}{tls}{through}"
        )
        if destination.insecure:
            warnings.append(f"destination {destination.id}: plain http allowed (insecure: true)")
        if not destination.tls_verify:
            warnings.append(f"destination {destination.id}: certificates not verified")
        feedback = destination.feedback
        if feedback is not None and feedback.window_h() > remembered_h:
            # Named by the longer of the two: returns, or a status API's polls.
            taken = (
                f"returns are taken for {feedback.return_window_days:g} days"
                if feedback.return_window_days * 24 == feedback.window_h()
                else f"it is polled for {feedback.window_h() / 24:g} days"
            )
            warnings.append(
                f"destination {destination.id}: {taken} but sales are remembered "
                f"{remembered_h:g} h (COURIER_REMEMBER_DELIVERED_H): later "
                "feedback is refused as 'Unknown lead'"
            )
    if disabled:
        lines.append(f"disabled: {', '.join(disabled)}")
    if not enabled:
        warnings.append(
            "every destination is disabled: each lead will be reported 'Destination disabled'"
        )
    proxy = settings.forward_proxy()
    if proxy is not None:
        direct = f"; direct: {settings.no_proxy}" if settings.no_proxy.strip() else ""
        lines.append(f"deliveries through the proxy {proxy.address}{direct}")
    # Without flows in the file, one named "all" sends to every enabled destination at once.
    for flow in destinations.compiled_flows:
        lines.append(f"flow {flow.id}: {_plan(flow.plan)}")
        named = destinations_in(flow.plan)
        if named and not named & {d.id for d in enabled}:
            warnings.append(f"flow {flow.id}: every destination it names is disabled")
    for flow_id in unreachable(destinations.compiled_flows):
        warnings.append(
            f"flow {flow_id} comes after a flow without 'when' (which takes every lead): "
            "it is never chosen"
        )
    for destination_id in in_no_flow([d.id for d in enabled], destinations.compiled_flows):
        warnings.append(f"destination {destination_id} is in no flow: it is never sent a lead")
    if settings.egress == "any":
        warnings.append(
            "COURIER_EGRESS=any: recipients on private and loopback addresses are allowed"
        )
    if not idempotent and settings.kafka_idempotence == "auto":
        warnings.append(
            "the broker does not take an idempotent producer (the embedded Tansu does not): "
            "a record the producer sends again after a timeout can be written twice, with "
            "the same event id (consumers de-duplicate on it; docs/brokers.md)"
        )
    if settings.store == "memory" and not embedded:
        warnings.append(
            "tables in memory: a restart forgets remembered acceptances, cap counts and "
            "parked retries until their changelogs are read again"
        )
    return lines, warnings


def _broker_hosts(broker: str | None) -> str:
    """Hosts and ports only: a URL could carry credentials one day."""
    if broker is None:
        return "(none)"
    hosts = broker.split("://", 1)[-1].split(";")[0]
    return ",".join(h.rsplit("@", 1)[-1] for h in hosts.split(","))


def _plan(step: Step) -> str:
    if isinstance(step, Send):
        return step.destination_id
    if isinstance(step, Conditional):
        branches = [_plan(then) for _, then in step.branches]
        if step.otherwise is not None:
            branches.append(f"else {_plan(step.otherwise)}")
        return f"conditional({', '.join(branches)})"
    if isinstance(step, PingPost):
        otherwise = f", else {_plan(step.otherwise)}" if step.otherwise is not None else ""
        return f"ping_post({', '.join(step.buyers)}, floor {step.floor}{otherwise})"
    if isinstance(step, Distribute):
        if step.kind == "weighted":
            shares = ", ".join(
                f"{d} {w}" for d, w in zip(step.destinations, step.weights, strict=True)
            )
            return f"weighted({shares})"
        by = f" by {step.by}" if step.by else ""
        return f"{step.kind}{by}({', '.join(step.destinations)})"
    kind = {Parallel: "parallel", Waterfall: "waterfall", InOrder: "sequence"}[type(step)]
    return f"{kind}({', '.join(_plan(s) for s in step.steps)})"
