"""What the template language's operators mean on lead data, where numbers often arrive as
text ("1,250") and yes/no as words. Every result is bounded (see conversions.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

from streams.template.conversions import (
    FALSE_WORDS,
    MAX_MAGNITUDE,
    ConversionError,
    check_number,
    joined,
    to_boolean,
    to_number,
    to_text,
)

_HAS_DIGIT = re.compile(r"\d").search
_MAX_WHOLE = int(MAX_MAGNITUDE)
Names = tuple[str, str]  # the source text of the left and right operands


def is_true(value: Any) -> bool:
    """Missing, empty, zero, false and the words no/n/false/f/0/off are false."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        word = value.strip().lower()
        return bool(word) and word not in FALSE_WORDS
    if isinstance(value, int | float | Decimal):
        return value != 0
    if isinstance(value, list | dict):
        return bool(value)
    return True


def _require(value: Any, name: str) -> Any:
    if value is None:
        raise ConversionError(f"{name} is missing")
    return value


def _numbers(left: Any, right: Any, names: Names) -> tuple[Decimal, Decimal]:
    return to_number(_require(left, names[0])), to_number(_require(right, names[1]))


def _maybe_number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool | list | dict):
        return None
    if type(value) is str and _HAS_DIGIT(value) is None:
        return None  # "yes", "CA": settled without raising and catching an error
    try:
        return to_number(value)
    except ConversionError:
        return None


def _plus(left: Any, right: Any, names: Names) -> Any:
    """Numbers (or numeric text) add; otherwise text joins, as in the users' examples."""
    a, b = _maybe_number(left), _maybe_number(right)
    if a is not None and b is not None:
        return check_number(a + b)
    if isinstance(left, str) or isinstance(right, str):
        return _join(left, right, names)
    _require(left, names[0])
    _require(right, names[1])
    raise ConversionError("'+' needs two numbers or some text")


def _join(left: Any, right: Any, names: Names) -> str:
    return joined([to_text(left), to_text(right)])


def _minus(left: Any, right: Any, names: Names) -> Decimal:
    a, b = _numbers(left, right, names)
    return check_number(a - b)


def _times(left: Any, right: Any, names: Names) -> Decimal:
    a, b = _numbers(left, right, names)
    return check_number(a * b)


def _divide(left: Any, right: Any, names: Names) -> Decimal:
    a, b = _numbers(left, right, names)
    try:
        return check_number(a / b)
    except (DivisionByZero, InvalidOperation):
        raise ConversionError(f"division by zero ({names[1]} is 0)") from None


def _modulo(left: Any, right: Any, names: Names) -> Decimal:
    a, b = _numbers(left, right, names)
    try:
        return check_number(a % b)
    except (DivisionByZero, InvalidOperation):
        raise ConversionError(f"division by zero ({names[1]} is 0)") from None


def scaled(
    symbol: str, left: Callable[[dict[str, Any]], Any], constant: Decimal, name: str
) -> Callable[[dict[str, Any]], Decimal | int]:
    """``x * 12`` and ``x - 1`` with the constant settled at compile time."""
    multiply = symbol == "*"
    # Whole numbers (an int, or text of at most 18 digits) times a whole constant stay
    # ints: exact, and several times cheaper than Decimal. The bound is the same.
    whole = int(constant) if constant == constant.to_integral_value() else None

    def run(env: dict[str, Any]) -> Decimal | int:
        value = left(env)
        if value is None:
            raise ConversionError(f"{name} is missing")
        kind = type(value)
        if whole is not None and (
            kind is int
            or (kind is str and len(value) <= 18 and value.isdigit() and value.isascii())
        ):
            whole_result = int(value) * whole if multiply else int(value) - whole
            if -_MAX_WHOLE <= whole_result <= _MAX_WHOLE:
                return whole_result
            raise ConversionError("number out of range")
        number = value if kind is Decimal else to_number(value)
        return check_number(number * constant if multiply else number - constant)

    return run


BINARY_OPERATORS: dict[str, Callable[[Any, Any, Names], Any]] = {
    "+": _plus,
    "~": _join,
    "-": _minus,
    "*": _times,
    "/": _divide,
    "%": _modulo,
}


