"""`endoscope_holder` rclpy node: the G1 right arm holds the scope through the port (contract section 4).

Thin shell around `surgbot.control.endoscope_holder.EndoscopeHolderCore`:
reads `/g1/joint_states`, runs the core on a `rate_hz` timer, publishes
`/g1/arm_command` (the active joints by name, position + velocity), the scope
state (`/endoscope/measured_cp`, `/endoscope/fulcrum`,
`/endoscope/fulcrum_error`, `/endoscope/mode`) and `/diagnostics`; takes
`/endoscope/servo_cp`, `/endoscope/servo_cv`, `/teleop/head`,
`/teleop/buttons`, `/PSM1/measured_cp`; serves `/endoscope/hold`,
`/endoscope/follow_tool`, `/endoscope/set_fulcrum`.  It needs the G1 bridge
engaged and never engages it itself.  Parameters: config/endoscope_holder.yaml.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger

from surgbot import contract
from surgbot.control.endoscope_holder import EndoscopeHolderCore, HolderConfig
from surgbot.control.pivot import PivotConfig
from surgbot.kinematics.g1_arm import DEFAULT_MJCF, G1ScopeArm, RIGHT_ARM_JOINTS, WAIST_JOINTS
from surgbot.rosutil import latched_qos, run_node

DIAG_NAME = "endoscope_holder"
STALE_COMMAND_S = 1.0      # a servo command stamped further than this from now is rejected


def scene_port(scene: str) -> list[float]:
    """The port (fulcrum) of a sim scene: its `scope_port` site in the `stand` keyframe.

    Sim only: stands in for registering the port on the patient (`fulcrum`
    parameter or `/endoscope/set_fulcrum` on hardware)."""
    import mujoco

    from surgbot.sim.scene import build_model, reset_to_stand

    m = build_model(scene)
    d = mujoco.MjData(m)
    reset_to_stand(m, d)
    return [float(v) for v in d.site("scope_port").xpos]


def scene_psm_base(scene: str) -> list[float] | None:
    """Sim only: PSM1_base pose in world (x y z qx qy qz qw) from the scene, if it has a PSM."""
    import mujoco

    from surgbot.sim.scene import PSM_ROOT_BODY, build_model, reset_to_stand

    m = build_model(scene)
    if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, PSM_ROOT_BODY) < 0:
        return None
    d = mujoco.MjData(m)
    reset_to_stand(m, d)
    b = d.body(PSM_ROOT_BODY)
    w, x, y, z = (float(v) for v in b.xquat)
    return [float(v) for v in b.xpos] + [x, y, z, w]


def _bridge_gains(name: str, values: list) -> dict | None:
    """The g1_bridge kp/kd (17 values, contract upper-body order) as name -> gain; [0.0]: the bridge's defaults."""
    from surgbot.control.g1_bridge import UPPER_NAMES
    if values == [0.0]:
        return None
    if len(values) != len(UPPER_NAMES) or not all(math.isfinite(float(v)) and float(v) > 0 for v in values):
        raise ValueError(f"{name}: {len(UPPER_NAMES)} positive gains in g1_bridge order expected, got {values}")
    return dict(zip(UPPER_NAMES, (float(v) for v in values)))


class EndoscopeHolderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("endoscope_holder", **kwargs)
        p = self.declare_parameter
        mjcf = str(p("mjcf", "").value) or str(DEFAULT_MJCF)
        rate = float(p("rate_hz", 500.0).value)
        fulcrum = list(p("fulcrum", [0.0]).value)
        use_waist = bool(p("use_waist", True).value)
        waist_weight = float(p("waist_weight", 0.5).value)
        depth_range = list(p("depth_range", [0.02, 0.15]).value)
        psm_base = list(p("psm_base_pose", [0.0]).value)
        scene = str(p("scene", "").value)
        if len(fulcrum) != 3 and scene:
            fulcrum = scene_port(scene)
        if len(psm_base) != 7 and scene:
            psm_base = scene_psm_base(scene) or psm_base
            self.get_logger().info(f"fulcrum registered from scene {scene!r}: port at {np.round(fulcrum, 4).tolist()}")
        cfg = HolderConfig(
            rate_hz=rate,
            fulcrum=tuple(fulcrum) if len(fulcrum) == 3 else None,
            entry_depth=float(p("entry_depth", 0.05).value),
            pivot=PivotConfig(
                active_joints=(WAIST_JOINTS if use_waist else ()) + RIGHT_ARM_JOINTS,
                joint_weights={n: waist_weight for n in WAIST_JOINTS},
                depth_range=(float(depth_range[0]), float(depth_range[1])),
                max_angle_from_axis_deg=float(p("max_angle_from_axis_deg", 60.0).value),
                max_joint_speed=float(p("max_joint_speed", 1.0).value)),
            max_angular_speed=np.radians(float(p("max_angular_speed_deg", 45.0).value)),
            max_insertion_speed=float(p("max_insertion_speed", 0.04).value),
            max_angular_accel=np.radians(float(p("max_angular_accel_deg", 60.0).value)),
            max_insertion_accel=float(p("max_insertion_accel", 0.06).value),
            teleop_timeout_s=float(p("teleop_timeout_s", contract.ENDOSCOPE_TELEOP_TIMEOUT_S).value),
            integral_gain=float(p("integral_gain", 15.0).value),
            fault_fulcrum_error=float(p("fault_fulcrum_error", 0.015).value),
            joint_state_timeout_s=float(p("joint_state_timeout_s", 0.1).value),
            deadman_button=int(p("deadman_button", 0).value),
            head_pan_gain=float(p("head_pan_gain", 1.0).value),
            head_tilt_gain=float(p("head_tilt_gain", 1.0).value),
            head_zoom_gain=float(p("head_zoom_gain", 0.5).value),
            psm_base_pose=tuple(psm_base) if len(psm_base) == 7 else None,
            tool_deadband_out_deg=float(p("tool_deadband_out_deg", 8.0).value),
            tool_deadband_in_deg=float(p("tool_deadband_in_deg", 2.0).value),
            tool_speed_deg=float(p("tool_speed_deg", 15.0).value),
            bridge_kp=_bridge_gains("bridge_kp", list(p("bridge_kp", [0.0]).value)),
            bridge_kd=_bridge_gains("bridge_kd", list(p("bridge_kd", [0.0]).value)),
        )
        self.publish_hz = float(p("state_publish_hz", 100.0).value)
        self.arm = G1ScopeArm(mjcf)
        self.core = EndoscopeHolderCore(self.arm, cfg)

        self.pub_cmd = self.create_publisher(JointState, contract.G1_ARM_COMMAND, 10)
        self.pub_cp = self.create_publisher(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, 10)
        self.pub_fulcrum = self.create_publisher(PointStamped, contract.ENDOSCOPE_FULCRUM, 10)
        self.pub_ferr = self.create_publisher(Float64, contract.ENDOSCOPE_FULCRUM_ERROR, 10)
        self.pub_mode = self.create_publisher(String, contract.ENDOSCOPE_MODE, latched_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, contract.G1_JOINT_STATES, self._on_joint_states, 10)
        self.create_subscription(PoseStamped, contract.ENDOSCOPE_SERVO_CP, self._on_servo_cp, 10)
        self.create_subscription(TwistStamped, contract.ENDOSCOPE_SERVO_CV, self._on_servo_cv, 10)
        self.create_subscription(PoseStamped, contract.TELEOP_HEAD, self._on_head, 10)
        self.create_subscription(Joy, contract.TELEOP_BUTTONS, self._on_buttons, 10)
        self.create_subscription(PoseStamped, contract.psm_topic("measured_cp"), self._on_psm_cp, 10)
        self.create_service(SetBool, contract.ENDOSCOPE_HOLD, self._on_hold)
        self.create_service(SetBool, contract.ENDOSCOPE_FOLLOW_TOOL, self._on_follow_tool)
        self.create_service(Trigger, contract.ENDOSCOPE_SET_FULCRUM, self._on_set_fulcrum)

        self._step_ms: deque = deque(maxlen=2000)
        self._period_ms: deque = deque(maxlen=2000)
        self._tips: deque = deque(maxlen=int(self.publish_hz))
        self._last_tick: float | None = None
        self._tick = 0
        self._pub_every = max(1, int(round(rate / self.publish_hz)))
        self._last_mode = None
        self._last_cmd_names: tuple | None = None
        self.create_timer(1.0 / rate, self._on_timer)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"endoscope_holder: {len(self.core.active_names)} joints {self.core.active_names}, {rate:.0f} Hz, "
            f"fulcrum {'from parameter' if cfg.fulcrum else 'captured at start'}; waiting for {contract.G1_JOINT_STATES}")

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return time.monotonic()

    def _stale(self, stamp) -> str:
        if stamp.sec == 0 and stamp.nanosec == 0:
            return ""
        now = self.get_clock().now().nanoseconds * 1e-9
        age = now - (stamp.sec + stamp.nanosec * 1e-9)
        return f"stamp {age:.2f} s old" if abs(age) > STALE_COMMAND_S else ""

    def _on_joint_states(self, msg: JointState) -> None:
        self.core.update_joint_state(msg.name, msg.position, self._now())
        self._drain()

    def _on_servo_cp(self, msg: PoseStamped) -> None:
        stale = self._stale(msg.header.stamp)
        if stale:
            self.get_logger().error(f"servo_cp rejected: {stale}")
            return
        p, o = msg.pose.position, msg.pose.orientation
        self.core.servo_cp([p.x, p.y, p.z], [o.x, o.y, o.z, o.w], msg.header.frame_id, self._now())
        self._drain()

    def _on_servo_cv(self, msg: TwistStamped) -> None:
        stale = self._stale(msg.header.stamp)
        if stale:
            self.get_logger().error(f"servo_cv rejected: {stale}")
            return
        lin, ang = msg.twist.linear, msg.twist.angular
        self.core.servo_cv([lin.x, lin.y, lin.z], [ang.x, ang.y, ang.z], msg.header.frame_id, self._now())
        self._drain()

    def _on_head(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self.core.head([p.x, p.y, p.z], [o.x, o.y, o.z, o.w], msg.header.frame_id, self._now())
        self._drain()

    def _on_buttons(self, msg: Joy) -> None:
        self.core.buttons(msg.buttons, self._now())
        self._drain()

    def _on_psm_cp(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.core.psm_tip([p.x, p.y, p.z], msg.header.frame_id, self._now())
        self._drain()

    def _on_hold(self, req, resp):
        ok, text = self.core.set_hold(bool(req.data))
        resp.success, resp.message = ok, text
        self._drain()
        self._publish_mode(force=True)
        return resp

    def _on_follow_tool(self, req, resp):
        ok, text = self.core.set_follow_tool(bool(req.data))
        resp.success, resp.message = ok, text
        self._drain()
        self._publish_mode(force=True)
        return resp

    def _on_set_fulcrum(self, _req, resp):
        ok, text = self.core.set_fulcrum()
        resp.success, resp.message = ok, text
        self._drain()
        return resp

    def _drain(self) -> None:
        log = self.get_logger()
        # one call site per severity: rclpy refuses a severity change at one call site
        for level, text in self.core.events:
            if level == "error":
                log.error(text)
            elif level == "warn":
                log.warning(text)
            else:
                log.info(text)
        self.core.events.clear()

    # ------------------------------------------------------------------ loop
    def _on_timer(self) -> None:
        now = self._now()
        if self._last_tick is not None:
            self._period_ms.append((now - self._last_tick) * 1e3)
        self._last_tick = now
        t0 = time.perf_counter()
        out = self.core.step(now)
        self._step_ms.append((time.perf_counter() - t0) * 1e3)
        if out is not None:
            names, q, dq = out
            msg = JointState()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.name = list(names)
            msg.position = q.tolist()
            msg.velocity = dq.tolist()
            self.pub_cmd.publish(msg)
        if self.core.events:
            self._drain()
        self._tick += 1
        if self._tick % self._pub_every == 0:
            self._publish_state()
        self._publish_mode()

    def _publish_mode(self, force: bool = False) -> None:
        if force or self.core.mode != self._last_mode:
            self._last_mode = self.core.mode
            self.pub_mode.publish(String(data=self.core.mode))

    def _publish_state(self) -> None:
        m = self.core.measured
        if m is None:
            return
        stamp = self.get_clock().now().to_msg()
        import pinocchio as pin
        q = pin.Quaternion(m.tip_rotation)
        cp = PoseStamped()
        cp.header.stamp = stamp
        cp.header.frame_id = contract.WORLD_FRAME
        cp.pose.position.x, cp.pose.position.y, cp.pose.position.z = (float(v) for v in m.tip_position)
        cp.pose.orientation.x, cp.pose.orientation.y = float(q.x), float(q.y)
        cp.pose.orientation.z, cp.pose.orientation.w = float(q.z), float(q.w)
        self.pub_cp.publish(cp)
        self._tips.append(m.tip_position.copy())
        f = self.core.fulcrum
        pt = PointStamped()
        pt.header = cp.header
        pt.point.x, pt.point.y, pt.point.z = (float(v) for v in f)
        self.pub_fulcrum.publish(pt)
        self.pub_ferr.publish(Float64(data=float(m.fulcrum_error)))

    def _publish_diagnostics(self) -> None:
        d = self.core.diagnostics()
        s = DiagnosticStatus()
        s.name = DIAG_NAME
        s.hardware_id = "unitree_g1 right arm + endoscope"
        s.level = DiagnosticStatus.ERROR if d["mode"] == "FAULT" else DiagnosticStatus.OK
        s.message = d["mode"]
        if len(self._tips) > 2:
            P = np.array(self._tips)
            jitter = float(np.sqrt(np.mean(np.sum((P - P.mean(0)) ** 2, axis=1))))
        else:
            jitter = float("nan")
        step = np.array(self._step_ms) if self._step_ms else np.zeros(1)
        period = np.array(self._period_ms) if self._period_ms else np.zeros(1)
        values = {
            "mode": d["mode"],
            "fulcrum_error_mm": "nan" if d["fulcrum_error_m"] is None else f"{d['fulcrum_error_m'] * 1e3:.3f}",
            "tip_jitter_rms_mm_1s": f"{jitter * 1e3:.3f}",
            "depth_mm": "nan" if d["depth_m"] is None else f"{d['depth_m'] * 1e3:.1f}",
            "step_ms_median": f"{np.median(step):.3f}",
            "step_ms_p99": f"{np.percentile(step, 99):.3f}",
            "period_ms_median": f"{np.median(period):.3f}",
            "period_ms_p99": f"{np.percentile(period, 99):.3f}",
            "sigma_min": str(d["sigma_min"]),
            "saturated": json.dumps(d["saturated"]),
            "rejected": str(d["rejected"]),
            "paused_steps": str(d["paused_steps"]),
            "steps": str(d["steps"]),
        }
        s.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [s]
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> int:
    return run_node(EndoscopeHolderNode, args)


if __name__ == "__main__":
    sys.exit(main())
