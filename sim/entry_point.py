"""The scope's entry point is physical: the port (box trainer) or nostril (endonasal) pushes back.

The tissue (or the trocar's grommet) around the entry point is modelled as a
linear lateral spring between the entry point (site `scope_port`) and the
scope shaft: when the shaft line passes the entry point at a lateral
distance `d` (the fulcrum error), the tissue pushes the shaft back with

    F_scope = -k * d       (at the shaft point nearest the entry point)

and the scope loads the tissue with `-F_scope`.  Axial sliding and pivoting
are free (no friction is modelled), so a holder that keeps the shaft
through the entry point feels nothing, and one that leaves it loads the
tissue in proportion.  The force acts only while the entry point lies on
the inserted part of the shaft (between `endoscope_shaft_base` and
`endoscope_tip`); a scope withdrawn past it is free.

The stiffness `k` is a property of the scene: `sim.scene` writes it into the
model as the custom numeric `ENTRY_STIFFNESS_NUMERIC` (N/m); a model without
it has no entry-point force.  The force is applied through
`data.xfrc_applied` on the `endoscope` body (twins write `qfrc_applied`,
so the two never overwrite each other).

`EntryPoint` is the twin (applies the force every physics step, publishes
`/sim/ground_truth/entry_force` when the world has a ROS node);
`entry_contact` / `apply_entry_force` are the pure functions the
in-process loops (`bench.arm_loop.ArmLoop`) share with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from surgbot import contract

ENTRY_STIFFNESS_NUMERIC = "scope_entry_stiffness"     # N/m, lateral, written by sim.scene
ENTRY_FORCE_TOPIC = "/sim/ground_truth/entry_force"   # geometry_msgs/Vector3Stamped: force on the tissue, N, world
PORT_SITE = "scope_port"
SCOPE_BODY = "endoscope"
SHAFT_BASE_SITE = "endoscope_shaft_base"
TIP_SITE = "endoscope_tip"


@dataclass(frozen=True)
class EntryContact:
    """The entry point's state after the last kinematics: force on the tissue, world frame."""

    force_on_tissue: np.ndarray     # N (the scope feels the opposite)
    point: np.ndarray               # shaft point nearest the entry point
    lateral_m: float                # distance of the entry point from the shaft line (fulcrum error)
    engaged: bool                   # the entry point lies on the inserted shaft

    @property
    def magnitude(self) -> float:
        return float(np.linalg.norm(self.force_on_tissue))


def entry_stiffness(model: mujoco.MjModel) -> float:
    """The scene's lateral entry stiffness (N/m); 0 when the model has none."""
    nid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_NUMERIC, ENTRY_STIFFNESS_NUMERIC)
    if nid < 0:
        return 0.0
    return float(model.numeric_data[model.numeric_adr[nid]])


class EntryModel:
    """Ids and stiffness of one model's entry point (resolved once)."""

    def __init__(self, model: mujoco.MjModel):
        self.k = entry_stiffness(model)
        self.port = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, PORT_SITE)
        self.body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, SCOPE_BODY)
        self.base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, SHAFT_BASE_SITE)
        self.tip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, TIP_SITE)
        self.active = self.k > 0 and min(self.port, self.body, self.base, self.tip) >= 0

    def contact(self, data: mujoco.MjData) -> EntryContact:
        """Entry force from the current site positions (after mj_step / mj_kinematics)."""
        if not self.active:
            return EntryContact(np.zeros(3), np.zeros(3), 0.0, False)
        # plain floats: the sim's physics thread runs this every 2 ms step, and a dozen numpy calls on
        # 3-vectors cost ~75 us there (measured in the demo's sim), these ~10
        px, py, pz = data.site_xpos[self.port].tolist()
        bx, by, bz = data.site_xpos[self.base].tolist()
        tx, ty, tz = data.site_xpos[self.tip].tolist()
        ax, ay, az = tx - bx, ty - by, tz - bz
        length = math.sqrt(ax * ax + ay * ay + az * az)
        ux, uy, uz = ax / length, ay / length, az / length
        s = (px - bx) * ux + (py - by) * uy + (pz - bz) * uz      # along the shaft from its base
        point = (bx + s * ux, by + s * uy, bz + s * uz)
        offset = (point[0] - px, point[1] - py, point[2] - pz)    # shaft displaced from the entry point
        lateral = math.sqrt(offset[0] ** 2 + offset[1] ** 2 + offset[2] ** 2)
        engaged = 0.0 <= s <= length
        k = self.k if engaged else 0.0
        return EntryContact(np.array((k * offset[0], k * offset[1], k * offset[2])), np.array(point), lateral,
                            engaged)

    def apply(self, data: mujoco.MjData) -> EntryContact:
        """Write the tissue's push on the scope into `xfrc_applied` (force + moment about the body COM)."""
        c = self.contact(data)
        if self.active:
            fx, fy, fz = (-c.force_on_tissue).tolist()
            cx, cy, cz = data.xipos[self.body].tolist()
            rx, ry, rz = c.point[0] - cx, c.point[1] - cy, c.point[2] - cz
            data.xfrc_applied[self.body] = (fx, fy, fz, ry * fz - rz * fy, rz * fx - rx * fz, rx * fy - ry * fx)
        return c


class EntryPoint:
    """Twin: the tissue's push on the scope every step; ground truth of the force at `rate_hz`."""

    name = "entry_point"

    def __init__(self, rate_hz: float = 100.0):
        if not 0 < rate_hz <= 1000:
            raise ValueError("entry force rate must be in (0, 1000] Hz")
        self.period = 1.0 / rate_hz
        self.last = EntryContact(np.zeros(3), np.zeros(3), 0.0, False)
        self._pub = None

    def bind(self, world) -> None:
        self.model = EntryModel(world.model)
        self._next = world.time
        node = getattr(world, "ros_node", None)
        if node is not None and self.model.active:
            from geometry_msgs.msg import Vector3Stamped
            self._msg = Vector3Stamped
            self._pub = node.create_publisher(Vector3Stamped, ENTRY_FORCE_TOPIC, 10)

    def before_step(self, world) -> None:
        self.last = self.model.apply(world.data)

    def after_step(self, world) -> None:
        if self._pub is None or world.time + 1e-9 < self._next:
            return
        self._next += self.period
        if self._next <= world.time:
            self._next = world.time + self.period
        if not self._pub.get_subscription_count():      # ground truth nobody reads is not built
            return
        msg = self._msg()
        msg.header.stamp, msg.header.frame_id = world.stamp(), contract.WORLD_FRAME
        f = self.last.force_on_tissue
        msg.vector.x, msg.vector.y, msg.vector.z = float(f[0]), float(f[1]), float(f[2])
        self._pub.publish(msg)

    def close(self) -> None:
        self._pub = None
