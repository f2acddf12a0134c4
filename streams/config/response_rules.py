"""A destination's own reading of its recipient's answers: rules tried in order before the
integration's defaults, and values captured from a successful answer.

A rule looks at the status, a JSON path (jsonpath-ng), an XML path (ElementTree's XPath
subset, parsed with defusedxml), a header, or a regular expression (RE2) on the body. Paths and
patterns compile when the configuration loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, Protocol, cast
from xml.etree.ElementTree import Element

import re2
from jsonpath_ng import JSONPath
from jsonpath_ng import parse as parse_json_path
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from streams.compiled_model import CompiledModel
from streams.model import HttpResponse, Outcome, OutcomeCategory, OutcomeKind
from streams.outcome import (
    CAPTURE_VALUE_LIMIT,
    NOT_CAPTURED,
    RAW_LIMIT,
    REASON_LIMIT,
    best_offer,
    normalize_reason,
    one_answer,
    to_price,
    values_named,
)


class Pattern(Protocol):
    """What a compiled RE2 pattern offers here (google-re2 ships no type hints)."""

    def search(self, text: str) -> object | None: ...


# Patterns run on at most this much of a body: a recipient's 50 MB page costs no more.
BODY_SCAN_LIMIT = 65_536


class _Test(CompiledModel):
    """equals / one_of / matches / exists: exactly one says what the value must be."""

    model_config = ConfigDict(extra="forbid")

    equals: Any = None
    one_of: list[Any] | None = None
    matches: str | None = None
    exists: bool | None = None

    _pattern: Pattern | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_test(self) -> _Test:
        given = [n for n in ("equals", "one_of", "matches", "exists") if n in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, one_of, matches, exists")
        if self.matches is not None:
            self._pattern = _compile_pattern(self.matches)
        return self

    def holds(self, value: Any) -> bool:
        if self.exists is not None:
            return (value is not None) is self.exists
        if value is None:
            return False
        if self._pattern is not None:
            return self._pattern.search(str(value)) is not None
        if self.one_of is not None:
            return any(_same(value, option) for option in self.one_of)
        return _same(value, self.equals)


class JsonTest(_Test):
    path: str  # e.g. "$.status" or "errors[0].message"
    _compiled: JSONPath | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile_path(self) -> JsonTest:
        self._compiled = compile_json_path(self.path)
        return self

    def read(self, body: Any) -> Any:
        assert self._compiled is not None
        return first_json(self._compiled, body)


class XmlTest(_Test):
    path: str  # e.g. ".//Status" or "soap:Body/ns:addResponse/ns:id"
    namespaces: dict[str, str] = Field(default_factory=dict)

    def read(self, root: Element | None) -> Any:
        return first_xml(root, self.path, self.namespaces)


class HeaderTest(_Test):
    name: str


class Match(CompiledModel):
    """Every test given must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status: int | str | list[int | str] | None = None  # 200, "4xx", [200, "201"]
    json_: JsonTest | None = Field(default=None, alias="json")
    xml: XmlTest | None = None
    header: HeaderTest | None = None
    body_matches: str | None = None

    _statuses: tuple[tuple[int, int], ...] = PrivateAttr(default=())
    _body_pattern: Pattern | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Match:
        if self.status is not None:
            given = self.status if isinstance(self.status, list) else [self.status]
            self._statuses = tuple(_status_range(s) for s in given)
        if self.body_matches is not None:
            self._body_pattern = _compile_pattern(self.body_matches)
        return self

    def holds(self, res: HttpResponse, body: Any, xml: Element | None, text: str) -> bool:
        if self._statuses and not any(low <= res.status <= high for low, high in self._statuses):
            return False
        if self.json_ is not None and not self.json_.holds(self.json_.read(body)):
            return False
        if self.xml is not None and not self.xml.holds(self.xml.read(xml)):
            return False
        if self.header is not None:
            value = _header(res, self.header.name)
            if not self.header.holds(value):
                return False
        return self._body_pattern is None or self._body_pattern.search(text) is not None


