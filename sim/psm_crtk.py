"""The dVRK PSM's CRTK ROS 2 interface, served for the twin: topics, types, services.

`CRTKServer` creates on one rclpy node everything a dVRK console offers for
a PSM and its jaw, with the types of the dVRK 2.x ROS 2 bridge (cisst-ros
`mts_ros_crtk_bridge_provided`: CRTK topics, `error`/`warning`/`status` as
std_msgs/String, `operating_state` as crtk_msgs/OperatingState plus the
TriggerOperatingState service, forward/inverse kinematics services), so the
dVRK's own Python clients (crtk_python_client `crtk.utils`, dvrk_python
`dvrk.psm`: arm, `jaw/`, `local/`, `spatial/`, `body/`) find every topic they
create.  Names and QoS follow those clients: KEEP_LAST 10, reliable;
`operating_state` transient-local (the contract).

Incoming messages are unpacked here (rclpy thread) into `(kind, args)`
commands for `PSMCore` and handed to `submit`; malformed ones become
`("reject", reason)` so the core reports them on `error`.  Outgoing state is
built from a physics snapshot; as the dVRK's bridge does, a topic nobody
subscribes to is not built or published (counts refreshed every 0.2 s).
The twin's base frame is PSM1_base itself (no SUJ/registration), so the
`local/` topics and service carry the same poses as the reference ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from surgbot import geometry
from surgbot.contract import PSM_BASE_FRAME, PSM_JAW_NAME, PSM_JOINT_NAMES, psm_topic
from surgbot.hw.crtk_msgs_path import ensure_crtk_msgs
from surgbot.kinematics import psm as kin
from surgbot.rosutil import latched_qos

ensure_crtk_msgs()
from builtin_interfaces.msg import Time  # noqa: E402
from crtk_msgs.msg import OperatingState, StringStamped  # noqa: E402
from crtk_msgs.srv import QueryForwardKinematics, QueryInverseKinematics, TriggerOperatingState  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Empty, Float64, Float64MultiArray, MultiArrayDimension, String  # noqa: E402

QUEUE_DEPTH = 10                  # crtk_python_client / dvrk_python: KEEP_LAST, depth 10
COUNT_REFRESH_S = 0.2             # how often subscriber counts are re-read
TIP_FRAME = "PSM1_tool_tip"

# (topic, type) published at the state rate, and the snapshot item each carries
STREAMS = (
    ("measured_js", JointState), ("setpoint_js", JointState),
    ("measured_cp", PoseStamped), ("setpoint_cp", PoseStamped), ("measured_cv", TwistStamped),
    ("jaw/measured_js", JointState), ("jaw/setpoint_js", JointState),
)
# published at min(rate, secondary rate): derived quantities dVRK clients poll rarely
SECONDARY = (
    ("local/measured_cp", PoseStamped), ("local/setpoint_cp", PoseStamped),
    ("spatial/measured_cf", WrenchStamped), ("body/measured_cf", WrenchStamped),
    ("spatial/jacobian", Float64MultiArray), ("body/jacobian", Float64MultiArray),
)
EVENTS = (("error", String), ("warning", String), ("status", String), ("goal_reached", Bool))


def _frame_ok(msg, allowed: tuple[str, ...]) -> str | None:
    frame = msg.header.frame_id
    return None if frame in allowed else f"frame_id {frame!r} not supported, expected one of {list(allowed)}"


class CRTKServer:
    """Publishers, subscribers and services of one PSM namespace (see module doc)."""

    def __init__(self, node, namespace: str, submit: Callable[[str, tuple], None],
                 state_fn: Callable[[], dict]):
        self.node = node
        self.namespace = namespace
        self._submit = submit
        self._state_fn = state_fn
        self.published: dict[str, int] = {}
        qos = QoSProfile(depth=QUEUE_DEPTH)
        t = lambda name: psm_topic(name, namespace)  # noqa: E731
        self.pub = {name: node.create_publisher(typ, t(name), qos) for name, typ in STREAMS + SECONDARY + EVENTS}
        self.pub["operating_state"] = node.create_publisher(OperatingState, t("operating_state"), latched_qos())
        self.pub["trajectory_j/ratio"] = node.create_publisher(Float64, t("trajectory_j/ratio"), latched_qos())
        js = lambda kind, field="position": (lambda m: self._on_js(kind, m, field))  # noqa: E731
        subs = [
            ("state_command", StringStamped, lambda m: submit("state", (m.string,))),
            ("servo_jp", JointState, js("servo_jp")), ("servo_jr", JointState, js("servo_jr")),
            ("move_jp", JointState, js("move_jp")), ("move_jr", JointState, js("move_jr")),
            ("servo_jf", JointState, js("servo_jf", "effort")),
            ("servo_cp", PoseStamped, lambda m: self._on_cp("servo_cp", m)),
            ("move_cp", PoseStamped, lambda m: self._on_cp("move_cp", m)),
            ("servo_cv", TwistStamped, self._on_cv),
            ("hold", Empty, lambda m: submit("hold", ())), ("free", Empty, lambda m: submit("free", ())),
            ("spatial/servo_cf", WrenchStamped, lambda m: self._on_cf(m, body=False)),
            ("body/servo_cf", WrenchStamped, lambda m: self._on_cf(m, body=True)),
            ("jaw/servo_jp", JointState, js("jaw_servo_jp")), ("jaw/move_jp", JointState, js("jaw_move_jp")),
            ("jaw/servo_jf", JointState, js("jaw_servo_jf", "effort")),
            ("trajectory_j/set_ratio", Float64, lambda m: submit("set_trajectory_ratio", (m.data,))),
            ("use_gravity_compensation", Bool, lambda m: submit("set_gravity_compensation", (m.data,))),
            ("body/set_cf_orientation_absolute", Bool, lambda m: submit("set_cf_orientation_absolute", (m.data,))),
            ("emulate_tool_present", Bool, lambda m: submit("set_tool_present", (m.data,))),
        ]
        self.subs = [node.create_subscription(typ, t(name), cb, qos) for name, typ, cb in subs]
        self.services = [
            node.create_service(QueryForwardKinematics, t("forward_kinematics"), self._fk),
            node.create_service(QueryForwardKinematics, t("local/forward_kinematics"), self._fk),
            node.create_service(QueryInverseKinematics, t("inverse_kinematics"), self._ik),
            node.create_service(TriggerOperatingState, t("operating_state"), self._trigger_state),
        ]
        self._counts = {k: 0 for k in self.pub}
        self._counts_at = -math.inf
        self._cache: dict[str, object] = {}
        self._cache_seq = -1
        self._sp_key: bytes | None = None
        self._sp_T: np.ndarray | None = None
        self._q_sp: np.ndarray | None = None      # latest setpoint: the IK service's default seed

    # ------------------------------------------------------------ commands
    def _on_js(self, kind: str, msg, field: str) -> None:
        values = list(getattr(msg, field))
        if kind == "servo_jp":
            stamp = geometry.stamp_to_sec(msg) or None
            self._submit(kind, (list(msg.name), values, stamp))
        else:
            self._submit(kind, (list(msg.name), values))

    def _on_cp(self, kind: str, msg) -> None:
        bad = _frame_ok(msg, ("", PSM_BASE_FRAME))
        try:
            if bad:
                raise ValueError(bad)
            T = geometry.pose_msg_to_matrix(msg)
        except ValueError as exc:
            self._submit("reject", (f"{kind} rejected: {exc}",))
            return
        args = (T, geometry.stamp_to_sec(msg) or None) if kind == "servo_cp" else (T,)
        self._submit(kind, args)

    def _on_cv(self, msg) -> None:
        bad = _frame_ok(msg, ("", PSM_BASE_FRAME))
        if bad:
            self._submit("reject", (f"servo_cv rejected: {bad}",))
            return
        lin, ang = msg.twist.linear, msg.twist.angular
        self._submit("servo_cv", ([lin.x, lin.y, lin.z], [ang.x, ang.y, ang.z]))

    def _on_cf(self, msg, body: bool) -> None:
        f, m = msg.wrench.force, msg.wrench.torque
        self._submit("servo_cf", ([f.x, f.y, f.z, m.x, m.y, m.z], body))

    # ------------------------------------------------------------ services
    def _fk(self, request, response):
        """forward_kinematics: tool-tip pose of `jp` (6 joints) in PSM1_base."""
        try:
            T = kin.fk(kin.check_joints(np.asarray(request.jp, float), "jp"))
        except (kin.KinematicsError, ValueError) as exc:
            response.result, response.message = False, str(exc)
            return response
        geometry.matrix_to_pose_msg(T, response.cp)
        response.result = True
        return response

    def _ik(self, request, response):
        """inverse_kinematics: joints reaching `cp`, seeded by `jp` (empty: the current setpoint)."""
        try:
            T = geometry.pose_msg_to_matrix(request.cp)
            seed = None
            if len(request.jp):
                seed = kin.check_joints(np.asarray(request.jp, float), "jp")
            elif self._q_sp is not None:
                seed = self._q_sp
            res = kin.ik(kin.check_pose(T, "cp"), seed=seed)
        except (kin.KinematicsError, ValueError) as exc:
            response.result, response.message = False, str(exc)
            return response
        response.jp = [float(v) for v in res.q]
        response.result = True
        response.message = "insertion clamped" if res.insertion_clamped else ""
        return response

    def _trigger_state(self, _request, response):
        fill_operating_state(response.operating_state, self._state_fn(), time.time_ns())
        return response

    # ------------------------------------------------------------ publishing
    def publish(self, key: str, msg) -> None:
        try:
            self.pub[key].publish(msg)
            self.published[key] = self.published.get(key, 0) + 1
        except Exception:  # noqa: BLE001 - context shut down while closing
            pass

    def event(self, kind: str, payload) -> None:
        """An outbox entry of PSMCore: error/warning/status text or goal_reached."""
        self.publish(kind, Bool(data=bool(payload)) if kind == "goal_reached" else String(data=str(payload)))

    def operating_state(self, state: dict, ratio: float, stamp_ns: int) -> None:
        self.publish("operating_state", fill_operating_state(OperatingState(), state, stamp_ns))
        self.publish("trajectory_j/ratio", Float64(data=float(ratio)))

    def _wanted(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._counts_at > COUNT_REFRESH_S:
            self._counts_at = now
            for key, pub in self.pub.items():
                try:
                    self._counts[key] = pub.get_subscription_count()
                except Exception:  # noqa: BLE001 - closing
                    self._counts[key] = 0
        return self._counts

    def publish_state(self, snap: dict, secondary: bool) -> None:
        """The state topics of one snapshot; unchanged snapshot: the same messages again."""
        counts = self._wanted()
        self._q_sp = snap["q_sp"]
        if snap["seq"] != self._cache_seq:
            self._cache_seq = snap["seq"]
            self._cache.clear()
        for name, _ in STREAMS + (SECONDARY if secondary else ()):
            if counts.get(name, 0) == 0:
                continue
            msg = self._cache.get(name)
            if msg is None:
                msg = self._cache[name] = self._build(name, snap)
            self.publish(name, msg)

    def _build(self, name: str, s: dict):
        stamp = geometry.ns_to_stamp(s["stamp_ns"], Time())
        if name in ("measured_js", "setpoint_js", "jaw/measured_js", "jaw/setpoint_js"):
            msg = JointState()
            msg.header.stamp = stamp
            if name == "measured_js":
                _fill_js(msg, PSM_JOINT_NAMES, s["q"], s["qd"], s["eff"])
            elif name == "setpoint_js":
                _fill_js(msg, PSM_JOINT_NAMES, s["q_sp"], s["qd_sp"], s["effort_sp"])
            elif name == "jaw/measured_js":
                _fill_js(msg, (PSM_JAW_NAME,), [s["jaw"]], [s["jaw_v"]], [s["jaw_eff"]])
            else:
                _fill_js(msg, (PSM_JAW_NAME,), [s["jaw_sp"]], [0.0], [s["jaw_effort_sp"]])
            return msg
        if name in ("measured_cp", "local/measured_cp"):
            return _pose(s["T_meas"], stamp)
        if name in ("setpoint_cp", "local/setpoint_cp"):
            return _pose(self._setpoint_T(s["q_sp"]), stamp)
        if name == "measured_cv":
            msg = TwistStamped()
            msg.header.stamp, msg.header.frame_id = stamp, PSM_BASE_FRAME
            v = kin.jacobian(s["q"]) @ s["qd"]
            _fill_vec(msg.twist.linear, v[:3])
            _fill_vec(msg.twist.angular, v[3:])
            return msg
        if name.endswith("measured_cf"):
            body = name.startswith("body/")
            w = s["wrench"]
            R = s["T_meas"][:3, :3]
            if body:
                w = np.concatenate([R.T @ w[:3], R.T @ w[3:]])
            msg = WrenchStamped()
            msg.header.stamp, msg.header.frame_id = stamp, TIP_FRAME if body else PSM_BASE_FRAME
            _fill_vec(msg.wrench.force, w[:3])
            _fill_vec(msg.wrench.torque, w[3:])
            return msg
        J = kin.jacobian(s["q"])                  # spatial or body jacobian
        if name.startswith("body/"):
            Rt = s["T_meas"][:3, :3].T
            J = np.vstack([Rt @ J[:3], Rt @ J[3:]])
        return _matrix_msg(J)

    def _setpoint_T(self, q_sp: np.ndarray) -> np.ndarray:
        key = q_sp.tobytes()
        if key != self._sp_key:                   # setpoint FK only when the setpoint moved
            self._sp_key, self._sp_T = key, kin.fk(q_sp)
        return self._sp_T

    def close(self) -> None:
        for pub in self.pub.values():
            self.node.destroy_publisher(pub)
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        for srv in self.services:
            self.node.destroy_service(srv)


def fill_operating_state(msg, state: dict, stamp_ns: int):
    geometry.ns_to_stamp(stamp_ns, msg.header.stamp)
    msg.state, msg.is_homed, msg.is_busy = str(state["state"]), bool(state["is_homed"]), bool(state["is_busy"])
    return msg


def _fill_js(msg, names, pos, vel, eff) -> None:
    msg.name = list(names)
    msg.position = [float(v) for v in pos]
    msg.velocity = [float(v) for v in vel]
    msg.effort = [float(v) for v in eff]


def _fill_vec(vec, v) -> None:
    vec.x, vec.y, vec.z = float(v[0]), float(v[1]), float(v[2])


def _pose(T: np.ndarray, stamp) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp, PSM_BASE_FRAME
    return geometry.matrix_to_pose_msg(T, msg)


def _matrix_msg(M: np.ndarray) -> Float64MultiArray:
    """Row-major matrix, layout dims [rows, cols] (what crtk's jacobian() reshapes with)."""
    rows, cols = M.shape
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="rows", size=rows, stride=rows * cols),
                      MultiArrayDimension(label="cols", size=cols, stride=cols)]
    msg.data = [float(v) for v in M.reshape(-1)]
    return msg
