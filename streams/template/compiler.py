"""Compiling a parsed template (a lark tree) into closures: each node becomes a function
``envelope -> value`` that knows its source text, so a failure names what failed. Names
are envelope paths, calls go only to functions.FUNCTIONS, nothing is evaluated
as Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lark import Token, Tree

from streams.errors import CourierError
from streams.template.conversions import MAX_MAGNITUDE, ConversionError
from streams.template.functions import lookup
from streams.template.operators import (
    BINARY_OPERATORS,
    COMPARISONS,
    compare_with_constant,
    index,
    is_in,
    is_in_constant,
    is_true,
    item_at,
    member,
    scaled,
)

Evaluate = Callable[[dict[str, Any]], Any]
# "payload" is the mapped payload, readable by URL and header templates.
ENVELOPE_ROOTS = frozenset({"id", "lead", "appended", "source", "submission", "payload"})
# Functions written as a field, without their parentheses: {{lead.name.upper}} read a field
# "upper" of the name, which no lead has, and mapped nothing, silently. Only names no lead
# field would take (not date, phone, title, format…); x['upper'] still reads such a field.
_CALLED_NOT_READ = frozenset(
    {"upper", "lower", "capitalize", "trim", "toString", "to_string", "isEmpty", "is_empty",
     "isNumber", "is_number", "isValidEmail", "is_valid_email", "isValidPhone",
     "is_valid_phone", "startsWith", "starts_with", "endsWith", "ends_with", "yesno",
     "substring", "coalesce", "toNumber", "to_number"}
)  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


class TemplateError(ValueError):
    """A template that cannot compile; ``column`` is 1-based in the template's text."""

    def __init__(self, column: int, message: str) -> None:
        self.column = column
        super().__init__(f"column {column}: {message}")


class EvaluationError(CourierError):
    """A template met a lead it cannot handle (missing field, bad date): that lead fails."""


@dataclass(frozen=True, slots=True)
class Node:
    run: Evaluate
    text: str  # the source it came from, for error messages
    path: tuple[str, ...] | None = None  # set while the node is a plain envelope path
    constant: bool = False
    boolean: bool = False  # always True or False (comparisons, and/or/not): no is_true needed

    @property
    def cannot_fail(self) -> bool:
        """Paths and constants raise nothing: a block of one needs no guard frame."""
        return self.path is not None or self.constant


