"""Templates are written by people who are not our engineers: none of these may run code,
reach Python's internals, or make one lead's mapping expensive. Each is refused when the
configuration loads, with a message saying why, or evaluates to something harmless."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streams.template.parser import EvaluationError, TemplateError, compile_template

ENVELOPE: dict[str, Any] = {"id": "L-1", "lead": {"email": "a@example.com", "n": "9" * 25}}

REFUSED_AT_LOAD = {
    "{{__import__('os').system('id')}}": "unknown function '__import__'",
    "{{eval('1+1')}}": "unknown function 'eval'",
    "{{exec('import os')}}": "unknown function 'exec'",
    "{{open('/etc/passwd').read()}}": "unknown function 'open'",
    "{{getattr(lead, '__class__')}}": "unknown function 'getattr'",
    "{{globals()}}": "unknown function 'globals'",
    "{{lead.email.__class__.__mro__()}}": "unknown function '__mro__'",
    "{{import os}}": "unknown function 'import'",
    "{{lambda: 1}}": "unexpected",
    "{{[c for c in lead]}}": "unexpected",
    "{{'a' * 100000000}}": "works on numbers, not on text",
    "{{'%s%s' % lead}}": "works on numbers, not on text",
    "{{2 ** 100000}}": "unexpected",
    "{{" + "9" * 40 + "}}": "number larger than",
    "{{" + "(" * 200 + "1" + ")" * 200 + "}}": "nested deeper than",
    "{{" + "upper(" * 50 + "x" + ")" * 50 + "}}": "nested deeper than",
    "{{a}}" * 500: "more than 100",
    "x" * 5000: "longer than 4000 characters",
    "{{ {{lead.email}} }}": "blocks do not nest",
    "{{lead.email; import os}}": "unexpected character ';'",
    "{{`id`}}": "unexpected character '`'",
    "{{lead.email.system('id')}}": "unknown function 'system'",
}

HARMLESS = {
    "{{lead.__class__}}": None,  # a missing key, not an attribute
    "{{lead['__dict__']}}": None,
    "{{__builtins__}}": None,  # a bare name is a lead field
    "{{id.__len__}}": None,
    "{{lead.email.split('@').__class__}}": None,
    "{{lead.email.split('')}}": EvaluationError,  # refused per lead, cheaply
    "{{lead.email.format.__globals__['os']}}": None,  # keys of a missing value
    "{{lead.email.replace('a', lead.email).replace('a', lead.email)}}": str,  # bounded
    "{{lead.n * lead.n}}": EvaluationError,  # 10^49 is out of range
    "{{lead.email.split('@')[99999999999]}}": None,
    "{{lead.email.substring(0, 99999999999)}}": "a@example.com",
}


@pytest.mark.parametrize(("template", "message"), REFUSED_AT_LOAD.items())
def test_hostile_template_is_refused_at_load(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert message in str(caught.value)
    assert str(caught.value).startswith("column ")


@pytest.mark.parametrize(("template", "expected"), HARMLESS.items())
def test_hostile_template_evaluates_harmlessly(template: str, expected: Any) -> None:
    compiled = compile_template(template)
    if expected is EvaluationError:
        with pytest.raises(EvaluationError):
            compiled.evaluate(ENVELOPE)
    elif expected is str:
        assert isinstance(compiled.evaluate(ENVELOPE), str)
    else:
        assert compiled.evaluate(ENVELOPE) == expected


def test_text_growth_is_bounded() -> None:
    # Each replace multiplies the text; the bound stops it long before memory is at risk.
    grow = "{{lead.big.replace('x', lead.big)}}"
    envelope = {"id": "L", "lead": {"big": "x" * 1000}}
    with pytest.raises(EvaluationError, match="longer than 100000"):
        compile_template(grow).evaluate(envelope)


def test_joined_text_is_bounded_and_fails_as_a_template_error() -> None:
    # Each block is fine; the text they make together is not.
    envelope = {"id": "L", "lead": {"big": "x" * 60_000}}
    with pytest.raises(EvaluationError, match="longer than 100000"):
        compile_template("{{lead.big}} and {{lead.big}}").evaluate(envelope)


def test_a_deep_but_allowed_template_stays_cheap() -> None:
    nested = "{{" + "upper(" * 20 + "lead.email" + ")" * 20 + "}}"
    compiled = compile_template(nested)
    started = time.process_time()
    assert compiled.evaluate(ENVELOPE) == "A@EXAMPLE.COM"
    assert time.process_time() - started < 1.0  # generous: a guard against blow-ups only
