"""Flows: which destinations get a lead, in what order, and when to stop, as configured.

A flow's ``plan`` is a tree of steps: a destination id; ``parallel`` (every child, at
once); ``waterfall`` (children in order until one accepts: the lead is sold);
``sequence`` (children in order while each accepts: multi-call APIs, each call reading
what the one before returned); and
``conditional`` (rules on lead data pick the step: the first that holds, or all that hold);
and the distributions, each a waterfall over destinations in an order chosen per lead:
``weighted``, ``round_robin``, ``priority`` and ``performance`` (see ``Distribute``); and
``ping_post``, an auction among buyers (see ``PingPost``).
Trees nest: a conditional choice of waterfalls, a CRM copy in parallel with a waterfall.

Here the YAML is validated and compiled into plain steps; streams/stages/routing.py runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from streams.config.unknown import closest
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


# Distribution: a waterfall over destinations in an order chosen per lead (see Distribute).
DestinationIds = list[str]


class WeightedSpec(_Spec):
    weighted: dict[str, int] = Field(min_length=1)  # destination id → weight (≥ 1)


class RoundRobinSpec(_Spec):
    round_robin: DestinationIds = Field(min_length=1)


class PriorityChoice(_Spec):
    by: Literal["price"] = "price"
    among: DestinationIds = Field(min_length=1)


class PrioritySpec(_Spec):
    priority: PriorityChoice


class CapacitySpec(_Spec):
    capacity: DestinationIds = Field(min_length=1)


class PerformanceChoice(_Spec):
    by: Literal["acceptance", "revenue"] = "acceptance"
    window_min: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    among: DestinationIds = Field(min_length=1)


class PerformanceSpec(_Spec):
    performance: PerformanceChoice


class Auction(_Spec):
    buyers: DestinationIds = Field(min_length=1)
    ping_timeout_ms: int = Field(default=800, ge=50, le=30_000)
    floor: Decimal = Field(default=Decimal(0), ge=0)
    bid_ttl_s: float = Field(default=60.0, gt=0, le=86_400)
    # What follows the bids: the best one is posted to first (the only way, as the feature's
    # own example writes it; a file may say it or not).
    then: Literal["post_best"] = "post_best"
    otherwise: StepSpec | None = Field(default=None, alias="else")


class PingPostSpec(_Spec):
    ping_post: Auction


# A step is told by its one key (a text is a destination id), so a step that is none of
# them is one problem ("not a step", with the key it was closest to), not one for each
# kind of step it failed to be (a misspelt ``waterfal`` gave 22 lines).
STEP_KINDS: dict[str, type[_Spec]] = {
    "parallel": ParallelSpec,
    "waterfall": WaterfallSpec,
    "sequence": SequenceSpec,
    "conditional": ConditionalSpec,
    "weighted": WeightedSpec,
    "round_robin": RoundRobinSpec,
    "priority": PrioritySpec,
    "capacity": CapacitySpec,
    "performance": PerformanceSpec,
    "ping_post": PingPostSpec,
}
STEP_TAG = "step:"  # a union member's tag in a problem's path: not a part of the file
NOT_A_STEP = "not_a_step"


def _kinds_in(block: dict[str, Any]) -> list[str]:
    return [kind for kind in STEP_KINDS if kind in block]


def _step_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return f"{STEP_TAG}id"
    if isinstance(value, _Spec):
        kinds = [kind for kind, model in STEP_KINDS.items() if isinstance(value, model)]
    elif isinstance(value, dict):
        kinds = _kinds_in(value)
    else:
        return None
    return f"{STEP_TAG}{kinds[0]}" if len(kinds) == 1 else None


def not_a_step(value: Any) -> str:
    """Why ``value`` is not a step, for the file's author."""
    if isinstance(value, dict):
        kinds = _kinds_in(value)
        if kinds:
            return f"not a step: it has {' and '.join(kinds)}; a step is one of them"
        for key in value:
            meant = closest(str(key), STEP_KINDS)
            if meant is not None:
                return f"not a step: {str(key)!r} is unknown; did you mean {meant!r}?"
    return f"not a step: a destination id, or a block with one of {', '.join(STEP_KINDS)}"


StepSpec = Annotated[
    Union[  # noqa: UP007 - recursive
        Annotated[str, Tag(f"{STEP_TAG}id")],
        Annotated[ParallelSpec, Tag(f"{STEP_TAG}parallel")],
        Annotated[WaterfallSpec, Tag(f"{STEP_TAG}waterfall")],
        Annotated[SequenceSpec, Tag(f"{STEP_TAG}sequence")],
        Annotated[ConditionalSpec, Tag(f"{STEP_TAG}conditional")],
        Annotated[WeightedSpec, Tag(f"{STEP_TAG}weighted")],
        Annotated[RoundRobinSpec, Tag(f"{STEP_TAG}round_robin")],
        Annotated[PrioritySpec, Tag(f"{STEP_TAG}priority")],
        Annotated[CapacitySpec, Tag(f"{STEP_TAG}capacity")],
        Annotated[PerformanceSpec, Tag(f"{STEP_TAG}performance")],
        Annotated[PingPostSpec, Tag(f"{STEP_TAG}ping_post")],
    ],
    Discriminator(
        _step_kind,
        custom_error_type=NOT_A_STEP,
        custom_error_message="not a step",  # said in full by ``not_a_step``
    ),
]


