"""The endoscope holder core: modes, commands and fulcrum registration (no ROS).

State in (measured joint positions, commands, head/button/PSM inputs, each
with a timestamp from the caller's clock), joint command out (`step(t)`).

Control structure, per step:

* a *setpoint view* (pivot-feasible tip pose, `pivot.View`) moves toward the
  mode's goal through the tremor filter and a speed limit;
* the pivot IK integrates a *kinematic reference* `q_ref` that follows the
  setpoint exactly on the model (fulcrum first, then view, then posture);
* a joint-space integrator on `q_ref - q_measured` adds the offset the
  robot's PD needs against gravity sag, disturbances and tracking error, so
  the *measured* arm converges to `q_ref` (and, the model being the sim's
  own MJCF, the measured scope to the setpoint view);
* the command is `q_ref + offset` with `dq_ref` as velocity feed-forward.

Bad input (non-finite values, wrong frame, unknown joints) is rejected with a
reason and changes nothing.  Everything the node should log is queued in
`events` as (level, text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pinocchio as pin

from surgbot import contract
from surgbot.control.filters import TremorFilter
from surgbot.control.pivot import PivotConfig, PivotIK, ScopeState, View, rotation_aligning
from surgbot.kinematics.g1_arm import G1ScopeArm

MODES = contract.ENDOSCOPE_MODES
INTEGRATE_BELOW_ANGULAR = math.radians(0.5)  # rad/s: setpoint slower than this counts as still
INTEGRATE_BELOW_INSERTION = 0.0005          # m/s
GOAL_VELOCITY_FILTER_HZ = 2.0   # low-pass of the goal-velocity feed-forward
SETPOINT_GAIN = 15.0      # 1/s, setpoint pull toward a (filtered) goal near it
IDLE, HOLD, TELEOP, HEAD_FOLLOW, TOOL_FOLLOW, FAULT = MODES


@dataclass
class HolderConfig:
    rate_hz: float = 500.0
    fulcrum: tuple | None = None            # world point; None: captured at start at entry_depth
    entry_depth: float = 0.05               # m, tip ahead of the fulcrum when capturing it
    pivot: PivotConfig = field(default_factory=PivotConfig)
    teleop_timeout_s: float = contract.ENDOSCOPE_TELEOP_TIMEOUT_S
    servo_cv_hold_s: float = 0.05                  # a servo_cv velocity applies this long after its message
    max_angular_speed: float = np.radians(45.0)    # rad/s, setpoint pan/tilt/roll speed
    max_insertion_speed: float = 0.04              # m/s
    max_angular_accel: float = np.radians(90.0)    # rad/s^2: smooth starts/stops keep the arm on the fulcrum
    max_insertion_accel: float = 0.06              # m/s^2
    max_servo_cv_angular: float = 1.0              # rad/s, larger servo_cv is rejected
    max_servo_cv_linear: float = 0.1               # m/s
    tremor_notches: tuple = ((6.5, 1.5), (8.5, 1.5), (11.5, 1.5))
    tremor_lowpass_hz: float = 40.0
    bridge_kp: dict | None = None                  # name -> kp the bridge uses (default: g1_bridge's)
    bridge_kd: dict | None = None                  # name -> kd the bridge uses (default: g1_bridge's)
    integral_stability: float = 0.6                # per joint ki <= this * kd / M_jj (PID stability: ki < kd/I)
    accel_feedforward: bool = True                 # q offset M(q) ddq / kp: the PD then supplies the inertia torque
    accel_filter_hz: float = 30.0
    command_lead_s: float = 0.006                  # s, q command leads by dq*lead: covers the link delay
    integral_gain: float = 15.0                    # 1/s, joint-space sag/disturbance correction (upper bound; 60 limit-cycles with >= 8 ms link delay)
    integral_limit: float = 0.25                   # rad, anti-windup
    fault_fulcrum_error: float = 0.015             # m, measured, sustained -> FAULT (FACTS: >20 mm injures)
    fault_persist_s: float = 0.5
    joint_state_timeout_s: float = 0.1
    pause_if_state_older_s: float = 0.015          # older measurement: hold the last command, do not run ahead
    # head follow
    deadman_button: int = 0
    head_pan_gain: float = 1.0
    head_tilt_gain: float = 1.0
    head_zoom_gain: float = 0.5
    # tool follow
    psm_base_pose: tuple | None = None             # (x y z qx qy qz qw) of PSM1_base in world
    tool_deadband_out_deg: float = 8.0             # start re-centring beyond this
    tool_deadband_in_deg: float = 2.0              # stop once within this
    tool_speed_deg: float = 15.0                   # deg/s
    psm_timeout_s: float = 0.5


def _finite(*arrays) -> bool:
    return all(np.all(np.isfinite(np.asarray(a, float))) for a in arrays)


def _quat_xyzw_to_R(q) -> np.ndarray:
    q = np.asarray(q, float)
    return pin.Quaternion(q[3], q[0], q[1], q[2]).normalized().toRotationMatrix()


class EndoscopeHolderCore:
    """Modes IDLE/HOLD/TELEOP/HEAD_FOLLOW/TOOL_FOLLOW/FAULT around the pivot IK."""

    def __init__(self, arm: G1ScopeArm, config: HolderConfig | None = None):
        self.arm = arm
        self.cfg = config or HolderConfig()
        self.dt = 1.0 / self.cfg.rate_hz
        n = arm.nq
        self.n = n
        self.ik: PivotIK | None = None
        self.mode = IDLE
        self.events: list[tuple[str, str]] = []
        self.q_meas = np.zeros(n)
        self.t_meas: float | None = None
        self.q_ref = np.zeros(n)
        self.dq_ref = np.zeros(n)
        self.offset = np.zeros(n)
        self.q_cmd = np.zeros(n)
        self.setpoint: View | None = None
        self.goal: View | None = None
        self.anchor: View | None = None
        self._filter = TremorFilter(4, self.cfg.rate_hz, self.cfg.tremor_notches, self.cfg.tremor_lowpass_hz)
        self._last_cmd_t = -np.inf
        self._cv = None                     # (w (3), v_insertion) of the latest servo_cv
        self._fault_since: float | None = None
        self._sp_vel = [0.0, 0.0, 0.0, 0.0]     # setpoint velocity: tip-frame angular (3), insertion (1)
        self._prev_target: View | None = None
        self._goal_vel = [0.0, 0.0, 0.0, 0.0]   # (Python floats: 4 numbers are cheaper than numpy calls)
        self._goal_vel_alpha = float(1.0 - np.exp(-2 * np.pi * GOAL_VELOCITY_FILTER_HZ * self.dt))
        # speed/acceleration limits as Python floats (numpy scalars would slow the per-step arithmetic)
        c = self.cfg
        self._limits_angular = (float(c.max_angular_speed), float(c.max_angular_accel))
        self._limits_insertion = (float(c.max_insertion_speed), float(c.max_insertion_accel))
        self._tool_speed = math.radians(c.tool_speed_deg)
        self.measured: ScopeState | None = None
        self.reasons_last_cmd: list[str] = []
        # head follow
        self._deadman = False
        self._head: tuple[np.ndarray, np.ndarray] | None = None
        self._head_ref: tuple[np.ndarray, np.ndarray] | None = None
        # tool follow
        self._psm_base = None if self.cfg.psm_base_pose is None else self._se3(self.cfg.psm_base_pose)
        self._tool_world: np.ndarray | None = None
        self._tool_t = -np.inf
        self._tool_tracking = False
        kp = dict(self.cfg.bridge_kp or {})
        kd = dict(self.cfg.bridge_kd or {})
        if not kp or not kd:
            from surgbot.control.g1_bridge import DEFAULT_KD, DEFAULT_KP, UPPER_NAMES
            kp = kp or dict(zip(UPPER_NAMES, DEFAULT_KP.tolist()))
            kd = kd or dict(zip(UPPER_NAMES, DEFAULT_KD.tolist()))
        self._inv_kp = np.array([1.0 / float(kp.get(nm, 1e9)) for nm in arm.joint_names])
        self._kd = np.array([float(kd.get(nm, 0.0)) for nm in arm.joint_names])
        self._ki = np.full(n, self.cfg.integral_gain)
        self._ki_dt_active: np.ndarray | None = None     # ki * dt on the active joints (integrator step)
        self._M = np.zeros((n, n))
        self._M_over_kp = np.zeros((n, n))                 # rows of M scaled by 1/kp (active joints)
        self._lower_tri = np.tril_indices(n, -1)
        self._mass_count = 0
        self._ddq = np.zeros(n)
        self._acc_alpha = 1.0 - np.exp(-2 * np.pi * self.cfg.accel_filter_hz * self.dt)
        self._acc_keep = 1.0 - self._acc_alpha          # ddq <- keep ddq + (alpha / dt) (dq - dq_ref)
        self._acc_gain = self._acc_alpha / self.dt
        self._crba_symmetric: bool | None = None          # does pin.crba fill the lower triangle too
        self.stats = {"steps": 0, "rejected": 0, "saturated_steps": 0, "paused_steps": 0}
        if self.cfg.fulcrum is not None:
            self._make_ik(np.asarray(self.cfg.fulcrum, float), None)     # (uses the gains above)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _se3(pose) -> pin.SE3:
        p = np.asarray(pose, float)
        return pin.SE3(_quat_xyzw_to_R(p[3:7]), p[:3].copy())

    def _event(self, level: str, text: str) -> None:
        self.events.append((level, text))
        if len(self.events) > 200:
            del self.events[:100]

    def _reject(self, text: str) -> tuple[bool, str]:
        self.stats["rejected"] += 1
        self._event("error", text)
        return False, text

    def _make_ik(self, fulcrum: np.ndarray, axis: np.ndarray | None) -> None:
        if self.ik is None:
            self.ik = PivotIK(self.arm, fulcrum, self.cfg.pivot, port_axis=axis)
            act = self.ik.active
            self._active_idx = np.flatnonzero(act)
            self._active_names = tuple(self.arm.joint_names[i] for i in self._active_idx)
            self._inactive = ~act
            self._any_inactive = bool(self._inactive.any())    # (else q_ref needs no copy of them)
            # per-joint constants of _update_mass
            self._stability_kd = self.cfg.integral_stability * self._kd
            self._inv_kp_column = (self._inv_kp * act)[:, None]
            self._dt_active = self.dt * act
        else:
            self.ik.fulcrum = fulcrum.copy()
            if axis is not None:
                self.ik.port_axis = axis / np.linalg.norm(axis)

    @property
    def fulcrum(self) -> np.ndarray | None:
        return None if self.ik is None else self.ik.fulcrum

    @property
    def active_names(self) -> tuple[str, ...]:
        ik = self.ik
        act = ik.active if ik is not None else np.isin(np.arange(self.n), self.arm.arm_idx)
        return tuple(n for n, a in zip(self.arm.joint_names, act) if a)

    def _set_mode(self, mode: str, why: str = "") -> None:
        if mode != self.mode:
            self._event("info", f"mode {self.mode} -> {mode}" + (f" ({why})" if why else ""))
            self.mode = mode

    def _capture(self) -> None:
        """Setpoint := the view where the arm is now; reference := measured joints."""
        self.q_ref = self.q_meas.copy()
        self._ddq[:] = 0.0
        self.offset[:] = 0.0
        self.dq_ref[:] = 0.0
        self.setpoint = self.ik.view_of(self.q_meas)
        self.goal = self.setpoint.copy()
        self._reanchor()

    def _reanchor(self) -> None:
        self.anchor = self.setpoint.copy()
        self._sp_vel = [0.0, 0.0, 0.0, 0.0]
        self._goal_vel = [0.0, 0.0, 0.0, 0.0]
        self._prev_target = None
        self._filter.reset(np.array([0.0, 0.0, 0.0, self.setpoint.depth]))

    # ------------------------------------------------------------------ inputs
    def update_joint_state(self, names, positions, t: float) -> tuple[bool, str]:
        names = list(names)
        positions = np.asarray(positions, float)
        if len(names) != len(positions):
            return self._reject(f"joint state: {len(names)} names but {len(positions)} positions")
        if not _finite(positions):
            return self._reject("joint state: non-finite position")
        index = {nm: i for i, nm in enumerate(self.arm.joint_names)}
        got = {index[nm]: p for nm, p in zip(names, positions) if nm in index}
        if len(got) < self.n:
            missing = [nm for nm in self.arm.joint_names if index[nm] not in got]
            return self._reject(f"joint state lacks {missing}")
        for i, p in got.items():
            self.q_meas[i] = p
        first = self.t_meas is None
        self.t_meas = float(t)
        if first:
            self.q_ref = self.q_meas.copy()
            self.q_cmd = self.q_meas.copy()
            if self.ik is None:
                self.set_fulcrum(depth=self.cfg.entry_depth)
            elif self.ik.port_axis is None:
                M = self.arm.tip_pose(self.q_meas)
                self.ik.port_axis = M.rotation[:, 2].copy()
            # the posture the null space pulls toward: the one the arm started in
            self.ik.q_posture = self.q_meas.copy()
        return True, ""

    def set_hold(self, on: bool) -> tuple[bool, str]:
        if self.t_meas is None or self.ik is None:
            return False, "no joint state yet"
        if on:
            self._capture()
            self._set_mode(HOLD, "hold requested")
            return True, "HOLD"
        self._set_mode(IDLE, "hold released")
        return True, "IDLE"

    def set_follow_tool(self, on: bool) -> tuple[bool, str]:
        if not on:
            if self.mode == TOOL_FOLLOW:
                self._set_mode(HOLD, "tool follow off")
            return True, self.mode
        if self._psm_base is None:
            return False, "psm_base_pose is not configured"
        if self.mode in (IDLE, FAULT):
            return False, f"not in {self.mode}: call hold first"
        self._tool_tracking = False
        self.goal = self.setpoint.copy()
        self._set_mode(TOOL_FOLLOW, "follow_tool requested")
        return True, TOOL_FOLLOW

    def set_fulcrum(self, depth: float | None = None) -> tuple[bool, str]:
        """Fulcrum := the shaft point `depth` behind the tip (default: the current entry depth)."""
        if self.t_meas is None:
            return False, "no joint state yet"
        M = self.arm.tip_pose(self.q_meas)
        z = M.rotation[:, 2].copy()
        if depth is None:
            depth = self.ik_depth() if self.ik is not None else self.cfg.entry_depth
        lo, hi = self.cfg.pivot.depth_range
        if not (lo <= depth <= hi):
            return False, f"entry depth {depth * 1e3:.1f} mm outside [{lo * 1e3:.0f}, {hi * 1e3:.0f}] mm"
        self._make_ik(M.translation - depth * z, z)
        self._event("info", f"fulcrum set at {np.round(self.ik.fulcrum, 4).tolist()} ({depth * 1e3:.1f} mm behind the tip)")
        if self.mode != IDLE:
            self._capture()
            if self.mode not in (HOLD, FAULT):
                self._set_mode(HOLD, "fulcrum re-registered")
        return True, f"fulcrum {np.round(self.ik.fulcrum, 4).tolist()}"

    def ik_depth(self) -> float:
        return self.ik.state(self.q_meas).depth

    def _can_teleop(self) -> str:
        if self.mode in (IDLE, HOLD, TELEOP):
            return ""
        return f"servo command ignored in {self.mode}"

    def servo_cp(self, position, quat_xyzw, frame_id: str, t: float) -> tuple[bool, str]:
        """Desired tip pose in world: projected onto pivot-feasible poses."""
        if frame_id != contract.WORLD_FRAME:
            return self._reject(f"servo_cp: frame_id {frame_id!r}, expected {contract.WORLD_FRAME!r}")
        if not _finite(position, quat_xyzw):
            return self._reject("servo_cp: non-finite pose")
        qn = float(np.linalg.norm(quat_xyzw))
        if not 0.5 < qn < 1.5:
            return self._reject(f"servo_cp: quaternion norm {qn:.3f} is not a rotation")
        if self.ik is None or self.t_meas is None:
            return self._reject("servo_cp: no joint state/fulcrum yet")
        busy = self._can_teleop()
        if busy:
            return self._reject(busy)
        view, reasons = self.ik.project(np.asarray(position, float), _quat_xyzw_to_R(quat_xyzw))
        if reasons:
            self._event("warn", "servo_cp: " + "; ".join(reasons))
        self.reasons_last_cmd = reasons
        self._enter_teleop(t)
        self.goal = view
        self._cv = None
        return True, "; ".join(reasons)

    def servo_cv(self, linear, angular, frame_id: str, t: float) -> tuple[bool, str]:
        """View velocity in the tip frame: angular x/y pan/tilt about the fulcrum, z roll; linear z insertion."""
        if frame_id not in (contract.ENDOSCOPE_TIP_FRAME, ""):
            return self._reject(f"servo_cv: frame_id {frame_id!r}, expected {contract.ENDOSCOPE_TIP_FRAME!r}")
        if not _finite(linear, angular):
            return self._reject("servo_cv: non-finite twist")
        w = np.asarray(angular, float)
        v = float(linear[2])
        if np.linalg.norm(w) > self.cfg.max_servo_cv_angular or abs(v) > self.cfg.max_servo_cv_linear:
            return self._reject(f"servo_cv: |w| {np.linalg.norm(w):.2f} rad/s or |v| {abs(v):.3f} m/s over the limit")
        if abs(linear[0]) > 1e-9 or abs(linear[1]) > 1e-9:
            self._event("warn", "servo_cv: linear x/y ignored (the shaft pivots about the fulcrum)")
        if self.ik is None or self.t_meas is None:
            return self._reject("servo_cv: no joint state/fulcrum yet")
        busy = self._can_teleop()
        if busy:
            return self._reject(busy)
        self._enter_teleop(t)
        self._cv = (w.copy(), v)
        return True, ""

    def _enter_teleop(self, t: float) -> None:
        if self.mode != TELEOP:
            if self.mode == IDLE:
                self._capture()
            else:
                self.goal = self.setpoint.copy()
                self._reanchor()
            self._set_mode(TELEOP, "servo command")
        self._last_cmd_t = float(t)

    def head(self, position, quat_xyzw, frame_id: str, t: float) -> tuple[bool, str]:
        if frame_id != contract.WORLD_FRAME or not _finite(position, quat_xyzw):
            return self._reject("head: bad frame or non-finite pose")
        qn = float(np.linalg.norm(quat_xyzw))
        if not 0.5 < qn < 1.5:
            return self._reject(f"head: quaternion norm {qn:.3f} is not a rotation")
        self._head = (np.asarray(position, float).copy(), _quat_xyzw_to_R(quat_xyzw))
        return True, ""

    def buttons(self, buttons, t: float) -> tuple[bool, str]:
        b = list(buttons)
        pressed = len(b) > self.cfg.deadman_button and bool(b[self.cfg.deadman_button])
        if pressed and not self._deadman:
            if self._head is None:
                self._event("warn", "deadman pressed but no /teleop/head yet")
            elif self.mode in (HOLD, TELEOP):
                self._head_ref = (self._head[0].copy(), self._head[1].copy())
                self.goal = self.setpoint.copy()
                self._reanchor()
                self._set_mode(HEAD_FOLLOW, "deadman pressed")
            else:
                self._event("warn", f"deadman ignored in {self.mode}")
        elif not pressed and self._deadman and self.mode == HEAD_FOLLOW:
            self.goal = self.setpoint.copy()          # the view stops where it is, not at the head's last goal
            self._set_mode(HOLD, "deadman released")
        self._deadman = pressed
        return True, ""

    def psm_tip(self, position, frame_id: str, t: float) -> tuple[bool, str]:
        """PSM tool tip in PSM1_base (from /PSM1/measured_cp)."""
        if frame_id not in (contract.PSM_BASE_FRAME, "") or not _finite(position):
            return self._reject("psm measured_cp: bad frame or non-finite")
        if self._psm_base is None:
            return False, "psm_base_pose not configured"
        self._tool_world = self._psm_base.act(np.asarray(position, float))
        self._tool_t = float(t)
        return True, ""

    # ------------------------------------------------------------------ step
    def step(self, t: float) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
        """One control period.  Returns (joint names, positions, velocities) or None (no command)."""
        if self.t_meas is None or self.ik is None:
            return None
        self.stats["steps"] += 1
        self.measured = self.ik.state(self.q_meas)
        if self.mode == IDLE:
            return None
        if t - self.t_meas > self.cfg.joint_state_timeout_s:
            if self.mode != FAULT:
                self._set_mode(FAULT, f"joint state {1e3 * (t - self.t_meas):.0f} ms old")
            return self._command(np.zeros(self.n))
        if self.mode == FAULT:
            return self._command(np.zeros(self.n))
        if t - self.t_meas > self.cfg.pause_if_state_older_s:
            # the robot (or a stalled sim) has not reported for a while: advancing the view on
            # the wall clock would run ahead of the arm; repeat the last command instead
            self.stats["paused_steps"] += 1
            return self._repeat()
        self._check_fault(t)
        if self.mode == FAULT:
            return self._command(np.zeros(self.n))
        if self.mode == TELEOP and t - self._last_cmd_t > self.cfg.teleop_timeout_s:
            self._cv = None
            self._set_mode(HOLD, f"no command for {1e3 * self.cfg.teleop_timeout_s:.0f} ms")
            self.goal = self.setpoint.copy()

        dt = self.dt
        ik = self.ik
        if self.mode == TELEOP and self._cv is not None and t - self._last_cmd_t <= self.cfg.servo_cv_hold_s:
            w, v = self._cv
            self.goal, reasons = ik.move_view(self.goal, w[0] * dt, w[1] * dt, v * dt, w[2] * dt)
            if reasons:
                self.reasons_last_cmd = reasons
        elif self.mode == HEAD_FOLLOW:
            self._head_goal()
        elif self.mode == TOOL_FOLLOW:
            self._tool_goal(t)

        prev = self.setpoint
        if self.mode in (TELEOP, HEAD_FOLLOW):
            filtered = self._filtered(self.goal)
        else:
            filtered = self.goal
        new = self._speed_limited(prev, filtered)
        self.setpoint = new
        # the setpoint's own velocity is the step just taken: new = prev * exp(v dt), depth + v dt
        vx, vy, vz, vd = self._sp_vel
        w_ff = (vx, vy, vz)

        if self._any_inactive:
            np.copyto(self.q_ref, self.q_meas, where=self._inactive)
        dq, _ = ik.step(self.q_ref, new, dt, w_ff, vd)
        if not math.isfinite(dq.dot(dq)):      # (|dq| is bounded by the speed cap: no overflow)
            self._set_mode(FAULT, "IK produced a non-finite step")
            return self._command(np.zeros(self.n))
        if ik.info.saturated:
            self.stats["saturated_steps"] += 1
            if self.stats["saturated_steps"] % 250 == 1:
                self._event("warn", f"joint limit: {sorted(set(ik.info.saturated))} held at the margin, view clipped")
        q_ref = self.q_ref
        q_ref += dq * dt
        ddq = self._ddq                 # low-passed acceleration: ddq += alpha ((dq - dq_ref) / dt - ddq)
        ddq *= self._acc_keep
        acc = dq - self.dq_ref
        acc *= self._acc_gain
        ddq += acc
        self.dq_ref = dq
        # integrate only while the view is still: during a motion the tracking lag (and, on a
        # loaded host, a sim running slower than the wall clock) would wind the integrator up
        moving = (math.sqrt(vx * vx + vy * vy + vz * vz) > INTEGRATE_BELOW_ANGULAR
                  or abs(vd) > INTEGRATE_BELOW_INSERTION)
        if not moving:
            k = self._ki_dt_active
            if k is None:
                k = self._ki_dt_active = self._ki * dt * ik.active
            off = self.offset
            step = q_ref - self.q_meas
            step *= k
            off += step
            lim = self.cfg.integral_limit
            np.maximum(off, -lim, out=off)
            np.minimum(off, lim, out=off)
        return self._command(dq)

    def _repeat(self):
        idx = self._active_idx
        return self._active_names, self.q_cmd[idx], np.zeros(len(idx))

    def _command(self, dq: np.ndarray):
        if self.mode == FAULT:
            dq = np.zeros(self.n)     # freeze: keep the last command, never go limp
        else:
            self._mass_count -= 1
            if self._mass_count <= 0:       # the inertia changes slowly with posture: refresh every 25 steps
                self._update_mass()
            if self.cfg.accel_feedforward:
                q = self._M_over_kp.dot(self._ddq)       # the PD then supplies the inertia torque M ddq
                q += self.q_ref
            else:
                q = self.q_ref.copy()
            q += self.offset
            q += self.cfg.command_lead_s * dq
            np.maximum(q, self.arm.limits.lower, out=q)
            np.minimum(q, self.arm.limits.upper, out=q)
            self.q_cmd = q
        idx = self._active_idx
        return self._active_names, self.q_cmd[idx], dq[idx]

    def _update_mass(self) -> None:
        """Joint-space inertia at q_ref (symmetric) and the per-joint integral gains it bounds.

        Runs inside every 25th step, so it is kept to a few calls: it must not
        stand out in the step-time tail.
        """
        M = np.array(pin.crba(self.arm.model, self.arm.data, self.q_ref))
        if self._crba_symmetric is None:      # pin 4's Python crba fills both triangles, older ones the upper
            self._crba_symmetric = bool(np.array_equal(M, M.T))
        if not self._crba_symmetric:
            M[self._lower_tri] = M.T[self._lower_tri]
        self._M = M
        # per-joint PID stability bound ki < kd / I (I: the joint's inertia at this posture)
        np.minimum(self.cfg.integral_gain, self._stability_kd / M.diagonal(), out=self._ki)
        self._M_over_kp = M * self._inv_kp_column
        self._ki_dt_active = self._ki * self._dt_active
        self._mass_count = 25

    def _check_fault(self, t: float) -> None:
        err = self.measured.fulcrum_error
        if err > self.cfg.fault_fulcrum_error:
            if self._fault_since is None:
                self._fault_since = t
            elif t - self._fault_since >= self.cfg.fault_persist_s:
                self._set_mode(FAULT, f"measured fulcrum error {err * 1e3:.1f} mm")
        else:
            self._fault_since = None

    def _filtered(self, goal: View) -> View:
        a = self.anchor
        lx, ly, lz = pin.log3(a.rotation.T.dot(goal.rotation)).tolist()
        y = self._filter((lx, ly, lz, goal.depth))
        return View(a.rotation.dot(pin.exp3(y[:3])), float(y[3]))

    def _speed_limited(self, cur: View, tgt: View) -> View:
        """Setpoint one period closer to `tgt` with bounded speed and acceleration.

        Per part (rotation, insertion): the speed that can still stop at the
        target, `min(v_max, sqrt(2 a_max d))`, along the remaining error;
        the setpoint velocity moves toward it by at most `a_max dt`.
        Scalars are Python floats (4 numbers: numpy calls would cost more
        than the arithmetic).  Views are never changed in place, so the
        target is kept without a copy.
        """
        dt = self.dt
        w_max, a_w = self._limits_angular
        if self.mode == TOOL_FOLLOW:
            w_max = min(w_max, self._tool_speed)
        v_max, a_v = self._limits_insertion
        Rc = cur.rotation
        RcT = Rc.T
        Rt = tgt.rotation
        rx, ry, rz = pin.log3(RcT.dot(Rt)).tolist()
        dd = tgt.depth - cur.depth
        # the target's own velocity (a moving goal is tracked, not chased)
        prev = self._prev_target
        if prev is None or prev is tgt:     # (HOLD: the same goal every step, it does not move)
            gx = gy = gz = gd = 0.0
        else:
            # in the setpoint frame: Rc^T Rp log3(Rp^T Rt) = Rc^T log3(Rt Rp^T) (world-frame turn)
            gx, gy, gz = RcT.dot(pin.log3(Rt.dot(prev.rotation.T))).tolist()
            gx, gy, gz = gx / dt, gy / dt, gz / dt
            gd = (tgt.depth - prev.depth) / dt
            if math.sqrt(gx * gx + gy * gy + gz * gz) > w_max:   # a jump, not a motion: no feed-forward
                gx = gy = gz = 0.0
            if abs(gd) > v_max:
                gd = 0.0
        self._prev_target = tgt
        # smooth the feed-forward: residual tremor must not reach the acceleration limit
        a = self._goal_vel_alpha
        fx, fy, fz, fd = self._goal_vel
        fx += a * (gx - fx)
        fy += a * (gy - fy)
        fz += a * (gz - fz)
        fd += a * (gd - fd)
        self._goal_vel = [fx, fy, fz, fd]
        vx, vy, vz, vd = self._sp_vel
        vx, vy, vz = self._approach3((vx, vy, vz), (rx, ry, rz), w_max, a_w, dt, (fx, fy, fz))
        vd = self._approach1(vd, dd, v_max, a_v, dt, fd)
        self._sp_vel = [vx, vy, vz, vd]
        return View(Rc.dot(pin.exp3(np.array((vx * dt, vy * dt, vz * dt)))), cur.depth + vd * dt)

    @staticmethod
    def _approach3(v, err, vmax: float, amax: float, dt: float, goal_vel) -> tuple[float, float, float]:
        """Velocity one step closer to the one that reaches `err` (3 floats each)."""
        ex, ey, ez = err
        gx, gy, gz = goal_vel
        dist = math.sqrt(ex * ex + ey * ey + ez * ez)
        if dist < 1e-12:
            wx, wy, wz = gx, gy, gz
        else:
            # far: the speed that can still stop in time; near: a linear pull (no limit cycle)
            k = min(vmax, math.sqrt(2.0 * amax * dist), SETPOINT_GAIN * dist) / dist
            wx, wy, wz = gx + ex * k, gy + ey * k, gz + ez * k
        nw = math.sqrt(wx * wx + wy * wy + wz * wz)
        if nw > vmax:
            s = vmax / nw
            wx, wy, wz = wx * s, wy * s, wz * s
        vx, vy, vz = v
        dx, dy, dz = wx - vx, wy - vy, wz - vz
        n = math.sqrt(dx * dx + dy * dy + dz * dz)
        if n > amax * dt:
            s = amax * dt / n
            dx, dy, dz = dx * s, dy * s, dz * s
        return vx + dx, vy + dy, vz + dz

    @staticmethod
    def _approach1(v: float, err: float, vmax: float, amax: float, dt: float, goal_vel: float) -> float:
        """`_approach3` for the insertion (1 float)."""
        dist = abs(err)
        if dist < 1e-12:
            want = goal_vel
        else:
            want = goal_vel + err * (min(vmax, math.sqrt(2.0 * amax * dist), SETPOINT_GAIN * dist) / dist)
        if abs(want) > vmax:
            want *= vmax / abs(want)
        dv = want - v
        if abs(dv) > amax * dt:
            dv *= amax * dt / abs(dv)
        return v + dv

    def _head_goal(self) -> None:
        if self._head is None or self._head_ref is None:
            return
        p0, R0 = self._head_ref
        p, R = self._head
        r = pin.log3(R0.T @ R)            # head-frame rotation since the deadman press (x fwd, y left, z up)
        yaw, pitch = r[2], r[1]
        fwd = float(np.dot(p - p0, R0[:, 0]))
        c = self.cfg
        self.goal, _ = self.ik.move_view(self.anchor, -c.head_tilt_gain * pitch, -c.head_pan_gain * yaw,
                                         c.head_zoom_gain * fwd, 0.0)

    def _tool_goal(self, t: float) -> None:
        """Re-aim the shaft at the tool when the camera sees it off-centre by more than the dead-band.

        The shaft line through the tool puts the tool on the optical axis.  The
        dead-band is judged from the camera (the tip), where an offset looks
        larger than from the fulcrum; the motion is a slow, constant-rate turn.
        """
        if self._tool_world is None or t - self._tool_t > self.cfg.psm_timeout_s:
            return
        f = self.ik.fulcrum
        sp = self.setpoint
        z = sp.rotation[:, 2]
        u = self._tool_world - f
        nu = float(np.linalg.norm(u))
        to_tool = self._tool_world - sp.tip_position(f)
        nt = float(np.linalg.norm(to_tool))
        if nu < 1e-6 or nt < 1e-6:
            return
        u /= nu
        ang_cam = float(np.degrees(np.arccos(np.clip(np.dot(z, to_tool / nt), -1.0, 1.0))))
        if ang_cam > self.cfg.tool_deadband_out_deg:
            self._tool_tracking = True
        elif ang_cam < self.cfg.tool_deadband_in_deg:
            self._tool_tracking = False
        if not self._tool_tracking:
            return          # keep the goal: the setpoint settles on it (a goal tied to the setpoint would coast)
        # the goal is the view whose shaft passes through the tool; the speed limit (tool_speed_deg
        # in this mode) makes the turn.  (A goal one small step ahead of the moving setpoint moves
        # with it, and its velocity fed forward kept the scope swinging past the tool.)
        R = rotation_aligning(z, u) @ sp.rotation
        view, _ = self.ik.project(f + sp.depth * R[:, 2], R)
        self.goal = view

    # ------------------------------------------------------------------ outputs
    def tip_pose(self) -> pin.SE3:
        return self.arm.tip_pose(self.q_meas)

    def diagnostics(self) -> dict:
        m = self.measured
        return {
            "mode": self.mode,
            "fulcrum_error_m": None if m is None else m.fulcrum_error,
            "depth_m": None if m is None else m.depth,
            "sigma_min": None if self.ik is None else self.ik.info.sigma_min,
            "saturated": [] if self.ik is None else list(self.ik.info.saturated),
            "integral_offset_max_rad": float(np.max(np.abs(self.offset))),
            **self.stats,
        }
