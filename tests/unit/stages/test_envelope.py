"""Every way a record can fail to be a lead has its own countable reason and a detail."""

from __future__ import annotations

import orjson
import pytest

from streams.model import Lead
from streams.stages.envelope import Rejected, dead_letter_headers, parse_envelope

LIMIT = 4096


def test_a_full_envelope_becomes_a_lead() -> None:
    envelope = {
        "id": "L-1",
        "submission": {"timestamp": "2026-11-22T10:00:00Z"},
        "source": {"name": "form"},
        "lead": {"email": "a@example.com"},
        "appended": {"score": 7},
    }
    parsed = parse_envelope(orjson.dumps(envelope), LIMIT)
    assert parsed == Lead("L-1", envelope)


def test_a_numeric_id_is_taken_as_its_decimal_string() -> None:
    parsed = parse_envelope(b'{"id": 42, "lead": {}}', LIMIT)
    assert isinstance(parsed, Lead)
    assert parsed.id == "42"


def test_an_integer_past_64_bits_keeps_its_digits() -> None:
    """orjson reads an integer past 64 bits as a float: two leads numbered
    123456789012345678901234 and …235 upstream became one id ("1.2345678901234568e+23",
    refused as a number), and a 27-digit account number was sent rounded."""
    first, second = (
        parse_envelope(b'{"id": 12345678901234567890123%d, "lead": {"account": '
                       b'123456789012345678901234567, "age": 9223372036854775807}}' % n, LIMIT)
        for n in (4, 5)
    )  # fmt: skip
    assert isinstance(first, Lead) and isinstance(second, Lead)
    assert (first.id, second.id) == ("123456789012345678901234", "123456789012345678901235")
    assert first.envelope["lead"] == {
        "account": "123456789012345678901234567",  # as text: no JSON writer takes it as a number
        "age": 9223372036854775807,
    }


@pytest.mark.parametrize(
    ("raw", "reason", "detail_mentions"),
    [
        (None, "Empty record", "no value"),
        (b"", "Empty record", "no value"),
        (b"{nope", "Not JSON", ""),
        (b"\xff\xfe", "Not JSON", ""),
        (b"[1, 2]", "Not a JSON object", "array"),
        (b'"L-1"', "Not a JSON object", "string"),
        (b'{"lead": {}}', "Missing id", "id"),
        (b'{"id": "", "lead": {}}', "Missing id", "id"),
        (b'{"id": null, "lead": {}}', "Missing id", "id"),
        (b'{"id": ["L"], "lead": {}}', "Invalid id", "id"),
        (b'{"id": true, "lead": {}}', "Invalid id", "id"),
        (b'{"id": "' + b"x" * 300 + b'", "lead": {}}', "Invalid id", "id"),
        (b'{"id": "L-1"}', "Missing lead", "lead"),
        (b'{"id": "L-1", "lead": "a=b"}', "Invalid section", "lead"),
        (b'{"id": "L-1", "lead": {}, "source": [1]}', "Invalid section", "source"),
        (b'{"id": "L-1", "lead": {"n": "' + b"x" * LIMIT + b'"}}', "Record too large", "bytes"),
    ],
)
def test_a_record_that_is_not_a_lead_says_why(
    raw: bytes | None, reason: str, detail_mentions: str
) -> None:
    parsed = parse_envelope(raw, LIMIT)
    assert isinstance(parsed, Rejected)
    assert parsed.reason == reason
    assert parsed.detail
    assert detail_mentions in parsed.detail


def test_dead_letter_headers_carry_reason_detail_and_source_position() -> None:
    rejected = Rejected("Missing id", "id: required")
    headers = dict(dead_letter_headers(rejected, "leads.processed", 3, 1234))
    assert headers == {
        "courier.dlq.reason": b"Missing id",
        "courier.dlq.detail": b"id: required",
        "courier.dlq.topic": b"leads.processed",
        "courier.dlq.partition": b"3",
        "courier.dlq.offset": b"1234",
    }
