"""The template language: ``{{ ... }}`` blocks in text, parsed with lark, compiled once.

A template compiles to a plain callable ``envelope -> value``. Nothing in a template is
evaluated as Python: names are envelope paths, the only callable things are the functions
in ``functions.FUNCTIONS``, and every operation is bounded (text length, number
size, nesting). The grammar is below (compiler.py turns its trees into closures); docs/mapping.md
documents it for users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lark import Lark, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from streams.template.compiler import (
    ENVELOPE_ROOTS,
    Compiler,
    Evaluate,
    EvaluationError,
    TemplateError,
    guard,
    path_reader,
)
from streams.template.conversions import ConversionError, check_text, to_text

GRAMMAR = r"""
?block: expr
      | "if" expr [if_equals] "then" expr ["else" expr]   -> if_block
      | NAME helper_arg+                                   -> helper
rule: "if" expr "then" assignments ["else" assignments]
assignments: assignment ("," assignment)*
assignment: path "=" expr

?if_equals: literal | path
?helper_arg: literal | path

?expr: or_expr
     | or_expr "?" expr ":" expr          -> ternary
?or_expr: and_expr | or_expr ("||" | "or") and_expr      -> or_
?and_expr: not_expr | and_expr ("&&" | "and") not_expr   -> and_
?not_expr: comparison | ("!" | "not") not_expr           -> not_
?comparison: sum | sum COMPARE sum                       -> compare
           | sum "in" sum                                -> in_
           | sum "not" "in" sum                          -> not_in
?sum: product | sum ADD product                          -> binary
?product: unary | product MUL unary                      -> binary
?unary: postfix | "-" unary                              -> negate
?postfix: atom
        | postfix "." NAME                               -> member
        | postfix "." NAME "(" [arguments] ")"           -> method
        | postfix "[" expr "]"                           -> index
        | NAME "(" [arguments] ")"                       -> call
?atom: literal | NAME -> name | "(" expr ")" | "[" [arguments] "]" -> list
?literal: STRING -> string | NUMBER -> number
        | "true" -> true | "false" -> false | "null" -> null
path: NAME ("." NAME)*
arguments: expr ("," expr)*