class Compiler:
    """Tree → closures. Each node knows its source text, so errors can name it."""

    def __init__(self, source: str, offset: int) -> None:
        self.source = source
        self.offset = offset

    def fail(self, tree: Tree[Any] | Token, message: str) -> TemplateError:
        position = tree.start_pos if isinstance(tree, Token) else tree.meta.start_pos
        return TemplateError(self.offset + (position or 0) + 1, message)

    def text_of(self, tree: Tree[Any] | Token) -> str:
        if isinstance(tree, Token):
            return str(tree)
        return self.source[tree.meta.start_pos or 0 : tree.meta.end_pos or len(self.source)]

    def compile_block(self, tree: Tree[Any] | Token) -> Node:
        """A whole ``{{ }}`` block, unguarded: its caller turns a ConversionError into an
        EvaluationError naming the block (``guard``, or its own try around many blocks)."""
        if isinstance(tree, Tree) and tree.data == "if_block":
            condition, equals, then, otherwise = (
                None if c is None else self.compile(c) for c in tree.children
            )
            assert condition is not None and then is not None
            test = condition if equals is None else self.comparison(condition, "==", equals)
            return Node(choice(test, then.run, otherwise.run if otherwise else _nothing), "")
        if isinstance(tree, Tree) and tree.data == "helper":
            name, *arguments = tree.children
            return self.function(tree, str(name), [self.compile(a) for a in arguments])
        return self.compile(tree)

    def compile(self, tree: Tree[Any] | Token) -> Node:
        if isinstance(tree, Token):  # a bare NAME inside `path`
            return self.name_node(tree, (str(tree),))
        handler = getattr(self, f"node_{tree.data}", None)
        if handler is None:  # pragma: no cover - the grammar and this class agree
            raise self.fail(tree, f"unsupported construct {tree.data}")
        node: Node = handler(tree)
        return node

    # ── literals and names ────────────────────────────────────────────
    def constant(self, tree: Tree[Any], value: Any) -> Node:
        return Node(lambda _: value, self.text_of(tree), constant=True)

    def node_string(self, tree: Tree[Any]) -> Node:
        raw = str(tree.children[0])[1:-1]
        return self.constant(tree, _unescape(raw))

    def node_number(self, tree: Tree[Any]) -> Node:
        value = Decimal(str(tree.children[0]))
        if value > MAX_MAGNITUDE:
            raise self.fail(tree, f"number larger than {MAX_MAGNITUDE:.0E}")
        return self.constant(tree, value)

    def node_true(self, tree: Tree[Any]) -> Node:
        return self.constant(tree, True)

    def node_false(self, tree: Tree[Any]) -> Node:
        return self.constant(tree, False)

    def node_null(self, tree: Tree[Any]) -> Node:
        return self.constant(tree, None)

    def node_name(self, tree: Tree[Any]) -> Node:
        return self.name_node(tree, (str(tree.children[0]),))

    def node_path(self, tree: Tree[Any]) -> Node:
        return self.name_node(tree, tuple(str(t) for t in tree.children))

    def name_node(self, tree: Tree[Any] | Token, path: tuple[str, ...]) -> Node:
        full = path if path[0] in ENVELOPE_ROOTS else ("lead", *path)
        if len(full) >= 3 and full[-1] in _CALLED_NOT_READ:
            of, name = ".".join(path[:-1]), path[-1]
            raise self.fail(
                tree,
                f"{name} is a function: write {of}.{name}() (a field named {name}: {of}['{name}'])",
            )
        return Node(path_reader(full), ".".join(full), path=full)

    def node_member(self, tree: Tree[Any]) -> Node:
        target, name = self.compile(tree.children[0]), str(tree.children[1])
        if target.path is not None:  # still a path: resolve it in one step per lead
            return self.name_node(tree, (*target.path, name))
        target_run = target.run
        return Node(lambda env: member(target_run(env), name), self.text_of(tree))

    def node_index(self, tree: Tree[Any]) -> Node:
        target, key = (self.compile(c) for c in tree.children)
        target_run, key_run = target.run, key.run
        if key.constant:
            constant = key.run({})
            if isinstance(constant, Decimal) and constant == constant.to_integral_value():
                position = int(constant)
                return self.guarded(tree, lambda env: item_at(target_run(env), position))
            return self.guarded(tree, lambda env: index(target_run(env), constant))
        return self.guarded(tree, lambda env: index(target_run(env), key_run(env)))

    # ── calls ─────────────────────────────────────────────────────────
    def node_call(self, tree: Tree[Any]) -> Node:
        name, arguments = tree.children
        return self.function(tree, str(name), self.arguments(arguments))

    def node_method(self, tree: Tree[Any]) -> Node:
        target, name, arguments = tree.children
        return self.function(tree, str(name), [self.compile(target), *self.arguments(arguments)])

    def arguments(self, tree: Tree[Any] | None) -> list[Node]:
        return [] if tree is None else [self.compile(c) for c in tree.children]

    def function(self, tree: Tree[Any], name: str, arguments: list[Node]) -> Node:
        function = lookup(name)
        if function is None:
            raise self.fail(tree, f"unknown function {name!r}")
        count = len(arguments)
        if count < function.min_args or (
            function.max_args is not None and count > function.max_args
        ):
            expected = (
                f"{function.min_args}+"
                if function.max_args is None
                else f"{function.min_args}"
                if function.min_args == function.max_args
                else f"{function.min_args} to {function.max_args}"
            )
            raise self.fail(tree, f"{name}() takes {expected} argument(s), got {count}")
        if function.check is not None:
            try:
                function.check(*(a.run({}) if a.constant else None for a in arguments[1:]))
            except ConversionError as exc:
                raise self.fail(tree, f"{name}(): {exc}") from None
        runs = [a.run for a in arguments]
        first = arguments[0].text if arguments else ""
        call, missing = function.run, function.missing

        def absent() -> Any:
            if missing == "false":
                return False
            raise EvaluationError(f"{first} is missing")

        if missing != "accept" and count >= 1 and all(a.constant for a in arguments[1:]):
            # The common shape, x.f() or x.f('const'): no per-lead list of arguments.
            subject = runs[0]
            constants = [a.run({}) for a in arguments[1:]]

            def run(env: dict[str, Any]) -> Any:
                value = subject(env)
                return absent() if value is None else call(value, *constants)

        else:

            def run(env: dict[str, Any]) -> Any:
                values = [r(env) for r in runs]
                if values and values[0] is None and missing != "accept":
                    return absent()
                return call(*values)

        return self.guarded(tree, run)

    # ── operators ─────────────────────────────────────────────────────
    def node_binary(self, tree: Tree[Any]) -> Node:
        left, operator, right = tree.children
        left_node, right_node = self.compile(left), self.compile(right)
        symbol = str(operator)
        if symbol in "-*/%":
            for side in (left_node, right_node):
                if side.constant and isinstance(side.run({}), str):
                    raise self.fail(tree, f"'{symbol}' works on numbers, not on text")
        operate = BINARY_OPERATORS[symbol]
        left_run, right_run = left_node.run, right_node.run
        names = (left_node.text, right_node.text)
        if right_node.constant and symbol in "-*" and isinstance(right_node.run({}), Decimal):
            # x * 12, x - 1: the commonest arithmetic, one frame per lead.
            return self.guarded(tree, scaled(symbol, left_run, right_node.run({}), names[0]))
        if right_node.constant:  # the constant is read once, not per lead
            constant = right_node.run({})
            return self.guarded(tree, lambda env: operate(left_run(env), constant, names))
        return self.guarded(tree, lambda env: operate(left_run(env), right_run(env), names))

    def node_compare(self, tree: Tree[Any]) -> Node:
        left, operator, right = tree.children
        return self.comparison(self.compile(left), str(operator), self.compile(right), tree)

    def comparison(
        self, left: Node, operator: str, right: Node, tree: Tree[Any] | None = None
    ) -> Node:
        names = (left.text, right.text)
        text = f"{left.text} {operator} {right.text}"
        if right.constant:
            run = compare_with_constant(operator, left.run, right.run({}), names)
        else:
            compare = COMPARISONS[operator]
            left_run, right_run = left.run, right.run
            run = lambda env: compare(left_run(env), right_run(env), names)  # noqa: E731
        return Node(run, text, boolean=True)

    def node_in_(self, tree: Tree[Any]) -> Node:
        return self.membership(tree, negated=False)

    def node_not_in(self, tree: Tree[Any]) -> Node:
        return self.membership(tree, negated=True)

    def membership(self, tree: Tree[Any], negated: bool) -> Node:
        left, right = (self.compile(c) for c in tree.children)
        names = (left.text, right.text)
        if right.constant:
            within = right.run({})
            if not isinstance(within, list):
                raise self.fail(tree, f"'in' needs a list, like [{right.text}]")
            test = is_in_constant(left.run, within, names)
        else:
            left_run, right_run = left.run, right.run
            test = lambda env: is_in(left_run(env), right_run(env), names)  # noqa: E731
        run = (lambda env: not test(env)) if negated else test
        return Node(run, self.text_of(tree), boolean=True)

    def node_list(self, tree: Tree[Any]) -> Node:
        items = self.arguments(tree.children[0])
        if all(item.constant for item in items):
            return self.constant(tree, [item.run({}) for item in items])
        runs = [item.run for item in items]
        return self.guarded(tree, lambda env: [run(env) for run in runs])

    def node_negate(self, tree: Tree[Any]) -> Node:
        inner = self.compile(tree.children[0])
        negate = BINARY_OPERATORS["-"]
        names = ("0", inner.text)
        return self.guarded(tree, lambda env: negate(Decimal(0), inner.run(env), names))

    def node_not_(self, tree: Tree[Any]) -> Node:
        inner = self.compile(tree.children[-1]).run
        return Node(lambda env: not is_true(inner(env)), self.text_of(tree), boolean=True)

    def node_and_(self, tree: Tree[Any]) -> Node:
        left, right = (self.compile(c).run for c in tree.children)
        run = lambda env: is_true(left(env)) and is_true(right(env))  # noqa: E731
        return Node(run, self.text_of(tree), boolean=True)

    def node_or_(self, tree: Tree[Any]) -> Node:
        left, right = (self.compile(c).run for c in tree.children)
        run = lambda env: is_true(left(env)) or is_true(right(env))  # noqa: E731
        return Node(run, self.text_of(tree), boolean=True)

    def node_ternary(self, tree: Tree[Any]) -> Node:
        test, then, otherwise = (self.compile(c) for c in tree.children)
        return Node(choice(test, then.run, otherwise.run), self.text_of(tree))

    def guarded(self, tree: Tree[Any], run: Evaluate) -> Node:
        # No guard per node (a frame per node per lead): the block is guarded as a whole.
        return Node(run, self.text_of(tree))


