"""`HolderControlLoop`: the endoscope holder's control period (no ROS).

`step(t)` runs one control period from four parts, each its own class:

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

`surgbot.control.endoscope_holder.EndoscopeHolderCore` adds the commands and inputs on top.
"""

from __future__ import annotations

import math

import numpy as np
import pinocchio as pin

from surgbot.control.follow import HeadFollow, ToolFollow
from surgbot.control.holder_config import HolderConfig
from surgbot.control.holder_modes import Gate, HolderResult, ModeMachine, State
from surgbot.control.joint_servo import JointServo
from surgbot.control.pivot import PivotIK, ScopeState, View
from surgbot.control.robot_time import RobotTimePacer
from surgbot.control.view_shaping import ViewShaper
from surgbot.kinematics.g1_arm import G1ScopeArm
from surgbot.safety.filter import RejectionLog

IDLE, HOLD, TELEOP, HEAD_FOLLOW, TOOL_FOLLOW, FAULT = State
INTEGRATE_BELOW_ANGULAR = math.radians(0.5)  # rad/s: setpoint slower than this counts as still
INTEGRATE_BELOW_INSERTION = 0.0005          # m/s
SATURATION_WARN_EVERY = 250                 # steps: a joint-limit warning once per 0.5 s at 500 Hz, not each step


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
            "mode_reason": self.modes.why,
            "fulcrum_error_m": None if m is None else m.fulcrum_error,
            "depth_m": None if m is None else m.depth,
            "sigma_min": None if self.ik is None else self.ik.info.sigma_min,
            "saturated": [] if self.ik is None else list(self.ik.info.saturated),
            "integral_offset_max_rad": float(np.max(np.abs(self.offset))),
            "rejected_by_input": dict(self.rejections.counts),
            **self.stats,
        }
