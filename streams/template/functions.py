"""The only functions a template can call: ``name(x, ...)``, ``x.name(...)`` or the helper
form ``name x "arg"``. Nothing outside this table is reachable from a template.

Each entry says how many arguments it takes and what a missing first argument means:
predicates answer false, ``default``/``coalesce`` exist for it, the rest refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from streams.template.conversions import (
    MAX_PARTS,
    MAX_TEXT,
    ConversionError,
    format_date,
    format_phone,
    is_number,
    is_valid_email,
    is_valid_phone,
    joined,
    phone_region,
    phone_style,
    time_zone,
    to_boolean,
    to_number,
    to_text,
)


@dataclass(frozen=True, slots=True)
class Function:
    run: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    missing: str = "refuse"  # "refuse", "false" (a predicate), "accept" (handles None itself)
    # Called when the template compiles with the arguments after the first, each as written
    # when it is a constant (None when read from the lead): a misspelt style, region or
    # time zone stops start-up instead of failing every lead. Raises ConversionError.
    check: Callable[..., None] | None = None


def _check_phone(style: Any = None, region: Any = None) -> None:
    if isinstance(style, str):
        phone_style(style)
    if isinstance(region, str):
        phone_region(region)


def _check_region(region: Any = None) -> None:
    _check_phone(None, region)


def _check_zone(pattern: Any = None, zone: Any = None) -> None:
    if isinstance(zone, str):
        time_zone(zone)


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not to_text(value).strip())


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, list | dict):
        raise ConversionError(f"not text ({type(value).__name__})")
    return to_text(value)


def _split(value: Any, separator: Any = ",") -> list[str]:
    sep = _text(separator)
    if not sep:
        raise ConversionError("split() needs a non-empty separator")
    parts = _text(value).split(sep, MAX_PARTS)
    return parts if len(parts) <= MAX_PARTS else parts[:MAX_PARTS]


def _join(value: Any, separator: Any = ",") -> str:
    items = value if isinstance(value, list) else [value]
    return joined([_text(v) for v in items], _text(separator))


def _replace(value: Any, old: Any, new: Any) -> str:
    text, old_text, new_text = _text(value), _text(old), _text(new)
    if not old_text:
        raise ConversionError("replace() needs a non-empty text to replace")
    # Refuse before building: the result's size is known from the count.
    size = len(text) + text.count(old_text) * (len(new_text) - len(old_text))
    if size > MAX_TEXT:
        raise ConversionError(f"replace() would build a text longer than {MAX_TEXT} characters")
    return text.replace(old_text, new_text)


def _substring(value: Any, start: Any, end: Any = None) -> str:
    text = _text(value)
    first = int(to_number(start))
    return text[first:] if end is None else text[first : int(to_number(end))]


def _round(value: Any, places: Any = 0) -> Decimal:
    digits = int(to_number(places))
    if not 0 <= digits <= 10:
        raise ConversionError("round() takes 0 to 10 decimal places")
    return to_number(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def _format(value: Any, pattern: Any, zone: Any = None) -> str:
    """A '#' mask formats a phone number's digits; any other pattern formats a date."""
    text = _text(pattern)
    if "#" in text:
        return format_phone(value, text)
    return format_date(value, text, time_zone(_text(zone)) if zone is not None else None)


def _yesno(value: Any, yes: Any = "Yes", no: Any = "No") -> Any:
    return yes if to_boolean(value) else no


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if not is_empty(v)), None)


def _default(value: Any, fallback: Any) -> Any:
    return fallback if is_empty(value) else value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else len(_text(value))


def _extreme(pick: Callable[..., Decimal]) -> Callable[..., Decimal]:
    return lambda *values: pick(to_number(v) for v in values)


FUNCTIONS: dict[str, Function] = {
    # text
    "upper": Function(lambda v: _text(v).upper(), 1, 1),
    "lower": Function(lambda v: _text(v).lower(), 1, 1),
    "trim": Function(lambda v: _text(v).strip(), 1, 1),
    "title": Function(lambda v: _text(v).title(), 1, 1),
    "capitalize": Function(lambda v: _text(v).capitalize(), 1, 1),
    "length": Function(_length, 1, 1),
    "split": Function(_split, 1, 2),
    "join": Function(_join, 1, 2),
    "replace": Function(_replace, 3, 3),
    "substring": Function(_substring, 2, 3),
    "digits": Function(lambda v: "".join(c for c in _text(v) if c.isdigit()), 1, 1),
    "startsWith": Function(lambda v, p: _text(v).startswith(_text(p)), 2, 2, "false"),
    "endsWith": Function(lambda v, p: _text(v).endswith(_text(p)), 2, 2, "false"),
    "contains": Function(lambda v, p: _text(p) in _text(v), 2, 2, "false"),
    "concat": Function(lambda *vs: joined([to_text(v) for v in vs]), 1, None, "accept"),
    "toString": Function(to_text, 1, 1, "accept"),
    # missing values
    "default": Function(_default, 2, 2, "accept"),
    "coalesce": Function(_coalesce, 1, None, "accept"),
    "isEmpty": Function(is_empty, 1, 1, "accept"),
    # numbers
    "number": Function(to_number, 1, 1),
    "integer": Function(lambda v: _round(v, 0), 1, 1),
    "round": Function(_round, 1, 2),
    "abs": Function(lambda v: abs(to_number(v)), 1, 1),
    "min": Function(_extreme(min), 1, None),
    "max": Function(_extreme(max), 1, None),
    "isNumber": Function(is_number, 1, 1, "false"),
    # yes/no
    "bool": Function(to_boolean, 1, 1),
    "yesno": Function(_yesno, 1, 3),
    # dates and phones
    "format": Function(_format, 2, 3, check=_check_zone),
    "date": Function(_format, 2, 3, check=_check_zone),
    "phone": Function(
        lambda v, style="E164", region="US": format_phone(v, style, region),
        1,
        3,
        check=_check_phone,
    ),
    # validation
    "isValidEmail": Function(is_valid_email, 1, 1, "false"),
    "isValidPhone": Function(
        lambda v, region="US": is_valid_phone(v, _text(region)), 1, 2, "false", _check_region
    ),
}

# snake_case spellings for people who write Python or Liquid rather than JavaScript.
ALIASES = {
    "to_number": "number",
    "toNumber": "number",
    "to_string": "toString",
    "starts_with": "startsWith",
    "ends_with": "endsWith",
    "is_empty": "isEmpty",
    "is_number": "isNumber",
    "is_valid_email": "isValidEmail",
    "is_valid_phone": "isValidPhone",
    "len": "length",
}


def lookup(name: str) -> Function | None:
    return FUNCTIONS.get(ALIASES.get(name, name))
