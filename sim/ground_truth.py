"""Ground-truth twin: what the sim knows exactly, for tests, metrics and tasks.

Publishes (contract section 5), in the `world` frame:
* `/sim/ground_truth/endoscope_tip` (PoseStamped, site `endoscope_tip`, optical frame)
* `/sim/ground_truth/fulcrum` (PointStamped, site `scope_port`)
* `/sim/ground_truth/psm_tip` (PoseStamped, site `PSM1_tool_tip`, when the PSM is in the scene)
at `rate_hz` (default 100) of physics time, `/sim/task` (String JSON: task,
scene, seed, time, object poses, success) at `task_hz` (default 2), and
`/clock` every physics step when `publish_clock` (the `--fast` mode).

Everything runs in `after_step` (physics thread), paced by physics time, so
`--fast` runs publish at the same simulated rates.
"""

from __future__ import annotations

import json

import mujoco
import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from surgbot import contract
from surgbot.geometry import matrix_to_quat
from surgbot.sim.scene import task_bodies

PSM_TIP_SITE = "PSM1_tool_tip"
FULCRUM_SITE = "scope_port"
ENDOSCOPE_TIP_SITE = "endoscope_tip"


def task_state(world, task_bodies: list[str], task: str | None = None) -> dict:
    """The `/sim/task` payload: object poses (world, quaternion x,y,z,w) from the last step."""
    d = world.data
    objects = {}
    for name in task_bodies:
        bid = world.model.body(name).id
        w, x, y, z = (float(v) for v in d.xquat[bid])
        objects[name] = {"pos": [float(v) for v in d.xpos[bid]], "quat": [x, y, z, w]}
    return {"task": task or world.scene, "scene": world.scene, "seed": int(world.seed),
            "time": float(d.time), "objects": objects, "success": False}


class GroundTruth:
    """Twin: publishes exact poses from the physics state."""

    name = "ground_truth"

    def __init__(self, rate_hz: float = 100.0, task_hz: float = 2.0, publish_clock: bool = False,
                 task: str | None = None, task_payload=None):
        if not (0 < rate_hz <= 1000 and 0 < task_hz <= 100):
            raise ValueError("ground truth rates must be in (0, 1000] Hz and task (0, 100] Hz")
        self.period = 1.0 / rate_hz
        self.task_period = 1.0 / task_hz
        self.publish_clock = publish_clock
        self.task = task
        self.task_payload = task_payload      # world -> dict: a running task's /sim/task (sim/tasks/twin.py)
        self.published = 0
        self._pubs = None

    def bind(self, world) -> None:
        m = world.model
        self._tip = m.site(ENDOSCOPE_TIP_SITE).id
        self._fulcrum = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, FULCRUM_SITE)
        self._psm = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, PSM_TIP_SITE)
        self._bodies = task_bodies(m)
        self._next = world.time
        self._next_task = world.time
        node = world.ros_node
        if node is None:
            return
        self._msgs = (PoseStamped, PointStamped, String, Clock)
        self._pubs = {
            "tip": node.create_publisher(PoseStamped, contract.GT_ENDOSCOPE_TIP, 10),
            "fulcrum": node.create_publisher(PointStamped, contract.GT_FULCRUM, 10),
            "task": node.create_publisher(String, contract.SIM_TASK, 10),
        }
        if self._psm >= 0:
            self._pubs["psm"] = node.create_publisher(PoseStamped, contract.GT_PSM_TIP, 10)
        if self.publish_clock:
            self._pubs["clock"] = node.create_publisher(Clock, contract.CLOCK, 10)

    def before_step(self, world) -> None:
        pass

    def after_step(self, world) -> None:
        if self._pubs is None:
            return
        t = world.time
        PoseStamped, PointStamped, String, Clock = self._msgs
        stamp = None
        if self.publish_clock:
            stamp = world.stamp()
            self._pubs["clock"].publish(Clock(clock=stamp))
        if t + 1e-9 >= self._next:
            self._next += self.period
            if self._next <= t:
                self._next = t + self.period
            stamp = stamp or world.stamp()
            d = world.data
            read = self._read
            if read("tip"):
                self._pubs["tip"].publish(self._pose(PoseStamped, stamp, d.site_xpos[self._tip],
                                                     d.site_xmat[self._tip]))
            if self._fulcrum >= 0 and read("fulcrum"):
                msg = PointStamped()
                msg.header.stamp, msg.header.frame_id = stamp, contract.WORLD_FRAME
                p = d.site_xpos[self._fulcrum]
                msg.point.x, msg.point.y, msg.point.z = float(p[0]), float(p[1]), float(p[2])
                self._pubs["fulcrum"].publish(msg)
            if self._psm >= 0 and read("psm"):
                self._pubs["psm"].publish(self._pose(PoseStamped, stamp, d.site_xpos[self._psm],
                                                     d.site_xmat[self._psm]))
            self.published += 1
        if t + 1e-9 >= self._next_task:
            self._next_task += self.task_period
            if self._next_task <= t:
                self._next_task = t + self.task_period
            if self._read("task"):
                payload = self.task_payload(world) if self.task_payload else task_state(world, self._bodies, self.task)
                self._pubs["task"].publish(String(data=json.dumps(payload)))

    def _read(self, key: str) -> bool:
        """Whether anyone subscribes to the topic: ground truth nobody reads is not built (the physics
        thread publishes it; each publish costs ~50 us even without a reader)."""
        return self._pubs[key].get_subscription_count() > 0

    def close(self) -> None:
        pass

    @staticmethod
    def _pose(cls, stamp, pos, xmat):
        msg = cls()
        msg.header.stamp, msg.header.frame_id = stamp, contract.WORLD_FRAME
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
        q = matrix_to_quat(np.asarray(xmat, float).reshape(3, 3))
        msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = q
        return msg
