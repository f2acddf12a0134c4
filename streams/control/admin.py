"""Operators' actions on destinations (``courier admin``), as every worker knows them.

The actions travel on the admin topic (``AdminAction`` records, kept for good) and every
worker follows that topic from its beginning, so each applies every action,
in order, within a fetch wait, and a worker that starts learns what is in force. Nothing
here writes a table: a pause and a circuit reset are read where deliveries are decided
(streams/control/desk.py)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.stages.events import admin_action

ADMIN_VERBS = ("pause", "resume", "reset_circuit", "open_circuit", "drain")


@dataclass(frozen=True, slots=True)
class Pause:
    by: str
    reason: str
    at: float


@dataclass
class AdminState:
    paused: dict[str, Pause] = field(default_factory=dict)
    # destination id → when its circuit was last reset: a circuit opened before is closed
    circuits_reset_at: dict[str, float] = field(default_factory=dict)
    # destination id → the last drain: work that waited for it from before ends
    drained: dict[str, Pause] = field(default_factory=dict)
    # Actions applied so far: held work may be let go early after any of them.
    version: int = 0

    def apply(self, action: dict[str, Any]) -> None:
        """One ``AdminAction`` record (decoded)."""
        self.version += 1
        destination = action["destination_id"]
        at = action["at"].timestamp()
        verb = action["action"]
        if verb == "pause":
            self.paused[destination] = Pause(action["by"], action["reason"], at)
        elif verb == "resume":
            self.paused.pop(destination, None)
        elif verb == "reset_circuit":
            self.circuits_reset_at[destination] = at
        elif verb == "drain":
            self.drained[destination] = Pause(action["by"], action["reason"], at)
        # open_circuit changes the circuit itself (``follow_control``); nothing to keep here.

    def drained_since(self, destination_id: str, parked_at: float) -> str | None:
        """Who drained the destination's waiting work, and why, if they did after
        ``parked_at``."""
        drain = self.drained.get(destination_id)
        if drain is None or drain.at < parked_at:
            return None
        return f"drained by {drain.by}" + (f": {drain.reason}" if drain.reason else "")

    def describe(self, destination_id: str, circuit: str | None) -> str:
        """The destination's state in words, for the audit trail: its pause and circuit."""
        paused = self.pause_reason(destination_id)
        return f"{paused or 'delivering'}; circuit {circuit or 'closed'}"

    def pause_reason(self, destination_id: str) -> str | None:
        """Who paused the destination and why; None when it is not paused."""
        pause = self.paused.get(destination_id)
        if pause is None:
            return None
        return f"paused by {pause.by}" + (f": {pause.reason}" if pause.reason else "")


def circuit_after(verb: str, circuit: str | None) -> str | None:
    """A destination's circuit once ``verb`` is applied."""
    return {"reset_circuit": "closed", "open_circuit": "open"}.get(verb, circuit)


def states_around(
    admin: AdminState, action: dict[str, Any], circuit: str | None
) -> tuple[str, str]:
    """The destination's state before ``action`` and after it, in words."""
    destination = action["destination_id"]
    before = admin.describe(destination, circuit)
    later = copy.deepcopy(admin)
    later.apply(action)
    return before, later.describe(destination, circuit_after(action["action"], circuit))


MAX_ADMIN_BODY = 4096


@dataclass(frozen=True, slots=True)
class AdminAnswer:
    """What ``POST /api/admin/<destination>/<verb>`` answers, and the action to publish."""

    status: int
    body: dict[str, Any]
    action: dict[str, Any] | None = None


def admin_request(
    verb: str,
    destination_id: str,
    *,
    known: bool,
    caller: str | None,
    refusal: tuple[int, str] | None,
    body: bytes,
    admin: AdminState,
    circuit: str | None,
) -> AdminAnswer:
    """An operator's action asked over HTTP: refused with the reason, or the action (who:
    the name of the caller's token) with the state before and after it."""
    if refusal is not None or caller is None:
        status, why = refusal or (401, "a bearer token is required")
        return AdminAnswer(status, {"error": why})
    if verb not in ADMIN_VERBS:
        return AdminAnswer(
            400, {"error": f"unknown action {verb!r}: one of {', '.join(ADMIN_VERBS)}"}
        )
    if not known:
        return AdminAnswer(404, {"error": f"no destination {destination_id!r}"})
    reason = ""
    if body.strip():
        try:
            given = orjson.loads(body)
        except orjson.JSONDecodeError:
            return AdminAnswer(400, {"error": 'the body must be JSON: {"reason": "..."}'})
        if not isinstance(given, dict) or not isinstance(given.get("reason", ""), str):
            return AdminAnswer(400, {"error": 'reason: a string ({"reason": "..."})'})
        reason = given.get("reason", "")
    action = admin_action(verb, destination_id, caller, reason)
    action["before"], action["after"] = states_around(admin, action, circuit)
    shown = {key: action[key] for key in ("action", "destination_id", "by", "reason", "before",
                                          "after")}  # fmt: skip
    return AdminAnswer(202, {**shown, "at": action["at"].isoformat()}, action)
