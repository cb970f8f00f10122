"""`peg_transfer`: pick the block and place it on the named target zone.

The block is the 5 mm yellow cube (`block_transfer`, scene.py), a free body
grasped by friction.  Success: its centre within 5 mm (horizontally) of the
named target's centre, resting on the pad (centre height within 1 mm of a
cube lying on it, speed < 5 mm/s) and released (no jaw contact), for 0.3 s.
Failure: the block leaves the pad.
Layout: block centre uniform in +-25 mm about the task centre, yaw uniform;
targets >= 15 mm from the block, the named one (uniform among those) >= 25 mm
from it. Horizon 30 s.
"""

from __future__ import annotations

import math

import numpy as np

from surgbot.sim.scene_layouts import TRANSFER_BLOCK, TRANSFER_BLOCK_HALF
from surgbot.sim.tasks.base import COLOURS, BoxGeometry, Layout, Monitor, Task, place_apart

BLOCK_AREA_HALF = 0.025
BLOCK_TARGET_GAP = 0.015
TRANSFER_MIN_M = 0.025
PLACE_TOL_M = 0.005
REST_TOL_M = 0.001
REST_SPEED_MPS = 0.005
DWELL_S = 0.3
LAYOUT_TRIES = 100


class PegMonitor(Monitor):
    def __init__(self, geo: BoxGeometry, layout: Layout):
        super().__init__(geo, layout)
        self.block = geo.body_geoms[TRANSFER_BLOCK]
        body = geo.model.body(TRANSFER_BLOCK)
        self.body = body.id
        self.dof = int(geo.model.jnt_dofadr[body.jntadr[0]])

    def _check(self, data, t: float) -> None:
        geo = self.geo
        p = data.xpos[self.body]
        if not geo.on_pad(p[:2]) and p[2] < geo.pad_top:
            self.fail("the block left the pad")
            return
        target = data.body(f"target_{self.layout.target}").xpos
        off = float(np.linalg.norm(p[:2] - target[:2]))
        resting = abs(p[2] - (geo.pad_top + TRANSFER_BLOCK_HALF)) < REST_TOL_M and \
            float(np.linalg.norm(data.qvel[self.dof:self.dof + 3])) < REST_SPEED_MPS
        released = not geo.touching(data, self.block, geo.fingers)
        if self._dwell(off < PLACE_TOL_M and resting and released, t, DWELL_S):
            self.succeed(f"block {off * 1e3:.1f} mm from the {self.layout.target} target, released and resting")


class PegTransferTask(Task):
    name = "peg_transfer"
    horizon_s = 30.0
    instructions = ("put the block on the {colour} target", "move the yellow block onto the {colour} zone",
                    "transfer the block to the {colour} mark", "place the cube on the {colour} target")
    uses = frozenset({TRANSFER_BLOCK})

    def layout(self, seed: int, centre) -> Layout:
        rng = np.random.default_rng(int(seed))
        for _ in range(LAYOUT_TRIES):
            p = place_apart(rng, centre, BLOCK_AREA_HALF, 1, 0.0)[0]
            objects = {TRANSFER_BLOCK: (float(p[0]), float(p[1]), float(rng.uniform(-math.pi, math.pi)))}
            objects.update(self.targets(rng, centre, taken=[p], taken_gap=BLOCK_TARGET_GAP))
            far = [c for c in COLOURS if np.hypot(objects[f"target_{c}"][0] - p[0],
                                                  objects[f"target_{c}"][1] - p[1]) >= TRANSFER_MIN_M]
            if far:
                colour = far[int(rng.integers(len(far)))]
                return self._finish(rng, seed, centre, objects, colour)
        raise RuntimeError(f"peg_transfer: no layout for seed {seed}")

    def target_choices(self, layout: Layout) -> tuple[str, ...]:
        """Only targets at least TRANSFER_MIN_M from the block (as `layout` draws them)."""
        bx, by, _ = layout.objects[TRANSFER_BLOCK]
        return tuple(c for c in COLOURS if np.hypot(layout.objects[f"target_{c}"][0] - bx,
                                                    layout.objects[f"target_{c}"][1] - by) >= TRANSFER_MIN_M)

    def monitor(self, geo: BoxGeometry, layout: Layout) -> Monitor:
        return PegMonitor(geo, layout)
