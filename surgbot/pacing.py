"""One real-time pacing rule for every loop that runs simulated or scheduled time.

The sim runner, both twins and fixed-rate publisher threads keep their time
(`elapsed_s`: simulated seconds, or ticks x period) in step with the wall
clock:

* ahead of the wall clock -> sleep until it catches up;
* behind by up to `max_catch_up_s` -> run without sleeping until level;
* behind by more (a stall: the machine was busy, the process was stopped) ->
  drop the backlog and go on from now.  A robot does not replay missed time in
  a burst, so neither does the twin: streamed commands would become jumps.
  `dropped_s` and `stalls` show the loss (the real-time factor falls).

`fast=True` never sleeps and never drops (`--fast`, benchmarks).

`poll_until` is the one bounded wait on a condition that no callback signals
(a DDS match count, a future, a latched state read by another thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_CATCH_UP_S = 0.02     # s behind the wall clock that a loop may run back to back to catch up


class Pacer:
    def __init__(self, *, fast: bool = False, max_catch_up_s: float = MAX_CATCH_UP_S,
                 clock: Callable[[], float] = time.perf_counter, stop: threading.Event | None = None):
        if max_catch_up_s < 0:
            raise ValueError("max_catch_up_s must be >= 0")
        self.fast = fast
        self.max_catch_up_s = max_catch_up_s
        self._clock = clock
        self._stop = stop or threading.Event()
        self.t0 = clock()
        self.dropped_s = 0.0
        self.stalls = 0

    def lag(self, elapsed_s: float) -> float:
        """Seconds the loop is behind the wall clock (negative: ahead)."""
        return (self._clock() - self.t0) - elapsed_s - self.dropped_s

    def pace(self, elapsed_s: float) -> None:
        """Call once per iteration with the loop's own elapsed time (sim seconds since start)."""
        if self.fast:
            return
        lag = self.lag(elapsed_s)
        if lag < 0:
            self._stop.wait(-lag)
        elif lag > self.max_catch_up_s:
            self.dropped_s += lag
            self.stalls += 1

    def wall_s(self) -> float:
        return self._clock() - self.t0


POLL_PERIOD_S = 0.01


def poll_until(pred: Callable[[], bool], timeout_s: float, period_s: float = POLL_PERIOD_S) -> bool:
    """Whether `pred()` held within `timeout_s` (asked every `period_s`, and once more at the end)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period_s)
    return pred()