def _equal(left: Any, right: Any, names: Names) -> bool:
    """Numbers compare as numbers, yes/no as booleans, text ignoring case and spaces."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        try:
            return to_boolean(left) == to_boolean(right)
        except ConversionError:
            return False
    a, b = _maybe_number(left), _maybe_number(right)
    if a is not None and b is not None:
        return a == b
    return to_text(left).strip().casefold() == to_text(right).strip().casefold()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "yes/no"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "text"
    return "list" if isinstance(value, list) else "object"


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any, Names], bool]:
    def compare(left: Any, right: Any, names: Names) -> bool:
        _require(left, names[0])
        _require(right, names[1])
        a, b = _maybe_number(left), _maybe_number(right)
        if a is not None and b is not None:
            return test(a, b)
        if isinstance(left, str) and isinstance(right, str):
            return test(left, right)  # ISO dates and codes order as text
        # Named by expression and kind, never by value: the reason reaches events and billing.
        raise ConversionError(
            f"cannot order {names[0]} ({_kind(left)}) and {names[1]} ({_kind(right)})"
        )

    return compare


COMPARISONS: dict[str, Callable[[Any, Any, Names], bool]] = {
    "==": _equal,
    "!=": lambda a, b, names: not _equal(a, b, names),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
}


def is_in(value: Any, within: Any, names: Names) -> bool:
    """``x in [a, b]``: x equals one of them, as ``==`` says (numbers as numbers, text
    ignoring case and spaces). Nothing is in a missing list; text is not a list (its
    letters would match), and says so."""
    if within is None:
        return False
    if not isinstance(within, list):
        raise ConversionError(
            f"'in' needs a list: {names[1]} is {_kind(within)} (contains(x, p) looks in text)"
        )
    return any(_equal(value, item, names) for item in within)


def is_in_constant(
    left: Callable[[dict[str, Any]], Any], within: list[Any], names: Names
) -> Callable[[dict[str, Any]], bool]:
    """``lead.state in ['CA', 'TX']``: a list written in the condition is read once, and
    the usual lead value (text that is no number) is looked up, not compared one by one."""
    texts = [item for item in within if isinstance(item, str) and _maybe_number(item) is None]
    if len(texts) != len(within):
        return lambda env: is_in(left(env), within, names)
    folded = frozenset(item.strip().casefold() for item in texts)

    def text_in(env: dict[str, Any]) -> bool:
        value = left(env)
        if type(value) is str and _maybe_number(value) is None:
            return value.strip().casefold() in folded
        return is_in(value, within, names)

    return text_in


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare_with_constant(
    operator: str, left: Callable[[dict[str, Any]], Any], constant: Any, names: Names
) -> Callable[[dict[str, Any]], bool]:
    """``x == 'yes'``, ``x >= 1000``: the constant's reading is settled once, so the usual
    lead value (text against text, a number against a number) takes one comparison."""
    generic = COMPARISONS[operator]
    number = _maybe_number(constant)
    if operator in ("==", "!=") and isinstance(constant, str) and number is None:
        folded = constant.strip().casefold()
        equal = operator == "=="

        def text_equal(env: dict[str, Any]) -> bool:
            value = left(env)
            if type(value) is str:
                # Text against text that is no number compares as text, whatever the value
                # reads as (see _equal); exactly equal is the common case.
                return (value == constant or value.strip().casefold() == folded) is equal
            return generic(value, constant, names)

        return text_equal
    if operator in _ORDER and number is not None:
        order = _ORDER[operator]

        def number_order(env: dict[str, Any]) -> bool:
            value = left(env)
            if type(value) is int or type(value) is Decimal:
                return order(value, number)
            return generic(value, constant, names)

        return number_order
    return lambda env: generic(left(env), constant, names)


def member(value: Any, name: str) -> Any:
    """``x.name`` on a computed value: a key of an object, nothing else (no attributes)."""
    return value.get(name) if isinstance(value, dict) else None


def item_at(value: Any, position: int) -> Any:
    """``x[1]``, the index known when the template compiled."""
    if isinstance(value, list | str):
        return value[position] if -len(value) <= position < len(value) else None
    return value.get(str(position)) if isinstance(value, dict) else None


def index(value: Any, key: Any) -> Any:
    """``x[i]`` on a list or text (negative counts from the end), ``x['k']`` on an object."""
    if isinstance(value, dict):
        return value.get(to_text(key))
    if isinstance(value, list | str):
        position = to_number(key)
        if position != position.to_integral_value():
            raise ConversionError("an index that is not a whole number")
        i = int(position)
        return value[i] if -len(value) <= i < len(value) else None
    return None