class ValuePath(CompiledModel):
    """Where a value is in an answer: ``json: $.data.id`` or ``xml: .//LeadId``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    json_: str | None = Field(default=None, alias="json")
    xml: str | None = None
    namespaces: dict[str, str] = Field(default_factory=dict)

    _compiled: JSONPath | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _plain_json_path(cls, given: Any) -> Any:
        """``reference_id: $.id``: a JSON path, as the feedback block writes its paths."""
        return {"json": given} if isinstance(given, str) else given

    @model_validator(mode="after")
    def _one_path(self) -> ValuePath:
        if (self.json_ is None) == (self.xml is None):
            raise ValueError("give exactly one of json, xml")
        if self.json_ is not None:
            self._compiled = compile_json_path(self.json_)
        return self

    def read(self, body: Any, xml: Element | None) -> Any:
        if self._compiled is not None:
            return first_json(self._compiled, body)
        assert self.xml is not None
        return first_xml(xml, self.xml, self.namespaces)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Match
    outcome: Literal["success", "failure", "error", "skip"]
    category: OutcomeCategory | None = None
    reason: str | None = None  # fixed; else read by the config's ``reason`` path, normalised
    retryable: bool | None = None  # errors default to retryable


class ResponseConfig(BaseModel):
    """A destination's ``response:`` block."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    # What a readable answer is; anything else (an HTML error page where JSON was promised,
    # truncated XML) is an error outcome before any rule looks at it.
    expect: Literal["any", "json", "xml"] = "any"
    reason: ValuePath | None = None
    # name → where: "reference_id" and "price" fill the event's fields; the rest become
    # appended.<destination>.<name>.
    capture: dict[str, ValuePath] = Field(default_factory=dict)
    # capture name → the names to look for among the answer's own fields (a JSON answer's
    # top level, an XML answer's elements, a form's pairs: the default outcome's verdict
    # fields, in any case) when its path finds nothing. Set for a ping's bid and bid id
    # (streams/config/destinations.py), which buyers answer in every format and name.
    _fields_named: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    def with_fields_named(self, fields: dict[str, tuple[str, ...]]) -> ResponseConfig:
        self._fields_named = fields
        return self

    def outcome(self, res: HttpResponse) -> Outcome | None:
        """The first rule that holds, as an Outcome; None when none does."""
        if not self.rules and self.expect == "any":
            return None
        text = res.decoded(BODY_SCAN_LIMIT)
        body, xml = res.json(), res.xml()
        raw = res.text[:RAW_LIMIT] or None
        unreadable = (self.expect == "json" and body is None) or (
            self.expect == "xml" and xml is None
        )
        # A redirect's body is a page about the move, not the answer: rules (an old form
        # endpoint's 302 to its thank-you page) or the default outcome say what it was.
        if unreadable and res.body and not 300 <= res.status < 400:
            return Outcome.error(
                f"Unreadable response (expected {self.expect.upper()})",
                retryable=res.status >= 500,
                raw=raw,
                category=OutcomeCategory.RECIPIENT_ERROR,
            )
        for rule in self.rules:
            if rule.when.holds(res, body, xml, text):
                return self._outcome_of(rule, body, xml, raw)
        return None

    def _outcome_of(self, rule: Rule, body: Any, xml: Element | None, raw: str | None) -> Outcome:
        said = self.reason.read(body, xml) if self.reason is not None else None
        text = str(said).strip() if said is not None else ""
        if rule.outcome == "success":
            return Outcome.success(rule.reason or "Accepted", raw=raw)
        if rule.outcome == "failure":
            known = normalize_reason(text) if text and rule.reason is None else None
            reason = rule.reason or (known[0] if known else text[:REASON_LIMIT] or "Rejected")
            category = rule.category or (known[1] if known else OutcomeCategory.HARD_REJECT)
            return Outcome.failure(reason, raw=raw, category=category)
        if rule.outcome == "error":
            retryable = True if rule.retryable is None else rule.retryable
            reason = rule.reason or text[:REASON_LIMIT] or "Recipient error"
            return Outcome.error(reason, retryable=retryable, raw=raw, category=rule.category)
        return Outcome.skip(rule.reason or text[:REASON_LIMIT] or "Skipped", raw=raw)

    def captured(self, outcome: Outcome, res: HttpResponse) -> Outcome:
        """Fill reference id, price and appended values of a success from ``capture``."""
        if outcome.kind is not OutcomeKind.SUCCESS or not self.capture:
            return outcome
        body, xml = res.json(), res.xml()
        values = {name: path.read(body, xml) for name, path in self.capture.items()}
        inner = one_answer(body)
        if inner is not body and None in values.values():
            # Not at the path in the answer as written, so read in the answer inside its
            # wrapper (``{"data": {"bid": 12.5}}``, a batch of one), as the default outcome
            # reads its fields: a buyer that wrapped its bid never won an auction.
            for name, path in self.capture.items():
                if values[name] is None:
                    values[name] = path.read(inner, None)
        for name, names in self._fields_named.items():
            if values.get(name) is None:
                # the first of them said, in any case (``<Bid>``, ``Cost``)
                said = values_named(outcome.appended, names)
                values[name] = next((value for value in said if value), None)
        unread = values.get("reference_id") is None or to_price(values.get("price")) is None
        # only a ping's reading, and only when its bid or bid id is still missing
        offer = best_offer(inner) if self._fields_named and unread else None
        if offer is not None:
            # a marketplace's list of its buyers' bids, or a bid's own object: the best is
            # the ping's bid when none was read, its id the bid id the post carries (the
            # ping's own id stays appended as it was named)
            offered, offer_id = offer
            if to_price(values.get("price")) is None:
                values["price"] = offered
                values["reference_id"] = offer_id or values.get("reference_id")
            elif values.get("reference_id") is None:
                values["reference_id"] = offer_id
        reference = values.pop("reference_id", None)
        price = to_price(values.pop("price", None))
        texts = {
            k: str(v) for k, v in values.items() if v is not None and not isinstance(v, dict | list)
        }
        appended = {
            **outcome.appended,
            **{k: v for k, v in texts.items() if len(v) <= CAPTURE_VALUE_LIMIT},
        }
        too_long = sum(len(v) > CAPTURE_VALUE_LIMIT for v in texts.values())
        if too_long:
            before = int(outcome.appended.get(NOT_CAPTURED, "0"))
            appended[NOT_CAPTURED] = str(before + too_long)
        return replace(
            outcome,
            reference_id=str(reference) if reference is not None else outcome.reference_id,
            price=price if price is not None else outcome.price,
            appended=appended,
        )


