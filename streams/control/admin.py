"""Operators' actions on destinations (``courier admin``), as every worker knows them.

The actions travel on the control topic (``AdminAction`` records, beside circuit changes)
and every worker follows that topic from its beginning, so each applies every action,
in order, within a fetch wait, and a worker that starts learns what is in force. Nothing
here writes a table: a pause and a circuit reset are read where deliveries are decided
(streams/control/desk.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    def apply(self, action: dict[str, Any]) -> None:
        """One ``AdminAction`` record (decoded)."""
        destination = action["destination_id"]
        at = action["at"].timestamp()
        verb = action["action"]
        if verb == "pause":
            self.paused[destination] = Pause(action["by"], action["reason"], at)
        elif verb == "resume":
            self.paused.pop(destination, None)
        elif verb == "reset_circuit":
            self.circuits_reset_at[destination] = at

    def pause_reason(self, destination_id: str) -> str | None:
        """Who paused the destination and why; None when it is not paused."""
        pause = self.paused.get(destination_id)
        if pause is None:
            return None
        return f"paused by {pause.by}" + (f": {pause.reason}" if pause.reason else "")
