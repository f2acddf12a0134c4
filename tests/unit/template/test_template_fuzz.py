"""Any template text compiles or is refused with its column; a compiled one, on any lead,
gives a value or an ``EvaluationError`` naming the block: never another exception, which
would end a lead as an internal error instead of saying which field could not be made."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.template.compiler import EvaluationError, TemplateError
from streams.template.functions import FUNCTIONS
from streams.template.parser import compile_template

TOKENS = st.sampled_from(
    [
        *FUNCTIONS, "lead.a", "lead.b.c", "a", "b", "appended.x.y", "source.name", "id", "(",
        ")", "[", "]", ",", ".", " + ", " - ", " * ", " / ", " % ", " ? ", " : ", " == ",
        " != ", " < ", " >= ", " && ", " || ", "!", " in ", " not in ", "if ", " then ",
        " else ", "'x'", '"y"', "'YYYY-MM-DD'", "0", "1", "-1", "2.5", "1e400",
        "99999999999999999999", "true", "false", "null", "['NY', 'CA']", "[0]", "[-1]", "['k']",
        ".upper()", ".format('(###) ###-####')", ".length()",
    ]
)  # fmt: skip
BLOCKS = st.lists(TOKENS, min_size=1, max_size=8).map(lambda parts: "{{" + "".join(parts) + "}}")
TEXTS = st.lists(st.one_of(BLOCKS, st.text(max_size=5)), min_size=1, max_size=3).map("".join)
VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(),
        st.text(max_size=10),
        st.sampled_from(["2026-12-06", "+1 555 010 0100", "yes", "1e400", "NaN", ""]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abck"), inner, max_size=3)
    ),
    max_leaves=8,
)
ENVELOPES = st.fixed_dictionaries(
    {
        "id": st.text(max_size=5),
        "lead": st.dictionaries(st.sampled_from(["a", "b", "k"]), VALUES, max_size=3),
        "appended": st.dictionaries(st.just("x"), st.dictionaries(st.just("y"), VALUES)),
        "source": st.dictionaries(st.just("name"), VALUES),
    }
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, envelopes=st.lists(ENVELOPES, min_size=1, max_size=3))
def test_any_template_compiles_or_is_refused_and_evaluates_or_names_its_block(
    text: str, envelopes: list[dict[str, Any]]
) -> None:
    try:
        template = compile_template(text)
    except TemplateError as error:
        assert error.column >= 1
        return
    for envelope in envelopes:
        try:
            template.evaluate(envelope)
        except EvaluationError as error:
            assert str(error).strip()
