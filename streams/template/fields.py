"""Lead + a destination's mapping → the payload to send (or a MappingError naming the field).

A mapping is ``{target: spec}``. ``target`` may be dotted to build nested objects
(``contact.email``). ``spec`` is either text — an envelope path (``lead.first_name``,
``appended.credit_score``, or a bare ``email`` meaning ``lead.email``) or a template with
``{{ }}`` — or a FieldSpec for conversions, defaults, required fields and first-match cases.
Rules (``if COND then field = EXPR else ...``) run after the fields, in order.
Everything is compiled once, when the configuration loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.errors import MappingError
from streams.model import Lead
from streams.template import conversions as convert
from streams.template.functions import is_empty
from streams.template.operators import is_true
from streams.template.parser import (
    ENVELOPE_ROOTS,
    CompiledRule,
    EvaluationError,
    TemplateError,
    compile_expression,
    compile_path,
    compile_rule,
    compile_template,
    is_template,
)

Evaluate = Callable[[dict[str, Any]], Any]
# Read through template.py: it falls back to submission.timestamp.
SUBMISSION_DATE = ("submission", "date")
FieldType = Literal["string", "number", "integer", "boolean", "date", "phone"]
DEFAULT_DATE_FORMAT = "YYYY-MM-DDTHH:mm:ssZZ"


class Case(BaseModel):
    """One branch of a first-match list: ``when`` an expression, ``value`` text or template."""

    model_config = ConfigDict(extra="forbid")

    when: str | None = None  # None: the fallback branch
    value: Any = None


class FieldSpec(BaseModel):
    """A field with options. Exactly one source: ``from``, ``template``, ``value`` or ``cases``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    template: str | None = None
    value: Any = None
    cases: list[Case] | None = None
    type: FieldType | None = None
    format: str | None = None  # date tokens, or E164/NATIONAL/INTERNATIONAL/DIGITS/'###' mask
    timezone: str | None = None  # output time zone of a date
    input_timezone: str = "UTC"  # how to read a date written without an offset
    region: str = "US"  # default country of phone numbers without +code
    locale: str = "en_US"  # how to read numbers written as text ("1.250,00" in de_DE)
    true_value: Any = True
    false_value: Any = False
    trim: bool = True
    case: Literal["upper", "lower", "title"] | None = None
    default: Any = None
    required: bool = False
    # Empty (missing, null or blank) after the default: leave the key out, send null, or
    # send it as it is.
    empty: Literal["omit", "null", "keep"] = "omit"

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [n for n in ("from_", "template", "value", "cases") if n in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of from, template, value, cases")
        return self


MappingSpec = Mapping[str, "str | FieldSpec"]


@dataclass(frozen=True, slots=True)
class CompiledField:
    target: tuple[str, ...]
    name: str  # what an error calls the field: its source path when plain, else the target
    read: Evaluate
    finish: Callable[[Any], Any] | None  # conversion; None when the value goes as it is
    spec: FieldSpec | None
    copies: tuple[str, ...] | None = None  # the envelope path, when a plain copy
    # ``read`` is a template's unguarded callable: a ConversionError it raises is named
    # after this block (see CompiledTemplate.unguarded).
    failing_block: str = ""


Step = Callable[[dict[str, Any], dict[str, Any]], None]  # (envelope, payload) -> None


# What Python's numbers and dates raise for values past their range (a 30-digit amount,
# a date of 5,000 digits): lead data, so one field fails, named, never the worker.
OUT_OF_RANGE = (ArithmeticError, ValueError)


def out_of_range(name: str, exc: Exception) -> MappingError:
    """Named by the exception's type only: its message may quote the value."""
    return MappingError(name, f"{name}: a value out of range ({type(exc).__name__})")


class CompiledMapping:
    """A mapping ready to apply: a list of steps built once, run in order for each lead."""

    __slots__ = ("_steps", "fields", "rules")

    def __init__(self, fields: list[CompiledField], rules: list[CompiledRule]) -> None:
        self.fields = fields
        self.rules = rules
        self._steps = _plan_steps(fields, rules)

    def apply(self, lead: Lead) -> dict[str, Any]:
        envelope = lead.envelope
        payload: dict[str, Any] = {}
        for step in self._steps:
            step(envelope, payload)
        return payload

    def problems(self, lead: Lead) -> list[MappingError]:
        """Every field's and rule's problem with this lead, in order (a dry run shows them
        all; a delivery stops at the first, so this runs each field as a step of its own)."""
        envelope = lead.envelope
        payload: dict[str, Any] = {}
        found: list[MappingError] = []
        one_by_one = [_field_step(f) for f in self.fields]
        one_by_one += [_rule_step(n, rule) for n, rule in enumerate(self.rules, start=1)]
        for step in one_by_one:
            try:
                step(envelope, payload)
            except MappingError as exc:
                found.append(exc)
        return found


def _plan_steps(fields: list[CompiledField], rules: list[CompiledRule]) -> list[Step]:
    """Most fields are plain copies or plain templates (no options, a top-level target):
    consecutive ones of a kind become one step, a loop with no call per field. Every
    other field and rule is a step of its own. Payload key order stays as written."""
    steps: list[Step] = []
    run: list[CompiledField] = []  # consecutive fields one step can take
    for field in fields:
        if run and _run_kind(run[0]) != _run_kind(field):
            steps.append(_run_step(run))
            run = []
        if _run_kind(field) is None:
            steps.append(_field_step(field))
        else:
            run.append(field)
    if run:
        steps.append(_run_step(run))
    steps.extend(_rule_step(number, rule) for number, rule in enumerate(rules, start=1))
    return steps


def _run_kind(field: CompiledField) -> str | None:
    """→ "copy:<section>" for a plain copy from one section, "template" for a plain
    template field, None for a field with options or a nested target."""
    if field.spec is not None or len(field.target) != 1:
        return None
    path = field.copies
    if path is None:
        return "template"
    if len(path) == 2 and path != SUBMISSION_DATE:
        return f"copy:{path[0]}"
    return None


def _run_step(run: list[CompiledField]) -> Step:
    if run[0].copies is not None:
        return _copy_step(run[0].copies[0], [(f.target[0], f.copies[-1]) for f in run if f.copies])
    return _templates_step(run)


def _copy_step(section_name: str, pairs: list[tuple[str, str]]) -> Step:
    copies = tuple(pairs)

    def copy(envelope: dict[str, Any], payload: dict[str, Any]) -> None:
        section = envelope.get(section_name)
        if type(section) is not dict:
            return
        for key, name in copies:
            value = section.get(name)
            # JSON input holds no Decimal: what is read here goes out as it is.
            if value is not None and value != "":
                payload[key] = value

    return copy


def _templates_step(run: list[CompiledField]) -> Step:
    templates = tuple((f.target[0], f.read) for f in run)
    names = {f.target[0]: (f.name, f.failing_block) for f in run}

    def evaluate(envelope: dict[str, Any], payload: dict[str, Any]) -> None:
        key = ""
        try:
            for key, read in templates:
                value = read(envelope)
                # Trimmed as ``{template: …}`` trims (its ``trim`` defaults to true); a
                # template of blanks ("{{first_name}} {{last_name}}" with neither) is empty.
                if type(value) is str:
                    value = value.strip()
                if value is None or value == "":
                    continue
                payload[key] = convert.json_number(value) if type(value) is Decimal else value
        except EvaluationError as exc:
            name = names[key][0]
            raise MappingError(name, f"template {name}: {exc}") from None
        except convert.ConversionError as exc:
            name, block = names[key]
            raise MappingError(name, f"template {name}: {block}: {exc}") from None
        except OUT_OF_RANGE as exc:
            raise out_of_range(names[key][0], exc) from None

    return evaluate


def _field_step(field: CompiledField) -> Step:
    read, name, target, block = field.read, field.name, field.target, field.failing_block

    def step(envelope: dict[str, Any], payload: dict[str, Any]) -> None:
        try:
            value = read(envelope)
        except EvaluationError as exc:
            raise MappingError(name, f"template {name}: {exc}") from None
        except convert.ConversionError as exc:
            raise MappingError(name, f"template {name}: {block}: {exc}") from None
        except OUT_OF_RANGE as exc:
            raise out_of_range(name, exc) from None
        if field.spec is not None:
            _apply_spec(payload, field, value)
            return
        if type(value) is str and field.copies is None:  # a template: trimmed, as above
            value = value.strip()
        if not (value is None or value == "" or (type(value) is str and value.isspace())):
            _assign(payload, target, _plain(value))

    return step


def _rule_step(number: int, rule: CompiledRule) -> Step:
    def step(envelope: dict[str, Any], payload: dict[str, Any]) -> None:
        _apply_rule(payload, envelope, number, rule)

    return step


def _apply_spec(payload: dict[str, Any], field: CompiledField, value: Any) -> None:
    spec = field.spec
    assert spec is not None
    if spec.trim and isinstance(value, str):
        value = value.strip()
    if is_empty(value) and spec.default is not None:
        value = spec.default
    if is_empty(value):
        if spec.required:
            raise MappingError(field.name, f"{field.name} is required")
        if spec.empty == "omit":
            return
        _assign(payload, field.target, None if spec.empty == "null" else value)
        return
    if field.finish is not None:
        try:
            value = field.finish(value)
        except convert.ConversionError as exc:
            raise MappingError(field.name, f"{field.name}: {exc}") from None
        except OUT_OF_RANGE as exc:
            raise out_of_range(field.name, exc) from None
    if spec.case is not None and isinstance(value, str):
        value = {"upper": str.upper, "lower": str.lower, "title": str.title}[spec.case](value)
    _assign(payload, field.target, _plain(value))


def _apply_rule(
    payload: dict[str, Any], envelope: dict[str, Any], number: int, rule: CompiledRule
) -> None:
    name = f"rule {number}"
    try:
        branch = rule.then if is_true(rule.condition(envelope)) else rule.otherwise
        for target, evaluate in branch:
            _assign(payload, target, _plain(evaluate(envelope)))
    except EvaluationError as exc:
        raise MappingError(name, f"{name}: {exc}") from None
    except OUT_OF_RANGE as exc:
        raise out_of_range(name, exc) from None


def _plain(value: Any) -> Any:
    """Decimals from arithmetic become JSON numbers."""
    return convert.json_number(value) if isinstance(value, Decimal) else value


def _assign(payload: dict[str, Any], target: tuple[str, ...], value: Any) -> None:
    node = payload
    for segment in target[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[target[-1]] = value


# ── compiling ─────────────────────────────────────────────────────────────
def compile_mapping(spec: MappingSpec, rules: list[str] | None = None) -> CompiledMapping:
    """Compile every field and rule; raise ValueError listing each problem with its place."""
    problems: list[str] = []
    fields: list[CompiledField] = []
    for target, field_spec in spec.items():
        try:
            fields.append(_compile_field(target, field_spec))
        except (TemplateError, convert.ConversionError, ValueError) as exc:
            problems.append(f"mapping.{target}: {exc}")
    compiled_rules: list[CompiledRule] = []
    for number, text in enumerate(rules or [], start=1):
        try:
            compiled_rules.append(compile_rule(text))
        except TemplateError as exc:
            problems.append(f"rules[{number - 1}]: {exc}")
    if problems:
        raise ValueError("\n".join(problems))
    return CompiledMapping(fields, compiled_rules)


def _compile_field(target: str, spec: str | FieldSpec) -> CompiledField:
    target_path = _split_target(target)
    if isinstance(spec, str):
        if is_template(spec):
            template = compile_template(spec)
            return CompiledField(
                target_path, target, template.unguarded, None, None, None, template.failing_block
            )
        path = _envelope_path(_check_path(spec))
        return CompiledField(target_path, spec, compile_path(spec), None, None, path)
    name = spec.from_ if spec.from_ is not None else target
    return CompiledField(target_path, name, _reader(spec), _converter(spec), spec)


def _reader(spec: FieldSpec) -> Evaluate:
    if spec.from_ is not None:
        return compile_path(_check_path(spec.from_))
    if spec.template is not None:
        return compile_template(spec.template).evaluate
    if spec.cases is not None:
        return _first_match(spec.cases)
    constant = spec.value
    return lambda _: constant


def _first_match(cases: list[Case]) -> Evaluate:
    compiled: list[tuple[Evaluate | None, Evaluate]] = []
    for number, case in enumerate(cases):
        try:
            when = compile_expression(case.when).evaluate if case.when is not None else None
            value = case.value
            then = (
                compile_template(value).evaluate
                if isinstance(value, str) and is_template(value)
                else (lambda _, constant=value: constant)
            )
        except TemplateError as exc:
            raise ValueError(f"cases[{number}]: {exc}") from None
        compiled.append((when, then))

    def first(envelope: dict[str, Any]) -> Any:
        for when, then in compiled:
            if when is None or is_true(when(envelope)):
                return then(envelope)
        return None

    return first


def _converter(spec: FieldSpec) -> Callable[[Any], Any] | None:
    kind = spec.type
    if spec.format is not None and kind not in ("date", "phone"):
        raise ValueError("format applies to type date or phone")
    if kind is None:
        return None
    if kind == "string":
        return convert.to_text
    if kind == "number":
        locale = convert.number_locale(spec.locale)
        return lambda v: convert.json_number(convert.to_number(v, locale))
    if kind == "integer":
        return lambda v: int(convert.to_number(v).to_integral_value())
    if kind == "boolean":
        yes, no = spec.true_value, spec.false_value
        return lambda v: yes if convert.to_boolean(v) else no
    if kind == "date":
        pattern = spec.format or DEFAULT_DATE_FORMAT
        zone = convert.time_zone(spec.timezone) if spec.timezone else None
        assume = convert.time_zone(spec.input_timezone)
        return lambda v: convert.format_date(convert.to_datetime(v, assume), pattern, zone)
    if kind == "phone":
        style = convert.phone_style(spec.format or "E164")
        region = convert.phone_region(spec.region)
        return lambda v: convert.format_phone(v, style, region)
    raise ValueError(f"unknown type {kind!r}")  # pragma: no cover - Literal checked it


def _split_target(target: str) -> tuple[str, ...]:
    segments = tuple(target.split("."))
    if not all(s and len(s) <= 128 for s in segments):
        raise ValueError(f"target {target!r} is not a dotted field name")
    return segments


def _envelope_path(source: str) -> tuple[str, ...]:
    segments = tuple(source.split("."))
    return segments if segments[0] in ENVELOPE_ROOTS else ("lead", *segments)


def _check_path(source: str) -> str:
    segments = source.split(".")
    if not all(s and s.replace("_", "a").replace("-", "a").isalnum() for s in segments):
        raise ValueError(f"source {source!r} is not a field path (templates need {{{{ }}}})")
    return source
