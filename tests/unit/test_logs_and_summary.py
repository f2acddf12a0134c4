"""The start-up summary and JSON log lines, as plain functions."""

from __future__ import annotations

import logging
import sys

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from streams import logs
from streams.cli.summary import startup_summary
from streams.config import Settings, parse_destinations
from streams.secrets import without_secret_values

tracer = TracerProvider().get_tracer("test")


def summary(document: dict, **settings: object) -> tuple[list[str], list[str]]:
    return startup_summary(
        Settings(broker="kafka://k1:9092,k2:9092", **settings),  # type: ignore[arg-type]
        parse_destinations(document),
    )


def test_the_summary_names_hosts_destinations_and_flows_without_credentials() -> None:
    lines, warnings = summary(
        {
            "destinations": [
                {"id": "crm", "url": "https://crm.example.com/x?key=${env:HOME}"},
                {"id": "old", "url": "https://old.example.com/x", "enabled": False},
                {
                    "id": "dev",
                    "url": "http://dev.example.com/x",
                    "insecure": True,
                    "caps": {"day": 10},
                },
            ],
            "flows": [{"id": "main", "plan": {"waterfall": ["crm", "dev"]}}],
        },
        web_port=6066,
    )
    text = "\n".join(lines + warnings)
    assert "broker k1:9092,k2:9092, PLAINTEXT" in lines
    assert "destination crm: json_post → crm.example.com" in lines
    assert "destination dev: json_post → dev.example.com (caps)" in lines
    assert "disabled: old" in lines
    assert "flow main: waterfall(crm, dev)" in lines
    assert "web port: 127.0.0.1:6066 (/readyz, /healthz, /metrics)" in lines
    assert "destination dev: plain http allowed (insecure: true)" in warnings
    assert "pw" not in text and "key=" not in text


def test_the_summary_warns_when_nothing_can_be_delivered() -> None:
    _, warnings = summary(
        {
            "destinations": [{"id": "crm", "url": "https://crm.example.com", "enabled": False}],
            "flows": [{"id": "main", "plan": "crm"}],
        },
        store="memory",
        egress="any",
    )
    assert any(w.startswith("every destination is disabled") for w in warnings)
    assert "flow main: every destination it names is disabled" in warnings
    assert any(w.startswith("COURIER_EGRESS=any") for w in warnings)
    assert any(w.startswith("tables in memory") for w in warnings)


def test_the_summary_warns_of_a_destination_in_no_flow() -> None:
    """A destination named in no plan (a typo, or added to the file and not to a flow) is
    never sent a lead: said at start, and by ``courier check``."""
    _, warnings = summary(
        {
            "destinations": [
                {"id": "crm", "url": "https://crm.example.com/x"},
                {"id": "buyer_a", "url": "https://a.example.com/x"},
                {"id": "buyer_b", "url": "https://b.example.com/x"},
            ],
            "flows": [{"id": "main", "plan": {"weighted": {"crm": 1, "buyer_a": 1}}}],
        }
    )
    assert "destination buyer_b is in no flow: it is never sent a lead" in warnings
    assert not any("crm is in no flow" in w or "buyer_a is in no flow" in w for w in warnings)
    _, shadowed = summary(
        {
            "destinations": [
                {"id": "crm", "url": "https://crm.example.com/x"},
                {"id": "buyer_a", "url": "https://a.example.com/x"},
            ],
            "flows": [
                {"id": "everything", "plan": "crm"},
                {"id": "loans", "when": "lead.loan > 0", "plan": "buyer_a"},
            ],
        }
    )
    assert any(w.startswith("flow loans comes after a flow without 'when'") for w in shadowed)
    assert "destination buyer_a is in no flow: it is never sent a lead" in shadowed
    _, without_flows = summary({"destinations": [{"id": "crm", "url": "https://c.example"}]})
    assert not any("in no flow" in w for w in without_flows)  # the default flow sends to all


def test_the_summary_warns_of_returns_taken_longer_than_sales_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETURNS_SECRET", "a-secret-for-tests")
    buyer = {
        "id": "buyer",
        "url": "https://buyer.example.com",
        "feedback": {"secret": "${env:RETURNS_SECRET}", "return_window_days": 7},
    }
    _, warnings = summary({"destinations": [buyer]}, remember_delivered_h=72)
    assert any(
        w.startswith(
            "destination buyer: returns are taken for 7 days but sales are remembered 72 h"
        )
        for w in warnings
    )
    _, fine = summary({"destinations": [buyer]}, remember_delivered_h=24 * 8)
    assert not any("returns" in w for w in fine)


