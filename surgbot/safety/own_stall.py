"""`OwnStall`: when a node's own periodic tick ran late, and what its verdicts then need.

Used by the safety supervisor (its watchdogs, below) and the endoscope holder (its joint-state
age: a late tick does not judge, the next one does).

A process that did not run (CPU starvation on the 2-core machine; measured here with SIGSTOP)
heard nobody meanwhile, and on waking its verdicts come in the wrong order:

* rclpy runs a ready timer before the subscriptions whose messages queued meanwhile, so the late
  tick would call live sources silent (a 300 ms stop faulted a 200 Hz `/g1/joint_states` as
  "silent for 308 ms"): a late tick does not judge, the next one (a period later, after those
  messages are read) does; never two in a row, so a supervisor late on every tick still judges
  on every other one;
* Fast DDS's lease timer can fire before the liveliness assertions that queued meanwhile are
  read (a live node reported lost, then alive again 1 ms later): a loss heard within a lease of
  a late tick is a FAULT only if the node is not alive again within its lease (`recent`).

A supervisor that does run is unaffected: a killed node is still a FAULT one lease after it died.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OWN_STALL_S = 0.025        # a tick this late counts (half the shortest watchdog: lowstate's 50 ms)


@dataclass
class OwnStall:
    period_s: float
    late_s: float = OWN_STALL_S
    last_tick_s: float | None = None
    late_tick_at_s: float = -math.inf
    skipped: bool = False

    def __post_init__(self):
        if not (math.isfinite(self.period_s) and self.period_s > 0 and self.late_s > 0):
            raise ValueError(f"period_s and late_s must be > 0, got {self.period_s}, {self.late_s}")

    def _running_late(self, now: float) -> float:
        return 0.0 if self.last_tick_s is None else now - self.last_tick_s - self.period_s

    def tick(self, now: float) -> tuple[bool, float]:
        """A tick at `now`: (judge on it, how late it ran in s)."""
        late = self._running_late(now)
        self.last_tick_s = now
        if late >= self.late_s:
            self.late_tick_at_s = now
            if not self.skipped:
                self.skipped = True
                return False, late
        self.skipped = False
        return True, max(late, 0.0)

    def recent(self, now: float, window_s: float) -> bool:
        """A late tick within `window_s` before `now`, or one overdue now (the process just woke)."""
        return now - self.late_tick_at_s <= window_s or self._running_late(now) >= self.late_s
