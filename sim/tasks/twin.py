"""The task in the ROS twin: `surgbot sim --task T --seed N`.

`TaskTwin` lays the task out (the same `Task.layout(seed)` and
`apply_layout` the Gymnasium environments use) when it is bound, before the
camera copies the model, judges the episode from physics at 15 Hz with the
task's `Monitor`, and gives `/sim/task` its payload (contract section 9:
task, seed, instruction, object poses, success, elapsed_s), which the ground
truth twin publishes.  The payload also carries `start_cp`: the layout's
PSM start pose (jaw tip, `PSM1_base`, x y z qx qy qz qw), where the
environments place the arm, so a ROS client can move it there first.

A new episode (another task and/or seed) is laid out during a run from
`/sim/task/set` (String JSON `{"task": T, "seed": N}`): the objects go back
to their resting poses and the new layout is applied between two physics
steps (the camera mirrors the static bodies the layout moves).  The robots
are not touched: whoever asks moves the PSM to the new `start_cp`.  A bad
request is logged and changes nothing.
"""

from __future__ import annotations

import json
import threading

import mujoco
import numpy as np
from std_msgs.msg import String

from surgbot import contract
from surgbot.geometry import matrix_to_quat
from surgbot.sim.ground_truth import task_state
from surgbot.sim.scene import PSM_ROOT_BODY, task_bodies
from surgbot.sim.tasks import TASK_NAMES, BoxGeometry, apply_layout, configure_solver, get_task
from surgbot.sim.tasks.base import down_rotation

JUDGE_HZ = 15.0
MAX_SEED = 2**31 - 1


def parse_task_request(text: str) -> tuple[str, int]:
    """`{"task": T, "seed": N}` -> (T, N); ValueError with a one-line reason otherwise."""
    try:
        req = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(req, dict):
        raise ValueError("expected a JSON object {\"task\": T, \"seed\": N}")
    task, seed = req.get("task"), req.get("seed", 0)
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r} (choose from {', '.join(TASK_NAMES)})")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer 0..{MAX_SEED}, got {seed!r}")
    return task, seed


class TaskTwin:
    """Twin protocol (sim/world.py): lays out and judges one task episode."""

    name = "task"

    def __init__(self, task: str, seed: int):
        self.task = get_task(task)
        self.seed = int(seed)
        self.layout = None
        self.monitor = None
        self.episodes = 0
        self._next = 0.0
        self._t0 = 0.0
        self._bodies: list[str] = []
        self._pending: tuple[str, int] | None = None
        self._pending_lock = threading.Lock()
        self._logger = None

    def bind(self, world) -> None:
        m, d = world.model, world.data
        self._geo = BoxGeometry(m)
        configure_solver(m)
        self._bodies = task_bodies(m)
        # The resting poses of the objects, restored before every new layout.
        self._rest_qpos = d.qpos.copy()
        self._rest_body_pos = m.body_pos.copy()
        self._rest_body_quat = m.body_quat.copy()
        base = m.body(PSM_ROOT_BODY).id
        with world.lock:
            mujoco.mj_forward(m, d)
            T = np.eye(4)
            T[:3, :3] = d.xmat[base].reshape(3, 3)
            T[:3, 3] = d.xpos[base]
            self._base_inv = np.linalg.inv(T)
            self._lay_out(world)
        node = world.ros_node
        if node is not None:
            self._logger = node.get_logger()
            node.create_subscription(String, contract.SIM_TASK_SET, self._on_request, 10)

    def _lay_out(self, world) -> None:
        """Apply `self.task`/`self.seed` (caller holds world.lock, between physics steps)."""
        m, d = world.model, world.data
        d.qpos[:] = np.where(self._free_mask(m), self._rest_qpos, d.qpos)
        m.body_pos[:] = self._rest_body_pos
        m.body_quat[:] = self._rest_body_quat
        self.layout = self.task.layout(self.seed, self._geo.centre)
        apply_layout(m, d, self._geo, self.layout)
        mujoco.mj_forward(m, d)
        self.monitor = self.task.monitor(self._geo, self.layout)
        self._t0 = self._next = world.time
        self.episodes += 1

    def _free_mask(self, m) -> np.ndarray:
        """qpos entries of the task objects' free joints (the robots' joints are left alone)."""
        mask = np.zeros(m.nq, bool)
        for name in self._bodies:
            body = m.body(name)
            if body.jntnum[0] > 0 and m.jnt_type[body.jntadr[0]] == mujoco.mjtJoint.mjJNT_FREE:
                adr = int(m.jnt_qposadr[body.jntadr[0]])
                mask[adr:adr + 7] = True
        return mask

    def _on_request(self, msg) -> None:
        try:
            request = parse_task_request(msg.data)
        except ValueError as exc:
            self._logger.error(f"{contract.SIM_TASK_SET}: {exc}; nothing changed")
            return
        with self._pending_lock:
            self._pending = request

    def before_step(self, world) -> None:
        with self._pending_lock:
            request, self._pending = self._pending, None
        if request is None:
            return
        self.task, self.seed = get_task(request[0]), request[1]
        d = world.data
        for name in self._bodies:                   # objects at rest in their new places
            body = world.model.body(name)
            if body.jntnum[0] > 0:
                dof = int(world.model.jnt_dofadr[body.jntadr[0]])
                d.qvel[dof:dof + 6] = 0.0
        self._lay_out(world)
        if self._logger is not None:
            self._logger.info(f"task {self.task.name} seed {self.seed}: {self.layout.instruction!r}")

    def start_cp(self) -> list[float]:
        """The layout's PSM start pose (jaw tip, PSM1_base): x y z qx qy qz qw."""
        x, y, h, yaw = self.layout.start
        T = np.eye(4)
        T[:3, :3] = down_rotation(yaw)
        T[:3, 3] = [x, y, self._geo.pad_top + h + self._geo.jaw_length]
        T = self._base_inv @ T
        return [float(v) for v in T[:3, 3]] + [float(v) for v in matrix_to_quat(T[:3, :3])]

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
                    "elapsed_s": world.time - self._t0, "horizon_s": self.task.horizon_s,
                    "seed": self.seed, "episode": self.episodes, "start_cp": self.start_cp()})
        return out

    def close(self) -> None:
        pass
