"""The task in the ROS twin: `surgbot sim --task T --seed N`.

`TaskTwin` lays the task out (the same `Task.layout(seed)` and
`apply_layout` the Gymnasium environments use) when it is bound, before the
camera copies the model, judges the episode from physics at 15 Hz with the
task's `Monitor`, and gives `/sim/task` its payload (contract section 9:
task, seed, instruction, object poses, success, elapsed_s), which the ground
truth twin publishes.
"""

from __future__ import annotations

import mujoco

from surgbot.sim.ground_truth import task_state
from surgbot.sim.scene import task_bodies
from surgbot.sim.tasks import BoxGeometry, apply_layout, configure_solver, get_task

JUDGE_HZ = 15.0


class TaskTwin:
    """Twin protocol (sim/world.py): lays out and judges one task episode."""

    name = "task"

    def __init__(self, task: str, seed: int):
        self.task = get_task(task)
        self.seed = int(seed)
        self.layout = None
        self.monitor = None
        self._next = 0.0
        self._t0 = 0.0
        self._bodies: list[str] = []

    def bind(self, world) -> None:
        m, d = world.model, world.data
        geo = BoxGeometry(m)
        configure_solver(m)
        self.layout = self.task.layout(self.seed, geo.centre)
        with world.lock:
            apply_layout(m, d, geo, self.layout)
            mujoco.mj_forward(m, d)
        self.monitor = self.task.monitor(geo, self.layout)
        self._bodies = task_bodies(m)
        self._t0 = self._next = world.time

    def before_step(self, world) -> None:
        pass

    def after_step(self, world) -> None:
        t = world.time
        if t + 1e-9 >= self._next:
            self._next = max(self._next + 1.0 / JUDGE_HZ, t)
            self.monitor.update(world.data, t)

    def payload(self, world) -> dict:
        """The `/sim/task` message (a dict, JSON-ready)."""
        out = task_state(world, self._bodies, self.task.name)
        st = self.monitor.status
        out.update({"instruction": self.layout.instruction, "target": self.layout.target,
                    "success": bool(st.success), "failure": st.reason if st.failed else "",
                    "elapsed_s": world.time - self._t0, "horizon_s": self.task.horizon_s})
        return out

    def close(self) -> None:
        pass
