"""Progress of long work: how much is done of the total and about how long is left.

A stage that loops (partitions measured, cells generated, questions validated) reports through
:class:`ProgressLog` to its run's log, so the UI shows the lines in the run's event log and
``staffml run`` prints them on the console as they are written (it reads them back from the
instance, see runs.watching_run). The wording is :func:`progress_line`, a plain function.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PREFIX = "progress: "  # the run-log lines that staffml run echoes on the console


def format_duration(seconds: float) -> str:
    """A duration for people: '45 s', '3 min 20 s', '1 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_line(what: str, unit: str, done: int, total: int, elapsed: float) -> str:
    """'questions: 40/344 partitions (12%), 1 min 05 s elapsed, about 8 min 14 s left'.

    The time left assumes the rest goes at the pace so far (elapsed / done per item); with
    nothing done yet there is no pace to go by, and with everything done nothing is left."""
    if total < 0 or not 0 <= done <= total:
        raise ValueError(f"progress of {what}: done {done} must be between 0 and the total {total}")
    share = f" ({done / total:.0%})" if total else ""
    head = f"{what}: {done}/{total} {unit}{share}, {format_duration(elapsed)} elapsed"
    if done == total:
        return f"{head}, done"
    if done == 0:
        return f"{head}, time left not known yet"
    return f"{head}, about {format_duration(elapsed / done * (total - done))} left"


class ProgressLog:
    """Counts work done and writes a progress line to ``log`` at most every ``every`` seconds,
    and always when the last item is done (so a short loop writes one line)."""

    def __init__(
        self,
        log: Callable[[str], None],
        what: str,
        unit: str,
        total: int,
        every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.what, self.unit, self.total, self.every, self.clock = log, what, unit, total, every, clock
        self.done = 0
        self.started = self.last = clock()

    def start(self, total: int) -> None:
        """Begin counting (again) towards ``total``, once it is known."""
        self.total, self.done = total, 0
        self.started = self.last = self.clock()

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = self.clock()
        if self.done == self.total or now - self.last >= self.every:
            self.last = now
            self.log(PREFIX + progress_line(self.what, self.unit, self.done, self.total, now - self.started))
