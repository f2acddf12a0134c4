"""Flows: which destinations get a lead, in what order, and when to stop, as configured.

A flow's ``plan`` is a tree of steps: a destination id; ``parallel`` (every child, at
once); ``waterfall`` (children in order until one accepts: the lead is sold);
``sequence`` (children in order while each accepts: multi-call APIs, each call reading
what the one before returned); and
``conditional`` (rules on lead data pick the step: the first that holds, or all that hold).
Trees nest: a conditional choice of waterfalls, a CRM copy in parallel with a waterfall.

Here the YAML is validated and compiled into plain steps; streams/stages/routing.py runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from streams.template.parser import TemplateError, compile_expression

Evaluate = Callable[[dict[str, Any]], Any]


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