class Flow(_Spec):
    """An input selection (``when``, optional) and the plan for the leads it selects."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    when: str | None = None
    plan: StepSpec


for _model in (
    ParallelSpec,
    WaterfallSpec,
    SequenceSpec,
    Branch,
    Choice,
    ConditionalSpec,
    WeightedSpec,
    RoundRobinSpec,
    PrioritySpec,
    CapacitySpec,
    PerformanceSpec,
    Auction,
    PingPostSpec,
    Flow,
):
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


@dataclass(frozen=True, slots=True)
class Distribute:
    """A waterfall whose order is chosen per lead: ``weighted`` (each destination first for
    its share of leads, smooth weighted round robin), ``round_robin`` (equal weights),
    ``priority`` (highest fixed ``price`` first), ``capacity`` (most cap left first),
    ``performance`` (best acceptance rate or
    revenue per attempt over the last ``window_s``). The order a lead got is kept in its
    state, so it is the same after a restart or on another worker."""

    flow_id: str
    path: str
    kind: Literal["weighted", "priority", "capacity", "performance"]
    destinations: tuple[str, ...]
    weights: tuple[int, ...] = ()
    by: str = ""
    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PingPost:
    """An auction: every buyer pinged at once with a partial lead (its ``ping``), the full
    lead posted to the highest bid at or above ``floor``, then the next best bid still
    valid if a post is refused; no bid (or every post refused): ``otherwise``."""

    buyers: tuple[str, ...]
    ping_timeout_s: float
    floor: Decimal
    bid_ttl_s: float
    otherwise: Step | None


Step = Send | Parallel | Waterfall | InOrder | Conditional | Distribute | PingPost


@dataclass(frozen=True, slots=True)
class CompiledFlow:
    id: str
    selects: Evaluate | None
    plan: Step


def compile_flow(flow: Flow, known: set[str], pinged: set[str] | None = None) -> CompiledFlow:
    """Raise ValueError naming the place of every unknown destination and bad condition,
    one a line. ``pinged``: the destinations with a ``ping`` (the only ones an auction may ping)."""
    problems: list[str] = []
    selects = _checked_condition(flow.when, "when", problems) if flow.when else None
    plan = _compile(flow.plan, known, "plan", problems, flow.id, pinged or set())
    if problems:
        raise ValueError("\n".join(problems))
    return CompiledFlow(flow.id, selects, plan)


def _compile(
    spec: StepSpec,
    known: set[str],
    where: str,
    problems: list[str],
    flow_id: str = "",
    pinged: frozenset[str] | set[str] = frozenset(),
) -> Step:
    """The step, every problem of it noted in ``problems`` (a step with problems compiles
    to one that is never used: the flow is refused)."""

    def inner(child: StepSpec, at: str) -> Step:
        return _compile(child, known, at, problems, flow_id, pinged)

    if isinstance(spec, PingPostSpec):
        auction = spec.ping_post
        at = f"{where}.ping_post"
        for i, buyer in enumerate(auction.buyers):
            if buyer not in known:
                problems.append(f"{at}.buyers[{i}]: no destination {buyer!r}")
            elif buyer not in pinged:
                problems.append(f"{at}.buyers[{i}]: {buyer!r} has no ping (its ping: block)")
        if len(set(auction.buyers)) != len(auction.buyers):
            problems.append(f"{at}.buyers: a destination is named twice")
        otherwise = inner(auction.otherwise, f"{at}.else") if auction.otherwise else None
        return PingPost(
            tuple(auction.buyers),
            auction.ping_timeout_ms / 1000,
            auction.floor,
            auction.bid_ttl_s,
            otherwise,
        )
    if isinstance(
        spec, WeightedSpec | RoundRobinSpec | PrioritySpec | CapacitySpec | PerformanceSpec
    ):
        return _distribution(spec, known, where, flow_id, problems)
    if isinstance(spec, str):
        if spec not in known:
            problems.append(f"{where}: no destination {spec!r}")
        return Send(spec)
    if isinstance(spec, ParallelSpec):
        return Parallel(
            tuple(inner(s, f"{where}.parallel[{i}]") for i, s in enumerate(spec.parallel))
        )
    if isinstance(spec, WaterfallSpec):
        return Waterfall(
            tuple(inner(s, f"{where}.waterfall[{i}]") for i, s in enumerate(spec.waterfall))
        )
    if isinstance(spec, SequenceSpec):
        return InOrder(
            tuple(inner(s, f"{where}.sequence[{i}]") for i, s in enumerate(spec.sequence))
        )
    choice = spec.conditional
    branches = tuple(
        (
            _checked_condition(b.when, f"{where}.conditional.rules[{i}].when", problems),
            inner(b.then, f"{where}.conditional.rules[{i}].then"),
        )
        for i, b in enumerate(choice.rules)
    )
    otherwise = inner(choice.otherwise, f"{where}.conditional.else") if choice.otherwise else None
    return Conditional(branches, otherwise, choice.mode == "first")


def _distribution(
    spec: WeightedSpec | RoundRobinSpec | PrioritySpec | CapacitySpec | PerformanceSpec,
    known: set[str],
    where: str,
    flow_id: str,
    problems: list[str],
) -> Distribute:
    if isinstance(spec, WeightedSpec):
        kind, at, ids = "weighted", f"{where}.weighted", list(spec.weighted)
        for destination_id, weight in spec.weighted.items():
            if weight < 1:
                problems.append(f"{at}.{destination_id}: a weight is a whole number ≥ 1")
    elif isinstance(spec, RoundRobinSpec):
        kind, at, ids = "weighted", f"{where}.round_robin", spec.round_robin
    elif isinstance(spec, PrioritySpec):
        kind, at, ids = "priority", f"{where}.priority.among", spec.priority.among
    elif isinstance(spec, CapacitySpec):
        kind, at, ids = "capacity", f"{where}.capacity", spec.capacity
    else:
        kind, at, ids = "performance", f"{where}.performance.among", spec.performance.among
    for i, destination_id in enumerate(ids):
        if destination_id not in known:
            problems.append(f"{at}[{i}]: no destination {destination_id!r}")
    if len(set(ids)) != len(ids):
        problems.append(f"{at}: a destination is named twice")
    weights = tuple(spec.weighted.values()) if isinstance(spec, WeightedSpec) else ()
    if isinstance(spec, RoundRobinSpec):
        weights = (1,) * len(ids)
    by, window_s = "", 0.0
    if isinstance(spec, PrioritySpec):
        by = spec.priority.by
    elif isinstance(spec, PerformanceSpec):
        by, window_s = spec.performance.by, spec.performance.window_min * 60
    return Distribute(flow_id, where, kind, tuple(ids), weights, by, window_s)  # type: ignore[arg-type]


def _checked_condition(text: str, where: str, problems: list[str]) -> Evaluate:
    """The condition; its problem noted instead (and a condition never used)."""
    try:
        return compile_expression(text).evaluate
    except TemplateError as exc:
        problems.append(f"{where}: {exc}")
        return _never


def _never(_: dict[str, Any]) -> bool:
    return False


def default_flow(destination_ids: Sequence[str]) -> CompiledFlow:
    """No flows configured: every destination gets every lead, at once."""
    return CompiledFlow("all", None, Parallel(tuple(Send(d) for d in destination_ids)))


def steps_of(step: Step | None) -> Iterator[Step]:
    """``step`` and every step inside it."""
    if step is None:
        return
    yield step
    if isinstance(step, Parallel | Waterfall | InOrder):
        for child in step.steps:
            yield from steps_of(child)
    elif isinstance(step, Conditional):
        for _, child in step.branches:
            yield from steps_of(child)
        yield from steps_of(step.otherwise)
    elif isinstance(step, PingPost):
        yield from steps_of(step.otherwise)


def performance_windows(flows: Sequence[CompiledFlow]) -> dict[str, float]:
    """Each destination a ``performance`` step ranks → the longest window it is ranked over
    (seconds): what a worker keeps and shares of its attempts to it, and for how long."""
    windows: dict[str, float] = {}
    for flow in flows:
        for step in steps_of(flow.plan):
            if isinstance(step, Distribute) and step.kind == "performance":
                for destination_id in step.destinations:
                    windows[destination_id] = max(windows.get(destination_id, 0.0), step.window_s)
    return windows


def destinations_in(plan: Step) -> set[str]:
    """Every destination a plan may send a lead to (or ping, in an auction)."""
    named: set[str] = set()
    for step in steps_of(plan):
        if isinstance(step, Send):
            named.add(step.destination_id)
        elif isinstance(step, Distribute):
            named.update(step.destinations)
        elif isinstance(step, PingPost):
            named.update(step.buyers)
    return named


def unreachable(flows: Sequence[CompiledFlow]) -> list[str]:
    """The flows after one without ``when`` (which takes every lead): never chosen."""
    for at, flow in enumerate(flows):
        if flow.selects is None:
            return [later.id for later in flows[at + 1 :]]
    return []


def in_no_flow(loaded_ids: Sequence[str], flows: Sequence[CompiledFlow]) -> list[str]:
    """The destinations no flow names: never sent a lead (a typo in a plan, or one added
    to the file and not yet to a flow)."""
    never = set(unreachable(flows))
    named = {d for flow in flows if flow.id not in never for d in destinations_in(flow.plan)}
    return [d for d in loaded_ids if d not in named]
