"""Polling a recipient's status API, decided without HTTP: the URL for a lead, what an
answer changes, when polling ends."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.config import parse_destinations
from streams.config.feedback import FeedbackConfig
from streams.errors import ConfigError
from streams.stages.feedback import poll_entry, poll_request, poll_url, read_poll, receive_feedback

NOW = 1_800_000_000.0
CONFIG = FeedbackConfig.model_validate({
    "lead_id": None, "reference_id": "$.lead", "kind": "$.status", "reason": "$.note",
    "poll": {"url": "https://buyer.example.com/status/{reference_id}?lead={lead_id}",
             "every_minutes": 60, "for_days": 2},
})  # fmt: skip


def entry(**changed: Any) -> dict[str, Any]:
    assert CONFIG.poll is not None
    return {**poll_entry("buyer", "L 1", "B/1", CONFIG.poll, NOW), **changed}


def answer(**doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_the_first_ask_is_an_interval_after_the_sale_and_the_url_is_escaped() -> None:
    first = entry()
    assert (first["next_at"], first["until"]) == (NOW + 3600, NOW + 2 * 86400)
    assert CONFIG.poll is not None
    url = poll_url(CONFIG.poll, first)
    assert url == "https://buyer.example.com/status/B%2F1?lead=L%201"
    asked = poll_request(url, None)
    accept = "application/json, application/xml;q=0.9, text/xml;q=0.9"
    assert (asked.method, asked.headers) == ("GET", {"Accept": accept})


def test_a_change_is_a_notice_and_the_same_answer_again_is_not() -> None:
    notice, kept = read_poll(CONFIG, entry(), 200, answer(status="in review"), NOW)
    assert notice is not None and kept is not None
    assert (notice.kind, notice.status_text, notice.lead_id) == ("status", "in review", "L 1")
    assert kept["next_at"] == NOW + 3600
    again, kept_again = read_poll(CONFIG, kept, 200, answer(status="in review"), NOW + 3600)
    assert again is None and kept_again is not None
    reason, _ = read_poll(CONFIG, kept, 200, answer(status="in review", note="dupe"), NOW)
    assert reason is not None and reason.reason == "Duplicate"  # a new reason is a change


def test_a_status_api_that_answers_xml_is_read_by_the_same_paths() -> None:
    """An XML answer (older lead systems' status APIs) was "not JSON": never read, asked
    again until the polling's time ran out."""
    xml_api = FeedbackConfig.model_validate({
        "lead_id": None, "reference_id": "$.LeadStatus.Lead.@id", "kind": "$.LeadStatus.Lead.Status",
        "reason": "$.LeadStatus.Lead.Note", "poll": {"url": CONFIG.poll.url if CONFIG.poll else ""},
    })  # fmt: skip
    said = b'<?xml version="1.0"?><LeadStatus><Lead id="B/1"><Status>Returned</Status>'
    said += b"<Note>Disconnected number</Note></Lead></LeadStatus>"
    notice, kept = read_poll(xml_api, entry(), 200, said, NOW)
    assert notice is not None and kept is None  # a return ends the polling
    assert (notice.kind, notice.reason, notice.reference_id) == ("returned", "Bad phone", "B/1")


def test_a_poll_written_as_the_feature_writes_it_is_the_same_poll() -> None:
    """``{{reference_id}}`` (as templates write names) was sent with its braces, and
    ``every: 1h, until: 7d`` were unknown options."""
    written = FeedbackConfig.model_validate({
        "lead_id": None, "reference_id": "$.lead", "kind": "$.status", "reason": "$.note",
        "poll": {"url": "https://buyer.example.com/status/{{reference_id}}?lead={{ lead_id }}",
                 "every": "1h", "until": "2d"},
    })  # fmt: skip
    assert written.poll is not None and CONFIG.poll is not None
    assert (written.poll.url, written.poll.every_minutes, written.poll.for_days) == (
        CONFIG.poll.url, 60.0, 2.0
    )  # fmt: skip
    assert poll_url(written.poll, entry()) == "https://buyer.example.com/status/B%2F1?lead=L%201"


@pytest.mark.parametrize(
    ("poll", "problem"),
    [
        ({"url": "https://b.example.com/{ref}"}, "url: unknown placeholder {ref} (use "),
        ({"url": "https://b.example.com/{lead_id}", "every": "hourly"}, "every: 'hourly' is "
         "not a duration like 30m, 1h or 7d"),
        ({"url": "https://b.example.com/{lead_id}", "every": "2s"}, "every: '2s' is not between"),
        ({"url": "https://b.example.com/{lead_id}", "until": "2y"}, "until: '2y' is not a "),
        ({"url": "https://b.example.com/{lead_id}", "every": "1h", "every_minutes": 5},
         "every: give every or every_minutes, not both"),
    ],
)  # fmt: skip
def test_a_poll_that_could_not_ask_is_refused_at_start(poll: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace("{", r"\{")):
        FeedbackConfig.model_validate({"lead_id": "$.lead", "poll": poll})


@pytest.mark.parametrize("word", ["Converted", "returned", "DQ"])
def test_a_final_kind_ends_the_polling(word: str) -> None:
    notice, kept = read_poll(CONFIG, entry(), 200, answer(status=word), NOW)
    assert notice is not None and kept is None


def test_errors_and_unreadable_answers_are_asked_again_and_time_ends_it() -> None:
    for status, body in ((503, b""), (None, b""), (200, b"not json"), (404, b"{}")):
        notice, kept = read_poll(CONFIG, entry(), status, body, NOW)
        assert notice is None and kept is not None and kept["next_at"] == NOW + 3600
    notice, kept = read_poll(CONFIG, entry(), 200, answer(status="new"), NOW + 2 * 86400)
    assert notice is not None and kept is None  # its last ask


def test_a_polled_only_recipient_needs_no_secret_and_takes_no_posts() -> None:
    assert CONFIG.secret is None
    refused = receive_feedback("buyer", CONFIG, {}, 2, b"{}")
    assert refused.status == 404
    with pytest.raises(ConfigError) as raised:
        parse_destinations({"destinations": [{
            "id": "buyer", "url": "https://buyer.example.com/leads",
            "feedback": {"kind": "$.status"},
        }]})  # fmt: skip
    assert "secret: needed to check notices the recipient sends" in str(raised.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.none() | st.integers(min_value=100, max_value=599),
    body=st.binary(max_size=200)
    | st.builds(
        lambda doc: json.dumps(doc).encode(),
        st.dictionaries(st.sampled_from(["lead", "status", "note", "x"]), json_values),
    ),
)
def test_whatever_a_recipient_answers_a_poll_ends_in_a_notice_or_an_entry(
    status: int | None, body: bytes
) -> None:
    """A hostile or broken status API never raises: the answer is a notice, or nothing
    and the entry is asked again (or ends with its time)."""
    notice, kept = read_poll(CONFIG, entry(), status, body, NOW)
    assert kept is not None or (
        notice is not None and notice.kind in ("returned", "converted", "disqualified")
    )
    if notice is not None:
        assert notice.lead_id == "L 1" and notice.destination_id == "buyer"
        assert notice.to_json()  # it can be written to the routing topic
