"""What a configuration problem says of an option nobody knows: pydantic's own message
("Extra inputs are not permitted") names neither what was meant nor what the block takes,
and a misspelt option (``sorce``, ``from_``, ``retries``) is the most common mistake in a
hand-written file."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel

UNKNOWN = "extra_forbidden"  # pydantic's error type for a key the model does not have
UNKNOWN_KIND = "union_tag_invalid"  # ... and for a ``type:`` no block of a union has
NOT_A_BLOCK = "model_type"  # ... and for a value where a block of options goes


def explained(model: type[BaseModel], error: Any) -> str:
    """A pydantic error's message for the author of a document of ``model``: ours for an
    unknown option, an unknown kind of block and a value where a block goes, else
    pydantic's own."""
    if error["type"] == UNKNOWN:
        return unknown_option(model, error["loc"])
    if error["type"] == UNKNOWN_KIND:
        return unknown_kind(error.get("ctx", {}))
    if error["type"] == NOT_A_BLOCK:
        return not_a_block(model, error["loc"], error["input"])
    return str(error["msg"])


def unknown_option(model: type[BaseModel], loc: Sequence[Any]) -> str:
    """The problem of the unknown key at ``loc`` (its last part) in a document of
    ``model``: the option it is closest to, else the options its block takes."""
    options = options_at(model, loc[:-1])
    if not options:
        return "unknown option"
    meant = closest(str(loc[-1]), options)
    if meant is not None:
        return f"unknown option; did you mean {meant!r}?"
    return f"unknown option (options here: {', '.join(options)})"


def not_a_block(model: type[BaseModel], loc: Sequence[Any], given: Any) -> str:
    """``retry: 3`` where a block goes: pydantic says "a valid dictionary or instance of
    RetryPolicy", a class name the file's author never sees."""
    options = options_at(model, loc)
    shape = {list: "a list", str: "text", bool: "yes/no", int: "a number", float: "a number"}
    if given is None:  # ``retry:`` and nothing after it
        said = "is empty; give a block of options (name: value)"
    else:
        said = f"should be a block of options (name: value), not {shape.get(type(given), 'that')}"
    return f"{said} (options here: {', '.join(options)})" if options else said


def closest(given: str, names: Iterable[str]) -> str | None:
    """The name ``given`` was most likely meant to be (a typo's distance), if any."""
    found = difflib.get_close_matches(given, list(names), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_kind(context: dict[str, Any]) -> str:
    """``type: barer`` where an auth block is one of ``bearer``, ``basic``...: pydantic
    lists the kinds; this names the one meant, when one is close."""
    field = str(context.get("discriminator", "")).strip("'")
    given = str(context.get("tag", ""))
    kinds = [kind.strip().strip("'") for kind in str(context.get("expected_tags", "")).split(",")]
    meant = closest(given, kinds)
    hint = f"did you mean {meant!r}? " if meant is not None else ""
    return f"{field}: unknown kind {given!r}; {hint}(one of: {', '.join(kinds)})"


def options_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The option names of the block at ``loc`` in a document of ``model`` (by the names
    the file uses, aliases included); empty when the path cannot be followed. Parts of
    ``loc`` that are not in the file (a union's tag) are passed over."""
    try:
        schema = _schema(model)
    except Exception:  # a type without a JSON schema: no list, the plain problem
        return []
    definitions = schema.get("$defs", {})
    at = [schema]
    for part in loc:
        blocks = _expanded(at, definitions)
        inner = list(_inside(blocks, part))
        if inner:
            at = inner
        elif isinstance(part, str) and ":" in part:
            # A union member's tag naming it by its one option (a flow step's
            # ``step:parallel``): that member's options, not every member's.
            named = [
                block for block in blocks if part.rsplit(":", 1)[1] in block.get("properties", {})
            ]
            at = named or at
        # else: a tag not in the file (``spec``, ``function-after[...]``): the same block
    names: set[str] = set()
    for block in _expanded(at, definitions):
        names.update(block.get("properties", {}))
    return sorted(names)


@cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _inside(blocks: Iterable[dict[str, Any]], part: Any) -> Iterable[dict[str, Any]]:
    for block in blocks:
        if isinstance(part, int):
            if isinstance(block.get("items"), dict):
                yield block["items"]
        elif part in block.get("properties", {}):
            yield block["properties"][part]
        elif isinstance(block.get("additionalProperties"), dict):
            yield block["additionalProperties"]  # a map's value, whatever its key


def _expanded(
    blocks: Iterable[dict[str, Any]], definitions: dict[str, Any]
) -> list[dict[str, Any]]:
    """The blocks with references resolved and unions opened: every shape a value there
    may take."""
    found: list[dict[str, Any]] = []
    pending = list(blocks)
    seen: set[int] = set()
    while pending:
        block = pending.pop()
        if id(block) in seen:
            continue
        seen.add(id(block))
        reference = block.get("$ref")
        if isinstance(reference, str):
            pending.append(definitions.get(reference.rsplit("/", 1)[-1], {}))
        for key in ("anyOf", "oneOf", "allOf"):
            pending.extend(member for member in block.get(key, ()) if isinstance(member, dict))
        found.append(block)
    return found
