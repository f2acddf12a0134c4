"""Lead + flows → which destinations get the lead, in what order, and when to stop.

A flow's ``plan`` is a tree of steps: a destination id; ``parallel`` (every child, at
once); ``waterfall`` (children in order until one accepts: the lead is sold);
``sequence`` (children in order while each accepts: multi-call APIs, each call reading
what the one before returned); and
``conditional`` (rules on lead data pick the step: the first that holds, or all that hold).
Trees nest: a conditional choice of waterfalls, a CRM copy in parallel with a waterfall.

``route`` runs a plan with a ``deliver`` function (one attempt at one destination), so it
is tested without Kafka or HTTP. Values a destination returns become
``appended.<destination>.*`` on the lead for the steps after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from streams.model import Lead, OutcomeKind
from streams.stages.template import EvaluationError, TemplateError, compile_expression
from streams.stages.template_operators import is_true

if TYPE_CHECKING:
    from streams.stages.attempt import Attempt

Evaluate = Callable[[dict[str, Any]], Any]
Deliver = Callable[[Lead, str], Awaitable["Attempt"]]


# ── configuration ───────────────────────────────────────────────────────────
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParallelSpec(_Spec):
    parallel: list[StepSpec] = Field(min_length=1)


class WaterfallSpec(_Spec):
    waterfall: list[StepSpec] = Field(min_length=1)


class SequenceSpec(_Spec):
    sequence: list[StepSpec] = Field(min_length=1)


class Branch(_Spec):
    when: str
    then: StepSpec


class Choice(_Spec):
    rules: list[Branch] = Field(min_length=1)
    otherwise: StepSpec | None = Field(default=None, alias="else")
    mode: Literal["first", "all"] = "first"


class ConditionalSpec(_Spec):
    conditional: Choice


StepSpec = Union[str, ParallelSpec, WaterfallSpec, SequenceSpec, ConditionalSpec]  # noqa: UP007 - recursive


class Flow(_Spec):
    """An input selection (``when``, optional) and the plan for the leads it selects."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    when: str | None = None
    plan: StepSpec


for _model in (ParallelSpec, WaterfallSpec, SequenceSpec, Branch, Choice, ConditionalSpec, Flow):
    _model.model_rebuild()


# ── compiled plans ──────────────────────────────────────────────────────────
@dataclass(frozen=True, slots=True)
class Send:
    destination_id: str


@dataclass(frozen=True, slots=True)
class Parallel:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Waterfall:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class InOrder:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Conditional:
    branches: tuple[tuple[Evaluate, Step], ...]
    otherwise: Step | None
    first_only: bool


Step = Send | Parallel | Waterfall | InOrder | Conditional


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    id: str
    selects: Evaluate | None
    plan: Step


def compile_flow(flow: Flow, known: set[str]) -> CompiledFlow:
    """Raise ValueError naming the place of an unknown destination or a bad condition."""
    selects = _condition(flow.when, "when") if flow.when else None
    return CompiledFlow(flow.id, selects, _compile(flow.plan, known, "plan"))


def _compile(spec: StepSpec, known: set[str], where: str) -> Step:
    if isinstance(spec, str):
        if spec not in known:
            raise ValueError(f"{where}: no destination {spec!r}")
        return Send(spec)
    if isinstance(spec, ParallelSpec):
        return Parallel(
            tuple(_compile(s, known, f"{where}.parallel[{i}]") for i, s in enumerate(spec.parallel))
        )
    if isinstance(spec, WaterfallSpec):
        return Waterfall(
            tuple(
                _compile(s, known, f"{where}.waterfall[{i}]") for i, s in enumerate(spec.waterfall)
            )
        )
    if isinstance(spec, SequenceSpec):
        return InOrder(
            tuple(_compile(s, known, f"{where}.sequence[{i}]") for i, s in enumerate(spec.sequence))
        )
    choice = spec.conditional
    branches = tuple(
        (
            _condition(b.when, f"{where}.conditional.rules[{i}].when"),
            _compile(b.then, known, f"{where}.conditional.rules[{i}].then"),
        )
        for i, b in enumerate(choice.rules)
    )
    otherwise = (
        _compile(choice.otherwise, known, f"{where}.conditional.else") if choice.otherwise else None
    )
    return Conditional(branches, otherwise, choice.mode == "first")


def _condition(text: str, where: str) -> Evaluate:
    try:
        return compile_expression(text).evaluate
    except TemplateError as exc:
        raise ValueError(f"{where}: {exc}") from None


def default_flow(destination_ids: Sequence[str]) -> CompiledFlow:
    """No flows configured: every destination gets every lead, at once."""
    return CompiledFlow("all", None, Parallel(tuple(Send(d) for d in destination_ids)))


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


async def route(step: Step, lead: Lead, deliver: Deliver) -> Routed:
    if isinstance(step, Send):
        attempt = await deliver(lead, step.destination_id)
        accepted = attempt.outcome.kind is OutcomeKind.SUCCESS
        return Routed([attempt], accepted, with_appended(lead, attempt))
    if isinstance(step, Waterfall):
        attempts: list[Attempt] = []
        for child in step.steps:
            routed = await route(child, lead, deliver)
            attempts += routed.attempts
            lead = routed.lead
            if routed.accepted:  # sold: the rest of the waterfall never sees it
                return Routed(attempts, True, lead)
        return Routed(attempts, False, lead)
    if isinstance(step, InOrder):
        attempts = []
        for child in step.steps:
            routed = await route(child, lead, deliver)
            attempts += routed.attempts
            lead = routed.lead
            if not routed.accepted:  # a later call needs what this one should have returned
                return Routed(attempts, False, lead)
        return Routed(attempts, True, lead)
    if isinstance(step, Parallel):
        return _merge(lead, await asyncio.gather(*(route(c, lead, deliver) for c in step.steps)))
    chosen = [then for when, then in step.branches if _holds(when, lead)]
    if step.first_only:
        chosen = chosen[:1]
    if not chosen and step.otherwise is not None:
        chosen = [step.otherwise]
    return _merge(lead, await asyncio.gather(*(route(c, lead, deliver) for c in chosen)))


def _merge(lead: Lead, results: Sequence[Routed]) -> Routed:
    attempts = [a for r in results for a in r.attempts]
    for attempt in attempts:
        lead = with_appended(lead, attempt)
    return Routed(attempts, any(r.accepted for r in results), lead)


def with_appended(lead: Lead, attempt: Attempt) -> Lead:
    """The lead with what ``attempt``'s destination returned, as appended.<destination>.*."""
    outcome = attempt.outcome
    captured: dict[str, Any] = dict(outcome.appended)
    if outcome.reference_id is not None:
        captured["reference_id"] = outcome.reference_id
    if outcome.price is not None:
        captured["price"] = str(outcome.price)
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
