"""The PSM twin: serves `/PSM1` over CRTK ROS 2 exactly as a dVRK console does.

Wiring only: ROS messages are unpacked on rclpy threads and queued under a
lock; `before_step` hands them to the ROS-free `PSMPlant` (sim/psm_plant.py:
the `PSMCore` motion model and the MuJoCo joint PID, shared with the
Gymnasium environments), `after_step` takes its snapshot.  A publisher
thread sends the measured/setpoint topics at `psm_rate_hz` (100 Hz
default, up to 1 kHz) from the latest physics snapshot.

Sim-only extras (not part of the contract):
* `/sim/ground_truth/psm_rcm` (PointStamped, world): the RCM site;
* `/sim/ground_truth/psm_rcm_error` (Float64, m): distance of the port point
  (PSM1_base origin) from the simulated shaft line (roll link z axis);
* `/sim/psm/disturbance` (JointState: name + effort, N m / N): a generalized
  force added to the named PSM joints until replaced (empty effort clears it):
  the test hook that forces a tracking error.

Standalone: `python -m sim.psm_twin --duration 20 [--rate 100]` runs a world
of psm.xml alone, paced to real time, with its own rclpy node.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import threading
import time
from pathlib import Path

import mujoco
import numpy as np

from surgbot.contract import (GT_PSM_TIP, PSM_BASE_FRAME, PSM_DEFAULT_RATE_HZ, PSM_JAW_NAME,
                              PSM_JOINT_NAMES, PSM_MAX_RATE_HZ, PSM_NAMESPACE, WORLD_FRAME,
                              psm_topic)
from surgbot.kinematics import psm as kin
from surgbot.rosutil import latched_qos
from surgbot.sim.psm_plant import PSMPlant
from surgbot.sim.psm_state import PSMCore

MODEL_PATH = Path(__file__).resolve().parent / "models" / "psm.xml"
GT_PSM_RCM = "/sim/ground_truth/psm_rcm"
GT_PSM_RCM_ERROR = "/sim/ground_truth/psm_rcm_error"
SIM_PSM_DISTURBANCE = "/sim/psm/disturbance"


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (ROS order)."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=float).reshape(9))
    return float(q[1]), float(q[2]), float(q[3]), float(q[0])


def pose_msg_to_matrix(msg) -> np.ndarray:
    """4x4 from a PoseStamped; ValueError with a reason if it is not a pose in PSM1_base."""
    frame = msg.header.frame_id
    if frame not in ("", PSM_BASE_FRAME):
        raise ValueError(f"frame_id {frame!r} not supported, poses are in {PSM_BASE_FRAME}")
    p, o = msg.pose.position, msg.pose.orientation
    vals = [p.x, p.y, p.z, o.x, o.y, o.z, o.w]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("pose contains NaN or inf")
    n = math.sqrt(o.x ** 2 + o.y ** 2 + o.z ** 2 + o.w ** 2)
    if abs(n - 1.0) > 1e-2:
        raise ValueError(f"orientation quaternion norm {n:.4f} is not 1")
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(o.x, o.y, o.z, o.w)
    T[:3, 3] = [p.x, p.y, p.z]
    return T


class PSMTwin:
    """Twin protocol (sim/world.py) for the dVRK PSM named by psm.xml."""

    name = "psm"

    def __init__(self, rate_hz: float | None = None, namespace: str = PSM_NAMESPACE,
                 publish_tip_ground_truth: bool = False):
        self.requested_rate = rate_hz
        self.rate_hz = float(rate_hz or PSM_DEFAULT_RATE_HZ)
        self.namespace = namespace
        self.publish_tip_ground_truth = publish_tip_ground_truth
        self.core = PSMCore()
        self._cmd_lock = threading.Lock()
        self._commands: collections.deque = collections.deque(maxlen=256)
        self._disturbance = np.zeros(6)
        self._snap_lock = threading.Lock()
        self._snap: dict | None = None
        self.plant: PSMPlant | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.node = None
        self.published = collections.Counter()
        self._sp_key: bytes | None = None
        self._sp_T: np.ndarray | None = None

    # ---------------------------------------------------------------- bind
    def bind(self, world) -> None:
        self.plant = PSMPlant(world.model, self.core)
        self.node = world.ros_node
        if self.node is not None:
            self._bind_ros(self.node)

    def _bind_ros(self, node) -> None:
        from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty, Float64, String

        try:
            if not node.has_parameter("psm_rate_hz"):
                node.declare_parameter("psm_rate_hz", self.rate_hz)
            value = float(node.get_parameter("psm_rate_hz").value)
            if self.requested_rate is None:
                self.rate_hz = value
        except Exception as exc:  # noqa: BLE001 - a bad parameter falls back to the default
            node.get_logger().warning(f"psm_rate_hz parameter unusable ({exc}); using {self.rate_hz} Hz")
        if not (0 < self.rate_hz <= PSM_MAX_RATE_HZ):
            node.get_logger().warning(f"psm_rate_hz {self.rate_hz} outside (0, {PSM_MAX_RATE_HZ}]; clamped")
            self.rate_hz = float(min(max(self.rate_hz, 1.0), PSM_MAX_RATE_HZ))

        t = lambda name: psm_topic(name, self.namespace)  # noqa: E731
        latched = latched_qos()
        self.msgs = dict(JointState=JointState, PoseStamped=PoseStamped, TwistStamped=TwistStamped,
                         String=String, Bool=Bool, PointStamped=PointStamped, Float64=Float64)
        self.pub = {
            "measured_js": node.create_publisher(JointState, t("measured_js"), 10),
            "setpoint_js": node.create_publisher(JointState, t("setpoint_js"), 10),
            "measured_cp": node.create_publisher(PoseStamped, t("measured_cp"), 10),
            "setpoint_cp": node.create_publisher(PoseStamped, t("setpoint_cp"), 10),
            "measured_cv": node.create_publisher(TwistStamped, t("measured_cv"), 10),
            "jaw/measured_js": node.create_publisher(JointState, t("jaw/measured_js"), 10),
            "jaw/setpoint_js": node.create_publisher(JointState, t("jaw/setpoint_js"), 10),
            "operating_state": node.create_publisher(String, t("operating_state"), latched),
            "goal_reached": node.create_publisher(Bool, t("goal_reached"), 10),
            "error": node.create_publisher(String, t("error"), 10),
            "warning": node.create_publisher(String, t("warning"), 10),
            "status": node.create_publisher(String, t("status"), 10),
            "gt_rcm": node.create_publisher(PointStamped, GT_PSM_RCM, 10),
            "gt_rcm_error": node.create_publisher(Float64, GT_PSM_RCM_ERROR, 10),
        }
        if self.publish_tip_ground_truth:
            self.pub["gt_tip"] = node.create_publisher(PoseStamped, GT_PSM_TIP, 10)
        self.subs = [
            node.create_subscription(JointState, t("servo_jp"), lambda m: self._on_js("servo_jp", m), 10),
            node.create_subscription(JointState, t("move_jp"), lambda m: self._on_js("move_jp", m), 10),
            node.create_subscription(PoseStamped, t("servo_cp"), lambda m: self._on_cp("servo_cp", m), 10),
            node.create_subscription(PoseStamped, t("move_cp"), lambda m: self._on_cp("move_cp", m), 10),
            node.create_subscription(TwistStamped, t("servo_cv"), self._on_cv, 10),
            node.create_subscription(JointState, t("jaw/servo_jp"), lambda m: self._on_js("jaw_servo_jp", m), 10),
            node.create_subscription(JointState, t("jaw/move_jp"), lambda m: self._on_js("jaw_move_jp", m), 10),
            node.create_subscription(Empty, t("hold"), lambda m: self._queue("hold"), 10),
            node.create_subscription(String, t("state_command"), lambda m: self._queue("state", m.data), 10),
            node.create_subscription(JointState, SIM_PSM_DISTURBANCE, self._on_disturbance, 10),
        ]
        self._publish_operating_state()
        self._thread = threading.Thread(target=self._publish_loop, name="psm-publisher", daemon=True)
        self._thread.start()

    # ------------------------------------------------- rclpy-thread callbacks
    def _queue(self, kind: str, *args) -> None:
        with self._cmd_lock:
            self._commands.append((kind, args))

    def _reject(self, text: str) -> None:
        with self._cmd_lock:
            self._commands.append(("reject", (text,)))

    @staticmethod
    def _stamp(msg) -> float | None:
        st = msg.header.stamp
        return (st.sec + 1e-9 * st.nanosec) or None

    def _on_js(self, kind: str, msg) -> None:
        if kind == "servo_jp":
            self._queue(kind, list(msg.name), list(msg.position), self._stamp(msg))
        else:
            self._queue(kind, list(msg.name), list(msg.position))

    def _on_cp(self, kind: str, msg) -> None:
        try:
            T = pose_msg_to_matrix(msg)
        except ValueError as exc:
            self._reject(f"{kind} rejected: {exc}")
            return
        if kind == "servo_cp":
            self._queue(kind, T, self._stamp(msg))
        else:
            self._queue(kind, T)

    def _on_cv(self, msg) -> None:
        if msg.header.frame_id not in ("", PSM_BASE_FRAME):
            self._reject(f"servo_cv rejected: frame_id {msg.header.frame_id!r} not supported, "
                         f"twists are in {PSM_BASE_FRAME}")
            return
        lin, ang = msg.twist.linear, msg.twist.angular
        self._queue("servo_cv", [lin.x, lin.y, lin.z], [ang.x, ang.y, ang.z])

    def _on_disturbance(self, msg) -> None:
        force = np.zeros(6)
        for name, effort in zip(msg.name, msg.effort):
            if name in PSM_JOINT_NAMES and math.isfinite(effort):
                force[PSM_JOINT_NAMES.index(name)] = effort
        with self._cmd_lock:
            self._disturbance = force

    # ------------------------------------------------------- physics hooks
    def before_step(self, world) -> None:
        d = world.data
        with self._cmd_lock:
            batch = list(self._commands)
            self._commands.clear()
            disturbance = self._disturbance.copy()
        self.plant.control(d, world.time, world.dt, batch, disturbance)

    def after_step(self, world) -> None:
        d = world.data
        core = self.core
        snap = self.plant.snapshot(d, world.time)
        with self._snap_lock:
            self._snap = snap
        if self.node is None:
            core.outbox.clear()
            core.state_changed = False
            return
        if core.outbox:
            events, core.outbox = core.outbox, []
            for kind, payload in events:
                if kind == "goal_reached":
                    self._publish("goal_reached", self.msgs["Bool"](data=bool(payload)))
                else:
                    self._publish(kind, self.msgs["String"](data=str(payload)))
                    self._log(kind, f"{self.namespace}: {payload}")
        if core.state_changed:
            self._publish_operating_state()

    def _log(self, kind: str, text: str) -> None:
        # rclpy ties one severity to each call site, hence three calls
        log = self.node.get_logger()
        if kind == "error":
            log.error(text)
        elif kind == "warning":
            log.warning(text)
        else:
            log.info(text)

    def _publish(self, key: str, msg) -> None:
        try:
            self.pub[key].publish(msg)
            self.published[key] += 1
        except Exception:  # noqa: BLE001 - context shut down while closing
            pass

    def _publish_operating_state(self) -> None:
        self.core.state_changed = False
        self._publish("operating_state", self.msgs["String"](data=json.dumps(self.core.operating_state())))

    # ------------------------------------------------------ publisher thread
    def _publish_loop(self) -> None:
        period = 1.0 / self.rate_hz
        gt_every = max(1, int(round(self.rate_hz / 100.0)))
        next_t = time.perf_counter()
        k = 0
        while not self._stop.is_set():
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.perf_counter()      # overrun: do not burst to catch up
            with self._snap_lock:
                snap = self._snap
            if snap is None:
                continue
            try:
                self._publish_state(snap, ground_truth=(k % gt_every == 0))
            except Exception as exc:  # noqa: BLE001 - keep serving; report once per kind
                if not self._stop.is_set():
                    self.node.get_logger().error(f"psm publisher: {exc}")
            k += 1

    def _publish_state(self, s: dict, ground_truth: bool) -> None:
        M = self.msgs
        stamp = self.node.get_clock().now().to_msg()

        def js(names, pos, vel=None, eff=None):
            msg = M["JointState"]()
            msg.header.stamp = stamp
            msg.name = list(names)
            msg.position = [float(v) for v in pos]
            if vel is not None:
                msg.velocity = [float(v) for v in vel]
            if eff is not None:
                msg.effort = [float(v) for v in eff]
            return msg

        def pose(p, R, frame):
            msg = M["PoseStamped"]()
            msg.header.stamp = stamp
            msg.header.frame_id = frame
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
            o = msg.pose.orientation
            o.x, o.y, o.z, o.w = matrix_to_quat(R)
            return msg

        self._publish("measured_js", js(PSM_JOINT_NAMES, s["q"], s["qd"], s["eff"]))
        self._publish("setpoint_js", js(PSM_JOINT_NAMES, s["q_sp"], s["qd_sp"]))
        self._publish("jaw/measured_js", js([PSM_JAW_NAME], [s["jaw"]], [s["jaw_v"]], [s["jaw_eff"]]))
        self._publish("jaw/setpoint_js", js([PSM_JAW_NAME], [s["jaw_sp"]]))
        # measured_cp: the simulated tool-tip site relative to the simulated base
        Rb = s["base_R"]
        p_tip = Rb.T @ (s["tip_p"] - s["base_p"])
        self._publish("measured_cp", pose(p_tip, Rb.T @ s["tip_R"], PSM_BASE_FRAME))
        key = s["q_sp"].tobytes()
        if key != self._sp_key:                   # setpoint FK only when the setpoint moved
            self._sp_key, self._sp_T = key, kin.fk(s["q_sp"])
        T_sp = self._sp_T
        self._publish("setpoint_cp", pose(T_sp[:3, 3], T_sp[:3, :3], PSM_BASE_FRAME))
        twist = kin.jacobian(s["q"]) @ s["qd"]
        cv = M["TwistStamped"]()
        cv.header.stamp = stamp
        cv.header.frame_id = PSM_BASE_FRAME
        (cv.twist.linear.x, cv.twist.linear.y, cv.twist.linear.z,
         cv.twist.angular.x, cv.twist.angular.y, cv.twist.angular.z) = (float(v) for v in twist)
        self._publish("measured_cv", cv)
        if ground_truth:
            pt = M["PointStamped"]()
            pt.header.stamp = stamp
            pt.header.frame_id = WORLD_FRAME
            pt.point.x, pt.point.y, pt.point.z = (float(v) for v in s["rcm_p"])
            self._publish("gt_rcm", pt)
            r = s["base_p"] - s["roll_p"]
            dist = float(np.linalg.norm(r - s["roll_z"] * (r @ s["roll_z"])))
            self._publish("gt_rcm_error", M["Float64"](data=dist))
            if "gt_tip" in self.pub:
                self._publish("gt_tip", pose(s["tip_p"], s["tip_R"], WORLD_FRAME))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None


# ---------------------------------------------------------------- standalone
def main(argv: list[str] | None = None) -> int:
    """A world of psm.xml alone, with its own rclpy node, paced to real time."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from surgbot.sim.world import SimWorld

    ap = argparse.ArgumentParser(prog="python -m surgbot.sim.psm_twin", description=main.__doc__)
    ap.add_argument("--duration", type=float, default=0.0, help="seconds of sim time (0: until Ctrl-C)")
    ap.add_argument("--rate", type=float, default=None, help="psm_rate_hz (default 100, max 1000)")
    ap.add_argument("--start-home", action="store_true", help="start with the joints at home")
    args = ap.parse_args(argv)
    if args.rate is not None and not (0 < args.rate <= PSM_MAX_RATE_HZ):
        ap.error(f"--rate must be in (0, {PSM_MAX_RATE_HZ:g}]")

    model = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
    data = mujoco.MjData(model)
    world = SimWorld(model, data, scene="psm_only")
    if args.start_home:
        for name, v in zip(PSM_JOINT_NAMES, kin.HOME):
            data.qpos[world.joint_qpos_adr(name)] = v
    mujoco.mj_forward(model, data)
    rclpy.init()
    node = rclpy.create_node("surgbot_sim_psm")
    world.ros_node = node
    twin = world.add(PSMTwin(rate_hz=args.rate, publish_tip_ground_truth=True))
    executor = SingleThreadedExecutor()   # callbacks only queue commands; see crtk.spin_in_background
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    print(f"psm twin up: rate {twin.rate_hz:g} Hz", flush=True)
    t0 = time.perf_counter()
    try:
        while (args.duration <= 0 or world.time < args.duration) and rclpy.ok():
            world.step()
            ahead = world.time - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -0.02:
                # starved of CPU: slow down rather than burst through the backlog,
                # so streamed commands are not applied as one big jump
                t0 += -ahead
    except KeyboardInterrupt:
        pass
    finally:
        wall = time.perf_counter() - t0
        print(f"psm twin done: sim {world.time:.2f} s in {wall:.2f} s wall, "
              f"published {dict(twin.published)}", flush=True)
        world.close()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
