"""Bounded work per lead: a template over a large field is refused before it builds its
result. Measured by allocation (tracemalloc's peak), not by time: once, ``concat`` of a
1 MB field 500 times built ~500 MB, and ``join(split(...))`` ~900 MB, before the
100,000-character limit was checked."""

from __future__ import annotations

import tracemalloc

import pytest

from streams.template.parser import EvaluationError, compile_template

BIG = "x" * 1_000_000
ENVELOPE = {"id": "L-1", "lead": {"big": BIG, "sep": "," * 1000, "email": "a@" + BIG}}
BUDGET_BYTES = 20 * 1024 * 1024

HOSTILE = {
    "concat 300 times": "{{concat(" + ", ".join(["lead.big"] * 300) + ")}}",
    "plus": "{{lead.big + lead.big}}",
    "join of split with a big separator": "{{join(split(lead.big, 'x'), lead.big)}}",
    "join with a long separator": "{{join(split(lead.sep, ','), lead.big)}}",
    "replace that grows": "{{replace(lead.big, 'x', 'yyyyyyyyyy')}}",
}


@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_result_too_large_is_refused_before_it_is_built(template: str) -> None:
    compiled = compile_template(template)
    tracemalloc.start()
    try:
        with pytest.raises(EvaluationError, match="longer than"):
            compiled.evaluate(ENVELOPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BUDGET_BYTES, f"{peak / 1e6:.0f} MB"


def test_a_huge_email_is_invalid_without_running_the_validator_or_entering_its_cache() -> None:
    from streams.template.conversions import _email_syntax_ok

    before = _email_syntax_ok.cache_info().currsize
    assert compile_template("{{isValidEmail(lead.email)}}").evaluate(ENVELOPE) is False
    assert _email_syntax_ok.cache_info().currsize == before
