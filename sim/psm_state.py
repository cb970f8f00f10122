"""The dVRK PSM's operating-state machine and motion generator, ROS-free.

`PSMCore` is what the PSM twin runs every physics step: it takes commands
(already unpacked from ROS messages into plain Python values), checks them
against the dVRK's rules (FACTS.md: accepted commands per operating state,
motion only when ENABLED and homed, finite values, joint limits, reachable
poses), produces the joint setpoint (trajectories, servo streams, twist
integration) and watches the tracking error.  The clock is passed in, so a
unit test steps it with a plain loop and a fake plant.

Every command returns a `Result` (surgbot.results): refused with the reason,
and nothing changed.  What the arm reports on its own channels goes to
`outbox` as (kind, text) with kind `error`, `warning`, `status` (the dVRK's
`/PSM1/error|warning|status`) or `goal_reached`; a refused command is
reported there too (state commands on `warning`, motion commands on `error`,
as the dVRK does), so the twin publishes the outbox and nothing else.

Besides position control (servo/move jp, jr, cp; servo_cv), the core has the
dVRK's effort mode: `servo_jf` (joint efforts), `servo_cf` (a tool-tip
wrench, applied as J^T w) and `free` (zero effort); the plant then applies
the efforts and the setpoint follows the measured joints.  The simulated arm
is counterbalanced (psm.xml gravcomp), so `use_gravity_compensation` is
recorded and has nothing to add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES
from surgbot.kinematics import psm as kin
from surgbot.results import Result
from surgbot.sim import psm_inputs as inputs
from surgbot.sim.psm_trajectory import TrapezoidTrajectory


class State(StrEnum):
    """The dVRK operating states (a str Enum whose str() is the name published)."""

    DISABLED = "DISABLED"
    ENABLED = "ENABLED"
    PAUSED = "PAUSED"
    FAULT = "FAULT"


DISABLED, ENABLED, PAUSED, FAULT = State.DISABLED, State.ENABLED, State.PAUSED, State.FAULT

# dVRK: state commands accepted in each operating state (FACTS.md)
ACCEPTED = {
    DISABLED: ("enable", "disable", "home", "unhome", "pause"),
    ENABLED: ("enable", "disable", "pause", "home", "unhome"),
    PAUSED: ("disable", "pause", "resume", "unhome"),
    FAULT: ("disable", "unhome"),
}
STATE_COMMANDS = ("enable", "disable", "home", "unhome", "pause", "resume")
MOTION_COMMANDS = ("servo_jp", "servo_jr", "move_jp", "move_jr", "servo_cp", "move_cp", "servo_cv",
                   "servo_jf", "servo_cf", "free", "jaw_servo_jp", "jaw_move_jp", "jaw_servo_jf", "hold")
SETTINGS = ("set_trajectory_ratio", "set_gravity_compensation", "set_cf_orientation_absolute",
            "set_tool_present")

POWER_UP_S = 0.5              # amplifiers on -> ENABLED
HOMED_TOLERANCE = np.array([np.deg2rad(3)] * 2 + [0.003] + [np.deg2rad(3)] * 3)
HOMING_SETTLE_S = 2.0         # after the homing trajectory, time allowed to settle
SERVO_CV_TIMEOUT_S = 0.1      # a twist older than this stops (no runaway on a lost link)
SERVO_STREAM_GAP_S = 0.05     # servo_jp/cp closer than this form a stream: velocity feed-forward
LIMIT_MARGIN = 5e-4


@dataclass
class Setpoint:
    q: np.ndarray
    qd: np.ndarray
    jaw: float
    jaw_d: float
    powered: bool
    effort: np.ndarray | None = None       # effort mode: joint efforts to apply (q follows the arm)
    jaw_effort: float | None = None


@dataclass
class PSMCore:
    """Operating state, setpoints and checks of one PSM (see module doc)."""

    power_up_s: float = POWER_UP_S
    state: State = DISABLED
    is_homed: bool = False
    is_busy: bool = False
    outbox: list = field(default_factory=list)   # (kind, payload): error/warning/status/goal_reached
    state_changed: bool = True

    def __post_init__(self):
        self.q_sp: np.ndarray | None = None
        self.qd_sp = np.zeros(6)
        self.jaw_sp = 0.0
        self.jaw_d_sp = 0.0
        self.q_meas = np.zeros(6)
        self.jaw_meas = 0.0
        self.t = 0.0
        self._power_up_until: float | None = None
        self._home_after_power_up = False
        self._homing = False
        self._homing_done_at: float | None = None
        self._traj: TrapezoidTrajectory | None = None
        self._jaw_traj: TrapezoidTrajectory | None = None
        self._cv: tuple[np.ndarray, np.ndarray, float] | None = None
        self._cv_pose: np.ndarray | None = None
        self._at_limit = np.zeros(6, bool)
        self._servo_t: float | None = None
        self._servo_stamp: float | None = None
        self.effort: np.ndarray | None = None     # effort mode when set
        self.jaw_effort: float | None = None
        self.trajectory_ratio = 1.0
        self.gravity_compensation = True
        self.cf_orientation_absolute = False
        self.tool_present = True

    # ------------------------------------------------------------- helpers
    def _say(self, kind: str, text: str) -> None:
        self.outbox.append((kind, text))

    def error(self, text: str) -> Result:
        """Report `text` on the error channel; the refused command's Result."""
        self._say("error", text)
        return Result.failure(text)

    def warning(self, text: str) -> Result:
        self._say("warning", text)
        return Result.failure(text)

    def _set_state(self, state: str | None = None, *, homed: bool | None = None,
                   busy: bool | None = None) -> None:
        before = (self.state, self.is_homed, self.is_busy)
        if state is not None:
            self.state = state
        if homed is not None:
            self.is_homed = homed
        if busy is not None:
            self.is_busy = busy
        if (self.state, self.is_homed, self.is_busy) != before:
            self.state_changed = True

    def operating_state(self) -> dict:
        return {"state": str(self.state), "is_homed": self.is_homed, "is_busy": self.is_busy}

    def _stop_motion(self, interrupted: bool) -> None:
        """Drop trajectories and streams; a running move reports goal_reached false."""
        if self._traj is not None or self._jaw_traj is not None:
            if interrupted and not self._homing:
                self.outbox.append(("goal_reached", False))
        self._traj = None
        self._jaw_traj = None
        self._cv = None
        self._cv_pose = None
        self._servo_t = None
        self.qd_sp = np.zeros(6)
        self.jaw_d_sp = 0.0
        self.effort = None
        self.jaw_effort = None
        if self._homing:
            self._homing = False
            self._homing_done_at = None
        if self.state in (ENABLED, PAUSED) and not self._power_up_until:
            self._set_state(busy=False)

    def _hold_measured(self) -> None:
        self.q_sp = self.q_meas.copy()
        self.jaw_sp = float(self.jaw_meas)

    # ------------------------------------------------------- state commands
    def state_command(self, name: str) -> Result:
        """A CRTK state command; unknown, empty or not accepted in this state: a warning, no change."""
        if not isinstance(name, str) or name not in STATE_COMMANDS:
            return self.warning(f"state command {name!r} is not supported; "
                                f"expected one of {', '.join(STATE_COMMANDS)}")
        if name not in ACCEPTED[self.state]:
            return self.warning(f"command {name} is not supported in state {self.state}")
        getattr(self, f"_cmd_{name}")()
        return Result.success()

    def _cmd_enable(self) -> None:
        if self.state == ENABLED:
            return
        self._hold_measured()
        self._power_up_until = self.t + self.power_up_s
        self._set_state(busy=True)
        self._say("status", "powering up")

    def _cmd_disable(self) -> None:
        self._stop_motion(interrupted=True)
        self._power_up_until = None
        self._home_after_power_up = False
        self._hold_measured()          # brakes hold the arm where it is
        self._set_state(DISABLED, busy=False)
        self._say("status", "disabled")

    def _cmd_home(self) -> None:
        if self.state == DISABLED or self._power_up_until is not None:
            self._home_after_power_up = True
            if self._power_up_until is None:
                self._cmd_enable()
            return
        self._start_homing()

    def _start_homing(self) -> None:
        self._stop_motion(interrupted=True)
        start = self.q_sp if self.q_sp is not None else self.q_meas
        self._traj = TrapezoidTrajectory(start, kin.HOME, kin.MAX_VELOCITY, kin.MAX_ACCELERATION, self.t)
        self._jaw_traj = TrapezoidTrajectory([self.jaw_sp], [0.0], [kin.JAW_MAX_VELOCITY],
                                             [kin.JAW_MAX_ACCELERATION], self.t)
        self._homing = True
        self._homing_done_at = None
        self._set_state(homed=False, busy=True)
        self._say("status", "homing")

    def _cmd_unhome(self) -> None:
        if self._homing:
            self._stop_motion(interrupted=True)
        self._set_state(homed=False)
        self._say("status", "unhomed")

    def _cmd_pause(self) -> None:
        if self.state == ENABLED:
            self._stop_motion(interrupted=True)
            self._set_state(PAUSED, busy=False)
            self._say("status", "paused")

    def _cmd_resume(self) -> None:
        self._set_state(ENABLED)
        self._say("status", "resumed")

    # ------------------------------------------------------- motion commands
    def _refused(self, what: str) -> Result | None:
        """The refusal when motion is not allowed now (None: allowed)."""
        if self.state != ENABLED:
            return self.error(f"{what} rejected: arm is {self.state}, needs ENABLED")
        if self._power_up_until is not None:
            return self.error(f"{what} rejected: arm is powering up")
        if not self.is_homed:
            return self.error(f"{what} rejected: arm is not homed")
        if self._homing:
            return self.error(f"{what} rejected: arm is busy homing")
        return None

    def _pose_ik(self, what: str, pose) -> np.ndarray | Result:
        """Joints reaching `pose` (seeded by the setpoint), or the refusal."""
        try:
            T = kin.check_pose(pose, what)
            res = kin.ik(T, seed=self.q_sp)
        except kin.KinematicsError as exc:
            return self.error(f"{what} rejected: {exc}")
        if res.insertion_clamped:
            self._say("warning", f"{what}: insertion clamped to keep the wrist "
                                 f"{kin.MIN_WRIST_DISTANCE * 1e3:.0f} mm from the RCM")
        return res.q

    def servo_jp(self, names, positions, stamp: float | None = None) -> Result:
        if (no := self._refused("servo_jp")) is not None:
            return no
        try:
            q = inputs.joint_positions("servo_jp", names, positions)
        except ValueError as exc:
            return self.error(str(exc))
        self._servo_to(q, stamp)
        return Result.success()

    def servo_jr(self, names, positions) -> Result:
        """Relative servo: setpoint + delta, applied like servo_jp."""
        if (no := self._refused("servo_jr")) is not None:
            return no
        try:
            q = inputs.joint_goal("servo_jr", names, positions, self.q_sp)
        except ValueError as exc:
            return self.error(str(exc))
        self._servo_to(q, None)
        return Result.success()

    def _servo_to(self, q: np.ndarray, stamp: float | None) -> None:
        """Jump the setpoint; a steady stream also yields its velocity (feed-forward).

        The sender's stamps time the stream when they are set (transport
        jitter would otherwise show up as velocity noise), the arrival time
        when not; the estimate is averaged over two commands.
        """
        qd = np.zeros(6)
        if self._servo_t is not None and 0.0 < self.t - self._servo_t <= SERVO_STREAM_GAP_S:
            dt = self.t - self._servo_t
            if stamp and self._servo_stamp and 0.0 < stamp - self._servo_stamp <= SERVO_STREAM_GAP_S:
                dt = stamp - self._servo_stamp
            qd = 0.5 * (q - self.q_sp) / dt + 0.5 * self.qd_sp
        self._stop_motion(interrupted=True)
        self.q_sp = q
        self.qd_sp = qd
        self._servo_t = self.t
        self._servo_stamp = stamp

    def move_jp(self, names, positions) -> Result:
        if (no := self._refused("move_jp")) is not None:
            return no
        try:
            q = inputs.joint_positions("move_jp", names, positions)
        except ValueError as exc:
            return self.error(str(exc))
        return self._start_move(q)

    def move_jr(self, names, positions) -> Result:
        """Relative move: trajectory to setpoint + delta."""
        if (no := self._refused("move_jr")) is not None:
            return no
        try:
            q = inputs.joint_goal("move_jr", names, positions, self.q_sp)
        except ValueError as exc:
            return self.error(str(exc))
        return self._start_move(q)

    def _start_move(self, q: np.ndarray) -> Result:
        self._stop_motion(interrupted=True)
        r = self.trajectory_ratio
        self._traj = TrapezoidTrajectory(self.q_sp, q, kin.MAX_VELOCITY * r, kin.MAX_ACCELERATION * r, self.t)
        self._set_state(busy=True)
        return Result.success()

    def servo_cp(self, pose, stamp: float | None = None) -> Result:
        if (no := self._refused("servo_cp")) is not None:
            return no
        q = self._pose_ik("servo_cp", pose)
        if isinstance(q, Result):
            return q
        self._servo_to(q, stamp)
        return Result.success()

    def move_cp(self, pose) -> Result:
        if (no := self._refused("move_cp")) is not None:
            return no
        q = self._pose_ik("move_cp", pose)
        if isinstance(q, Result):
            return q
        return self._start_move(q)

    def servo_cv(self, linear, angular) -> Result:
        if (no := self._refused("servo_cv")) is not None:
            return no
        try:
            v = np.asarray(list(linear), float)
            w = np.asarray(list(angular), float)
        except (TypeError, ValueError):
            return self.error("servo_cv rejected: twist is not numeric")
        if v.shape != (3,) or w.shape != (3,):
            return self.error("servo_cv rejected: twist needs 3 linear and 3 angular values")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
            return self.error("servo_cv rejected: twist contains NaN or inf")
        if self._cv is None:
            self._stop_motion(interrupted=True)
            self._cv_pose = kin.fk(self.q_sp)
        self._cv = (v, w, self.t)
        return Result.success()

    def servo_jf(self, names, efforts) -> Result:
        """Effort mode: apply these joint efforts (N m, N) until a position command."""
        if (no := self._refused("servo_jf")) is not None:
            return no
        try:
            e = inputs.efforts("servo_jf", names, efforts)
        except ValueError as exc:
            return self.error(str(exc))
        self._enter_effort_mode(e)
        return Result.success()

    def servo_cf(self, wrench, body: bool = False) -> Result:
        """Effort mode from a tool-tip wrench (force, torque): tau = J^T w.

        `body`: the wrench is in the tool-tip frame (body/servo_cf) unless
        `set_cf_orientation_absolute(True)`; otherwise in PSM1_base (spatial/servo_cf)."""
        what = "body/servo_cf" if body else "spatial/servo_cf"
        if (no := self._refused(what)) is not None:
            return no
        try:
            w = inputs.wrench(what, wrench)
            if body and not self.cf_orientation_absolute:
                R = kin.fk(self.q_meas)[:3, :3]
                w = np.concatenate([R @ w[:3], R @ w[3:]])
            e = inputs.effort_range(what, kin.jacobian(self.q_meas).T @ w, PSM_JOINT_NAMES, inputs.MAX_EFFORT,
                                    "joint efforts")
        except ValueError as exc:
            return self.error(str(exc))
        self._enter_effort_mode(e)
        return Result.success()

    def free(self) -> Result:
        """The dVRK's `free`: effort mode with zero effort (the arm is counterbalanced: it stays, movable by hand)."""
        if (no := self._refused("free")) is not None:
            return no
        self._enter_effort_mode(np.zeros(6))
        self.jaw_effort = 0.0
        return Result.success()

    def _enter_effort_mode(self, effort: np.ndarray) -> None:
        jaw = self.jaw_effort
        self._stop_motion(interrupted=True)
        self.effort = effort
        self.jaw_effort = jaw
        self._hold_measured()

    def jaw_servo_jp(self, names, positions) -> Result:
        if (no := self._refused("jaw/servo_jp")) is not None:
            return no
        try:
            v = inputs.jaw_position("jaw/servo_jp", names, positions)
        except ValueError as exc:
            return self.error(str(exc))
        self._jaw_traj = None
        self.jaw_effort = None
        self.jaw_sp, self.jaw_d_sp = v, 0.0
        return Result.success()

    def jaw_move_jp(self, names, positions) -> Result:
        if (no := self._refused("jaw/move_jp")) is not None:
            return no
        try:
            v = inputs.jaw_position("jaw/move_jp", names, positions)
        except ValueError as exc:
            return self.error(str(exc))
        self.jaw_effort = None
        r = self.trajectory_ratio
        self._jaw_traj = TrapezoidTrajectory([self.jaw_sp], [v], [kin.JAW_MAX_VELOCITY * r],
                                             [kin.JAW_MAX_ACCELERATION * r], self.t)
        self._set_state(busy=True)
        return Result.success()

    def jaw_servo_jf(self, names, efforts) -> Result:
        """Jaw effort (N m) until the next jaw position command."""
        if (no := self._refused("jaw/servo_jf")) is not None:
            return no
        try:
            e = inputs.efforts("jaw/servo_jf", names, efforts, (PSM_JAW_NAME,), np.array([inputs.JAW_MAX_EFFORT]))
        except ValueError as exc:
            return self.error(str(exc))
        self._jaw_traj = None
        self.jaw_effort = float(e[0])
        self.jaw_sp, self.jaw_d_sp = float(self.jaw_meas), 0.0
        return Result.success()

    def hold(self) -> Result:
        if (no := self._refused("hold")) is not None:
            return no
        self._stop_motion(interrupted=True)
        return Result.success()

    # ------------------------------------------------------------ settings
    def set_trajectory_ratio(self, ratio) -> Result:
        """trajectory_j/set_ratio: scale of the move velocity/acceleration limits, in (0, 1]."""
        try:
            r = float(ratio)
        except (TypeError, ValueError):
            return self.error(f"trajectory_j/set_ratio rejected: {ratio!r} is not a number")
        if not (math.isfinite(r) and 0.0 < r <= 1.0):
            return self.error(f"trajectory_j/set_ratio rejected: {r} not in (0, 1]")
        self.trajectory_ratio = r
        self.state_changed = True          # the twin republishes trajectory_j/ratio with the state
        return Result.success()

    def _flag(self, what: str, attr: str, value) -> Result:
        if not isinstance(value, (bool, np.bool_)):
            return self.error(f"{what} rejected: expected a bool, got {value!r}")
        setattr(self, attr, bool(value))
        return Result.success()

    def set_gravity_compensation(self, value) -> Result:
        return self._flag("use_gravity_compensation", "gravity_compensation", value)

    def set_cf_orientation_absolute(self, value) -> Result:
        return self._flag("body/set_cf_orientation_absolute", "cf_orientation_absolute", value)

    def set_tool_present(self, value) -> Result:
        """emulate_tool_present: recorded; the twin's instrument is always there."""
        return self._flag("emulate_tool_present", "tool_present", value)

    # ------------------------------------------------------------------ step
    def step(self, t: float, q_meas, qd_meas=None, jaw_meas: float = 0.0) -> Setpoint:
        """Advance to time t with the measured joints; returns the setpoint to servo to."""
        dt = max(t - self.t, 0.0)
        self.t = t
        self.q_meas = np.asarray(q_meas, float).copy()
        self.jaw_meas = float(jaw_meas)
        if self.q_sp is None:                     # first step: brakes hold the start pose
            self._hold_measured()

        if self._power_up_until is not None and t >= self._power_up_until:
            self._power_up_until = None
            self._set_state(ENABLED, busy=False)
            self._say("status", "enabled")
            if self._home_after_power_up:
                self._home_after_power_up = False
                self._start_homing()

        if self._traj is not None:
            self.q_sp, self.qd_sp, done = self._traj.sample(t)
            if done:
                self._traj = None
                if not self._homing and self._jaw_traj is None:
                    self.outbox.append(("goal_reached", True))
        if self._jaw_traj is not None:
            j, jd, done = self._jaw_traj.sample(t)
            self.jaw_sp, self.jaw_d_sp = float(j[0]), float(jd[0])
            if done:
                self._jaw_traj = None
                if not self._homing and self._traj is None:
                    self.outbox.append(("goal_reached", True))
        if self._traj is None and self._jaw_traj is None and self.is_busy \
                and not self._homing and self._power_up_until is None:
            self._set_state(busy=False)

        if self._homing and self._traj is None and self._jaw_traj is None:
            if self._homing_done_at is None:
                self._homing_done_at = t
            if np.all(np.abs(self.q_meas - kin.HOME) <= HOMED_TOLERANCE):
                self._homing = False
                self._set_state(homed=True, busy=False)
                self._say("status", "homed")
            elif t - self._homing_done_at > HOMING_SETTLE_S:
                self._homing = False
                self._set_state(busy=False)
                self.error("homing failed: joints did not reach home within 3 deg")

        if self._cv is not None:
            self._integrate_twist(t, dt)
        if self._servo_t is not None and t - self._servo_t > SERVO_STREAM_GAP_S:
            self._servo_t = None                  # stream ended: hold still
            self.qd_sp = np.zeros(6)

        if self.effort is not None:               # effort mode: the setpoint is where the arm is
            self.q_sp, self.qd_sp = self.q_meas.copy(), np.zeros(6)
        if self.jaw_effort is not None:
            self.jaw_sp, self.jaw_d_sp = self.jaw_meas, 0.0
        powered = self.state in (ENABLED, PAUSED) and self._power_up_until is None
        if powered:
            self._check_tracking()
        self._check_limits()
        return Setpoint(self.q_sp.copy(), self.qd_sp.copy(), self.jaw_sp, self.jaw_d_sp,
                        powered or self._power_up_until is not None,
                        None if self.effort is None else self.effort.copy(), self.jaw_effort)

    def _integrate_twist(self, t: float, dt: float) -> None:
        v, w, t_cmd = self._cv
        if t - t_cmd > SERVO_CV_TIMEOUT_S:
            self._cv, self._cv_pose = None, None
            self.qd_sp = np.zeros(6)
            return
        T = self._cv_pose.copy()
        T[:3, 3] = T[:3, 3] + v * dt
        angle = float(np.linalg.norm(w)) * dt
        if angle > 0.0:
            k = w / np.linalg.norm(w)
            K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
            dR = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
            T[:3, :3] = dR @ T[:3, :3]
        try:
            res = kin.ik(T, seed=self.q_sp, clamp_insertion=False)
        except kin.KinematicsError as exc:
            self._cv, self._cv_pose = None, None
            self.qd_sp = np.zeros(6)
            self.error(f"servo_cv stopped: {exc}")
            return
        if dt > 0:
            self.qd_sp = (res.q - self.q_sp) / dt
        self.q_sp = res.q
        self._cv_pose = T

    def _check_tracking(self) -> None:
        err = np.abs(self.q_sp - self.q_meas)
        over = err > kin.TRACKING_TOLERANCE
        jaw_err = abs(self.jaw_sp - self.jaw_meas)
        if over.any() or jaw_err > kin.JAW_TRACKING_TOLERANCE:
            which = [f"{PSM_JOINT_NAMES[i]} error {err[i]:.3f} > {kin.TRACKING_TOLERANCE[i]}"
                     for i in np.flatnonzero(over)]
            if jaw_err > kin.JAW_TRACKING_TOLERANCE:
                which.append(f"jaw error {jaw_err:.3f} > {kin.JAW_TRACKING_TOLERANCE}")
            self._stop_motion(interrupted=True)
            self._hold_measured()
            self._set_state(FAULT, busy=False)
            self.error("PID tracking error, arm in FAULT (send disable to clear): " + "; ".join(which))

    def _check_limits(self) -> None:
        at = (self.q_meas <= kin.LOWER + LIMIT_MARGIN) | (self.q_meas >= kin.UPPER - LIMIT_MARGIN)
        for i in np.flatnonzero(at & ~self._at_limit):
            self._say("warning", f"joint {PSM_JOINT_NAMES[i]} at its position limit ({self.q_meas[i]:.4f})")
        self._at_limit = at

    # ------------------------------------------------------------ dispatch
    def command(self, kind: str, *args) -> Result:
        """One command by kind name (state, servo_jp, ..., hold, settings); its Result."""
        if kind == "state":
            return self.state_command(*args)
        if kind in MOTION_COMMANDS or kind in SETTINGS:
            return getattr(self, kind)(*args)
        return self.error(f"unknown command kind {kind!r}")
