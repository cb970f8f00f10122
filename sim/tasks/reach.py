"""`reach`: touch the named one of the red/green/blue targets with the closed jaw tip.

Success: the closed jaw tip (end of the fingers, on the tool axis; jaw
angle < 0.2 rad) within 3 mm of the named disc's top centre for 0.2 s.
Failure: the jaw tip comes within 3 mm of another colour's disc first.
The colour is only in the instruction, so language matters.
Layout: the three targets uniform in +-30 mm about the task centre, >= 22 mm
apart; the named colour uniform. Horizon 10 s.
"""

from __future__ import annotations

import numpy as np

from surgbot.sim.tasks.base import COLOURS, BoxGeometry, Layout, Monitor, Task

TOUCH_RADIUS_M = 0.003
DWELL_S = 0.2
CLOSED_JAW_RAD = 0.2


class ReachMonitor(Monitor):
    def _check(self, data, t: float) -> None:
        tip = self.geo.jaw_tip(data)
        for colour in COLOURS:
            if colour != self.layout.target and \
                    np.linalg.norm(tip - self.geo.target_point(data, colour)) < TOUCH_RADIUS_M:
                self.fail(f"touched the {colour} target, not the {self.layout.target} one")
                return
        d = float(np.linalg.norm(tip - self.geo.target_point(data, self.layout.target)))
        closed = self.geo.jaw(data) < CLOSED_JAW_RAD
        if self._dwell(d < TOUCH_RADIUS_M and closed, t, DWELL_S):
            self.succeed(f"jaw tip {d * 1e3:.1f} mm from the {self.layout.target} target for {DWELL_S} s")


class ReachTask(Task):
    name = "reach"
    horizon_s = 10.0
    instructions = ("touch the {colour} target", "tap the {colour} dot with the closed jaws",
                    "reach for the {colour} marker", "move the instrument tip onto the {colour} target")
    uses = frozenset({"target_red", "target_green", "target_blue"})

    def layout(self, seed: int, centre) -> Layout:
        rng = np.random.default_rng(int(seed))
        objects = self.targets(rng, centre)
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        return self._finish(rng, seed, centre, objects, colour)

    def monitor(self, geo: BoxGeometry, layout: Layout) -> Monitor:
        return ReachMonitor(geo, layout)
