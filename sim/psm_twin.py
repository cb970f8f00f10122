"""The PSM twin: serves `/PSM1` over CRTK ROS 2 exactly as a dVRK console does.

Wiring only.  `sim/psm_crtk.py` (`CRTKServer`) holds the dVRK's topics,
types and services and unpacks messages into `(kind, args)` commands on
rclpy threads; they are queued under a lock and `before_step` hands them to
the ROS-free `PSMPlant` (sim/psm_plant.py: the `PSMCore` motion model and
the MuJoCo joint PID, shared with the Gymnasium environments), so a command
is applied on the next physics step.  `after_step` takes the snapshot and
publishes what the core reported (`error`/`warning`/`status`,
`goal_reached`, `operating_state`).  A publisher thread, paced by
`surgbot.pacing.Pacer`, sends the state topics at `psm_rate_hz` (100 Hz
default, up to 1 kHz) from the newest snapshot, so a setpoint changed by a
servo command is in the next `setpoint_*` message.

Parameters come from `PSMTwinConfig` (declared on the sim's node with
`surgbot.rosutil.declare_config`; config/psm.yaml only overrides).

Sim-only extras (not part of the contract):
* `/sim/ground_truth/psm_rcm` (PointStamped, world): the RCM site;
* `/sim/ground_truth/psm_rcm_error` (Float64, m): distance of the port point
  (PSM1_base origin) from the simulated shaft line (roll link z axis);
* `/sim/psm/disturbance` (JointState: name + effort, N m / N): a generalized
  force added to the named PSM joints until replaced (empty effort clears it):
  the test hook that forces a tracking error.

Standalone: `python -m surgbot.sim.psm_twin --duration 20 [--rate 100]` runs
a world of psm.xml alone, paced to real time, with its own rclpy node.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from surgbot import geometry
from surgbot.config import check_ranges, param
from surgbot.contract import (
    GT_PSM_TIP,
    PSM_DEFAULT_RATE_HZ,
    PSM_JOINT_NAMES,
    PSM_MAX_RATE_HZ,
    PSM_NAMESPACE,
    WORLD_FRAME,
)
from surgbot.kinematics import psm as kin
from surgbot.pacing import Pacer
from surgbot.sim.psm_core import PSMCore
from surgbot.sim.psm_plant import PSMPlant

MODEL_PATH = Path(__file__).resolve().parent / "models" / "psm.xml"
GT_PSM_RCM = "/sim/ground_truth/psm_rcm"
GT_PSM_RCM_ERROR = "/sim/ground_truth/psm_rcm_error"
SIM_PSM_DISTURBANCE = "/sim/psm/disturbance"
GROUND_TRUTH_RATE_HZ = 100.0
COMMAND_QUEUE = 256
# Above the dVRK's default rate the publisher thread must get the GIL every millisecond;
# with CPython's default 5 ms switch interval a busy thread can hold it for 5 ms.  Measured
# here (loaded 2-core box, 4 interleaved pairs, twin at 1 kHz): 0.5 ms gave measured_js
# 822-1000 Hz vs 391-967 Hz and servo_jp->setpoint_js p50 7-11 ms vs 8-24 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class PSMTwinConfig:
    """Parameters of the PSM twin (ROS parameters on the sim's node)."""

    psm_rate_hz: float = param(PSM_DEFAULT_RATE_HZ, "rate of measured/setpoint js/cp, measured_cv, jaw/* "
                               "(Hz; dVRK default 100)", lo=1.0, hi=PSM_MAX_RATE_HZ)
    psm_secondary_rate_hz: float = param(100.0, "rate of local/*_cp, spatial|body/measured_cf and "
                                         "*/jacobian (Hz, at most psm_rate_hz)", lo=1.0, hi=PSM_MAX_RATE_HZ)
    psm_namespace: str = param(PSM_NAMESPACE, "CRTK namespace of the arm")
    psm_tip_ground_truth: bool = param(False, f"also publish {GT_PSM_TIP} (the scenes' ground-truth "
                                       "node does when it runs)")

    def __post_init__(self):
        check_ranges(self)
        for name in ("psm_rate_hz", "psm_secondary_rate_hz"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 < v <= PSM_MAX_RATE_HZ):
                raise ValueError(f"{name} must be in (0, {PSM_MAX_RATE_HZ:g}] Hz, got {v}")
        ns = self.psm_namespace
        if not (ns.startswith("/") and len(ns) > 1 and all(c.isalnum() or c in "_/" for c in ns)):
            raise ValueError(f"psm_namespace must be an absolute ROS namespace like /PSM1, got {ns!r}")


class PSMTwin:
    """Twin protocol (sim/world.py) for the dVRK PSM named by psm.xml."""

    name = "psm"

    def __init__(self, config: PSMTwinConfig | None = None):
        self.config = config or PSMTwinConfig()
        self.core = PSMCore()
        self.plant: PSMPlant | None = None
        self.server = None
        self.node = None
        self._cmd_lock = threading.Lock()
        self._commands: collections.deque = collections.deque(maxlen=COMMAND_QUEUE)
        self._disturbance = np.zeros(6)
        self._snap_lock = threading.Lock()
        self._snap: dict | None = None
        self._seq = 0
        self._state = self.core.operating_state()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def rate_hz(self) -> float:
        return self.config.psm_rate_hz

    @property
    def published(self) -> dict[str, int]:
        return dict(self.server.published) if self.server else {}

    # ---------------------------------------------------------------- bind
    def bind(self, world) -> None:
        m = world.model
        self.plant = PSMPlant(m, self.core)
        base = self.plant.base_body
        psm_bodies = [b for b in range(m.nbody) if _in_subtree(m, b, base)]
        self._psm_geom = np.isin(m.geom_bodyid, psm_bodies)      # geom id -> belongs to the arm
        self.node = world.ros_node
        if self.node is not None:
            self._bind_ros(world)

    def _bind_ros(self, world) -> None:
        # ROS imports here: a world without a node (unit tests, tools) uses the twin without rclpy
        from geometry_msgs.msg import PointStamped, PoseStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64

        from surgbot.rosutil import declare_config
        from surgbot.sim.psm_crtk import CRTKServer

        node = self.node
        self.config = declare_config(node, PSMTwinConfig, overrides=_overrides(self.config))
        if self.config.psm_rate_hz > PSM_DEFAULT_RATE_HZ and sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)     # process-wide: the sim's other threads too
        self.server = CRTKServer(node, self.config.psm_namespace, self._submit, lambda: self._state)
        self._world = world
        self._gt = {"gt_rcm": node.create_publisher(PointStamped, GT_PSM_RCM, 10),
                    "gt_rcm_error": node.create_publisher(Float64, GT_PSM_RCM_ERROR, 10)}
        if self.config.psm_tip_ground_truth:
            self._gt["gt_tip"] = node.create_publisher(PoseStamped, GT_PSM_TIP, 10)
        self._gt_msgs = (PointStamped, Float64, PoseStamped)
        self._dist_sub = node.create_subscription(JointState, SIM_PSM_DISTURBANCE, self._on_disturbance, 10)
        self.server.operating_state(self._state, self.core.motion.trajectory_ratio, world.stamp_ns())
        self._thread = threading.Thread(target=self._publish_loop, name="psm-publisher", daemon=True)
        self._thread.start()

    # ------------------------------------------------- rclpy-thread callbacks
    def _submit(self, kind: str, args: tuple) -> None:
        with self._cmd_lock:
            self._commands.append((kind, args))

    def _on_disturbance(self, msg) -> None:
        force = np.zeros(6)
        for name, effort in zip(msg.name, msg.effort, strict=False):   # extra names: no effort
            if name in PSM_JOINT_NAMES and math.isfinite(effort):
                force[PSM_JOINT_NAMES.index(name)] = effort
        with self._cmd_lock:
            self._disturbance = force

    # ------------------------------------------------------- physics hooks
    def before_step(self, world) -> None:
        with self._cmd_lock:
            batch = list(self._commands)
            self._commands.clear()
            disturbance = self._disturbance.copy()
        self.plant.control(world.data, world.time, world.dt, batch, disturbance)

    def after_step(self, world) -> None:
        d, core = world.data, self.core
        snap = self.plant.snapshot(d, world.time)
        self._seq += 1
        snap["seq"] = self._seq
        snap["stamp_ns"] = world.stamp_ns()
        snap["T_meas"] = self.plant.measured_cp(d)
        snap["wrench"] = self._contact_wrench(world, snap["T_meas"])
        snap["effort_sp"] = np.zeros(6) if core.motion.effort is None else core.motion.effort.copy()
        snap["jaw_effort_sp"] = 0.0 if core.motion.jaw_effort is None else float(core.motion.jaw_effort)
        with self._snap_lock:
            self._snap = snap
        events, core.outbox = core.outbox, []
        changed, core.state_changed = core.state_changed, False
        if changed:
            self._state = core.operating_state()
        if self.server is None:
            return
        for kind, payload in events:
            self.server.event(kind, payload)
            if kind != "goal_reached":
                self._log(kind, f"{self.config.psm_namespace}: {payload}")
        if changed:
            self.server.operating_state(self._state, core.motion.trajectory_ratio, snap["stamp_ns"])

    def _contact_wrench(self, world, T_meas: np.ndarray) -> np.ndarray:
        """Wrench (force, torque about the tool tip; PSM1_base axes) the contacts exert on the arm.

        Sum over MuJoCo contacts touching a PSM body; the contact force acts
        on geom2 along the frame's normal (geom1 -> geom2) and on geom1 in
        reverse.  Zero in free space (what a dVRK reports with no load)."""
        m, d = world.model, world.data
        w = np.zeros(6)
        if d.ncon == 0:
            return w
        on1 = self._psm_geom[d.contact.geom1]
        on2 = self._psm_geom[d.contact.geom2]
        mine = np.flatnonzero(on1 != on2)      # not the arm's, or the arm against itself: skipped
        if mine.size == 0:
            return w
        f6 = np.zeros(6)
        tip_world = self.plant.base_pose(d) @ np.append(T_meas[:3, 3], 1.0)
        for i in mine:
            c = d.contact[int(i)]
            on2 = bool(self._psm_geom[c.geom2])
            mujoco.mj_contactForce(m, d, int(i), f6)
            f = c.frame.reshape(3, 3).T @ f6[:3] * (1.0 if on2 else -1.0)
            w[:3] += f
            w[3:] += np.cross(c.pos - tip_world[:3], f)
        Rb = self.plant.base_pose(d)[:3, :3]
        return np.concatenate([Rb.T @ w[:3], Rb.T @ w[3:]])

    def _log(self, kind: str, text: str) -> None:
        # rclpy ties one severity to each call site, hence three calls
        log = self.node.get_logger()
        if kind == "error":
            log.error(text)
        elif kind == "warning":
            log.warning(text)
        else:
            log.info(text)

    # ------------------------------------------------------ publisher thread
    def _publish_loop(self) -> None:
        cfg = self.config
        period = 1.0 / cfg.psm_rate_hz
        secondary_every = max(1, round(cfg.psm_rate_hz / min(cfg.psm_secondary_rate_hz, cfg.psm_rate_hz)))
        gt_every = max(1, round(cfg.psm_rate_hz / min(GROUND_TRUTH_RATE_HZ, cfg.psm_rate_hz)))
        pacer = Pacer(stop=self._stop)
        k = 0
        while not self._stop.is_set():
            k += 1
            pacer.pace(k * period)
            with self._snap_lock:
                snap = self._snap
            if snap is None:
                continue
            try:
                self.server.publish_state(snap, secondary=(k % secondary_every == 0))
                if k % gt_every == 0:
                    self._publish_ground_truth(snap)
            except Exception as exc:  # noqa: BLE001 - keep serving; the node logs it
                if not self._stop.is_set():
                    self.node.get_logger().error(f"psm publisher: {exc}")

    def _publish_ground_truth(self, s: dict) -> None:
        PointStamped, Float64, PoseStamped = self._gt_msgs
        read = {k: pub.get_subscription_count() > 0 for k, pub in self._gt.items()}   # unread: not built
        stamp = geometry.ns_to_stamp(s["stamp_ns"], PointStamped().header.stamp)
        if read["gt_rcm"]:
            pt = PointStamped()
            pt.header.stamp, pt.header.frame_id = stamp, WORLD_FRAME
            pt.point.x, pt.point.y, pt.point.z = (float(v) for v in s["rcm_p"])
            self._gt["gt_rcm"].publish(pt)
        if read["gt_rcm_error"]:
            r = s["base_p"] - s["roll_p"]
            dist = float(np.linalg.norm(r - s["roll_z"] * (r @ s["roll_z"])))
            self._gt["gt_rcm_error"].publish(Float64(data=dist))
        if read.get("gt_tip"):
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = s["tip_R"], s["tip_p"]
            msg = PoseStamped()
            msg.header.stamp, msg.header.frame_id = stamp, WORLD_FRAME
            self._gt["gt_tip"].publish(geometry.matrix_to_pose_msg(T, msg))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None


