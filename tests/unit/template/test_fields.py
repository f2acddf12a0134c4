"""Field mapping: copies, conversions, templates, rules, first-match cases, null handling."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import MappingError
from streams.model import Lead, OutcomeKind
from streams.stages.attempt import attempt_delivery
from streams.template.fields import FieldSpec, compile_mapping

LEAD = Lead(
    "L-1",
    {
        "id": "L-1",
        "submission": {"timestamp": "2026-11-22T23:30:00Z"},
        "source": {"name": "spring_form", "type": "organic"},
        "lead": {
            "first_name": "  Ada ",
            "email": "ada@example.com",
            "phone_1": "555.010.1234",
            "state": "CA",
            "age": "67",
            "income": "120,000",
            "homeowner": "y",
            "blank": "   ",
            "loan_amount": 30000,
        },
        "appended": {"credit_score": 720},
    },
)


def mapped(spec: dict[str, Any], rules: list[str] | None = None, lead: Lead = LEAD) -> Any:
    fields = {k: FieldSpec.model_validate(v) if isinstance(v, dict) else v for k, v in spec.items()}
    return compile_mapping(fields, rules).apply(lead)


def test_direct_assignment_from_every_section_and_nested_targets() -> None:
    assert mapped(
        {
            "firstName": "lead.first_name",
            "Email": "email",
            "Credit_Score__c": "appended.credit_score",
            "leadDate": "submission.timestamp",
            "contact.email": "email",
            "contact.id": "id",
            "Missing": "lead.nope",
        }
    ) == {
        "firstName": "  Ada ",  # plain copies go as they are
        "Email": "ada@example.com",
        "Credit_Score__c": 720,
        "leadDate": "2026-11-22T23:30:00Z",
        "contact": {"email": "ada@example.com", "id": "L-1"},
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"from": "age", "type": "number"}, 67),
        ({"from": "income", "type": "number"}, 120000),
        ({"value": "1.250,75", "type": "number", "locale": "de_DE"}, 1250.75),
        ({"value": "$1,250.00", "type": "number"}, 1250),
        ({"value": "2.6", "type": "integer"}, 3),
        ({"from": "loan_amount", "type": "string"}, "30000"),
        ({"from": "homeowner", "type": "boolean"}, True),
        ({"value": "No", "type": "boolean"}, False),
        ({"value": "TRUE", "type": "boolean", "true_value": "Y", "false_value": "N"}, "Y"),
        ({"value": 0, "type": "boolean", "true_value": "Y", "false_value": "N"}, "N"),
        ({"from": "submission.timestamp", "type": "date", "format": "MM/DD/YYYY"}, "11/22/2026"),
        ({"from": "submission.timestamp", "type": "date", "format": "YYYYMM"}, "202611"),
        (
            {"from": "submission.timestamp", "type": "date", "format": "YYYY-MM-DDTHH:mm:ssZ"},
            "2026-11-22T23:30:00+0000",
        ),
        (
            {"from": "submission.timestamp", "type": "date", "timezone": "America/Los_Angeles"},
            "2026-11-22T15:30:00-08:00",
        ),
        ({"value": 1764000000, "type": "date", "format": "YYYY-MM-DD"}, "2025-11-24"),
        ({"value": 1764000000000, "type": "date", "format": "YYYY-MM-DD"}, "2025-11-24"),
        ({"value": "11/22/2026", "type": "date", "format": "YYYY-MM-DD"}, "2026-11-22"),
        (
            {"value": "2026-11-22 09:00", "type": "date", "input_timezone": "America/New_York"},
            "2026-11-22T09:00:00-05:00",
        ),
        ({"from": "phone_1", "type": "phone"}, "+15550101234"),
        ({"from": "phone_1", "type": "phone", "format": "NATIONAL"}, "(555) 010-1234"),
        ({"from": "phone_1", "type": "phone", "format": "INTERNATIONAL"}, "+1 555-010-1234"),
        ({"from": "phone_1", "type": "phone", "format": "DIGITS"}, "5550101234"),
        ({"from": "phone_1", "type": "phone", "format": "###-###-####"}, "555-010-1234"),
        ({"value": "020 7946 0958", "type": "phone", "region": "GB"}, "+442079460958"),
        ({"from": "first_name"}, "Ada"),  # trimmed by default
        ({"from": "first_name", "trim": False}, "  Ada "),
        ({"from": "first_name", "case": "upper"}, "ADA"),
        ({"value": "mc DONALD", "case": "title"}, "Mc Donald"),
        ({"template": "{{first_name.trim()}} ({{state}})"}, "Ada (CA)"),
    ],
)
def test_conversions(spec: dict[str, Any], expected: Any) -> None:
    assert mapped({"out": spec}) == {"out": expected}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"from": "nope"}, {}),  # omitted by default
        ({"from": "blank"}, {}),  # blank counts as empty
        ({"from": "nope", "empty": "null"}, {"out": None}),
        ({"from": "blank", "empty": "null"}, {"out": None}),
        ({"from": "blank", "empty": "keep", "trim": False}, {"out": "   "}),
        ({"from": "nope", "default": "n/a"}, {"out": "n/a"}),
        ({"from": "blank", "default": 0, "type": "number"}, {"out": 0}),
        ({"from": "email", "default": "n/a"}, {"out": "ada@example.com"}),
    ],
)
def test_null_handling(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mapped({"out": spec}) == expected


def test_a_required_field_that_is_empty_fails_the_lead_naming_the_field() -> None:
    with pytest.raises(MappingError) as caught:
        mapped({"Phone": {"from": "phone_2", "required": True}})
    assert caught.value.reason == "phone_2 is required"
    with pytest.raises(MappingError, match="blank is required"):
        mapped({"Notes": {"from": "blank", "required": True}})
    mapped({"Phone": {"from": "phone_2", "required": True, "default": "none"}})


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"from": "first_name", "type": "number"}, "first_name: not a number"),
        ({"from": "first_name", "type": "date"}, "first_name: not a date"),
        ({"from": "first_name", "type": "phone"}, "first_name: not a phone number"),
        ({"from": "state", "type": "boolean"}, "state: not a yes/no value"),
        ({"template": "{{lead.nope.upper()}}"}, "template out: lead.nope is missing"),
    ],
)
def test_a_value_that_does_not_convert_names_the_field(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(MappingError) as caught:
        mapped({"out": spec})
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("failing", "reason"),
    [
        ("{{lead.nope.upper()}}", "template Second: lead.nope is missing"),
        ("{{first_name * 2}}", "template Second: first_name * 2: not a number"),
        (
            "Hi {{first_name.format('YYYY')}}",
            "template Second: first_name.format('YYYY'): not a date",
        ),
    ],
)
def test_among_plain_templates_the_failing_one_is_named(failing: str, reason: str) -> None:
    # Consecutive plain copies and templates are applied as runs, one step each.
    spec = {"First": "{{first_name}}", "Second": failing, "Third": "{{state}}"}
    with pytest.raises(MappingError) as caught:
        mapped(spec)
    assert (caught.value.field, caught.value.reason) == ("Second", reason)


def test_runs_of_copies_and_templates_keep_the_written_key_order() -> None:
    spec = {
        "b": "first_name",
        "a": "{{email}}",
        "d": "source.name",
        "c": "state",
        "f": {"from": "email"},
        "e": "{{first_name}} {{state}}",
    }
    assert list(mapped(spec)) == ["b", "a", "d", "c", "f", "e"]


def test_conditional_rules_with_else_branches() -> None:
    rules = [
        "if lead.state == 'CA' then territory = 'West' else territory = 'East'",
        "if lead.age >= 65 then segment = 'Senior'",
        "if lead.income > 100000 then tier = 'Premium' else tier = 'Standard'",
        "if source.type == 'organic' then cost = 0",
        "if lead.state == 'TX' then segment = 'Texan'",
    ]
    assert mapped({}, rules) == {
        "territory": "West",
        "segment": "Senior",
        "tier": "Premium",
        "cost": 0,
    }


def test_first_match_cases_pick_one_branch_or_the_fallback() -> None:
    cases = {
        "cases": [
            {"when": "lead.loan_amount > 50000", "value": "premium_crm"},
            {"when": "lead.loan_amount > 25000", "value": "standard_crm"},
            {"value": "small_loans"},
        ]
    }
    assert mapped({"queue": cases}) == {"queue": "standard_crm"}
    small = Lead("L-2", {"id": "L-2", "lead": {"loan_amount": "1,000"}})
    assert mapped({"queue": cases}, lead=small) == {"queue": "small_loans"}
    templated = {"cases": [{"when": "lead.age >= 65", "value": "{{first_name.trim()}} (senior)"}]}
    assert mapped({"label": templated}) == {"label": "Ada (senior)"}


@pytest.mark.parametrize(
    ("spec", "rules", "problem"),
    [
        ({"x": "{{a +}}"}, [], "mapping.x: column 6: the expression ends too early"),
        ({"x": "lead..email"}, [], "mapping.x: source 'lead..email' is not a field path"),
        # A Jinja tag alone was read as a (bad) field path; it is named as a tag now.
        ({"x": "{% if vip %}VIP{% endif %}"}, [], "mapping.x: column 1: '{%' tags are not ours"),
        ({"x": {"from": "a", "type": "date", "timezone": "Mars/Olympus"}}, [], "unknown time zone"),
        # Each failed every lead before (the lead's invalid data, or our own error for the
        # locale); now start-up names the option.
        (
            {"x": {"from": "a", "type": "phone", "format": "E165"}},
            [],
            "mapping.x: unknown phone format 'E165': one of E164, NATIONAL, INTERNATIONAL, "
            "DIGITS, or a mask of '#'",
        ),
        (
            {"x": {"from": "a", "type": "phone", "region": "XX"}},
            [],
            "mapping.x: unknown phone region 'XX'",
        ),
        (
            {"x": {"from": "a", "type": "number", "locale": "xx_YY"}},
            [],
            "mapping.x: unknown locale 'xx_YY'",
        ),
        ({"x": "{{phone(a, 'NATIONL')}}"}, [], "column 3: phone(): unknown phone format 'NATIONL'"),
        ({"x": "{{isValidPhone(a, 'ZZ')}}"}, [], "isValidPhone(): unknown phone region 'ZZ'"),
        ({"x": "{{format(a, 'YYYY', 'Mars/X')}}"}, [], "format(): unknown time zone 'Mars/X'"),
        (
            {"x": {"from": "a", "type": "number", "format": "0.00"}},
            [],
            "format applies to type date or phone",
        ),
        ({"x": {"cases": [{"when": "a ==", "value": 1}]}}, [], "mapping.x: cases[0]: column 5"),
        ({}, ["if a = 1 then b = 2"], "rules[0]: column 6: unexpected '=' (compare with ==)"),
        ({}, ["territory = 'West'"], "rules[0]: column 1"),
    ],
)
def test_load_errors_name_the_field_and_column(
    spec: dict[str, Any], rules: list[str], problem: str
) -> None:
    fields = {k: FieldSpec.model_validate(v) if isinstance(v, dict) else v for k, v in spec.items()}
    with pytest.raises(ValueError) as caught:
        compile_mapping(fields, rules)
    assert problem in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        compile_mapping({"a": "{{", "b": "{{ok}}", "c": "{{nope()}}"}, ["if then"])
    assert len(str(caught.value).splitlines()) == 3


async def test_a_mapping_failure_is_a_failure_outcome_and_nothing_is_sent(
    make_destinations: Any,
) -> None:
    from tests.conftest import destination

    (dest,) = make_destinations(
        destination(mapping={"Phone": {"from": "phone_2", "required": True}})
    ).destinations

    async def send(*_: Any) -> Any:
        raise AssertionError("a lead that cannot be mapped must not be sent")

    attempt = await attempt_delivery(LEAD, dest, send)
    assert attempt.outcome.kind is OutcomeKind.FAILURE
    assert attempt.outcome.reason == "Invalid data: phone_2 is required"
    assert attempt.request is None and attempt.http_status is None


# ── property: whatever the envelope, mapping raises MappingError or nothing ──
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "1,250.00", "yes", "2026-11-22T10:00:00Z", "5550101234", "a@b.c"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["first_name", "email", "phone_1", "age", "state", "income", "homeowner"]
envelopes = st.fixed_dictionaries(
    {"id": st.just("L-1")},
    optional={
        "lead": st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=7) | json_values,
        "submission": st.dictionaries(st.sampled_from(["timestamp", "date"]), json_values)
        | json_values,
        "source": json_values,
        "appended": json_values,
    },
)
EVERYTHING = compile_mapping(
    {
        "name": "{{first_name}} {{lead.last_name}}",
        "score": "{{lead.age + lead.income}}",
        "when": "{{submission.date.format('YYYYMM')}}",
        "high": "{{lead.income >= 1000 ? 'High' : 'Standard'}}",
        "domain": "{{lead.email.split('@')[1]}}",
        "valid": "{{lead.email.isValidEmail() ? lead.email : 'invalid'}}",
        "phone": '{{format phone_1 "(###) ###-####"}}',
        "state": '{{if state "CA" then "California" else state}}',
        "age": FieldSpec.model_validate({"from": "age", "type": "integer", "default": 0}),
        "owner": FieldSpec.model_validate(
            {"from": "homeowner", "type": "boolean", "empty": "null"}
        ),
        "date": FieldSpec.model_validate({"from": "submission.timestamp", "type": "date"}),
        "tel": FieldSpec.model_validate({"from": "phone_1", "type": "phone", "required": True}),
        "n": FieldSpec.model_validate({"from": "income", "type": "number"}),
        "copy": "lead.state",
    },
    ["if lead.age >= 65 then segment = 'Senior' else segment = lead.age * 2"],
)


@settings(max_examples=400, deadline=None)
@given(envelopes)
def test_mapping_raises_nothing_but_mapping_error(envelope: dict[str, Any]) -> None:
    try:
        payload = EVERYTHING.apply(Lead("L-1", envelope))
    except MappingError as exc:
        assert exc.field and exc.reason
        return
    orjson.dumps(payload)  # whatever came out can be sent


@pytest.mark.parametrize(
    ("spec", "value", "named"),
    [
        ({"r": "{{round(lead.x)}}"}, 1e28, "r"),
        ({"i": "{{integer(lead.x)}}"}, "1" + "0" * 28, "i"),
        ({"d": {"from": "lead.x", "type": "date"}}, "1" * 4400, "lead.x"),
        ({"t": {"template": "{{lead.x * 2}}", "type": "integer"}}, 10**40, "t"),
    ],
)
def test_a_value_out_of_range_fails_its_field_by_name_without_quoting_it(
    spec: dict[str, Any], value: Any, named: str
) -> None:
    lead = Lead("L-9", {"id": "L-9", "lead": {"x": value}})
    with pytest.raises(MappingError) as raised:
        mapped(spec, lead=lead)
    assert raised.value.field in (named, next(iter(spec)))
    assert "out of range" in raised.value.reason
    assert str(value)[:12] not in raised.value.reason


def test_a_shorthand_template_trims_as_a_template_field_does() -> None:
    """issue #13: ``"{{a}} {{b}}"`` and ``{template: "{{a}} {{b}}"}`` gave different text."""
    from streams.config import parse_destinations
    from streams.model import Lead

    mapping = {
        "short": "{{first_name}} {{last_name}}",
        "long": {"template": "{{first_name}} {{last_name}}"},
        "nested.short": "{{city}}",
        "nested.long": {"template": "{{city}}"},
        "copied": "city",  # a plain copy goes as it is
        "number": "{{age}}",  # a lone block keeps its type
    }
    (dest,) = parse_destinations(
        {"destinations": [{"id": "x", "url": "https://x.example.com", "mapping": mapping}]}
    ).destinations
    lead = Lead(
        "L", {"id": "L", "lead": {"first_name": " Ada", "last_name": "L ", "city": " P ", "age": 3}}
    )
    payload = dest.compiled_mapping.apply(lead)
    assert payload["short"] == payload["long"] == "Ada L"
    assert payload["nested"] == {"short": "P", "long": "P"}
    assert (payload["copied"], payload["number"]) == (" P ", 3)