def test_sales_are_remembered_as_long_as_the_longest_return_window_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A return on day 5 of a 7-day window must find the lead: by default the finished leads
    (who accepted each) are kept 72 h, or the longest return window if longer."""
    monkeypatch.setenv("RETURNS_SECRET", "a-secret-for-tests")

    def buyer(name: str, days: float) -> dict:
        feedback = {"secret": "${env:RETURNS_SECRET}", "return_window_days": days}
        return {"id": name, "url": "https://b.example.com", "feedback": feedback}

    destinations = parse_destinations(
        {
            "destinations": [
                buyer("weekly", 7),
                buyer("monthly", 30),
                {"id": "crm", "url": "https://c.example.com"},
            ]
        }
    )
    assert destinations.feedback_window_h() == 30 * 24
    assert Settings().remember_h(destinations.feedback_window_h()) == 30 * 24
    assert Settings().remember_h(0.0) == 72
    assert Settings().remember_h(24.0) == 72
    assert Settings(remember_delivered_h=12).remember_h(30 * 24) == 12  # as set, even shorter
    assert (
        parse_destinations(
            {"destinations": [{"id": "crm", "url": "https://c.example.com"}]}
        ).feedback_window_h()
        == 0
    )

    # A status API polled for 14 days: its answers are judged against the lead's state too.
    polled = {
        "id": "crm",
        "url": "https://c.example.com",
        "feedback": {
            "poll": {"url": "https://c.example.com/leads/{{reference_id}}", "until": "14d"},
            "reference_id": "$.id",
        },
    }
    assert parse_destinations({"destinations": [polled]}).feedback_window_h() == 14 * 24
    _, warnings = summary({"destinations": [polled]}, remember_delivered_h=72)
    assert any(
        w.startswith("destination crm: it is polled for 14 days but sales are remembered 72 h")
        for w in warnings
    )

    lines, warnings = summary({"destinations": [buyer("weekly", 7)]})
    assert any(
        "finished leads remembered 168 h (the longest feedback window)" in line for line in lines
    )
    assert not any("returns" in w for w in warnings)
    lines, _ = summary({"destinations": [{"id": "crm", "url": "https://c.example.com"}]})
    assert any(line.endswith("finished leads remembered 72 h") for line in lines)


def record(message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("broken")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("streams.x", logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_json_line_names_the_lead_destination_and_trace_in_its_context() -> None:
    formatter = logs.JsonLogFormatter()
    bare = orjson.loads(formatter.format(record("plain")))
    assert bare["message"] == "plain" and bare["level"] == "warning"
    assert not {"lead_id", "destination", "trace_id"} & set(bare)

    def inside() -> dict:
        logs.about_lead("L-9")
        with logs.about_destination("crm"), tracer.start_as_current_span("x") as span:
            line = orjson.loads(formatter.format(record("in a delivery", exc=True)))
            assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
        after = orjson.loads(formatter.format(record("after")))
        assert after["lead_id"] == "L-9" and "destination" not in after
        return line

    import contextvars

    line = contextvars.copy_context().run(inside)
    assert (line["lead_id"], line["destination"]) == ("L-9", "crm")
    assert "ValueError: broken" in line["exception"]
    # a context of its own: the lead id did not leak out
    assert "lead_id" not in orjson.loads(formatter.format(record("outside")))


@pytest.mark.parametrize(
    ("setting", "idempotent", "line", "warned"),
    [
        ("auto", True, "producer: idempotent (a record sent again is kept once)", False),
        ("auto", False, "producer: not idempotent (COURIER_KAFKA_IDEMPOTENCE=auto)", True),
        ("off", False, "producer: not idempotent (COURIER_KAFKA_IDEMPOTENCE=off)", False),
    ],
)
def test_the_summary_says_whether_the_producer_is_idempotent(
    setting: str, idempotent: bool, line: str, warned: bool
) -> None:
    lines, warnings = startup_summary(
        Settings(broker="kafka://k1:9092", kafka_idempotence=setting),  # type: ignore[arg-type]
        parse_destinations({"destinations": [{"id": "crm", "url": "https://crm.example.com"}]}),
        idempotent=idempotent,
    )
    assert line in lines
    assert any("idempotent producer" in w for w in warnings) is warned


def test_the_summary_says_which_tls_terms_a_destination_has_never_its_files() -> None:
    tls = {"ca_file": "/etc/courier/crm/ca.pem", "cert_file": "/etc/courier/crm/client.pem"}
    document = {"destinations": [{"id": "crm", "url": "https://crm.example.com", "tls": tls}]}
    with without_secret_values():  # the files are not here
        lines, _ = summary(document)
    assert (
        "destination crm: json_post → crm.example.com, TLS with its own CA and a client certificate"
        in lines
    )
    assert not any("/etc/courier" in line for line in lines)
