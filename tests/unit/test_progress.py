"""A stall: records waiting and none finished for a while (what /readyz reports)."""

from __future__ import annotations

from streams.progress import Progress
from tests.unit.clock import Clock


def test_idle_is_not_stalled_however_long() -> None:
    clock = Clock()
    progress = Progress(clock)
    clock.now += 3600
    assert progress.stalled_for(backlog=0) == 0


def test_waiting_starts_when_the_first_record_is_taken_not_at_the_last_finish() -> None:
    clock = Clock()
    progress = Progress(clock)
    clock.now += 3600  # an idle hour
    progress.taken()
    clock.now += 5
    assert progress.stalled_for(backlog=0) == 5


def test_a_finished_record_is_progress_even_with_others_still_held() -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.taken()
    progress.taken()
    clock.now += 100
    progress.finished()
    clock.now += 10
    assert progress.stalled_for(backlog=0) == 10  # one still held
    progress.finished()
    assert progress.stalled_for(backlog=0) == 0


def test_a_backlog_nobody_reads_is_a_stall() -> None:
    clock = Clock()
    progress = Progress(clock)
    assert progress.stalled_for(backlog=0) == 0
    clock.now += 30
    assert progress.stalled_for(backlog=500) == 0  # waiting starts at the first look
    clock.now += 400
    assert progress.stalled_for(backlog=500) == 400


def test_an_idle_spell_after_the_last_finish_is_not_counted() -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.taken()
    progress.finished()
    clock.now += 3600
    progress.taken()
    clock.now += 2
    assert progress.stalled_for(backlog=0) == 2
