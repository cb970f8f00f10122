"""The endoscope holder core: modes, commands and fulcrum registration (no ROS).

State in (measured joint positions, commands, head/button/PSM inputs, each
with a timestamp from the caller's clock), joint command out (`step(t)`).

`EndoscopeHolderCore` checks the inputs and commands; its base
`HolderControlLoop` (holder_loop) runs one control period from the mode
machine, the view shaper, the pivot IK with the joint servo and the follow
modes' goals.

Bad input (non-finite values, wrong frame, unknown joints) is refused with a
reason and changes nothing.  Every command returns a `HolderResult` (a
`surgbot.results.Result` that also unpacks as `(ok, reason)`); a refusal's
reason, or a warning on success (e.g. "insertion clipped"), is in `reason`,
a payload in `value`.  What the node should log is queued in `events` as
(level, text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgbot import contract
from surgbot.control import holder_inputs as inputs
from surgbot.control.holder_config import HolderConfig
from surgbot.control.holder_loop import HolderControlLoop
from surgbot.control.holder_modes import FOLLOW_FROM, HolderResult, State
from surgbot.geometry import quat_to_matrix

MODES = contract.ENDOSCOPE_MODES
IDLE, HOLD, TELEOP, HEAD_FOLLOW, TOOL_FOLLOW, FAULT = State

__all__ = ["EndoscopeHolderCore", "HolderControlLoop", "HolderConfig", "HolderResult", "State", "MODES",
           "IDLE", "HOLD", "TELEOP", "HEAD_FOLLOW", "TOOL_FOLLOW", "FAULT"]


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
