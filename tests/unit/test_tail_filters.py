"""``courier tail`` filters, on decoded events as the command sees them."""

from __future__ import annotations

from types import SimpleNamespace

from streams.cli.console import Wanted

ATTEMPT = {"type": "DeliveryEvent", "lead_id": "L-1", "destination_id": "crm", "outcome": "error"}
OUTCOME = {
    "type": "LeadOutcome",
    "lead_id": "L-2",
    "outcome": "delivered",
    "accepted_by": ["buyer"],
    "destinations": [{"destination_id": "crm"}, {"destination_id": "buyer"}],
}


def test_no_filter_takes_everything() -> None:
    assert Wanted().event(ATTEMPT) and Wanted().event(OUTCOME)


def test_each_filter_narrows() -> None:
    assert Wanted(lead_id="L-1").event(ATTEMPT) and not Wanted(lead_id="L-1").event(OUTCOME)
    assert Wanted(destination="crm").event(ATTEMPT)
    assert Wanted(destination="crm").event(OUTCOME)  # it was tried there
    assert not Wanted(destination="other").event(OUTCOME)
    assert Wanted(outcome="error").event(ATTEMPT) and not Wanted(outcome="success").event(ATTEMPT)
    assert Wanted(outcome="delivered", destination="buyer").event(OUTCOME)


def test_dead_letters_filter_by_lead_only() -> None:
    record = SimpleNamespace(key=b"L-9")
    assert Wanted(lead_id="L-9").dead_letter(record)
    assert not Wanted(lead_id="L-1").dead_letter(record)
    assert not Wanted(destination="crm").dead_letter(record)