def _in_subtree(model, body: int, root: int) -> bool:
    """True if `body` is `root` or one of its descendants (body 0, the world, is nobody's)."""
    while body != 0 and body != root:
        body = int(model.body_parentid[body])
    return body == root


def _overrides(cfg: PSMTwinConfig) -> dict:
    """Values given to the constructor that differ from the defaults (a params file still wins)."""
    default = PSMTwinConfig()
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if getattr(cfg, k) != getattr(default, k)}


# ---------------------------------------------------------------- standalone
def main(argv: list[str] | None = None) -> int:
    """A world of psm.xml alone, with its own rclpy node, paced to real time."""
    import rclpy

    from surgbot.rosutil import BackgroundSpinner, make_executor
    from surgbot.sim.world import SimWorld

    ap = argparse.ArgumentParser(prog="python -m surgbot.sim.psm_twin", description=main.__doc__)
    ap.add_argument("--duration", type=float, default=0.0, help="seconds of sim time (0: until Ctrl-C)")
    ap.add_argument("--rate", type=float, default=None, help="psm_rate_hz (default 100, max 1000)")
    ap.add_argument("--start-home", action="store_true", help="start with the joints at home")
    args = ap.parse_args(argv)
    if args.rate is not None and not (0 < args.rate <= PSM_MAX_RATE_HZ):
        ap.error(f"--rate must be in (0, {PSM_MAX_RATE_HZ:g}]")
    cfg = PSMTwinConfig(psm_tip_ground_truth=True,
                        **({} if args.rate is None else {"psm_rate_hz": float(args.rate)}))

    model = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
    data = mujoco.MjData(model)
    world = SimWorld(model, data, scene="psm_only")
    if args.start_home:
        for name, v in zip(PSM_JOINT_NAMES, kin.HOME, strict=True):
            data.qpos[world.joint_qpos_adr(name)] = v
    mujoco.mj_forward(model, data)
    rclpy.init()
    node = rclpy.create_node("surgbot_sim_psm")
    world.ros_node = node
    twin = world.add(PSMTwin(cfg))
    executor = make_executor()            # the one the sim node spins (rosutil.EXECUTOR_ENV)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor)
    print(f"psm twin up: rate {twin.rate_hz:g} Hz", flush=True)
    pacer = Pacer()
    t0 = world.time
    try:
        while (args.duration <= 0 or world.time < args.duration) and rclpy.ok():
            world.step()
            pacer.pace(world.time - t0)
    except KeyboardInterrupt:
        pass
    finally:
        print(f"psm twin done: sim {world.time:.2f} s in {pacer.wall_s():.2f} s wall "
              f"({pacer.stalls} stalls dropped {pacer.dropped_s:.2f} s), published {twin.published}", flush=True)
        world.close()
        spinner.stop()                    # out of rclpy before the node goes (see sim.runner.RosContext)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
