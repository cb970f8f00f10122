"""`endoscope_holder` rclpy node: the G1 right arm holds the scope through the port (contract section 4).

Thin shell around `surgbot.control.endoscope_holder.EndoscopeHolderCore`:
reads `/g1/joint_states`, runs the core on a `rate_hz` timer, publishes
`/g1/arm_command` (the active joints by name, position + velocity), the scope
state (`/endoscope/measured_cp`, `/endoscope/fulcrum`,
`/endoscope/fulcrum_error`, `/endoscope/mode`) and `/diagnostics`; takes
`/endoscope/servo_cp`, `/endoscope/servo_cv`, `/teleop/head`,
`/teleop/buttons`, `/PSM1/measured_cp`; serves `/endoscope/hold`,
`/endoscope/follow_tool`, `/endoscope/set_fulcrum`.  It needs the G1 bridge
engaged and never engages it itself.

Parameters: generated from `HolderConfig` (the core's) and
`HolderNodeConfig` (this node's); config/endoscope_holder.yaml only
overrides.  In the sim, `scene:=<name>` takes the port and the PSM base
from config/scenes/<name>.yaml (generated from the scene model by
`python -m surgbot.sim.scene_params`): this node imports nothing from the
simulator.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger

from surgbot import contract
from surgbot.config import check_ranges, param, yaml_parameters
from surgbot.control.endoscope_holder import EndoscopeHolderCore, HolderConfig, State
from surgbot.geometry import matrix_to_quat, stamp_to_sec
from surgbot.kinematics.g1_arm import DEFAULT_MJCF, G1ScopeArm
from surgbot.nodes.safety_link import SafetyLink
from surgbot.rosutil import (
    Diagnostics,
    declare_config,
    fast_timer,
    float64_field,
    latched_qos,
    operator_stream_qos,
    run_node,
    setbool_handler,
    trigger_handler,
)
from surgbot.safety.own_stall import OwnStall

NODE_NAME = "endoscope_holder"
STALE_COMMAND_S = 1.0      # a servo command stamped further than this from now is rejected
IN_TICK_STALL_S = 0.005    # building one command takes ~0.1 ms: longer means the process was stopped meanwhile
STATS_WINDOW = 2000        # step/period samples kept for /diagnostics (4 s at 500 Hz)
OPERATOR_QUEUE = 10         # /teleop/head and /teleop/buttons samples kept for a briefly starved executor
# config/ beside the package in a source checkout, share/surgbot/config when installed
CONFIG_DIRS = (Path(__file__).resolve().parents[2] / "config", Path(sys.prefix) / "share" / "surgbot" / "config")
SCENE_KEYS = ("fulcrum", "psm_base_pose")


@dataclass(frozen=True)
class HolderNodeConfig:
    """The node's own parameters (the core's are `HolderConfig`)."""

    mjcf: str = param("", "G1 + scope MJCF; empty: sim/models/g1_29dof.xml (the file the twin loads)")
    state_publish_hz: float = param(100.0, "Hz, /endoscope/measured_cp, fulcrum, fulcrum_error", lo=0.1)
    scene: str = param("", "sim only: fulcrum and psm_base_pose from config/scenes/<scene>.yaml where unset")

    def __post_init__(self):
        check_ranges(self)
        if not self.state_publish_hz > 0:
            raise ValueError(f"state_publish_hz must be > 0, got {self.state_publish_hz}")
        if self.scene and self.scene not in contract.SCENES:
            raise ValueError(f"scene {self.scene!r} is not one of {', '.join(contract.SCENES)}")


def scene_file(scene: str) -> Path:
    """config/scenes/<scene>.yaml (source checkout first, then the installed share folder)."""
    for folder in CONFIG_DIRS:
        path = folder / "scenes" / f"{scene}.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no config/scenes/{scene}.yaml (run python -m surgbot.sim.scene_params)")


def scene_parameters(scene: str) -> dict[str, list[float]]:
    """`fulcrum` and (if the scene has a PSM) `psm_base_pose` of a sim scene, from its params file."""
    values = yaml_parameters(scene_file(scene), NODE_NAME)
    return {k: [float(v) for v in values[k]] for k in SCENE_KEYS if k in values}


def scene_port(scene: str) -> list[float]:
    """Sim only: the port (fulcrum) of a scene, world [x, y, z] m."""
    return scene_parameters(scene)["fulcrum"]


def scene_psm_base(scene: str) -> list[float] | None:
    """Sim only: PSM1_base pose in world (x y z qx qy qz qw) of a scene, if it has a PSM."""
    return scene_parameters(scene).get("psm_base_pose")


class EndoscopeHolderNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        node_cfg = declare_config(self, HolderNodeConfig)
        overrides = scene_parameters(node_cfg.scene) if node_cfg.scene else {}
        cfg = declare_config(self, HolderConfig, overrides)
        if node_cfg.scene:
            self.get_logger().info(f"scene {node_cfg.scene!r}: fulcrum {cfg.fulcrum} "
                                   f"(from {scene_file(node_cfg.scene)} unless set)")
        self.publish_hz = node_cfg.state_publish_hz
        self.arm = G1ScopeArm(node_cfg.mjcf or str(DEFAULT_MJCF))
        self.core = EndoscopeHolderCore(self.arm, cfg)
        rate = cfg.rate_hz
        # /safety/state: ESTOP, FAULT or a silent supervisor freezes the arm on its last command
        self.safety = SafetyLink(self, self._on_safety)

        self.pub_cmd = self.create_publisher(JointState, contract.G1_ARM_COMMAND, 10)
        # the 500 Hz command: one reused message (the control timer alone publishes it;
        # rosutil.float64_field), its names set only when the active joint set changes
        self._cmd = JointState()
        self._cmd_names: tuple[str, ...] = ()
        self.pub_cp = self.create_publisher(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, 10)
        self.pub_fulcrum = self.create_publisher(PointStamped, contract.ENDOSCOPE_FULCRUM, 10)
        self.pub_ferr = self.create_publisher(Float64, contract.ENDOSCOPE_FULCRUM_ERROR, 10)
        self.pub_mode = self.create_publisher(String, contract.ENDOSCOPE_MODE, latched_qos())
        self.create_subscription(JointState, contract.G1_JOINT_STATES, self._on_joint_states, 10)
        self.create_subscription(PoseStamped, contract.ENDOSCOPE_SERVO_CP, self._on_servo_cp, 10)
        self.create_subscription(TwistStamped, contract.ENDOSCOPE_SERVO_CV, self._on_servo_cv, 10)
        self.create_subscription(PoseStamped, contract.TELEOP_HEAD, self._on_head, operator_stream_qos(OPERATOR_QUEUE))
        self.create_subscription(Joy, contract.TELEOP_BUTTONS, self._on_buttons, operator_stream_qos(OPERATOR_QUEUE))
        self.create_subscription(PoseStamped, contract.psm_topic("measured_cp"), self._on_psm_cp, 10)
        self.create_service(SetBool, contract.ENDOSCOPE_HOLD, setbool_handler(self._mode_call(self.core.set_hold)))
        self.create_service(SetBool, contract.ENDOSCOPE_FOLLOW_TOOL,
                            setbool_handler(self._mode_call(self.core.set_follow_tool)))
        self.create_service(Trigger, contract.ENDOSCOPE_SET_FULCRUM, trigger_handler(self._set_fulcrum))

        self._step_ms: deque = deque(maxlen=STATS_WINDOW)
        self._period_ms: deque = deque(maxlen=STATS_WINDOW)
        self._tips: deque = deque(maxlen=int(self.publish_hz))
        self._last_tick: float | None = None
        self._tick = 0
        self._pub_every = max(1, int(round(rate / self.publish_hz)))
        self._last_mode: State | None = None
        self.own_stall = OwnStall(1.0 / rate)       # see _on_timer
        self.late_ticks_skipped = 0
        fast_timer(self, 1.0 / rate, self._on_timer)
        self.diagnostics = Diagnostics(self, NODE_NAME, self._diagnostic_status,
                                       hardware_id="unitree_g1 right arm + endoscope")
        self.get_logger().info(
            f"endoscope_holder: {len(self.core.active_names)} joints {self.core.active_names}, {rate:.0f} Hz, "
            f"fulcrum {'from parameter' if cfg.fulcrum else 'captured at start'}; "
            f"waiting for {contract.G1_JOINT_STATES}")

    def _mode_call(self, call):
        """A core mode command for a service: the log drained and the mode published after it."""
        def run(on: bool):
            res = call(on)
            self._drain()
            self._publish_mode(force=True)
            return res
        return run

    def _set_fulcrum(self):
        res = self.core.set_fulcrum()
        self._drain()
        return res

    def _on_safety(self, block: str) -> None:
        self.core.set_safety(block)
        self._drain()
        self._publish_mode()

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return time.monotonic()

    def _stale(self, stamp) -> str:
        if stamp.sec == 0 and stamp.nanosec == 0:
            return ""
        now = self.get_clock().now().nanoseconds * 1e-9
        age = now - stamp_to_sec(stamp)
        return f"stamp {age:.2f} s old" if abs(age) > STALE_COMMAND_S else ""

    def _on_joint_states(self, msg: JointState) -> None:
        self.core.update_joint_state(msg.name, msg.position, self._now())
        self._drain()

    def _on_servo_cp(self, msg: PoseStamped) -> None:
        stale = self._stale(msg.header.stamp)
        if stale:                              # counted and rate-limited with the core's other refusals
            self.core.refuse(f"servo_cp: {stale}", self._now())
            self._drain()
            return
        p, o = msg.pose.position, msg.pose.orientation
        self.core.servo_cp([p.x, p.y, p.z], [o.x, o.y, o.z, o.w], msg.header.frame_id, self._now())
        self._drain()

    def _on_servo_cv(self, msg: TwistStamped) -> None:
        stale = self._stale(msg.header.stamp)
        if stale:                              # counted and rate-limited with the core's other refusals
            self.core.refuse(f"servo_cv: {stale}", self._now())
            self._drain()
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
        # a tick that ran late (the process starved of the CPU) does not judge the joint-state age:
        # rclpy runs it before the /g1/joint_states that queued meanwhile, and it faulted a live
        # 250 Hz stream as "joint state 101 ms old" mid-task in `surgbot demo`; the next tick, a
        # period later and after them, does (never two skipped in a row).  Nothing is sent meanwhile:
        # the bridge holds its targets.
        if not self.own_stall.tick(now)[0]:
            self.late_ticks_skipped += 1
            return
        self.safety.check()
        t0 = time.perf_counter()
        out = self.core.step(now)
        self._step_ms.append((time.perf_counter() - t0) * 1e3)
        # checked again after the step: on a loaded machine the step can be preempted for tens of ms,
        # and an e-stop that arrived meanwhile must stop this command (measured: one went out 117 ms
        # after an e-stop when only the check before the step was made)
        if out is not None and (self.safety.block or self.safety.check()):
            # frozen by the safety state: the bridge holds its targets and refuses commands; the
            # source stops (a repeat of the frozen command would still be a command after the fault)
            out = None
        checked = time.perf_counter()
        if out is not None:
            names, q, dq = out
            msg = self._cmd
            msg.header.stamp = self.get_clock().now().to_msg()
            if names != self._cmd_names:
                msg.name, self._cmd_names = list(names), tuple(names)
            msg.position = float64_field(q)
            msg.velocity = float64_field(dq)
            # the process stopped inside this tick (SIGSTOP, a long preemption) after the check:
            # check again, or a command decided before the stop goes out after it, past a FAULT
            # the supervisor raised meanwhile (the fault suite's holder_sigstop_300ms: one at 304 ms)
            if time.perf_counter() - checked < IN_TICK_STALL_S or not self.safety.check():
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
            self.pub_mode.publish(String(data=self.core.mode.value))
            # the supervisor learns a change of mode now, not at the next 1 s diagnostics: a
            # FAULT acknowledged by `hold` kept refusing /safety/reset for up to a second
            # (`surgbot demo` asked again 35 ms after the `hold` and gave up)
            self.diagnostics.publish()

    def _publish_state(self) -> None:
        m = self.core.measured
        if m is None:
            return
        self._tips.append(m.tip_position.copy())
        # a topic nobody reads is not built or published (each publish costs the control thread
        # ~50 us even without a reader, measured; `surgbot up` alone has none for these three)
        stamp = self.get_clock().now().to_msg()
        if self.pub_cp.get_subscription_count():
            cp = PoseStamped()
            cp.header.stamp = stamp
            cp.header.frame_id = contract.WORLD_FRAME
            cp.pose.position.x, cp.pose.position.y, cp.pose.position.z = (float(v) for v in m.tip_position)
            o = cp.pose.orientation
            o.x, o.y, o.z, o.w = matrix_to_quat(m.tip_rotation)
            self.pub_cp.publish(cp)
        if self.pub_fulcrum.get_subscription_count():
            pt = PointStamped()
            pt.header.stamp = stamp
            pt.header.frame_id = contract.WORLD_FRAME
            pt.point.x, pt.point.y, pt.point.z = (float(v) for v in self.core.fulcrum)
            self.pub_fulcrum.publish(pt)
        if self.pub_ferr.get_subscription_count():
            self.pub_ferr.publish(Float64(data=float(m.fulcrum_error)))

    def _diagnostic_status(self):
        d = self.core.diagnostics()
        # a freeze the safety state asked for is reported (WARN), not a fault of the holder's own
        # (ERROR): the supervisor's reset must not wait for the freeze it caused itself
        level = Diagnostics.ERROR if d["mode"] == State.FAULT.value and not self.core.modes.fault_by_safety \
            else Diagnostics.WARN if self.safety.block else Diagnostics.OK
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
            "rejected_by_input": json.dumps(d["rejected_by_input"]),
            "paused_steps": str(d["paused_steps"]),
            "paced_steps": str(d["paced_steps"]),
            "steps": str(d["steps"]),
            "late_ticks_skipped": str(self.late_ticks_skipped),
            **self.safety.status(),
        }
        # a FAULT says why (the supervisor's reason, the operator's first question)
        message = d["mode"] + (f" ({d['mode_reason']})" if d["mode"] == State.FAULT.value and d["mode_reason"]
                               else "") + (f"; held by safety: {self.safety.block}" if self.safety.block else "")
        return level, message, values


def main(args: list[str] | None = None) -> int:
    return run_node(EndoscopeHolderNode, args)


if __name__ == "__main__":
    sys.exit(main())
