"""The MuJoCo world that every twin plugs into.

One process owns one `SimWorld`: the model, the data, a lock, and the twins.
A twin (the G1 served over unitree DDS, the PSM served over CRTK ROS 2, the
endoscope camera, the ground-truth publisher) is a small object with three
hooks, called from the physics thread:

* `bind(world)` once, after the model is loaded: resolve ids, create
  publishers/subscribers, start servers;
* `before_step(world)` every physics step: write `data.ctrl` /
  `data.qfrc_applied` from the latest commands (never block here);
* `after_step(world)` every physics step: publish what is due at its own rate.

`close()` stops its servers.  Commands arrive on other threads (DDS, rclpy);
a twin keeps the latest one behind its own small lock and applies it in
`before_step`, so physics never waits on the network.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import mujoco
import numpy as np
from builtin_interfaces.msg import Time

from surgbot.geometry import ns_to_stamp


@runtime_checkable
class Twin(Protocol):
    name: str

    def bind(self, world: SimWorld) -> None: ...

    def before_step(self, world: SimWorld) -> None: ...

    def after_step(self, world: SimWorld) -> None: ...

    def close(self) -> None: ...


@dataclass
class SimWorld:
    """Model + data + twins; `step()` advances physics by one timestep."""

    model: mujoco.MjModel
    data: mujoco.MjData
    scene: str = "box_trainer"
    seed: int = 0
    twins: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ros_node: object | None = None      # the sim's rclpy node, when ROS is up
    use_sim_time: bool = False          # stamps from physics time (--fast, with /clock)

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def dt(self) -> float:
        return float(self.model.opt.timestep)

    def add(self, twin: Twin) -> Twin:
        twin.bind(self)
        self.twins.append(twin)
        return twin

    def step(self) -> None:
        with self.lock:
            for twin in self.twins:
                twin.before_step(self)
            mujoco.mj_step(self.model, self.data)
        for twin in self.twins:
            twin.after_step(self)

    def close(self) -> None:
        for twin in reversed(self.twins):
            twin.close()
        self.twins.clear()

    def stamp_ns(self) -> int:
        """Header stamp for published messages: physics time when running with
        /clock (`use_sim_time`), wall time otherwise (as the real robots)."""
        if self.use_sim_time:
            return int(round(self.data.time * 1e9))
        return time.time_ns()

    def stamp(self):
        """`builtin_interfaces/Time` for a header."""
        return ns_to_stamp(self.stamp_ns(), Time())

    # Small helpers every twin needs -------------------------------------
    def joint_qpos_adr(self, name: str) -> int:
        return int(self.model.jnt_qposadr[self.model.joint(name).id])

    def joint_dof_adr(self, name: str) -> int:
        return int(self.model.jnt_dofadr[self.model.joint(name).id])

    def site_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World position and 3x3 rotation of a site (after the last step)."""
        sid = self.model.site(name).id
        return self.data.site_xpos[sid].copy(), self.data.site_xmat[sid].reshape(3, 3).copy()
