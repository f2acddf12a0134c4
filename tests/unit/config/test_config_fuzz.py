"""A destinations file of any shape gets problems named by path, never a traceback.

The seeds are the worked examples of docs/examples.md (every feature a user writes);
hypothesis replaces values anywhere in them with others of any type and size, drops keys
and adds unknown ones. Loading must either succeed or raise ``ConfigError``, whose every
problem names where it is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.config import parse_destinations
from streams.errors import ConfigError
from streams.secrets import without_secret_values

EXAMPLES = [
    yaml.safe_load(text)
    for text in re.findall(
        r"```yaml\n(.*?)```",
        (Path(__file__).resolve().parents[3] / "docs" / "examples.md").read_text(),
        re.S,
    )
]
HOSTILE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(
            [
                "{{",
                "{{lead.x +}}",
                "${env:NOPE}",
                "24:00-00:00",
                "mon-sun",
                "-1",
                "https://",
                "http://10.0.0.1/x",
                "1e400",
                "\x00",
                "a" * 300,
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _places(document: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in ``document``."""
    found = [at]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _places(value, (*at, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _places(value, (*at, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        places = [p for p in _places(document) if p]
        if not places:
            break
        place = draw(st.sampled_from(places))
        parent = document
        for step in place[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[place[-1]] = draw(HOSTILE)
        elif action == "drop" and isinstance(parent, dict):
            del parent[place[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(HOSTILE)
    return document


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=mutated())
def test_any_destinations_file_loads_or_names_its_problems(document: Any) -> None:
    try:
        with without_secret_values():
            parse_destinations(document, "fuzz.yaml")
    except ConfigError as error:
        assert error.problems, error
        for problem in error.problems:
            assert isinstance(problem, str) and problem.strip(), error.problems
