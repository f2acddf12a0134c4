"""The template language: the users' documented examples, operators, functions, errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from streams.template.parser import (
    EvaluationError,
    TemplateError,
    compile_rule,
    compile_template,
)

ENVELOPE: dict[str, Any] = {
    "id": "L-1",
    "submission": {"timestamp": "2026-11-22T23:30:00Z"},
    "source": {"name": "spring_form", "type": "organic"},
    "lead": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "base_score": "70",
        "quality_bonus": 15,
        "monthly_income": "4,166.50",
        "value": "1500",
        "homeowner": "Yes",
        "email": "ada@example.com",
        "phone_1": "+1 555-010-1234",
        "state": "NY",
        "age": 67,
        "tags": ["a", "b"],
    },
    "appended": {"credit_score": 720},
}


def render(template: str, envelope: dict[str, Any] = ENVELOPE) -> Any:
    return compile_template(template).evaluate(envelope)


def with_lead(**fields: Any) -> dict[str, Any]:
    return {**ENVELOPE, "lead": {**ENVELOPE["lead"], **fields}}


# The examples from our users' documentation, exactly as written there.
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{lead.first_name}} {{lead.last_name}}", "Ada Lovelace"),
        ("{{first_name}} {{last_name}}", "Ada Lovelace"),
        ("{{lead.base_score + lead.quality_bonus}}", Decimal(85)),
        ("{{lead.monthly_income * 12}}", Decimal("49998.00")),
        ("{{source.name}}_{{submission.date.format('YYYYMM')}}", "spring_form_202611"),
        ("{{submission.timestamp.format('MM/DD/YYYY')}}", "11/22/2026"),
        ("{{lead.value >= 1000 ? 'High' : 'Standard'}}", "High"),
        ("{{lead.homeowner == 'yes' ? 'Owner' : 'Renter'}}", "Owner"),
        ("{{lead.email.split('@')[1]}}", "example.com"),
        ("{{lead.email.isValidEmail() ? lead.email : 'invalid'}}", "ada@example.com"),
        ('{{format phone_1 "(###) ###-####"}}', "(555) 010-1234"),
        ('{{if state "CA" then "California" else state}}', "NY"),
    ],
)
def test_documented_examples(template: str, expected: Any) -> None:
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "lead", "expected"),
    [
        ("{{lead.value >= 1000 ? 'High' : 'Standard'}}", {"value": 999.99}, "Standard"),
        ("{{lead.homeowner == 'yes' ? 'Owner' : 'Renter'}}", {"homeowner": "no"}, "Renter"),
        ("{{lead.email.isValidEmail() ? lead.email : 'invalid'}}", {"email": "a@"}, "invalid"),
        ("{{lead.email.isValidEmail() ? lead.email : 'invalid'}}", {"email": None}, "invalid"),
        ('{{if state "CA" then "California" else state}}', {"state": "CA"}, "California"),
        ('{{if state "CA" then "California" else state}}', {"state": " ca "}, "California"),
        ('{{format phone_1 "(###) ###-####"}}', {"phone_1": "5550101234"}, "(555) 010-1234"),
    ],
)
def test_documented_examples_take_the_other_branch(
    template: str, lead: dict[str, Any], expected: Any
) -> None:
    assert render(template, with_lead(**lead)) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # arithmetic is decimal, so money adds up exactly
        ("{{0.1 + 0.2}}", Decimal("0.3")),
        ("{{lead.age - 60}}", Decimal(7)),
        ("{{10 / 4}}", Decimal("2.5")),
        ("{{10 % 4}}", Decimal(2)),
        ("{{-lead.age}}", Decimal(-67)),
        ("{{(1 + 2) * 3}}", Decimal(9)),
        # + joins text that is not a number; ~ always joins
        ("{{first_name + '!'}}", "Ada!"),
        ("{{lead.base_score ~ lead.quality_bonus}}", "7015"),
        # comparisons and logic
        ("{{lead.age >= 65 && state == 'NY'}}", True),
        ("{{lead.age < 18 || not lead.email}}", False),
        ("{{!lead.homeowner}}", False),
        ("{{lead.missing == null}}", True),
        ("{{appended.credit_score > 700 ? 'prime' : 'subprime'}}", "prime"),
        ("{{'b' > 'a'}}", True),
        # functions, methods and the helper form
        ("{{upper(first_name)}}", "ADA"),
        ("{{upper first_name}}", "ADA"),
        ("{{lead.last_name.lower().substring(0, 4)}}", "love"),
        ("{{lead.tags.join('|')}}", "a|b"),
        ("{{lead.tags[-1]}}", "b"),
        ("{{lead.email.replace('example', 'test')}}", "ada@test.com"),
        ("{{default(lead.middle_name, '-')}}", "-"),
        ("{{coalesce(lead.nickname, lead.first_name)}}", "Ada"),
        ("{{round(lead.monthly_income / 3, 2)}}", Decimal("1388.83")),
        ("{{phone(phone_1, 'E164')}}", "+15550101234"),
        ("{{phone_1.phone('NATIONAL')}}", "(555) 010-1234"),
        ("{{yesno(lead.homeowner, 'Y', 'N')}}", "Y"),
        ("{{bool(lead.homeowner)}}", True),
        (
            "{{submission.timestamp.format('YYYY-MM-DD HH:mm', 'America/New_York')}}",
            "2026-11-22 18:30",
        ),
        ("{{submission.timestamp.format('YYYY-MM-DDTHH:mm:ssZ')}}", "2026-11-22T23:30:00+0000"),
        ("{{date(1764000000, 'YYYY-MM-DD')}}", "2025-11-24"),
        ("{{lead.email.length()}}", 15),
        ("{{isNumber(lead.monthly_income)}}", True),
        ("{{lead.phone_1.isValidPhone()}}", False),  # 555-01xx is reserved for fiction
        ("{{digits(phone_1)}}", "15550101234"),
        ("{{concat(first_name, ' ', lead.nothing, last_name)}}", "Ada Lovelace"),
        # text around blocks, missing values read as empty
        ("Hello {{first_name}}{{lead.nothing}}!", "Hello Ada!"),
        ("{{ 'a }} b' }}", "a }} b"),
        ("no blocks at all", "no blocks at all"),
        ("{{lead.__class__}}", None),  # a key like any other: absent
    ],
)
def test_operators_and_functions(template: str, expected: Any) -> None:
    assert render(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{lead.nothing.upper()}}", "lead.nothing is missing"),
        ("{{lead.nothing * 2}}", "lead.nothing is missing"),
        ("{{first_name * 2}}", "not a number"),
        ("{{lead.age / 0}}", "division by zero (0 is 0)"),
        ("{{lead.first_name.format('YYYY')}}", "not a date"),
        ("{{format(last_name, '(###) ###-####')}}", "not a phone number"),
        ("{{bool(first_name)}}", "not a yes/no value"),
        ("{{lead.age > 'old'}}", "cannot order lead.age (number) and 'old' (text)"),
        ("{{lead.first_name > 50000}}", "cannot order lead.first_name (text) and 50000 (number)"),
        ("{{'x' in lead.first_name}}", "'in' needs a list: lead.first_name is text"),
        ("{{lead.state in lead.age}}", "'in' needs a list: lead.age is number"),
    ],
)
def test_a_lead_that_does_not_fit_fails_with_the_expression_named(
    template: str, message: str
) -> None:
    with pytest.raises(EvaluationError) as caught:
        render(template)
    assert message in str(caught.value)
    # Never the lead's values: the reason reaches events and billing.
    assert "Ada" not in str(caught.value) and "67" not in str(caught.value)


@pytest.mark.parametrize(
    ("template", "lead", "expected"),
    [
        # Whole numbers (int, or digits as text) by a whole constant: exact ints.
        ("{{lead.monthly_income * 12}}", {"monthly_income": "3000"}, 36000),
        ("{{lead.monthly_income * 12}}", {"monthly_income": 3000}, 36000),
        ("{{lead.age - 1}}", {"age": "0067"}, 66),
        # Anything else takes the Decimal road, as before.
        ("{{lead.monthly_income * 12}}", {"monthly_income": "3000.5"}, Decimal("36006.0")),
        ("{{lead.monthly_income * 1.5}}", {"monthly_income": "3000"}, Decimal("4500.0")),
        ("{{lead.monthly_income * 12}}", {"monthly_income": " 3000 "}, Decimal(36000)),
        ("{{lead.monthly_income * 12}} a year", {"monthly_income": "3000"}, "36000 a year"),
        # Text against text compares ignoring case and spaces, numbers or not.
        ("{{lead.homeowner == 'yes'}}", {"homeowner": " YES "}, True),
        ("{{lead.homeowner == 'yes'}}", {"homeowner": "1"}, False),
        ("{{lead.homeowner != 'yes'}}", {"homeowner": "yes"}, False),
    ],
)
def test_fast_paths_agree_with_the_general_rules(
    template: str, lead: dict[str, Any], expected: Any
) -> None:
    value = render(template, with_lead(**lead))
    assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("condition", "lead", "expected"),
    [
        # A list written in the condition: each item as == compares (case, spaces, numbers).
        ("lead.state in ['CA', 'NY', 'TX']", {}, True),
        ("lead.state in ['ca', 'tx']", {"state": " Tx "}, True),
        ("lead.state in ['CA', 'TX']", {}, False),
        ("lead.state not in ['CA', 'TX']", {}, True),
        ("not lead.state in ['NY']", {}, False),
        ("lead.age in [18, 67]", {"age": "67"}, True),
        ("lead.age in ['67', 'x']", {}, True),  # a number among text: the general rule
        ("lead.homeowner in [true]", {}, True),
        ("lead.state in []", {}, False),
        ("lead.state in [lead.first_name, 'NY']", {}, True),  # items read from the lead
        # A list in the lead: its items; a missing value or list: not in.
        ("'B' in lead.tags", {}, True),
        ("'c' in lead.tags", {}, False),
        ("lead.nothing in ['CA']", {}, False),
        ("lead.nothing in [null]", {}, True),
        ("'a' in lead.nothing", {}, False),
        ("lead.state in ['NY'] && lead.age >= 65", {}, True),
        ("lead.in == 2", {"in": 2}, True),  # a field named 'in' is still a field
    ],
)
def test_in_looks_for_a_value_in_a_list(
    condition: str, lead: dict[str, Any], expected: bool
) -> None:
    assert render(f"{{{{{condition}}}}}", with_lead(**lead)) is expected
    assert render(f"{{{{if {condition} then 'y' else 'n'}}}}", with_lead(**lead)) == (
        "y" if expected else "n"
    )


@pytest.mark.parametrize("income", ["999999999999999999", 999999999999999999])
def test_whole_number_arithmetic_is_bounded_too(income: Any) -> None:
    with pytest.raises(EvaluationError, match="out of range"):
        render("{{lead.monthly_income * 1000000000000000}}", with_lead(monthly_income=income))


def test_a_failing_block_inside_text_is_named() -> None:
    with pytest.raises(EvaluationError) as caught:
        render("{{source.name}}_{{lead.first_name.format('YYYYMM')}}")
    assert str(caught.value) == "lead.first_name.format('YYYYMM'): not a date"


def test_runtime_errors_never_quote_lead_data() -> None:
    with pytest.raises(EvaluationError) as caught:
        render("{{first_name * 2}}")
    assert "Ada" not in str(caught.value)
    assert str(caught.value).startswith("first_name * 2:")


@pytest.mark.parametrize(
    ("template", "column", "message"),
    [
        ("{{first_name", 1, "never closed"),
        ("Hi {{first_name}} {{last_name +}}", 32, "ends too early"),
        ("{{a ? b}}", 8, "ends too early"),
        ("{{a == = b}}", 8, "unexpected '='"),
        ("{{a $ b}}", 5, "unexpected character '$'"),
        ("{{}}", 3, "empty block"),
        ("{{ upper(a, b) }}", 4, "upper() takes 1 argument(s), got 2"),
        ("{{nope(a)}}", 3, "unknown function 'nope'"),
        ("{{'x' * 3}}", 3, "'*' works on numbers, not on text"),
        ("{{state in 'NY'}}", 3, "'in' needs a list, like ['NY']"),
        # What other template languages write, named with what we take instead
        ("{{ first_name | upper }}", 15, "'|'; a function is called as upper(x) or x.upper()"),
        ("{{ a & b }}", 6, "unexpected character '&' ('&&' is and)"),
        ("Hi {% if vip %}VIP{% endif %} {{first_name}}", 4, "'{%' tags are not ours"),
        ("{{first_name}} {% if vip %}", 16, "'{%' tags are not ours"),
        ("{% if vip %}VIP{% endif %}", 1, "'{%' tags are not ours"),
        # Go's and Handlebars' block conditions
        ("{{ if vip }}VIP{{ end }}", 10, "ends too early: a condition is one block, {{if COND"),
        ("{{state in ['NY'}}", 17, "ends too early"),
        ("{{ {{a}} }}", 4, "blocks do not nest"),
        # A function without its parentheses read a field of that name and mapped nothing
        ("{{lead.first_name.upper}}", 3, "upper is a function: write lead.first_name.upper()"),
        ("Hi {{ email.trim }}", 7, "trim is a function: write lead.email.trim() (a field named"),
    ],
)
def test_load_errors_give_the_column(template: str, column: int, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert caught.value.column == column
    assert message in str(caught.value)


def test_rules_assign_in_the_then_or_else_branch() -> None:
    rule = compile_rule(
        "if lead.state == 'CA' then territory = 'West', region.code = 1 else territory = 'East'"
    )
    assert rule.condition(ENVELOPE) is False
    assert [(t, f(ENVELOPE)) for t, f in rule.otherwise] == [(("territory",), "East")]
    assert [t for t, _ in rule.then] == [("territory",), ("region", "code")]


def test_a_field_named_like_a_function_is_read_with_brackets_or_when_no_lead_lacks_it() -> None:
    """Names a lead's fields take (title, date, phone) read as fields; ``x['upper']`` too."""
    envelope = {"lead": {"job": {"title": "CTO", "upper": "U"}}}
    assert compile_template("{{lead.job.title}}").evaluate(envelope) == "CTO"
    assert compile_template("{{lead.job['upper']}}").evaluate(envelope) == "U"
