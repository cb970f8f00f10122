"""`/diagnostics` of the sim (`sim_node`): real-time factor, physics rate, camera rates, task.

A twin like the others (sim/world.py protocol): `after_step` only counts
(the physics thread pays one increment); the status is computed on the
node's executor thread once per `rosutil.DIAGNOSTICS_PERIOD_S`.  Falling
below `MIN_REAL_TIME_FACTOR` (a starved machine) is a WARN: the twin then
runs slower than the robot it stands for.
"""

from __future__ import annotations

import time

from surgbot.rosutil import Diagnostics

MIN_REAL_TIME_FACTOR = 0.9


class SimDiagnostics:
    name = "diagnostics"

    def __init__(self):
        self.steps = 0
        self._last = None          # (wall s, sim s, steps) at the previous status

    def bind(self, world) -> None:
        self.world = world
        self._last = (time.monotonic(), world.time, 0)
        if world.ros_node is not None:
            self.diagnostics = Diagnostics(world.ros_node, "sim_node", self.status)

    def before_step(self, world) -> None:
        pass

    def after_step(self, world) -> None:
        self.steps += 1

    def close(self) -> None:
        pass

    def status(self):
        now, sim_t, steps = time.monotonic(), self.world.time, self.steps
        wall0, sim0, steps0 = self._last
        self._last = (now, sim_t, steps)
        dt = max(now - wall0, 1e-9)
        rtf = (sim_t - sim0) / dt
        values = {"real_time_factor": rtf, "physics_hz": (steps - steps0) / dt, "sim_time_s": sim_t,
                  "scene": self.world.scene, "seed": self.world.seed}
        for twin in self.world.twins:
            if hasattr(twin, "rate_hz") and hasattr(twin, "frames"):
                values[f"{twin.name}_hz"] = twin.rate_hz
            if hasattr(twin, "task") and hasattr(twin, "monitor") and twin.layout is not None:
                values["task"] = f"{twin.task.name} seed {twin.seed} success {bool(twin.monitor.status.success)}"
        if rtf < MIN_REAL_TIME_FACTOR:
            return Diagnostics.WARN, f"running slower than real time (factor {rtf:.2f})", values
        return Diagnostics.OK, f"real time (factor {rtf:.2f})", values
