"""How far back a starting worker reads the control topic.

The control topic holds state changes, not history that matters: a circuit's change
(an "open" older than its cool-down only lets a trial through, as not knowing it would),
capped destinations' counts (each re-reported at least every ``CAP_REFRESH_S``, so the
latest is always that recent) and performance tallies (used over each ranking's window).
Read from its beginning, a worker that starts after weeks would decode every count
reported in them (a capped destination's counts change every 2 s under traffic: ~300,000
records a week each) before its capacity and circuits were current. It starts from the
first record younger than what it needs instead; operators' actions (the admin topic,
kept for good) are still read from their beginning."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from streams.config.destinations import Destination
from streams.config.flows import CompiledFlow, performance_windows
from streams.control.distribution import BUCKET_S, SKEW_MINUTES

CAP_REFRESH_S = 60.0  # a capped destination's counts are re-reported this often unchanged
CLOCK_SKEW_S = 60.0  # workers' clocks and record timestamps may differ this much


def control_lookback_s(destinations: Iterable[Destination], flows: Sequence[CompiledFlow]) -> float:
    """Seconds of the control topic a starting worker needs: the longest circuit
    cool-down, the longest performance window (and the minute a tally may run ahead),
    two cap refreshes; never less than a few minutes."""
    cool_downs = [d.circuit.cool_down_s for d in destinations if d.circuit.enabled]
    windows = [
        window + (SKEW_MINUTES + 1) * BUCKET_S for window in performance_windows(flows).values()
    ]
    return max([2 * CAP_REFRESH_S, *cool_downs, *windows]) + CLOCK_SKEW_S
