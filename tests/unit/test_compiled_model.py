"""Private attributes read as plain attributes, everything else pydantic's own."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from pydantic import ConfigDict, PrivateAttr, model_validator

from streams.compiled_model import CompiledModel


class Compiled(CompiledModel):
    model_config = ConfigDict(extra="forbid")

    path: str = "a.b"
    _parts: list[str] = PrivateAttr(default_factory=list)
    _pattern: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Compiled:
        self._parts = self.path.split(".")
        return self


def test_private_values_set_or_default_are_in_the_instance_dict_where_python_looks_first() -> None:
    model = Compiled(path="x.y")
    # Where Python finds them without pydantic's __getattr__ (the slow path).
    assert model.__dict__["_parts"] == ["x", "y"] and model.__dict__["_pattern"] is None
    model._pattern = "z"
    assert model._pattern == "z" and model.__pydantic_private__ == {
        "_parts": ["x", "y"],
        "_pattern": "z",
    }
    model._parts.append("w")  # the same object in both places
    assert model.__pydantic_private__["_parts"] == ["x", "y", "w"]


def test_fields_serialization_equality_and_copies_are_pydantics() -> None:
    model = Compiled(path="x.y")
    assert model.model_dump() == {"path": "x.y"} and model.model_dump_json() == '{"path":"x.y"}'
    assert model == Compiled(path="x.y") and model != Compiled(path="x.z")
    assert repr(model) == "Compiled(path='x.y')"
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)), model.model_copy()):
        assert twin == model and twin._parts == ["x", "y"]
    deep = copy.deepcopy(model)
    deep._parts.append("w")
    assert model._parts == ["x", "y"] and deep.__pydantic_private__["_parts"] == ["x", "y", "w"]


def test_unknown_names_are_still_errors() -> None:
    model: Any = Compiled()
    with pytest.raises(AttributeError):
        _ = model._nothing
    with pytest.raises(AttributeError):
        _ = model.nothing