def compile_json_path(path: str) -> JSONPath:
    try:
        compiled: JSONPath = parse_json_path(path)
    except Exception as exc:  # jsonpath-ng raises several kinds; all mean "does not parse"
        raise ValueError(f"JSON path {path!r} does not parse ({exc})") from None
    return compiled


def first_json(path: JSONPath, body: Any) -> Any:
    if body is None:
        return None
    found = path.find(body)
    return found[0].value if found else None


def first_xml(root: Element | None, path: str, namespaces: dict[str, str]) -> Any:
    if root is None:
        return None
    try:
        element = root.find(path, namespaces)
    except SyntaxError:
        return None
    if element is None:
        return None
    return (element.text or "").strip()


def _status_range(status: int | str) -> tuple[int, int]:
    text = str(status).strip().lower()
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        return int(text[0]) * 100, int(text[0]) * 100 + 99
    if text.isascii() and text.isdigit() and 100 <= int(text) <= 599:
        return int(text), int(text)
    raise ValueError(f"status {status!r}: write a code like 409 or a class like 4xx")


def _quiet_options() -> Any:
    """RE2's defaults, minus its own report of a pattern it cannot parse: written by its C++
    logger straight to stderr (with a note that its logging is not set up), around our
    one-line problem in `courier check` and in a worker's log."""
    options = re2.Options()
    options.log_errors = False
    return options


_QUIET = _quiet_options()


def _compile_pattern(pattern: str) -> Pattern:
    """On RE2: linear time in the text whatever the pattern, so a recipient's answer cannot
    hold the event loop (``(a+)+$`` took 20 s of CPU on 29 bytes with Python's engine).
    What RE2 cannot run in linear time (back-references, look-around) is refused here."""
    try:
        return cast(Pattern, re2.compile(pattern, _QUIET))
    except re2.error as exc:
        raise ValueError(
            f"pattern {pattern!r} is not one RE2 runs ({exc}); back-references and "
            "look-around are not supported"
        ) from None


def _header(res: HttpResponse, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in res.headers.items() if k.lower() == wanted), None)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(expected, str) or isinstance(value, str):
        return str(value).strip().casefold() == str(expected).strip().casefold()
    return bool(value == expected)
