"""A lead's routing, one attempt at a time, with its state in a table keyed by lead id.

The state of a lead in flight is its flow, the lead as it came in, and the attempts known
so far by plan step (``known``): ``advance`` replays the plan over them, so the state is
small, survives a restart, and any worker owning the partition can go on with it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from streams.control.messages import attempt_from_dict
from streams.model import Lead
from streams.stages.routing import CompiledFlow, Needed, Progress, advance


@dataclass(frozen=True, slots=True)
class Step:
    """What to do after a lead came in or an attempt came back: deliveries to ask for, or
    (``finished``) the lead is done and its outcome can be written."""

    needed: list[Needed]
    finished: Progress | None
    lead: Lead | None  # as it came in (for its dead letter), with ``finished``


NOTHING = Step([], None, None)


class Router:
    def __init__(self, flows: Mapping[str, CompiledFlow], routes: MutableMapping[str, Any]) -> None:
        self._flows = flows
        self.routes = routes

    def flow(self, flow_id: str) -> CompiledFlow | None:
        return self._flows.get(flow_id)

    def start(self, lead: Lead, flow: CompiledFlow) -> Step:
        state = self.routes.get(lead.id)
        if state is not None:  # seen again while in flight: a restart, a replay
            return self._go_on(lead.id, state, again=True)
        state = {"flow": flow.id, "lead": lead.envelope, "known": {}, "asked": []}
        return self._go_on(lead.id, state)

    def record(self, lead_id: str, path: str, attempt: dict[str, Any]) -> Step:
        """``attempt`` as the work agent sent it (messages.attempt_to_dict): kept as it is,
        read by ``_go_on``, which raises MessageError for one it cannot read."""
        state = self.routes.get(lead_id)
        if state is None:  # finished: a repeat after a restart
            return NOTHING
        if path in state["known"]:
            return self._go_on(lead_id, state, again=True)
        state = {**state, "known": {**state["known"], path: attempt}}
        return self._go_on(lead_id, state)

    def _go_on(self, lead_id: str, state: dict[str, Any], again: bool = False) -> Step:
        """``again``: the lead or attempt was seen before. Its state may have been stored
        by a worker that stopped before its asks reached the work topic, so everything
        still out is asked for again (the desk drops an ask it is already working on,
        and never sends twice to a destination that accepted)."""
        lead = Lead(lead_id, state["lead"])
        known = {path: attempt_from_dict(doc) for path, doc in state["known"].items()}
        flow = self._flows.get(state["flow"])
        if flow is None:  # the flow left the configuration while the lead was in flight
            self.routes.pop(lead_id, None)
            return Step([], Progress(list(known.values()), False, lead, []), lead)
        progress = advance(flow.plan, lead, known)
        if progress.finished:
            self.routes.pop(lead_id, None)
            return Step([], progress, lead)
        if again:
            return Step(progress.needed, None, None)
        asked = set(state["asked"])
        new = [need for need in progress.needed if need.path not in asked]
        self.routes[lead_id] = {**state, "asked": [*state["asked"], *(n.path for n in new)]}
        return Step(new, None, None)
