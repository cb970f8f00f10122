"""The PSM's setpoint generator, ROS-free: what the arm is told to do, not whether it may.

`SetpointGenerator` holds the joint and jaw setpoints and moves them: a
hold, a servo stream (with its velocity feed-forward), trapezoidal moves
(the homing move among them), twist integration for `servo_cv`, and the
effort mode in which the setpoint follows the arm.  It applies no rules:
`PSMCore` (sim/psm_core.py) checks every command against the dVRK's
operating state and limits first, and reports what happened.
"""

from __future__ import annotations

import math

import numpy as np

from surgbot.kinematics import psm as kin
from surgbot.sim.psm_trajectory import TrapezoidTrajectory

SERVO_CV_TIMEOUT_S = 0.1      # a twist older than this stops (no runaway on a lost link)
SERVO_STREAM_GAP_S = 0.05     # servo_jp/cp closer than this form a stream: velocity feed-forward


class SetpointGenerator:
    """Joint and jaw setpoints of one PSM and the motion that moves them (see module doc)."""

    def __init__(self):
        self.q_sp: np.ndarray | None = None       # None until the first measurement (brakes hold it)
        self.qd_sp = np.zeros(6)
        self.jaw_sp = 0.0
        self.jaw_d_sp = 0.0
        self.traj: TrapezoidTrajectory | None = None
        self.jaw_traj: TrapezoidTrajectory | None = None
        self.cv: tuple[np.ndarray, np.ndarray, float] | None = None   # (linear, angular, time received)
        self.cv_pose: np.ndarray | None = None
        self.servo_t: float | None = None         # arrival time of the last servo command of a stream
        self.servo_stamp: float | None = None     # its sender's stamp
        self.effort: np.ndarray | None = None     # effort mode when set
        self.jaw_effort: float | None = None
        self.trajectory_ratio = 1.0

    @property
    def moving(self) -> bool:
        """A move (arm or jaw trajectory) is running."""
        return self.traj is not None or self.jaw_traj is not None

    def stop(self) -> None:
        """Drop trajectories, streams and effort mode; the setpoint stays where it is, at rest."""
        self.traj = None
        self.jaw_traj = None
        self.cv = None
        self.cv_pose = None
        self.servo_t = None
        self.qd_sp = np.zeros(6)
        self.jaw_d_sp = 0.0
        self.effort = None
        self.jaw_effort = None

    def hold(self, q_meas: np.ndarray, jaw_meas: float) -> None:
        """The setpoint where the arm is."""
        self.q_sp = q_meas.copy()
        self.jaw_sp = float(jaw_meas)

    # ------------------------------------------------------------- commands
    def servo_to(self, q: np.ndarray, t: float, stamp: float | None) -> None:
        """Jump the setpoint; a steady stream also yields its velocity (feed-forward).

        The sender's stamps time the stream when they are set (transport
        jitter would otherwise show up as velocity noise), the arrival time
        when not; the estimate is averaged over two commands.
        """
        qd = np.zeros(6)
        if self.servo_t is not None and 0.0 < t - self.servo_t <= SERVO_STREAM_GAP_S:
            dt = t - self.servo_t
            if stamp and self.servo_stamp and 0.0 < stamp - self.servo_stamp <= SERVO_STREAM_GAP_S:
                dt = stamp - self.servo_stamp
            qd = 0.5 * (q - self.q_sp) / dt + 0.5 * self.qd_sp
        self.stop()
        self.q_sp = q
        self.qd_sp = qd
        self.servo_t = t
        self.servo_stamp = stamp

    def move_to(self, q: np.ndarray, t: float) -> None:
        """A trapezoidal move at the trajectory ratio's share of the arm's limits."""
        self.stop()
        r = self.trajectory_ratio
        self.traj = TrapezoidTrajectory(self.q_sp, q, kin.MAX_VELOCITY * r, kin.MAX_ACCELERATION * r, t)

    def home(self, start: np.ndarray, t: float) -> None:
        """The homing move from `start`: joints to kin.HOME and the jaw closed, at the full limits."""
        self.stop()
        self.traj = TrapezoidTrajectory(start, kin.HOME, kin.MAX_VELOCITY, kin.MAX_ACCELERATION, t)
        self.jaw_traj = TrapezoidTrajectory([self.jaw_sp], [0.0], [kin.JAW_MAX_VELOCITY],
                                            [kin.JAW_MAX_ACCELERATION], t)

    def twist(self, linear: np.ndarray, angular: np.ndarray, t: float) -> None:
        """Integrate this twist from the next step (a new twist stream starts at the setpoint's pose)."""
        if self.cv is None:
            self.stop()
            self.cv_pose = kin.fk(self.q_sp)
        self.cv = (linear, angular, t)

    def enter_effort(self, effort: np.ndarray, q_meas: np.ndarray, jaw_meas: float) -> None:
        """Effort mode with these joint efforts; a jaw effort already set stays."""
        jaw = self.jaw_effort
        self.stop()
        self.effort = effort
        self.jaw_effort = jaw
        self.hold(q_meas, jaw_meas)

    def jaw_servo(self, value: float) -> None:
        self.jaw_traj = None
        self.jaw_effort = None
        self.jaw_sp, self.jaw_d_sp = value, 0.0

    def jaw_move(self, value: float, t: float) -> None:
        self.jaw_effort = None
        r = self.trajectory_ratio
        self.jaw_traj = TrapezoidTrajectory([self.jaw_sp], [value], [kin.JAW_MAX_VELOCITY * r],
                                            [kin.JAW_MAX_ACCELERATION * r], t)

    def jaw_effort_mode(self, effort: float, jaw_meas: float) -> None:
        self.jaw_traj = None
        self.jaw_effort = effort
        self.jaw_sp, self.jaw_d_sp = float(jaw_meas), 0.0

    # ----------------------------------------------------------------- step
    def sample_moves(self, t: float) -> tuple[bool, bool]:
        """Advance the moves to time t: (arm move finished now, jaw move finished now)."""
        arm_done = jaw_done = False
        if self.traj is not None:
            self.q_sp, self.qd_sp, arm_done = self.traj.sample(t)
            if arm_done:
                self.traj = None
        if self.jaw_traj is not None:
            j, jd, jaw_done = self.jaw_traj.sample(t)
            self.jaw_sp, self.jaw_d_sp = float(j[0]), float(jd[0])
            if jaw_done:
                self.jaw_traj = None
        return arm_done, jaw_done

    def advance_streams(self, t: float, dt: float, q_meas: np.ndarray, jaw_meas: float) -> str | None:
        """Twist integration, end of a servo stream, effort mode; the reason a twist stopped on an error."""
        error = self._integrate_twist(t, dt) if self.cv is not None else None
        if self.servo_t is not None and t - self.servo_t > SERVO_STREAM_GAP_S:
            self.servo_t = None                   # stream ended: hold still
            self.qd_sp = np.zeros(6)
        if self.effort is not None:               # effort mode: the setpoint is where the arm is
            self.q_sp, self.qd_sp = q_meas.copy(), np.zeros(6)
        if self.jaw_effort is not None:
            self.jaw_sp, self.jaw_d_sp = jaw_meas, 0.0
        return error

    def _integrate_twist(self, t: float, dt: float) -> str | None:
        v, w, t_cmd = self.cv
        if t - t_cmd > SERVO_CV_TIMEOUT_S:
            self.cv, self.cv_pose = None, None
            self.qd_sp = np.zeros(6)
            return None
        T = self.cv_pose.copy()
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
            self.cv, self.cv_pose = None, None
            self.qd_sp = np.zeros(6)
            return f"servo_cv stopped: {exc}"
        if dt > 0:
            self.qd_sp = (res.q - self.q_sp) / dt
        self.q_sp = res.q
        self.cv_pose = T
        return None
