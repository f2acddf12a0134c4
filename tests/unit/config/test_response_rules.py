"""A destination's response rules: every kind of test, capture, and answers nobody expected."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from streams.config.response_rules import ResponseConfig
from streams.model import HttpRequest, HttpResponse, Lead, Outcome, OutcomeCategory, OutcomeKind
from streams.stages.attempt import attempt_delivery
from tests.conftest import destination


def answer(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status, headers or {}, raw)


def config(**fields: Any) -> ResponseConfig:
    return ResponseConfig.model_validate(fields)


SOAP_OK = b"""<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body><r:addResponse xmlns:r="urn:crm"><r:status>OK</r:status><r:id>F9-77</r:id>
  <r:price>4.25</r:price></r:addResponse></soap:Body></soap:Envelope>"""


@pytest.mark.parametrize(
    ("rules", "res", "expected"),
    [
        # status codes and classes
        ([{"when": {"status": 202}, "outcome": "success"}], answer(202), OutcomeKind.SUCCESS),
        ([{"when": {"status": "2xx"}, "outcome": "failure"}], answer(204), OutcomeKind.FAILURE),
        ([{"when": {"status": [200, "5xx"]}, "outcome": "skip"}], answer(503), OutcomeKind.SKIP),
        # a JSON path: 200 with {"result": "rejected"} is a business "no"
        (
            [{"when": {"json": {"path": "$.result", "equals": "Rejected"}}, "outcome": "failure"}],
            answer(200, {"result": "rejected"}),
            OutcomeKind.FAILURE,
        ),
        (
            [
                {
                    "when": {"json": {"path": "data.items[0].ok", "equals": True}},
                    "outcome": "success",
                }
            ],
            answer(200, {"data": {"items": [{"ok": True}]}}),
            OutcomeKind.SUCCESS,
        ),
        (
            [{"when": {"json": {"path": "$.code", "one_of": [7, 8]}}, "outcome": "error"}],
            answer(200, {"code": 8}),
            OutcomeKind.ERROR,
        ),
        (
            [{"when": {"json": {"path": "$.errors", "exists": True}}, "outcome": "failure"}],
            answer(200, {"errors": []}),
            OutcomeKind.FAILURE,
        ),
        # an XML path with namespaces
        (
            [
                {
                    "when": {
                        "xml": {
                            "path": "soap:Body/r:addResponse/r:status",
                            "namespaces": {
                                "soap": "http://schemas.xmlsoap.org/soap/envelope/",
                                "r": "urn:crm",
                            },
                            "equals": "OK",
                        }
                    },
                    "outcome": "success",
                }
            ],
            answer(200, SOAP_OK),
            OutcomeKind.SUCCESS,
        ),
        # a header
        (
            [{"when": {"header": {"name": "x-result", "matches": "^REJ"}}, "outcome": "failure"}],
            answer(200, b"", {"X-Result": "REJECTED:42"}),
            OutcomeKind.FAILURE,
        ),
        # a regular expression on the body
        (
            [{"when": {"body_matches": "(?i)thank you"}, "outcome": "success"}],
            answer(200, b"<html>Thank you!</html>"),
            OutcomeKind.SUCCESS,
        ),
        # every test of a rule must hold
        (
            [{"when": {"status": 200, "body_matches": "nope"}, "outcome": "failure"}],
            answer(200, b"yes"),
            None,
        ),
    ],
)
def test_each_kind_of_rule(
    rules: list[Any], res: HttpResponse, expected: OutcomeKind | None
) -> None:
    outcome = config(rules=rules).outcome(res)
    assert (outcome.kind if outcome else None) is expected


def test_the_first_matching_rule_wins_and_reasons_are_read_and_normalised() -> None:
    rules = config(
        rules=[
            {"when": {"json": {"path": "$.status", "equals": "ok"}}, "outcome": "success"},
            {
                "when": {"json": {"path": "$.status", "equals": "dupe"}},
                "outcome": "failure",
                "category": "duplicate",
                "reason": "Duplicate lead",
            },
            {"when": {"json": {"path": "$.status", "equals": "no"}}, "outcome": "failure"},
            {"when": {"status": "2xx"}, "outcome": "error", "retryable": False},
        ],
        reason={"json": "$.messages[0]"},
    )
    dupe = rules.outcome(answer(200, {"status": "dupe", "messages": ["Lead 5 exists"]}))
    assert dupe is not None
    assert (dupe.reason, dupe.category) == ("Duplicate lead", OutcomeCategory.DUPLICATE)
    no = rules.outcome(answer(200, {"status": "no", "messages": ["Outside coverage area for ZIP"]}))
    assert no is not None
    assert (no.reason, no.category) == ("Outside service area", OutcomeCategory.HARD_REJECT)
    assert no.raw is not None and "ZIP" in no.raw
    odd = rules.outcome(answer(200, {"status": "??"}))
    assert odd is not None
    assert (odd.kind, odd.retryable, odd.reason) == (OutcomeKind.ERROR, False, "Recipient error")


def test_capture_fills_reference_price_and_appended_from_json_or_xml() -> None:
    json_capture = config(
        capture={
            "reference_id": {"json": "$.data.id"},
            "price": {"json": "$.payout"},
            "url": {"json": "$.data.url"},
        }
    )
    outcome = json_capture.captured(
        Outcome.success(),
        answer(201, {"data": {"id": 991, "url": "https://crm/991"}, "payout": "12.5"}),
    )
    assert outcome.reference_id == "991"
    assert outcome.price == Decimal("12.5")
    assert outcome.appended == {"url": "https://crm/991"}

    ns = {"r": "urn:crm"}
    xml_capture = config(
        capture={
            "reference_id": {"xml": ".//r:id", "namespaces": ns},
            "price": {"xml": ".//r:price", "namespaces": ns},
        }
    )
    outcome = xml_capture.captured(Outcome.success(), answer(200, SOAP_OK))
    assert (outcome.reference_id, outcome.price) == ("F9-77", Decimal("4.25"))
    # failures keep what they had: nothing is captured from a "no"
    refused = xml_capture.captured(Outcome.failure("Duplicate lead"), answer(200, SOAP_OK))
    assert refused.reference_id is None


def test_a_plain_capture_path_is_a_json_path() -> None:
    """``reference_id: $.id`` (as the feedback block writes paths) was "should be a block"."""
    plain = config(capture={"reference_id": "$.data.id", "price": "$.payout"})
    spelled = config(capture={"reference_id": {"json": "$.data.id"}, "price": {"json": "$.payout"}})
    res = answer(200, b'{"data": {"id": "R-1"}, "payout": "12.5"}')
    assert plain.captured(Outcome.success(), res) == spelled.captured(Outcome.success(), res)
    assert plain.captured(Outcome.success(), res).reference_id == "R-1"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"rules": [{"when": {"status": "99x"}, "outcome": "success"}]}, "status '99x'"),
        (
            {"rules": [{"when": {"json": {"path": "$[", "equals": 1}}, "outcome": "success"}]},
            "does not parse",
        ),
        (
            {"rules": [{"when": {"body_matches": "(unclosed"}, "outcome": "success"}]},
            "is not one RE2 runs",
        ),
        (
            {"rules": [{"when": {"body_matches": r"(a)\1"}, "outcome": "success"}]},
            "back-references and look-around are not supported",
        ),
        (
            {"rules": [{"when": {"json": {"path": "$.a"}}, "outcome": "success"}]},
            "exactly one of equals",
        ),
        ({"rules": [{"when": {}, "outcome": "sold"}]}, "outcome"),
        ({"capture": {"id": {"json": "$.a", "xml": "a"}}}, "exactly one of json, xml"),
    ],
)
def test_bad_rules_are_refused_at_load(
    fields: dict[str, Any], problem: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=problem):
        config(**fields)
    # Only our one line: RE2's C++ logger wrote its own report of a bad pattern to stderr.
    assert capfd.readouterr().err == ""


# Answers nobody planned for: each ends as a clear outcome, never an exception.
HOSTILE: list[tuple[str, HttpResponse]] = [
    ("HTML error page with 200", answer(200, b"<html><body>Oops</body></html>")),
    ("HTML error page with 500", answer(500, b"<html><h1>Internal Server Error</h1></html>")),
    ("truncated JSON", answer(200, b'{"status": "ok", "id": ')),
    ("truncated XML", answer(200, b"<soap:Envelope><soap:Body><r:id>1")),
    ("JSON that is a list", answer(200, b"[1, 2, 3]")),
    ("JSON that is a string", answer(200, b'"accepted"')),
    ("JSON with a huge number", answer(200, b'{"price": 1e999999, "id": 1}')),
    ("NaN price", answer(200, b'{"price": "NaN"}')),
    ("binary garbage", answer(200, bytes(range(256)) * 10)),
    ("invalid UTF-8", answer(422, b"\xff\xfe\xfd message")),
    ("empty 500", answer(500)),
    ("empty 422", answer(422)),
    (
        "billion laughs",
        answer(
            200,
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><r><id>&c;</id></r>',
        ),
    ),
    (
        "external entity",
        answer(
            200,
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r><id>&x;</id></r>',
        ),
    ),
    ("deeply nested JSON", answer(200, b"[" * 100_000 + b"]" * 100_000)),
    ("status 999", answer(999, b"?")),
    ("3xx redirect", answer(302, b"", {"Location": "https://elsewhere.example"})),
    ("1 MB of one line", answer(200, b"x" * 1_000_000)),
]


@pytest.mark.parametrize(("name", "res"), HOSTILE, ids=[n for n, _ in HOSTILE])
async def test_hostile_answers_become_outcomes(
    make_destinations: Any, name: str, res: HttpResponse
) -> None:
    ns = {"r": "urn:crm"}
    (dest,) = make_destinations(
        destination(
            response={
                "rules": [
                    {"when": {"json": {"path": "$.status", "equals": "ok"}}, "outcome": "success"},
                    {"when": {"xml": {"path": ".//id", "exists": True}}, "outcome": "success"},
                    {"when": {"body_matches": "Oops"}, "outcome": "error"},
                ],
                "capture": {
                    "reference_id": {"xml": ".//r:id", "namespaces": ns},
                    "price": {"json": "$.price"},
                },
            }
        )
    ).destinations

    async def send(req: HttpRequest, _: Any) -> HttpResponse:
        return res

    attempt = await attempt_delivery(Lead("L-1", {"id": "L-1", "lead": {}}), dest, send)
    assert attempt.outcome.kind in set(OutcomeKind)
    assert attempt.outcome.reason
    assert attempt.outcome.raw is None or len(attempt.outcome.raw) <= 1000
    if attempt.outcome.price is not None:
        assert attempt.outcome.price.is_finite()


@pytest.mark.parametrize(
    ("expect", "res", "reason"),
    [
        (
            "json",
            answer(200, b"<html>Service Unavailable</html>"),
            "Unreadable response (expected JSON)",
        ),
        ("json", answer(200, b'{"status": "ok", "id": '), "Unreadable response (expected JSON)"),
        ("xml", answer(200, b"<r><id>1</id>"), "Unreadable response (expected XML)"),
        ("xml", answer(200, b'{"id": 1}'), "Unreadable response (expected XML)"),
    ],
)
def test_an_answer_in_the_wrong_format_is_an_error(
    expect: str, res: HttpResponse, reason: str
) -> None:
    outcome = config(expect=expect).outcome(res)
    assert outcome is not None
    assert (outcome.kind, outcome.reason) == (OutcomeKind.ERROR, reason)
    assert config(expect=expect).outcome(answer(204)) is None  # no body is no format


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    """``(a+)+$`` on 29 bytes took 20 s of CPU with Python's engine, and doubles with every
    byte; on RE2 it is linear, so 40 bytes (hours with ``re``) finish at once."""
    config = ResponseConfig.model_validate(
        {"rules": [{"when": {"body_matches": "(a+)+$"}, "outcome": "failure", "reason": "x"}]}
    )
    answer = HttpResponse(200, {}, b"a" * 40 + b"!")
    assert config.outcome(answer) is None


def test_a_redirect_is_read_by_the_rules_not_as_an_unreadable_answer() -> None:
    """An old form endpoint answers 302 to its thank-you page: a rule can call it a success;
    without one, the default outcome names the move (tests/unit/test_outcome.py)."""
    moved = answer(302, b"<html>Found</html>", {"Location": "https://buyer.example/thanks"})
    assert config(expect="json").outcome(moved) is None
    thanks = config(expect="json", rules=[{"when": {"status": 302}, "outcome": "success"}])
    outcome = thanks.outcome(moved)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.SUCCESS
