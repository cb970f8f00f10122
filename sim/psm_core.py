"""`PSMCore`: the dVRK PSM's motion commands and settings on top of its state machine, ROS-free.

The CRTK commands the twin serves (servo/move jp, jr, cp; servo_cv; the effort
mode servo_jf / servo_cf / free; the jaw's; hold; the settings) each checked
against the dVRK's rules before anything moves: ENABLED, powered up, homed,
not homing, finite input of the right size, reachable poses.  A refused
command is reported on the error channel and changes nothing.  The operating
states, the state commands, tracking and limit checks are
`sim.psm_state.PSMStateMachine`; the setpoints come from
`sim.psm_motion.SetpointGenerator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES
from surgbot.kinematics import psm as kin
from surgbot.results import Result
from surgbot.sim import psm_inputs as inputs
from surgbot.sim.psm_state import ENABLED, MOTION_COMMANDS, SETTINGS, PSMStateMachine


@dataclass
class PSMCore(PSMStateMachine):
    """Operating state, setpoints and checks of one PSM (see module doc): the motion commands and
    settings of the CRTK interface, each checked against the dVRK's rules before it moves anything."""

    def __post_init__(self):
        super().__post_init__()
        self.gravity_compensation = True
        self.cf_orientation_absolute = False
        self.tool_present = True

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

    def _motion_command(self, what: str, parse, act) -> Result:
        """`act(parse())` when motion is allowed now and `parse` accepts the input (it raises ValueError
        with the reason otherwise); else the refusal, on the error channel, and nothing changed."""
        if (no := self._refused(what)) is not None:
            return no
        try:
            value = parse()
        except ValueError as exc:
            return self.error(str(exc))
        act(value)
        return Result.success()

    def _pose_ik(self, what: str, pose) -> np.ndarray:
        """Joints reaching `pose` (seeded by the setpoint); ValueError with the reason otherwise."""
        try:
            T = kin.check_pose(pose, what)
            res = kin.ik(T, seed=self.motion.q_sp)
        except kin.KinematicsError as exc:
            raise ValueError(f"{what} rejected: {exc}") from None
        if res.insertion_clamped:
            self._say("warning", f"{what}: insertion clamped to keep the wrist "
                                 f"{kin.MIN_WRIST_DISTANCE * 1e3:.0f} mm from the RCM")
        return res.q

    def _servo_to(self, q: np.ndarray, stamp: float | None) -> None:
        self._stop_motion(interrupted=True, change=lambda: self.motion.servo_to(q, self.t, stamp))

    def _start_move(self, q: np.ndarray) -> None:
        self._stop_motion(interrupted=True, change=lambda: self.motion.move_to(q, self.t))
        self._set_state(busy=True)

    def servo_jp(self, names, positions, stamp: float | None = None) -> Result:
        return self._motion_command("servo_jp", lambda: inputs.joint_positions("servo_jp", names, positions),
                                    lambda q: self._servo_to(q, stamp))

    def servo_jr(self, names, positions) -> Result:
        """Relative servo: setpoint + delta, applied like servo_jp."""
        return self._motion_command(
            "servo_jr", lambda: inputs.joint_goal("servo_jr", names, positions, self.motion.q_sp),
            lambda q: self._servo_to(q, None))

    def move_jp(self, names, positions) -> Result:
        return self._motion_command("move_jp", lambda: inputs.joint_positions("move_jp", names, positions),
                                    self._start_move)

    def move_jr(self, names, positions) -> Result:
        """Relative move: trajectory to setpoint + delta."""
        return self._motion_command(
            "move_jr", lambda: inputs.joint_goal("move_jr", names, positions, self.motion.q_sp), self._start_move)

    def servo_cp(self, pose, stamp: float | None = None) -> Result:
        return self._motion_command("servo_cp", lambda: self._pose_ik("servo_cp", pose),
                                    lambda q: self._servo_to(q, stamp))

    def move_cp(self, pose) -> Result:
        return self._motion_command("move_cp", lambda: self._pose_ik("move_cp", pose), self._start_move)

    def servo_cv(self, linear, angular) -> Result:
        return self._motion_command("servo_cv", lambda: inputs.twist("servo_cv", linear, angular),
                                    lambda vw: self._twist(*vw))

    def _twist(self, v: np.ndarray, w: np.ndarray) -> None:
        if self.motion.cv is None:             # a new twist stream: whatever ran before stops
            self._stop_motion(interrupted=True)
        self.motion.twist(v, w, self.t)

    def servo_jf(self, names, efforts) -> Result:
        """Effort mode: apply these joint efforts (N m, N) until a position command."""
        return self._motion_command("servo_jf", lambda: inputs.efforts("servo_jf", names, efforts),
                                    self._enter_effort_mode)

    def servo_cf(self, wrench, body: bool = False) -> Result:
        """Effort mode from a tool-tip wrench (force, torque): tau = J^T w.

        `body`: the wrench is in the tool-tip frame (body/servo_cf) unless
        `set_cf_orientation_absolute(True)`; otherwise in PSM1_base (spatial/servo_cf)."""
        what = "body/servo_cf" if body else "spatial/servo_cf"
        return self._motion_command(what, lambda: self._wrench_efforts(what, wrench, body), self._enter_effort_mode)

    def _wrench_efforts(self, what: str, wrench, body: bool) -> np.ndarray:
        w = inputs.wrench(what, wrench)
        if body and not self.cf_orientation_absolute:
            R = kin.fk(self.q_meas)[:3, :3]
            w = np.concatenate([R @ w[:3], R @ w[3:]])
        return inputs.effort_range(what, kin.jacobian(self.q_meas).T @ w, PSM_JOINT_NAMES, inputs.MAX_EFFORT,
                                   "joint efforts")

    def free(self) -> Result:
        """The dVRK's `free`: effort mode with zero effort (the arm is counterbalanced: it stays, movable by hand)."""
        return self._motion_command("free", lambda: np.zeros(6), self._free)

    def _free(self, effort: np.ndarray) -> None:
        self._enter_effort_mode(effort)
        self.motion.jaw_effort = 0.0

    def _enter_effort_mode(self, effort: np.ndarray) -> None:
        self._stop_motion(interrupted=True,
                          change=lambda: self.motion.enter_effort(effort, self.q_meas, self.jaw_meas))

    def jaw_servo_jp(self, names, positions) -> Result:
        return self._motion_command("jaw/servo_jp", lambda: inputs.jaw_position("jaw/servo_jp", names, positions),
                                    self.motion.jaw_servo)

    def jaw_move_jp(self, names, positions) -> Result:
        return self._motion_command("jaw/move_jp", lambda: inputs.jaw_position("jaw/move_jp", names, positions),
                                    self._jaw_move)

    def _jaw_move(self, value: float) -> None:
        self.motion.jaw_move(value, self.t)
        self._set_state(busy=True)

    def jaw_servo_jf(self, names, efforts) -> Result:
        """Jaw effort (N m) until the next jaw position command."""
        return self._motion_command(
            "jaw/servo_jf",
            lambda: inputs.efforts("jaw/servo_jf", names, efforts, (PSM_JAW_NAME,), np.array([inputs.JAW_MAX_EFFORT])),
            lambda e: self.motion.jaw_effort_mode(float(e[0]), self.jaw_meas))

    def hold(self) -> Result:
        return self._motion_command("hold", lambda: None, lambda _: self._stop_motion(interrupted=True))

    # ------------------------------------------------------------ settings
    def set_trajectory_ratio(self, ratio) -> Result:
        """trajectory_j/set_ratio: scale of the move velocity/acceleration limits, in (0, 1]."""
        try:
            r = float(ratio)
        except (TypeError, ValueError):
            return self.error(f"trajectory_j/set_ratio rejected: {ratio!r} is not a number")
        if not (math.isfinite(r) and 0.0 < r <= 1.0):
            return self.error(f"trajectory_j/set_ratio rejected: {r} not in (0, 1]")
        self.motion.trajectory_ratio = r
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

    # ------------------------------------------------------------ dispatch
    def command(self, kind: str, *args) -> Result:
        """One command by kind name (state, servo_jp, ..., hold, settings); its Result."""
        if kind == "state":
            return self.state_command(*args)
        if kind in MOTION_COMMANDS or kind in SETTINGS:
            return getattr(self, kind)(*args)
        return self.error(f"unknown command kind {kind!r}")
