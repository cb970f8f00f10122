"""The dVRK PSM's operating-state machine and motion generator, ROS-free.

`PSMCore` is what the PSM twin runs every physics step: it takes commands
(already unpacked from ROS messages into plain Python values), checks them
against the dVRK's rules (FACTS.md: accepted commands per operating state,
motion only when ENABLED and homed, finite values, joint limits, reachable
poses), produces the joint setpoint (trajectories, servo streams, twist
integration) and watches the tracking error.  The clock is passed in, so a
unit test steps it with a plain loop and a fake plant.

Messages for `/PSM1/error`, `/PSM1/warning`, `/PSM1/status` and goal-reached
events go to `outbox`; the twin drains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES
from surgbot.kinematics import psm as kin

DISABLED, ENABLED, PAUSED, FAULT = "DISABLED", "ENABLED", "PAUSED", "FAULT"

# dVRK: state commands accepted in each operating state (FACTS.md)
ACCEPTED = {
    DISABLED: ("enable", "disable", "home", "unhome", "pause"),
    ENABLED: ("enable", "disable", "pause", "home", "unhome"),
    PAUSED: ("disable", "pause", "resume", "unhome"),
    FAULT: ("disable", "unhome"),
}
STATE_COMMANDS = ("enable", "disable", "home", "unhome", "pause", "resume")
MOTION_COMMANDS = ("servo_jp", "move_jp", "servo_cp", "move_cp", "servo_cv",
                   "jaw_servo_jp", "jaw_move_jp", "hold")

POWER_UP_S = 0.5              # amplifiers on -> ENABLED
HOMED_TOLERANCE = np.array([np.deg2rad(3)] * 2 + [0.003] + [np.deg2rad(3)] * 3)
HOMING_SETTLE_S = 2.0         # after the homing trajectory, time allowed to settle
SERVO_CV_TIMEOUT_S = 0.1      # a twist older than this stops (no runaway on a lost link)
SERVO_STREAM_GAP_S = 0.05     # servo_jp/cp closer than this form a stream: velocity feed-forward
LIMIT_MARGIN = 5e-4


class TrapezoidTrajectory:
    """Synchronised trapezoidal joint trajectory: every joint starts and stops together.

    One normalised profile s(t) in [0, 1] scales all joint displacements, with
    the cruise and ramp times chosen so that no joint exceeds its velocity or
    acceleration limit (the slowest joint sets the duration).
    """

    def __init__(self, start, goal, vmax, amax, t0: float):
        self.start = np.asarray(start, float).copy()
        self.goal = np.asarray(goal, float).copy()
        self.t0 = t0
        D = np.abs(self.goal - self.start)
        dv = float(np.max(D / vmax)) if D.size else 0.0
        da = float(np.max(D / amax)) if D.size else 0.0
        if da <= 0.0:
            self.ramp, self.cruise_end, self.duration = 0.0, 0.0, 0.0
            return
        u = math.sqrt(da) if math.sqrt(da) >= dv else dv    # u = duration - ramp
        self.ramp = da / u
        self.duration = u + self.ramp
        self.cruise_end = u
        self._vpeak = 1.0 / u                                # of s(t)
        self._acc = 1.0 / (self.ramp * u)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """(position, velocity, done) at time t."""
        tau = t - self.t0
        if self.duration <= 0.0 or tau >= self.duration:
            return self.goal.copy(), np.zeros_like(self.goal), True
        tau = max(tau, 0.0)
        a, ta, T = self._acc, self.ramp, self.duration
        if tau < ta:
            s, ds = 0.5 * a * tau * tau, a * tau
        elif tau < T - ta:
            s, ds = 0.5 * a * ta * ta + self._vpeak * (tau - ta), self._vpeak
        else:
            r = T - tau
            s, ds = 1.0 - 0.5 * a * r * r, a * r
        d = self.goal - self.start
        return self.start + s * d, ds * d, False


@dataclass
class Setpoint:
    q: np.ndarray
    qd: np.ndarray
    jaw: float
    jaw_d: float
    powered: bool


@dataclass
class PSMCore:
    """Operating state, setpoints and checks of one PSM (see module doc)."""

    power_up_s: float = POWER_UP_S
    state: str = DISABLED
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

    # ------------------------------------------------------------- helpers
    def _say(self, kind: str, text: str) -> None:
        self.outbox.append((kind, text))

    def error(self, text: str) -> bool:
        self._say("error", text)
        return False

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
        return {"state": self.state, "is_homed": self.is_homed, "is_busy": self.is_busy}

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
        if self._homing:
            self._homing = False
            self._homing_done_at = None
        if self.state in (ENABLED, PAUSED) and not self._power_up_until:
            self._set_state(busy=False)

    def _hold_measured(self) -> None:
        self.q_sp = self.q_meas.copy()
        self.jaw_sp = float(self.jaw_meas)

    # ------------------------------------------------------- state commands
    def state_command(self, name: str) -> bool:
        if not isinstance(name, str) or name not in STATE_COMMANDS:
            return self.error(f"unknown state command {name!r}; expected one of {', '.join(STATE_COMMANDS)}")
        if name not in ACCEPTED[self.state]:
            self._say("warning", f"command {name} is not supported in state {self.state}")
            return False
        getattr(self, f"_cmd_{name}")()
        return True

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
    def _motion_allowed(self, what: str) -> bool:
        if self.state != ENABLED:
            return self.error(f"{what} rejected: arm is {self.state}, needs ENABLED")
        if self._power_up_until is not None:
            return self.error(f"{what} rejected: arm is powering up")
        if not self.is_homed:
            return self.error(f"{what} rejected: arm is not homed")
        if self._homing:
            return self.error(f"{what} rejected: arm is busy homing")
        return True

    def _positions(self, what: str, positions, expected: tuple[str, ...]) -> np.ndarray | None:
        """`positions` as a float vector of len(expected), or None after one error message."""
        try:
            pos = np.asarray(list(positions), dtype=float)
        except (TypeError, ValueError):
            self.error(f"{what} rejected: positions are not numbers")
            return None
        if pos.shape != (len(expected),):
            n = len(expected)
            self.error(f"{what} rejected: expected {n} position{'s' if n > 1 else ''} "
                       f"({', '.join(expected)}), got {pos.size}")
            return None
        return pos

    def _joint_vector(self, what: str, names, positions) -> np.ndarray | None:
        names = list(names or [])
        pos = self._positions(what, positions, PSM_JOINT_NAMES)
        if pos is None:
            return None
        if names:
            if sorted(names) != sorted(PSM_JOINT_NAMES) or len(set(names)) != 6:
                unknown = [n for n in names if n not in PSM_JOINT_NAMES]
                self.error(f"{what} rejected: joint names must be exactly {list(PSM_JOINT_NAMES)}"
                           + (f"; unknown {unknown}" if unknown else ""))
                return None
            pos = pos[[names.index(n) for n in PSM_JOINT_NAMES]]
        if not np.all(np.isfinite(pos)):
            self.error(f"{what} rejected: positions contain NaN or inf")
            return None
        bad = [f"{PSM_JOINT_NAMES[i]}={pos[i]:.4f} not in [{kin.LOWER[i]:.3f}, {kin.UPPER[i]:.3f}]"
               for i in range(6) if not (kin.LOWER[i] <= pos[i] <= kin.UPPER[i])]
        if bad:
            self.error(f"{what} rejected: outside joint limits: {'; '.join(bad)}")
            return None
        return pos

    def _jaw_value(self, what: str, names, positions) -> float | None:
        names = list(names or [])
        pos = self._positions(what, positions, (PSM_JAW_NAME,))
        if pos is None:
            return None
        if names and names != [PSM_JAW_NAME]:
            self.error(f"{what} rejected: joint name must be '{PSM_JAW_NAME}', got {names}")
            return None
        v = float(pos[0])
        if not math.isfinite(v):
            self.error(f"{what} rejected: jaw position is NaN or inf")
            return None
        if not (kin.JAW_LOWER <= v <= kin.JAW_UPPER):
            self.error(f"{what} rejected: jaw {v:.4f} not in [{kin.JAW_LOWER}, {kin.JAW_UPPER}]")
            return None
        return v

    def _pose_ik(self, what: str, pose) -> np.ndarray | None:
        try:
            T = kin.check_pose(pose, what)
            res = kin.ik(T, seed=self.q_sp)
        except kin.KinematicsError as exc:
            self.error(f"{what} rejected: {exc}")
            return None
        if res.insertion_clamped:
            self._say("warning", f"{what}: insertion clamped to keep the wrist "
                                 f"{kin.MIN_WRIST_DISTANCE * 1e3:.0f} mm from the RCM")
        return res.q

    def servo_jp(self, names, positions, stamp: float | None = None) -> bool:
        if not self._motion_allowed("servo_jp"):
            return False
        q = self._joint_vector("servo_jp", names, positions)
        if q is None:
            return False
        self._servo_to(q, stamp)
        return True

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

    def move_jp(self, names, positions) -> bool:
        if not self._motion_allowed("move_jp"):
            return False
        q = self._joint_vector("move_jp", names, positions)
        if q is None:
            return False
        return self._start_move(q)

    def _start_move(self, q: np.ndarray) -> bool:
        self._stop_motion(interrupted=True)
        self._traj = TrapezoidTrajectory(self.q_sp, q, kin.MAX_VELOCITY, kin.MAX_ACCELERATION, self.t)
        self._set_state(busy=True)
        return True

    def servo_cp(self, pose, stamp: float | None = None) -> bool:
        if not self._motion_allowed("servo_cp"):
            return False
        q = self._pose_ik("servo_cp", pose)
        if q is None:
            return False
        self._servo_to(q, stamp)
        return True

    def move_cp(self, pose) -> bool:
        if not self._motion_allowed("move_cp"):
            return False
        q = self._pose_ik("move_cp", pose)
        if q is None:
            return False
        return self._start_move(q)

    def servo_cv(self, linear, angular) -> bool:
        if not self._motion_allowed("servo_cv"):
            return False
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
        return True

    def jaw_servo_jp(self, names, positions) -> bool:
        if not self._motion_allowed("jaw/servo_jp"):
            return False
        v = self._jaw_value("jaw/servo_jp", names, positions)
        if v is None:
            return False
        self._jaw_traj = None
        self.jaw_sp, self.jaw_d_sp = v, 0.0
        return True

    def jaw_move_jp(self, names, positions) -> bool:
        if not self._motion_allowed("jaw/move_jp"):
            return False
        v = self._jaw_value("jaw/move_jp", names, positions)
        if v is None:
            return False
        self._jaw_traj = TrapezoidTrajectory([self.jaw_sp], [v], [kin.JAW_MAX_VELOCITY],
                                             [kin.JAW_MAX_ACCELERATION], self.t)
        self._set_state(busy=True)
        return True

    def hold(self) -> bool:
        if not self._motion_allowed("hold"):
            return False
        self._stop_motion(interrupted=True)
        return True

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

        powered = self.state in (ENABLED, PAUSED) and self._power_up_until is None
        if powered:
            self._check_tracking()
        self._check_limits()
        return Setpoint(self.q_sp.copy(), self.qd_sp.copy(), self.jaw_sp, self.jaw_d_sp,
                        powered or self._power_up_until is not None)

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
    def command(self, kind: str, *args) -> bool:
        """One command by kind name (state, servo_jp, ..., hold); False if rejected."""
        if kind == "state":
            return self.state_command(*args)
        if kind in MOTION_COMMANDS:
            return getattr(self, kind)(*args)
        return self.error(f"unknown command kind {kind!r}")
