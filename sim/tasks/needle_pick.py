"""`needle_pick`: grasp the suture needle and lift it 2 cm above the pad for 1 s.

Real contact physics: the needle (a 3/8 circle, radius 12 mm, 0.8 mm wire,
1.8 g, free body) is held only by friction between the two jaw fingers; it
is never welded or attached.
Success: both fingers touch the needle, nothing else does, and its lowest
point is >= 20 mm above the pad, continuously for 1 s.
Failure: the needle leaves the pad (its centre outside the pad and its
lowest point below the pad surface).
Layout: needle centre uniform in +-22 mm about the task centre, yaw uniform
in [-pi, pi); targets >= 30 mm from the needle centre. Horizon 20 s.
"""

from __future__ import annotations

import math

import numpy as np

from surgbot.sim.tasks.base import BoxGeometry, Layout, Monitor, Task, place_apart

NEEDLE_AREA_HALF = 0.022
NEEDLE_TARGET_GAP = 0.030
LIFT_M = 0.020
HOLD_S = 1.0
OFF_PAD_DROP_M = 0.002


def needle_lowest_z(model, data, geoms) -> float:
    """Lowest point of the needle's capsules (world z)."""
    low = math.inf
    for g in geoms:
        axis_z = data.geom_xmat[g].reshape(3, 3)[2, 2]
        r, half = model.geom_size[g][0], model.geom_size[g][1]
        low = min(low, float(data.geom_xpos[g][2] - abs(axis_z) * half - r))
    return low


class NeedleMonitor(Monitor):
    def __init__(self, geo: BoxGeometry, layout: Layout):
        super().__init__(geo, layout)
        self.needle = geo.body_geoms["needle"]
        self.body = geo.model.body("needle").id

    def _check(self, data, t: float) -> None:
        geo = self.geo
        low = needle_lowest_z(geo.model, data, self.needle)
        xy = data.xpos[self.body][:2]
        if not geo.on_pad(xy) and low < geo.pad_top - OFF_PAD_DROP_M:
            self.fail("the needle left the pad")
            return
        held = all(geo.touching(data, self.needle, [f]) for f in geo.fingers)
        alone = not geo.touching_any_but(data, self.needle, geo.fingers)
        lifted = low >= geo.pad_top + LIFT_M
        if self._dwell(held and alone and lifted, t, HOLD_S):
            self.succeed(f"needle held by the jaws {(low - geo.pad_top) * 1e3:.0f} mm above the pad for {HOLD_S} s")


class NeedlePickTask(Task):
    name = "needle_pick"
    horizon_s = 20.0
    instructions = ("pick up the needle", "grasp the suture needle and lift it",
                    "lift the needle off the pad", "pick the needle up with the jaws")
    uses = frozenset({"needle"})

    def layout(self, seed: int, centre) -> Layout:
        rng = np.random.default_rng(int(seed))
        p = place_apart(rng, centre, NEEDLE_AREA_HALF, 1, 0.0)[0]
        objects = {"needle": (float(p[0]), float(p[1]), float(rng.uniform(-math.pi, math.pi)))}
        objects.update(self.targets(rng, centre, taken=[p], taken_gap=NEEDLE_TARGET_GAP))
        return self._finish(rng, seed, centre, objects, "")

    def monitor(self, geo: BoxGeometry, layout: Layout) -> Monitor:
        return NeedleMonitor(geo, layout)
