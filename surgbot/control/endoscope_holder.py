"""The endoscope holder core: modes, commands and fulcrum registration (no ROS).

State in (measured joint positions, commands, head/button/PSM inputs, each
with a timestamp from the caller's clock), joint command out (`step(t)`).

`EndoscopeHolderCore` checks the inputs and commands; its base
`HolderControlLoop` runs one control period from four parts, each its own class:

* `ModeMachine` (holder_modes): IDLE/HOLD/TELEOP/HEAD_FOLLOW/TOOL_FOLLOW/FAULT,
  the event log, the sustained-fulcrum-error fault;
* `ViewShaper` (view_shaping): the setpoint view (pivot-feasible tip pose,
  `pivot.View`) moves toward the mode's goal through the tremor filter and a
  speed/acceleration limit;
* the pivot IK (pivot) integrates a kinematic reference that follows the
  setpoint exactly on the model (fulcrum first, then view, then posture), and
  `JointServo` (joint_servo) adds the integral offset and the acceleration
  feed-forward the robot's PD needs, so the *measured* arm converges to the
  reference (and, the model being the sim's own MJCF, the measured scope to
  the setpoint view);
* `HeadFollow` / `ToolFollow` (follow): the goals of the follow modes.

Bad input (non-finite values, wrong frame, unknown joints) is refused with a
reason and changes nothing.  Every command returns a `HolderResult` (a
`surgbot.results.Result` that also unpacks as `(ok, reason)`); a refusal's
reason, or a warning on success (e.g. "insertion clipped"), is in `reason`,
a payload in `value`.  What the node should log is queued in `events` as
(level, text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pinocchio as pin

from surgbot import contract
from surgbot.control import holder_inputs as inputs
from surgbot.control.follow import HeadFollow, ToolFollow
from surgbot.control.holder_config import HolderConfig
from surgbot.control.holder_modes import FOLLOW_FROM, Gate, HolderResult, ModeMachine, State
from surgbot.control.joint_servo import JointServo
from surgbot.control.pivot import PivotIK, ScopeState, View
from surgbot.control.robot_time import RobotTimePacer
from surgbot.control.view_shaping import ViewShaper
from surgbot.geometry import quat_to_matrix
from surgbot.kinematics.g1_arm import G1ScopeArm
from surgbot.safety.filter import RejectionLog

MODES = contract.ENDOSCOPE_MODES
IDLE, HOLD, TELEOP, HEAD_FOLLOW, TOOL_FOLLOW, FAULT = State
INTEGRATE_BELOW_ANGULAR = math.radians(0.5)  # rad/s: setpoint slower than this counts as still
INTEGRATE_BELOW_INSERTION = 0.0005          # m/s
SATURATION_WARN_EVERY = 250                 # steps: a joint-limit warning once per 0.5 s at 500 Hz, not each step

__all__ = ["EndoscopeHolderCore", "HolderControlLoop", "HolderConfig", "HolderResult", "State", "MODES",
           "IDLE", "HOLD", "TELEOP", "HEAD_FOLLOW", "TOOL_FOLLOW", "FAULT"]


class HolderControlLoop:
    """The holder's control period (`step`): the measured scope, the mode's goal, the view shaper,
    the pivot IK and the joint servo.  `EndoscopeHolderCore` adds the commands and inputs."""

    def __init__(self, arm: G1ScopeArm, config: HolderConfig | None = None):
        self.arm = arm
        self.cfg = config or HolderConfig()
        self.dt = self.cfg.dt
        self.n = arm.nq
        c = self.cfg
        self.modes = ModeMachine(c.fault_fulcrum_error, c.fault_persist_s, c.joint_state_timeout_s,
                                 c.pause_if_state_older_s)
        angular = (math.radians(c.max_angular_speed_deg), math.radians(c.max_angular_accel_deg))
        self.shaper = ViewShaper(self.dt, angular, (c.max_insertion_speed, c.max_insertion_accel),
                                 c.tremor_notches, c.tremor_lowpass_hz)
        self.head_follow = HeadFollow(c)
        self.tool_follow = ToolFollow(c)
        self.ik: PivotIK | None = None
        self.servo: JointServo | None = None
        self.q_meas = np.zeros(self.n)
        self.t_meas: float | None = None
        self.goal: View | None = None
        self.measured: ScopeState | None = None
        self._measured_stale = True    # q_meas or the fulcrum changed since `measured` was computed
        self.reasons_last_cmd: list[str] = []
        self._last_cmd_t = -math.inf
        self._cv: tuple[np.ndarray, float] | None = None      # (w (3), v_insertion) of the latest servo_cv
        self.pacer = RobotTimePacer(c.joint_state_period_s, self.dt)
        self.stats = {"steps": 0, "rejected": 0, "saturated_steps": 0, "paused_steps": 0, "paced_steps": 0}
        # a teleop stream of bad input (100-500 Hz) is counted by input and said once a period, not per message
        self.rejections = RejectionLog(c.rejection_log_period_s, lambda _cause, text: self.modes.event("error", text))
        if c.fulcrum is not None:
            self._make_ik(np.asarray(c.fulcrum, float), None)

    # ------------------------------------------------------------------ state the callers read
    @property
    def mode(self) -> State:
        return self.modes.mode

    @property
    def events(self) -> list[tuple[str, str]]:
        return self.modes.events

    @property
    def setpoint(self) -> View | None:
        return self.shaper.setpoint

    @property
    def anchor(self) -> View | None:
        return self.shaper.anchor

    @property
    def q_ref(self) -> np.ndarray:
        return self.servo.q_ref if self.servo is not None else np.zeros(self.n)

    @property
    def offset(self) -> np.ndarray:
        return self.servo.offset if self.servo is not None else np.zeros(self.n)

    @property
    def fulcrum(self) -> np.ndarray | None:
        return None if self.ik is None else self.ik.fulcrum

    @property
    def active_names(self) -> tuple[str, ...]:
        ik = self.ik
        act = ik.active if ik is not None else np.isin(np.arange(self.n), self.arm.arm_idx)
        return tuple(n for n, a in zip(self.arm.joint_names, act, strict=True) if a)

    # ------------------------------------------------------------------ helpers
    def refuse(self, text: str, t: float) -> HolderResult:
        """A stream input the node refused before the core saw it (e.g. a stale stamp): counted and
        logged like the core's own refusals (`text` starts with the input's name and a colon)."""
        return self._reject(text, t)

    def _reject(self, text: str, t: float | None = None) -> HolderResult:
        """Refuse: a service call (`t` None) is always logged; a stream input at time `t` through the
        rate-limited rejection log (counted by the input named before the reason's first colon)."""
        self.stats["rejected"] += 1
        if t is None:
            return self.modes.reject(text)
        self.rejections.reject(text, t)
        return HolderResult.failure(text)

    def _make_ik(self, fulcrum: np.ndarray, axis: np.ndarray | None) -> None:
        self._measured_stale = True             # the measured state is relative to the fulcrum
        if self.ik is None:
            self.ik = PivotIK(self.arm, fulcrum, self.cfg.pivot, port_axis=axis)
            self.servo = JointServo(self.arm, self.cfg, self.ik.active)
        else:
            self.ik.fulcrum = fulcrum.copy()
            if axis is not None:
                self.ik.port_axis = axis / np.linalg.norm(axis)

    def _capture(self) -> None:
        """Setpoint := the view where the arm is now; reference := measured joints."""
        self.servo.start(self.q_meas)
        self.shaper.reset(self.ik.view_of(self.q_meas))
        self.goal = self.setpoint.copy()

    def _restart_motion(self) -> None:
        """The goal stops at the setpoint and a new motion starts there."""
        self.goal = self.setpoint.copy()
        self.shaper.reanchor()

    # ------------------------------------------------------------------ step
    def step(self, t: float) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
        """One control period.  Returns (joint names, positions, velocities) or None (no command)."""
        if self.t_meas is None or self.ik is None:
            return None
        self.stats["steps"] += 1
        if self._measured_stale or self.measured is None:
            # forward kinematics once per joint state: the loop runs at twice the state's rate
            self.measured = self.ik.state(self.q_meas)
            self._measured_stale = False
        modes = self.modes
        gate = modes.gate(t, t - self.t_meas, self.measured.fulcrum_error)
        if gate is not Gate.RUN:
            if gate is Gate.PAUSED:
                self.stats["paused_steps"] += 1
            return None if gate is Gate.OFF else self._frozen()
        if not self.pacer.take_step():          # the robot's time has not caught up (robot_time.py)
            self.stats["paced_steps"] += 1
            return self._frozen()
        if modes.mode == TELEOP and t - self._last_cmd_t > self.cfg.teleop_timeout_s:
            self._cv = None
            modes.set(HOLD, f"no command for {1e3 * self.cfg.teleop_timeout_s:.0f} ms")
            self.goal = self.setpoint.copy()

        self._update_goal(t)
        mode = modes.mode
        goal = self.shaper.filtered(self.goal) if mode in (TELEOP, HEAD_FOLLOW) else self.goal
        new = self.shaper.advance(goal, self.tool_follow.speed if mode == TOOL_FOLLOW else None)
        # the setpoint's own velocity is the step just taken: new = prev * exp(v dt), depth + v dt
        vx, vy, vz, vd = self.shaper.velocity

        ik, servo = self.ik, self.servo
        servo.follow_inactive(self.q_meas)
        dq, _ = ik.step(servo.q_ref, new, self.dt, (vx, vy, vz), vd)
        if not math.isfinite(dq.dot(dq)):      # (|dq| is bounded by the speed cap: no overflow)
            modes.set(FAULT, "IK produced a non-finite step")
            return self._frozen()
        if ik.info.saturated:
            self.stats["saturated_steps"] += 1
            if self.stats["saturated_steps"] % SATURATION_WARN_EVERY == 1:
                modes.event("warn", f"joint limit: {sorted(set(ik.info.saturated))} held at the margin, view clipped")
        # integrate only while the view is still: during a motion the tracking lag (and, on a
        # loaded host, a sim running slower than the wall clock) would wind the integrator up
        still = (math.sqrt(vx * vx + vy * vy + vz * vz) <= INTEGRATE_BELOW_ANGULAR
                 and abs(vd) <= INTEGRATE_BELOW_INSERTION)
        servo.advance(dq, self.q_meas, integrate=still)
        q = servo.command(dq)
        idx = servo.active_idx
        return servo.active_names, q[idx], dq[idx]

    def _update_goal(self, t: float) -> None:
        """The mode's goal for this period (TELEOP velocity, head, tool; HOLD keeps it)."""
        mode = self.modes.mode
        if mode == TELEOP and self._cv is not None and t - self._last_cmd_t <= self.cfg.servo_cv_hold_s:
            dt = self.dt
            w, v = self._cv
            self.goal, reasons = self.ik.move_view(self.goal, w[0] * dt, w[1] * dt, v * dt, w[2] * dt)
            if reasons:
                self.reasons_last_cmd = reasons
        elif mode == HEAD_FOLLOW:
            goal = self.head_follow.goal(self.ik, self.anchor)
            if goal is not None:
                self.goal = goal
        elif mode == TOOL_FOLLOW:
            goal = self.tool_follow.goal(self.ik, self.setpoint, t)
            if goal is not None:
                self.goal = goal

    def _frozen(self):
        """The last command again, at zero velocity: FAULT or a paused measurement never goes limp."""
        idx = self.servo.active_idx
        return self.servo.active_names, self.servo.q_cmd[idx], np.zeros(len(idx))

    # ------------------------------------------------------------------ outputs
    def tip_pose(self) -> pin.SE3:
        return self.arm.tip_pose(self.q_meas)

    def diagnostics(self) -> dict:
        m = self.measured
        return {
            "mode": self.mode.value,
            "fulcrum_error_m": None if m is None else m.fulcrum_error,
            "depth_m": None if m is None else m.depth,
            "sigma_min": None if self.ik is None else self.ik.info.sigma_min,
            "saturated": [] if self.ik is None else list(self.ik.info.saturated),
            "integral_offset_max_rad": float(np.max(np.abs(self.offset))),
            "rejected_by_input": dict(self.rejections.counts),
            **self.stats,
        }


class EndoscopeHolderCore(HolderControlLoop):
    """Modes IDLE/HOLD/TELEOP/HEAD_FOLLOW/TOOL_FOLLOW/FAULT around the pivot IK: the commands and
    inputs, each checked (refused with a reason, nothing changed) before it reaches the loop."""

    # ------------------------------------------------------------------ inputs
    def update_joint_state(self, names: Sequence[str], positions: Sequence[float], t: float) -> HolderResult:
        q, why = inputs.joint_positions(self.arm.joint_names, names, positions)
        if q is None:
            return self._reject(why, t)
        self.q_meas[:] = q
        self._measured_stale = True
        self.pacer.on_state()
        first = self.t_meas is None
        self.t_meas = float(t)
        if first:
            if self.ik is None:
                self.set_fulcrum(depth=self.cfg.entry_depth)
            elif self.ik.port_axis is None:
                self.ik.port_axis = self.arm.tip_pose(self.q_meas).rotation[:, 2].copy()
            self.servo.start(self.q_meas)
            self.servo.q_cmd = self.q_meas.copy()
            # the posture the null space pulls toward: the one the arm started in
            self.ik.q_posture = self.q_meas.copy()
        return HolderResult.success()

    def set_hold(self, on: bool) -> HolderResult:
        """HOLD at the current view (on) or IDLE (off); value: the new mode.

        While `/safety/state` forbids motion both are refused (the arm stays frozen, it is not let
        go either); a FAULT of the holder's own is then only acknowledged (it stays frozen, reported
        as held by safety, so the supervisor's reset can go through; hold again after the reset).
        """
        if self.t_meas is None or self.ik is None:
            return HolderResult.failure("no joint state yet")
        modes = self.modes
        if modes.safety_block:
            if on and self.mode == FAULT and not modes.fault_by_safety:
                modes.fault_by_safety = True
                return HolderResult.success(self.mode, f"FAULT acknowledged, frozen (safety: {modes.safety_block}); "
                                                       "hold again after /safety/reset")
            return self._reject(f"hold refused: safety: {modes.safety_block}")
        if on:
            self._capture()
            self.modes.set(HOLD, "hold requested")
        else:
            self.modes.set(IDLE, "hold released")
        return HolderResult.success(self.mode, self.mode.value)

    def set_safety(self, block: str) -> None:
        """`/safety/state` forbids motion (why) or allows it ("" ); see `ModeMachine.set_safety`."""
        self.modes.set_safety(block)

    def set_follow_tool(self, on: bool) -> HolderResult:
        """TOOL_FOLLOW from a holding mode (on) or back to HOLD (off); value: the new mode."""
        if not on:
            if self.mode == TOOL_FOLLOW:
                self.modes.set(HOLD, "tool follow off")
            return HolderResult.success(self.mode, self.mode.value)
        if self.tool_follow.psm_base is None:
            return HolderResult.failure("psm_base_pose is not configured")
        if self.modes.safety_block:
            return HolderResult.failure(f"safety: {self.modes.safety_block}")
        if self.mode not in FOLLOW_FROM:
            return HolderResult.failure(f"not in {self.mode}: call hold first")
        self.tool_follow.tracking = False
        self.goal = self.setpoint.copy()
        self.modes.set(TOOL_FOLLOW, "follow_tool requested")
        return HolderResult.success(self.mode, self.mode.value)

    def set_fulcrum(self, depth: float | None = None) -> HolderResult:
        """Fulcrum := the shaft point `depth` m behind the tip (default: the current entry depth).

        value: the fulcrum (3, world, m)."""
        if self.t_meas is None:
            return HolderResult.failure("no joint state yet")
        M = self.arm.tip_pose(self.q_meas)
        z = M.rotation[:, 2].copy()
        if depth is None:
            depth = self.ik_depth() if self.ik is not None else self.cfg.entry_depth
        lo, hi = self.cfg.pivot.depth_range
        if not (lo <= depth <= hi):
            return HolderResult.failure(f"entry depth {depth * 1e3:.1f} mm outside [{lo * 1e3:.0f}, {hi * 1e3:.0f}] mm")
        self._make_ik(M.translation - depth * z, z)
        where = np.round(self.ik.fulcrum, 4).tolist()
        self.modes.event("info", f"fulcrum set at {where} ({depth * 1e3:.1f} mm behind the tip)")
        if self.mode != IDLE:
            self._capture()
            if self.mode not in (HOLD, FAULT):
                self.modes.set(HOLD, "fulcrum re-registered")
        return HolderResult.success(self.ik.fulcrum.copy(), f"fulcrum {where}")

    def ik_depth(self) -> float:
        """m, insertion of the measured scope past the fulcrum."""
        return self.ik.state(self.q_meas).depth

    def servo_cp(self, position: Sequence[float], quat_xyzw: Sequence[float], frame_id: str, t: float) -> HolderResult:
        """Desired tip pose in world: projected onto pivot-feasible poses (reason: what was clipped)."""
        why = inputs.servo_cp_refusal(position, quat_xyzw, frame_id)
        if why:
            return self._reject(why, t)
        if self.ik is None or self.t_meas is None:
            return self._reject("servo_cp: no joint state/fulcrum yet", t)
        busy = self.modes.teleop_refusal()
        if busy:
            return self._reject(busy, t)
        view, reasons = self.ik.project(np.asarray(position, float), quat_to_matrix(quat_xyzw))
        if reasons:
            self.modes.event("warn", "servo_cp: " + "; ".join(reasons))
        self.reasons_last_cmd = reasons
        self._enter_teleop(t)
        self.goal = view
        self._cv = None
        return HolderResult.success(view, "; ".join(reasons))

    def servo_cv(self, linear: Sequence[float], angular: Sequence[float], frame_id: str, t: float) -> HolderResult:
        """View velocity in the tip frame: angular x/y pan/tilt about the fulcrum, z roll; linear z insertion."""
        why = inputs.servo_cv_refusal(linear, angular, frame_id, self.cfg.max_servo_cv_angular,
                                      self.cfg.max_servo_cv_linear)
        if why:
            return self._reject(why, t)
        w = np.asarray(angular, float)
        v = float(linear[2])
        if abs(linear[0]) > inputs.LINEAR_XY_EPS or abs(linear[1]) > inputs.LINEAR_XY_EPS:
            self.modes.event("warn", "servo_cv: linear x/y ignored (the shaft pivots about the fulcrum)")
        if self.ik is None or self.t_meas is None:
            return self._reject("servo_cv: no joint state/fulcrum yet", t)
        busy = self.modes.teleop_refusal()
        if busy:
            return self._reject(busy, t)
        self._enter_teleop(t)
        self._cv = (w.copy(), v)
        return HolderResult.success()

    def _enter_teleop(self, t: float) -> None:
        if self.mode != TELEOP:
            if self.mode == IDLE:
                self._capture()
            else:
                self._restart_motion()
            self.modes.set(TELEOP, "servo command")
        self._last_cmd_t = float(t)

    def head(self, position: Sequence[float], quat_xyzw: Sequence[float], frame_id: str, t: float) -> HolderResult:
        """The surgeon's head pose in world (/teleop/head)."""
        why = inputs.head_refusal(position, quat_xyzw, frame_id)
        if why:
            return self._reject(why, t)
        self.head_follow.set_head(position, quat_xyzw)
        return HolderResult.success()

    def buttons(self, buttons: Sequence[int], t: float) -> HolderResult:
        """/teleop/buttons: the deadman starts (pressed) and ends (released) HEAD_FOLLOW."""
        hf = self.head_follow
        pressed = hf.pressed(buttons)
        if pressed and not hf.deadman:
            if hf.head is None:
                self.modes.event("warn", "deadman pressed but no /teleop/head yet")
            elif self.mode in (HOLD, TELEOP):
                hf.engage()
                self._restart_motion()
                self.modes.set(HEAD_FOLLOW, "deadman pressed")
            else:
                self.modes.event("warn", f"deadman ignored in {self.mode}")
        elif not pressed and hf.deadman and self.mode == HEAD_FOLLOW:
            self.goal = self.setpoint.copy()          # the view stops where it is, not at the head's last goal
            self.modes.set(HOLD, "deadman released")
        hf.deadman = pressed
        return HolderResult.success()

    def psm_tip(self, position: Sequence[float], frame_id: str, t: float) -> HolderResult:
        """PSM tool tip in PSM1_base (from /PSM1/measured_cp)."""
        why = inputs.psm_tip_refusal(position, frame_id)
        if why:
            return self._reject(why, t)
        if self.tool_follow.psm_base is None:
            return HolderResult.failure("psm_base_pose not configured")
        self.tool_follow.set_tip(position, t)
        return HolderResult.success()