COMPARE: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD: "+" | "-" | "~"
MUL: "*" | "/" | "%"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/
NUMBER: /\d+(\.\d+)?/
%ignore /[ \t\r\n]+/
"""

_PARSER = Lark(GRAMMAR, start=["block", "rule"], parser="lalr", propagate_positions=True)

MAX_TEMPLATE = 4_000  # characters
MAX_BLOCKS = 100
MAX_DEPTH = 24  # nesting of brackets and calls


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    source: str
    evaluate: Evaluate  # a lead it cannot handle → EvaluationError naming the block
    # ``evaluate`` minus the frame that turns a ConversionError into that EvaluationError,
    # and the text to name with it: for the mapping's per-lead loop, which catches it itself.
    unguarded: Evaluate
    failing_block: str


@dataclass(frozen=True, slots=True)
class CompiledRule:
    source: str
    condition: Evaluate
    then: tuple[tuple[tuple[str, ...], Evaluate], ...]
    otherwise: tuple[tuple[tuple[str, ...], Evaluate], ...]


def is_template(text: str) -> bool:
    """``{%`` too: a Jinja or Liquid tag alone is refused as one, not read as a field."""
    return "{{" in text or "{%" in text


def compile_template(text: str, escape: Callable[[str], str] | None = None) -> CompiledTemplate:
    """Text with ``{{ }}`` blocks → a callable; a lone block keeps its value's type.

    ``escape`` (for URLs: percent-encoding) is applied to every block's text, never to the
    literal text around the blocks, and makes the result always text."""
    if len(text) > MAX_TEMPLATE:
        raise TemplateError(1, f"longer than {MAX_TEMPLATE} characters")
    parts: list[str | tuple[Evaluate, str | None]] = []
    for offset, literal, block in _split_blocks(text):
        if "{%" in literal:
            # Liquid's and Jinja's tags would go out as they are, in every request.
            starts = offset if block is None else offset - 2 - len(literal)
            raise TemplateError(
                starts + literal.index("{%") + 1,
                "'{%' tags are not ours: {{if COND then X else Y}} chooses, functions convert",
            )
        if literal:
            parts.append(literal)
        if block is not None:
            parts.append(_compile_block(block, offset))
    if len(parts) == 1 and isinstance(parts[0], tuple) and escape is None:
        run, block_text = parts[0]
        return _single(text, run, block_text)
    render = _concatenation(parts, escape)
    return CompiledTemplate(text, render, render, text)


def compile_expression(text: str) -> CompiledTemplate:
    """A bare expression (no braces), as conditions in rules and cases are written."""
    return _single(text, *_compile_block(text, 0))


def _single(source: str, run: Evaluate, block_text: str | None) -> CompiledTemplate:
    if block_text is None:  # a path or a constant: nothing inside can fail
        return CompiledTemplate(source, run, run, source)
    return CompiledTemplate(source, guard(run, block_text), run, block_text)


def compile_path(text: str) -> Evaluate:
    """A plain envelope path (``lead.first_name``, bare ``email``) → a reader; no parsing."""
    segments = tuple(text.split("."))
    return path_reader(segments if segments[0] in ENVELOPE_ROOTS else ("lead", *segments))


def compile_rule(text: str) -> CompiledRule:
    """``if COND then field = EXPR[, field = EXPR] [else field = EXPR]``."""
    tree = _parse(text, "rule", 0)
    condition, then, otherwise = tree.children
    return CompiledRule(
        text,
        guard(Compiler(text, 0).compile(condition).run, text),
        _assignments(text, then),
        _assignments(text, otherwise) if otherwise is not None else (),
    )


def _assignments(text: str, tree: Tree[Any]) -> tuple[tuple[tuple[str, ...], Evaluate], ...]:
    compiler = Compiler(text, 0)
    return tuple(
        (tuple(str(t) for t in target.children), guard(compiler.compile(value).run, text))
        for target, value in (a.children for a in tree.children)
    )


def _concatenation(
    parts: list[str | tuple[Evaluate, str | None]], escape: Callable[[str], str] | None = None
) -> Evaluate:
    # Per lead, a copy of the literal pieces with each block's text put in its place.
    layout = [part if isinstance(part, str) else "" for part in parts]
    blocks = [(n, *part) for n, part in enumerate(parts) if not isinstance(part, str)]

    def render(envelope: dict[str, Any]) -> str:
        pieces = layout.copy()
        block_text: str | None = None
        try:  # one guard for all the blocks, not a frame per block
            for position, evaluate, block_text in blocks:  # noqa: B007 - read by except
                value = evaluate(envelope)
                text = value if type(value) is str else to_text(value)
                pieces[position] = text if escape is None else escape(text)
            block_text = None  # the whole text, from here on
            return check_text("".join(pieces))
        except ConversionError as exc:
            raise EvaluationError(f"{block_text}: {exc}" if block_text else str(exc)) from None

    return render


def _split_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """→ (offset of the block's inside, literal before it, the block's inside or None)."""
    pieces: list[tuple[int, str, str | None]] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            pieces.append((position, text[position:], None))
            return pieces
        end = _block_end(text, start + 2)
        pieces.append((start + 2, text[position:start], text[start + 2 : end]))
        position = end + 2
        if len(pieces) > MAX_BLOCKS:
            raise TemplateError(start + 1, f"more than {MAX_BLOCKS} {{{{ }}}} blocks")


def _block_end(text: str, inside: int) -> int:
    """Index of the ``}}`` closing a block, skipping quoted strings."""
    quote: str | None = None
    i = inside
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif text.startswith("}}", i):
            return i
        elif text.startswith("{{", i):
            raise TemplateError(i + 1, "'{{' inside a block: blocks do not nest")
        i += 1
    raise TemplateError(inside - 1, "'{{' is never closed with '}}'")


def _compile_block(text: str, offset: int) -> tuple[Evaluate, str | None]:
    """→ the block's unguarded callable and the text naming it, None when it cannot fail."""
    node = Compiler(text, offset).compile_block(_parse(text, "block", offset))
    return node.run, None if node.cannot_fail else text.strip()


def _parse(text: str, start: str, offset: int) -> Tree[Any]:
    _check_depth(text, offset)
    if not text.strip():
        raise TemplateError(offset + 1, "empty block: write an expression inside {{ }}")
    try:
        return _PARSER.parse(text, start=start)
    except UnexpectedInput as exc:
        at_end = isinstance(exc, UnexpectedEOF) or (
            isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
        )
        column = len(text.rstrip()) + 1 if at_end else max(exc.column, 1)
        raise TemplateError(offset + column, _explain(exc, text)) from None


def _check_depth(text: str, offset: int) -> None:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise TemplateError(offset + i + 1, f"nested deeper than {MAX_DEPTH} levels")
        elif ch in ")]":
            depth -= 1


def _explain(exc: UnexpectedInput, text: str) -> str:
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        # ``{{ if x }}…{{ end }}``: a block-style condition, as in Go's or Handlebars'.
        starts_if = text.lstrip().lower().startswith("if ")
        return "the expression ends too early" + (
            ": a condition is one block, {{if COND then X else Y}}" if starts_if else ""
        )
    if isinstance(exc, UnexpectedToken):
        hint = " (compare with ==)" if exc.token.value == "=" else ""
        return f"unexpected {exc.token.value!r}{hint}"
    if isinstance(exc, UnexpectedCharacters):
        character = text[exc.pos_in_stream or 0]
        return f"unexpected character {character!r}{_CHARACTER_HINTS.get(character, '')}"
    return "cannot be parsed"


# What a character we do not take usually meant, in the template languages people know.
_CHARACTER_HINTS = {
    # Liquid's and Jinja's filters: {{ x | upper }}
    "|": "; a function is called as upper(x) or x.upper() ('||' is or)",
    "&": " ('&&' is and)",
}


__all__ = [
    "ENVELOPE_ROOTS",
    "CompiledRule",
    "CompiledTemplate",
    "EvaluationError",
    "TemplateError",
    "compile_expression",
    "compile_path",
    "compile_rule",
    "compile_template",
    "is_template",
]