def guard(run: Evaluate, text: str) -> Evaluate:
    """Name the sub-expression when a conversion inside it fails."""

    def guarded(env: dict[str, Any]) -> Any:
        try:
            return run(env)
        except ConversionError as exc:
            raise EvaluationError(f"{text}: {exc}") from None

    return guarded


def choice(test: Node, then: Evaluate, otherwise: Evaluate) -> Evaluate:
    condition = test.run
    if test.boolean:  # a comparison: its True/False needs no reading as yes/no
        return lambda env: then(env) if condition(env) else otherwise(env)
    return lambda env: then(env) if is_true(condition(env)) else otherwise(env)


def _nothing(_: dict[str, Any]) -> None:
    return None


def path_reader(path: tuple[str, ...]) -> Evaluate:
    if path == ("submission", "date"):
        # Sources send a timestamp; "submission.date" is the documented name for its date.
        def submission_date(env: dict[str, Any]) -> Any:
            section = env.get("submission")
            if not isinstance(section, dict):
                return None
            return section.get("date", section.get("timestamp"))

        return submission_date
    if len(path) == 2:
        section_name, field = path

        def two(env: dict[str, Any]) -> Any:
            section = env.get(section_name)
            return section.get(field) if isinstance(section, dict) else None

        return two

    def walk(env: dict[str, Any]) -> Any:
        value: Any = env
        for segment in path:
            if not isinstance(value, dict):
                return None
            value = value.get(segment)
        return value

    return walk


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    out: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
        else:
            out.append(ch)
    return "".join(out)
