"""``POST /api/admin/<destination>/<verb>``, decided without Kafka or HTTP: refused with the
reason, or the action with who (the token's name) and the state before and after."""

from __future__ import annotations

from typing import Any

from streams.control.admin import AdminState, admin_request
from streams.stages.events import admin_action


def ask(verb: str, body: bytes = b"", **given: Any) -> Any:
    options: dict[str, Any] = {"known": True, "caller": "ops-bot", "refusal": None,
                               "body": body, "admin": AdminState(), "circuit": None}  # fmt: skip
    options.update(given)
    return admin_request(verb, "crm", **options)


def test_refusals_name_the_reason() -> None:
    assert ask("pause", caller=None, refusal=(401, "a bearer token is required")).status == 401
    unknown = ask("explode")
    assert unknown.status == 400 and "one of pause, resume, reset_circuit" in unknown.body["error"]
    assert ask("pause", known=False).body == {"error": "no destination 'crm'"}
    assert ask("pause", b"{not json").status == 400
    assert ask("pause", b'{"reason": 5}').body["error"].startswith("reason:")
    assert all(ask(v, caller=None, refusal=(403, "x")).action is None for v in ("pause", "x"))


def test_an_action_says_who_and_the_state_before_and_after() -> None:
    paused = ask("pause", b'{"reason": "CRM maintenance"}')
    assert paused.status == 202 and paused.action is not None
    assert (paused.action["by"], paused.action["reason"]) == ("ops-bot", "CRM maintenance")
    assert (paused.body["before"], paused.body["after"]) == (
        "delivering; circuit closed", "paused by ops-bot: CRM maintenance; circuit closed",
    )  # fmt: skip
    admin = AdminState()
    admin.apply(paused.action)
    resumed = ask("resume", admin=admin, circuit="open")
    assert resumed.body["before"] == "paused by ops-bot: CRM maintenance; circuit open"
    assert resumed.body["after"] == "delivering; circuit open"
    reset = ask("reset_circuit", circuit="open")
    assert (reset.body["before"], reset.body["after"]) == (
        "delivering; circuit open", "delivering; circuit closed",
    )  # fmt: skip
    assert ask("open_circuit").body["after"] == "delivering; circuit open"
    assert admin.paused and "crm" in admin.paused  # asking changed nothing it was given


def test_the_schema_carries_the_new_verb_and_fields() -> None:
    from schemas import ADMIN_ACTION, load_schema

    record = admin_action("open_circuit", "crm", "ops-bot", "")
    schema = load_schema(ADMIN_ACTION)
    assert {f["name"] for f in schema["fields"]} >= record.keys()


async def test_actions_written_before_the_state_fields_are_still_read() -> None:
    import io

    import fastavro

    from schemas import ADMIN_ACTION, earlier_schemas
    from streams.avro import EventDecoder, schema_fingerprint

    (first,) = earlier_schemas(ADMIN_ACTION)
    record = admin_action("pause", "crm", "alice", "maintenance")
    del record["before"], record["after"]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, first, record)
    _, read = await EventDecoder().decode(b"\xc3\x01" + schema_fingerprint(first) + out.getvalue())
    assert (read["action"], read["before"], read["after"]) == ("pause", "", "")
