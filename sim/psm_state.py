"""The dVRK PSM's operating-state machine and command rules, ROS-free.

`PSMCore` (sim/psm_core.py, the motion commands on top of this module's
`PSMStateMachine`) is what the PSM twin runs every physics step: it takes commands
(already unpacked from ROS messages into plain Python values), checks them
against the dVRK's rules (FACTS.md: accepted commands per operating state,
motion only when ENABLED and homed, finite values, joint limits, reachable
poses), hands the accepted ones to its `SetpointGenerator` (sim/psm_motion.py:
trajectories, servo streams, twist integration, effort mode) and watches the
tracking error.  The clock is passed in, so a
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

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from surgbot.contract import PSM_JOINT_NAMES
from surgbot.kinematics import psm as kin
from surgbot.results import Result
from surgbot.sim.psm_motion import SetpointGenerator


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
LIMIT_MARGIN = 5e-4
# Unpowered (DISABLED, FAULT) the twin's brakes servo to where the arm was left; a joint pushed
# further than this (rad; m for the insertion) is held where it now is instead.  A real brake
# slips under a force above its own and a limp, counterbalanced dVRK arm stays where it is pushed:
# neither springs back.  Without it the arm, pushed past a tracking FAULT by a force above the
# actuators', snapped back to the FAULT-time pose once the push ended (measured: 61 mm at the tip).
BRAKE_SLIP = np.array([0.005, 0.005, 0.001, 0.02, 0.02, 0.02])


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
class PSMStateMachine:
    """The dVRK arm's operating state (power-up, homing, pause, FAULT on a tracking error, brakes
    when unpowered) around a `SetpointGenerator`; `PSMCore` adds the motion commands and settings."""

    power_up_s: float = POWER_UP_S
    state: State = DISABLED
    is_homed: bool = False
    is_busy: bool = False
    outbox: list = field(default_factory=list)   # (kind, payload): error/warning/status/goal_reached
    state_changed: bool = True

    def __post_init__(self):
        self.motion = SetpointGenerator()          # the setpoints; this class decides what may move them
        self.q_meas = np.zeros(6)
        self.jaw_meas = 0.0
        self.t = 0.0
        self._power_up_until: float | None = None
        self._home_after_power_up = False
        self._homing = False
        self._homing_done_at: float | None = None
        self._at_limit = np.zeros(6, bool)

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

    def _stop_motion(self, interrupted: bool, change=None) -> None:
        """Drop trajectories and streams (or make `change`, a generator call that drops them itself:
        a servo stream's velocity needs the stream it ends); a running move reports goal_reached false."""
        if self.motion.moving and interrupted and not self._homing:
            self.outbox.append(("goal_reached", False))
        (change or self.motion.stop)()
        if self._homing:
            self._homing = False
            self._homing_done_at = None
        if self.state in (ENABLED, PAUSED) and not self._power_up_until:
            self._set_state(busy=False)

    def _hold_measured(self) -> None:
        self.motion.hold(self.q_meas, self.jaw_meas)

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
        start = self.motion.q_sp if self.motion.q_sp is not None else self.q_meas
        self.motion.home(start, self.t)
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

    # ------------------------------------------------------------------ step
    def step(self, t: float, q_meas, qd_meas=None, jaw_meas: float = 0.0) -> Setpoint:
        """Advance to time t with the measured joints; returns the setpoint to servo to."""
        dt = max(t - self.t, 0.0)
        self.t = t
        self.q_meas = np.asarray(q_meas, float).copy()
        self.jaw_meas = float(jaw_meas)
        m = self.motion
        if m.q_sp is None:                        # first step: brakes hold the start pose
            self._hold_measured()

        if self._power_up_until is not None and t >= self._power_up_until:
            self._power_up_until = None
            self._set_state(ENABLED, busy=False)
            self._say("status", "enabled")
            if self._home_after_power_up:
                self._home_after_power_up = False
                self._start_homing()

        arm_done, jaw_done = m.sample_moves(t)
        if (arm_done or jaw_done) and not m.moving and not self._homing:   # the last of arm and jaw
            self.outbox.append(("goal_reached", True))
        if not m.moving and self.is_busy and not self._homing and self._power_up_until is None:
            self._set_state(busy=False)

        if self._homing and not m.moving:
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

        if (stopped := m.advance_streams(t, dt, self.q_meas, self.jaw_meas)) is not None:
            self.error(stopped)
        powered = self.state in (ENABLED, PAUSED) and self._power_up_until is None
        if powered:
            self._check_tracking()
        elif self._power_up_until is None:
            self._brakes_slip()
        self._check_limits()
        return Setpoint(m.q_sp.copy(), m.qd_sp.copy(), m.jaw_sp, m.jaw_d_sp,
                        powered or self._power_up_until is not None,
                        None if m.effort is None else m.effort.copy(), m.jaw_effort)

    def _check_tracking(self) -> None:
        err = np.abs(self.motion.q_sp - self.q_meas)
        over = err > kin.TRACKING_TOLERANCE
        jaw_err = abs(self.motion.jaw_sp - self.jaw_meas)
        if over.any() or jaw_err > kin.JAW_TRACKING_TOLERANCE:
            which = [f"{PSM_JOINT_NAMES[i]} error {err[i]:.3f} > {kin.TRACKING_TOLERANCE[i]}"
                     for i in np.flatnonzero(over)]
            if jaw_err > kin.JAW_TRACKING_TOLERANCE:
                which.append(f"jaw error {jaw_err:.3f} > {kin.JAW_TRACKING_TOLERANCE}")
            self._stop_motion(interrupted=True)
            self._hold_measured()
            self._set_state(FAULT, busy=False)
            self.error("PID tracking error, arm in FAULT (send disable to clear): " + "; ".join(which))

    def _brakes_slip(self) -> None:
        """Unpowered: a joint pushed past BRAKE_SLIP is held where it now is (see BRAKE_SLIP)."""
        m = self.motion
        slipped = np.abs(self.q_meas - m.q_sp) > BRAKE_SLIP
        if slipped.any():
            m.q_sp = np.where(slipped, self.q_meas, m.q_sp)

    def _check_limits(self) -> None:
        at = (self.q_meas <= kin.LOWER + LIMIT_MARGIN) | (self.q_meas >= kin.UPPER - LIMIT_MARGIN)
        for i in np.flatnonzero(at & ~self._at_limit):
            self._say("warning", f"joint {PSM_JOINT_NAMES[i]} at its position limit ({self.q_meas[i]:.4f})")
        self._at_limit = at
