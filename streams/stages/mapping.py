"""Lead + a destination's mapping → the payload to send (or a MappingError).

A mapping is ``{target: source}``: ``target`` may be dotted to build nested objects
(``contact.email``), ``source`` is a path into the envelope (``lead.first_name``,
``appended.credit_score``, ``submission.timestamp``) or a bare name resolved inside ``lead``.
Mappings are compiled once, when the configuration loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any

from streams.model import ENVELOPE_SECTIONS, Lead

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldRule:
    target: tuple[str, ...]
    source: tuple[str, ...]


class CompiledMapping:
    """A mapping ready to apply: paths parsed once, no string work per lead."""

    __slots__ = ("rules",)

    def __init__(self, rules: list[FieldRule]) -> None:
        self.rules = rules

    def apply(self, lead: Lead) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for rule in self.rules:
            value = _resolve(lead.envelope, rule.source)
            if value is _MISSING or value is None:
                continue  # absent fields are omitted, not sent as null
            _assign(payload, rule.target, value)
        return payload


def compile_mapping(spec: MappingABC[str, str]) -> CompiledMapping:
    """Parse every path; raise ValueError naming each bad target or source."""
    problems: list[str] = []
    rules: list[FieldRule] = []
    for target, source in spec.items():
        target_path = _split(target)
        source_path = _split(source)
        if target_path is None:
            problems.append(f"{target!r}: target is not a dotted field name")
        if source_path is None:
            problems.append(f"{target!r}: source {source!r} is not a dotted field path")
        if target_path is None or source_path is None:
            continue
        if source_path[0] not in (*ENVELOPE_SECTIONS, "id"):
            source_path = ("lead", *source_path)
        rules.append(FieldRule(target_path, source_path))
    if problems:
        raise ValueError("; ".join(problems))
    return CompiledMapping(rules)


def _split(path: str) -> tuple[str, ...] | None:
    if not isinstance(path, str):
        return None
    segments = tuple(path.split("."))
    return segments if all(_SEGMENT.match(s) for s in segments) else None


def _resolve(document: Any, path: tuple[str, ...]) -> Any:
    value = document
    for segment in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(segment, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _assign(payload: dict[str, Any], target: tuple[str, ...], value: Any) -> None:
    node = payload
    for segment in target[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[target[-1]] = value
