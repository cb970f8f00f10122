"""Teleop mapping core: operator hands and buttons -> PSM servo_cp + jaw, scope zoom and mode requests.

ROS-free: state in, command out, the clock passed in.  The right hand
drives the PSM as a dVRK master drives its PSM:

* clutch = right squeeze; released, nothing is commanded (the PSM holds);
* translation relative to the clutch-in pose, scaled (`scale`) and expressed
  in the endoscope camera frame: the operator frame (x forward, y left,
  z up: what the operator faces, the video panel) maps to the camera's
  optical frame (x right, y down, z forward), so a hand moving right in front
  of the video moves the tool right in the image.  The camera pose
  (`/endoscope/measured_cp`) and the PSM base pose are taken at clutch-in,
  so a moving scope does not drag the tool;
* orientation: the hand's rotation since clutch-in, re-expressed the same
  way, applied to the tool's clutch-in orientation;
* trigger -> jaw (open released, closed pressed) with the dVRK's rate
  limits (720 deg/s, 36 deg/s after clutch-in until the jaw has caught up),
  never more than `jaw_lead_max_rad` from the measured jaw (none before it
  is measured);
* clutch-in starts from the last command (or measured_cp if the arm is
  elsewhere): no jump on re-clutch.

Safety: the tool tip stays in a box of PSM1_base, each command moves at most
`max_step_m` / `max_step_rad`, non-finite or non-rigid poses are rejected,
and no valid sample for `link_timeout_s` stops commanding until the clutch
has been released and pressed again.  The left hand's deadman and the head
go to the holder directly (`/teleop/buttons`, `/teleop/head`); this core
adds the left-stick zoom (`/endoscope/servo_cv` insertion) and the A/B mode
requests (TOOL_FOLLOW / HOLD).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from surgbot import geometry
from surgbot.results import Result
from surgbot.safety import checks
from surgbot.safety.filter import PoseLimiter
from surgbot.teleop import protocol as P
from surgbot.teleop.config import MapperConfig

# operator frame (x forward, y left, z up) -> camera optical frame (x right, y down, z forward)
OPERATOR_TO_CAMERA = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
MAX_DT_S = 0.05               # jaw integration step bound (a late sample must not open the jaw at once)
RIGID_TOL = 1e-3
# At clutch-in the jaw command carries on from the last one while it is no further from the measured jaw
# than this mapper lets it lead (`jaw_lead_max_rad`, plus this rounding margin): a squeeze on a grasped
# needle is such a lead, and resetting it to the measured jaw would drop the grip force.  Further off,
# something else moved the jaw, the last command is stale and the jaw command restarts from the measured jaw.
CLUTCH_JAW_KEEP_MARGIN_RAD = 1e-6


class State(StrEnum):
    WAITING = "WAITING"           # camera or PSM pose not known yet
    READY = "READY"               # clutch released: nothing commanded
    FOLLOWING = "FOLLOWING"       # clutched: commanding the PSM
    NEED_CLUTCH = "NEED_CLUTCH"   # after a link loss or PSM state change: release the clutch first


@dataclass(frozen=True)
class Command:
    servo_cp: np.ndarray | None = None       # 4x4 tool pose in PSM1_base
    jaw: float | None = None                 # rad
    insertion_m_s: float | None = None       # scope zoom, /endoscope/servo_cv linear.z
    actions: tuple[str, ...] = ()            # "follow_tool_on", "follow_tool_off", "hold"


def _rigid(T) -> np.ndarray | None:
    """A finite 4x4 whose rotation is a rotation (the ground-layer checks), else None."""
    m = checks.finite("pose", T, 16)
    if not m or np.shape(T) != (4, 4):
        return None
    M = m.value.reshape(4, 4)
    if not checks.rotation_matrix("pose rotation", M[:3, :3], tol=RIGID_TOL):
        return None
    return M


class TeleopMapperCore:
    def __init__(self, cfg: MapperConfig, psm_base_world: np.ndarray):
        base = _rigid(psm_base_world)
        if base is None:
            raise ValueError("psm_base_world must be a finite rigid 4x4")
        self.cfg = cfg
        self.R_world_base = base[:3, :3]
        # the ground-layer limiter (surgbot.safety): box and per-command step, causes counted and
        # reported at most once a second per cause through `events`
        self.limiter = PoseLimiter(cfg.workspace_min_m, cfg.workspace_max_m, cfg.max_step_m, cfg.max_step_rad,
                                   report=lambda cause, text: self._event("warn", f"safety filter: {text}"))
        self.safety_block = ""                            # why the safety state forbids commanding ("" = allowed)
        self.now = 0.0
        self.state = State.WAITING
        self.counters: Counter = Counter()
        self.events: list[tuple[str, str]] = []
        self.camera: tuple[np.ndarray, float] | None = None      # (R_world_cam, t)
        self.measured: np.ndarray | None = None                   # T_base_tool
        self.jaw_measured: float | None = None
        self.psm_enabled = True
        self.endoscope_mode = ""
        self.last_cmd: np.ndarray | None = None
        self.jaw_cmd: float | None = None
        self._jaw_slow = False
        self._ref: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # hand0, tool0, R_base_cam
        self._last_t: float | None = None                 # stamp of the newest sample
        self._last_rx: float | None = None                # when it was taken
        self._prev_buttons = [0] * P.N_BUTTONS
        self._last_hand: np.ndarray | None = None         # position of the last accepted hand pose

    # ------------------------------------------------------------------ state inputs
    def _reject(self, reason: str) -> Result:
        self.counters[f"rejected_{reason}"] += 1
        return Result.failure(reason)

    def _event(self, level: str, text: str) -> None:
        self.events.append((level, text))

    def _set_state(self, state: State, why: str) -> None:
        if state != self.state:
            self._event("info", f"{self.state.value} -> {state.value}: {why}")
            self.state = state

    def set_camera(self, T_world_cam, t: float) -> Result:
        m = _rigid(T_world_cam)
        if m is None:
            return self._reject("camera_pose")
        self.camera = (m[:3, :3].copy(), float(t))
        self._ready_check()
        return Result.success()

    def set_measured(self, T_base_tool) -> Result:
        m = _rigid(T_base_tool)
        if m is None:
            return self._reject("measured_cp")
        self.measured = m
        self._ready_check()
        return Result.success()

    def set_jaw_measured(self, q: float) -> Result:
        if not math.isfinite(q):
            return self._reject("jaw_measured")
        self.jaw_measured = float(q)
        return Result.success()

    def set_psm_enabled(self, enabled: bool) -> None:
        if self.psm_enabled and not enabled and self.state == State.FOLLOWING:
            self._set_state(State.NEED_CLUTCH, "PSM left ENABLED")
        self.psm_enabled = bool(enabled)

    def _ready_check(self) -> None:
        if self.state == State.WAITING and self.camera is not None and self.measured is not None:
            self._set_state(State.READY, "camera and PSM poses known")

    # ------------------------------------------------------------------ safety
    def set_safety(self, block: str) -> None:
        """`block`: why `/safety/state` forbids commanding ("" = allowed).

        Entering a block stops commanding at once and needs a fresh clutch (release, press) once the
        state is OK again (after an explicit `/safety/reset`): the operator re-enables, nothing resumes
        by itself.
        """
        if block and not self.safety_block:
            self.counters["safety_stops"] += 1
            if self.state == State.FOLLOWING or (self.state == State.READY and self._prev_buttons[P.BTN_CLUTCH]):
                self._set_state(State.NEED_CLUTCH, f"safety: {block}")
            else:
                self._event("warn", f"safety: {block}")
        elif not block and self.safety_block:
            self._event("info", "safety state OK again: release and press the clutch to resume")
        self.safety_block = block

    # ------------------------------------------------------------------ link
    def tick(self, t: float) -> None:
        """Watchdog: no sample taken for `link_timeout_s` (receipt clock) stops commanding."""
        if self._last_rx is not None and t - self._last_rx > self.cfg.link_timeout_s:
            self.link_lost(f"no valid xr sample for {1e3 * (t - self._last_rx):.0f} ms")

    def link_lost(self, why: str) -> None:
        self._last_t = self._last_rx = None
        self._last_hand = None
        self.counters["link_lost"] += 1
        if self.state == State.FOLLOWING or (self.state == State.READY and self._prev_buttons[P.BTN_CLUTCH]):
            self._set_state(State.NEED_CLUTCH, why)
        self._prev_buttons = [0] * P.N_BUTTONS

    # ------------------------------------------------------------------ samples
    def sample(self, t: float, right_pose, buttons, axes, received: float | None = None) -> Command:
        """One operator sample: right hand pose (operator frame, or None), `/teleop/buttons` layout.

        `t` is when the operator's sample was taken (the console's stamp): gaps in the stream are
        judged on it; `received` (default `t`) is when this process took it, for the watchdog.
        """
        self.now = float(t if received is None else received)
        b = [int(bool(x)) for x in list(buttons)[:P.N_BUTTONS]] + [0] * max(0, P.N_BUTTONS - len(buttons))
        a = [float(x) for x in list(axes)[:P.N_AXES]] + [0.0] * max(0, P.N_AXES - len(axes))
        if not all(math.isfinite(x) and -1.0 <= x <= 1.0 for x in a):
            self._reject("axes")
            return Command()
        hand = _rigid(right_pose) if right_pose is not None else None
        if right_pose is not None and hand is None:
            self._reject("hand_pose")
            return Command()
        if self._last_t is not None and t - self._last_t > self.cfg.link_timeout_s:
            self.link_lost(f"{1e3 * (t - self._last_t):.0f} ms since the last sample")   # before any tick saw it
        if hand is not None and self.cfg.max_hand_jump_m is not None and self._last_hand is not None:
            jump = checks.step_within("hand", self._last_hand, hand[:3, 3], self.cfg.max_hand_jump_m)
            if not jump:                         # a glitch of the tracking: not a motion to follow
                self.limiter.refuse(jump.reason, self.now)
                self._reject("hand_jump")
                return Command()
        if hand is not None:
            self._last_hand = hand[:3, 3].copy()
        dt = 0.0 if self._last_t is None else min(MAX_DT_S, max(0.0, t - self._last_t))
        self._last_t = max(float(t), self._last_t or float(t))
        self._last_rx = float(t if received is None else received)
        rise = [x and not p for x, p in zip(b, self._prev_buttons, strict=True)]
        self._prev_buttons = b
        actions = []
        if rise[P.BTN_A]:
            actions.append("follow_tool_off" if self.endoscope_mode == "TOOL_FOLLOW" else "follow_tool_on")
        if rise[P.BTN_B]:
            actions.append("hold")
        zoom = self._zoom(a[P.AX_LY], bool(b[P.BTN_DEADMAN]))

        clutch = a[P.AX_RSQUEEZE] > self.cfg.clutch_threshold or bool(b[P.BTN_CLUTCH])
        pose = jaw = None
        if self.state == State.NEED_CLUTCH and not clutch:
            self._set_state(State.READY, "clutch released")
        elif self.state == State.READY and clutch and hand is not None:
            self._clutch_in(hand, t)
        elif self.state == State.FOLLOWING and (not clutch or hand is None):
            self._set_state(State.READY, "clutch released" if not clutch else "right hand not tracked")
        if self.state == State.FOLLOWING and self.safety_block:
            self._set_state(State.NEED_CLUTCH, f"safety: {self.safety_block}")
        if self.state == State.FOLLOWING:
            pose = self._follow(hand)
            # a jaw never measured is never commanded: a blind value could be far from where it is
            jaw = None if self.jaw_measured is None else self._jaw(a[P.AX_RTRIG], dt)
        if self.safety_block:      # nothing that moves a robot; a request to hold the scope still goes
            self.counters["safety_blocked_samples"] += 1
            return Command(actions=tuple(x for x in actions if x == "hold"))
        return Command(servo_cp=pose, jaw=jaw, insertion_m_s=zoom, actions=tuple(actions))

    def _zoom(self, stick_y: float, deadman: bool) -> float | None:
        dz = self.cfg.stick_deadzone
        if deadman or abs(stick_y) <= dz:
            return None
        # stick forward (-1) pushes the scope in; rescaled so the speed starts at 0 past the dead zone
        return -math.copysign((abs(stick_y) - dz) / (1.0 - dz), stick_y) * self.cfg.zoom_speed_m_s

    def _clutch_in(self, hand: np.ndarray, t: float) -> None:
        if self.safety_block:      # refused; and released first once allowed again (no resume by itself)
            self._set_state(State.NEED_CLUTCH, f"clutch ignored: safety: {self.safety_block}")
            return
        if not self.psm_enabled:
            self._event("warn", "clutch ignored: PSM not ENABLED")
            return
        if self.camera is None or t - self.camera[1] > self.cfg.camera_timeout_s:
            self._event("warn", "clutch ignored: no recent /endoscope/measured_cp")
            return
        start = self.measured
        if self.last_cmd is not None and np.linalg.norm(self.last_cmd[:3, 3] - start[:3, 3]) \
                <= self.cfg.max_setpoint_offset_m:
            start = self.last_cmd
        R_base_cam = self.R_world_base.T @ self.camera[0]
        self._ref = (hand.copy(), start.copy(), R_base_cam)
        self.last_cmd = start.copy()
        if self.jaw_measured is None:
            self.jaw_cmd = None                  # starts where the jaw is once it is measured (_jaw)
        elif self.jaw_cmd is None or \
                abs(self.jaw_cmd - self.jaw_measured) > self.cfg.jaw_lead_max_rad + CLUTCH_JAW_KEEP_MARGIN_RAD:
            self.jaw_cmd = self.jaw_measured
        self._jaw_slow = True
        self.counters["clutch_in"] += 1
        self._set_state(State.FOLLOWING, "clutch pressed")

    def _follow(self, hand: np.ndarray) -> np.ndarray:
        hand0, tool0, R_bc = self._ref
        c = self.cfg
        d_cam = OPERATOR_TO_CAMERA @ (hand[:3, 3] - hand0[:3, 3])
        p = tool0[:3, 3] + c.scale * (R_bc @ d_cam)
        R_rel_op = hand[:3, :3] @ hand0[:3, :3].T
        R_rel_base = R_bc @ OPERATOR_TO_CAMERA @ R_rel_op @ OPERATOR_TO_CAMERA.T @ R_bc.T
        R = R_rel_base @ tool0[:3, :3]
        prev = self.last_cmd
        clipped, R, causes = self.limiter.limit(p, R, prev[:3, 3], prev[:3, :3], self.now)
        if checks.CAUSE_WORKSPACE in causes:
            self.counters["workspace_clipped"] += 1
        self.counters["step_limited"] += sum(1 for x in causes if x != checks.CAUSE_WORKSPACE)
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = geometry.quat_to_matrix(geometry.matrix_to_quat(R)), clipped
        self.last_cmd = out
        self.counters["commands"] += 1
        return out

    def _jaw(self, trigger: float, dt: float) -> float:
        c = self.cfg
        target = c.jaw_open_rad + min(1.0, max(0.0, trigger)) * (c.jaw_closed_rad - c.jaw_open_rad)
        rate = math.radians(c.jaw_rate_after_clutch_deg_s if self._jaw_slow else c.jaw_rate_deg_s)
        if self.jaw_cmd is None:
            self.jaw_cmd = self.jaw_measured
        err = target - self.jaw_cmd
        cmd = self.jaw_cmd + max(-rate * dt, min(rate * dt, err))
        # the rate limit is in our time: an arm that runs slower (a loaded twin) or a jaw held by what it
        # grips would fall behind it until the arm's tracking-error fault; the lead over the measured jaw
        # is bounded instead (it also bounds the squeeze on a gripped object, as that fault would)
        lo, hi = self.jaw_measured - c.jaw_lead_max_rad, self.jaw_measured + c.jaw_lead_max_rad
        if not lo <= cmd <= hi:
            self.counters["jaw_lead_limited"] += 1
            cmd = min(hi, max(lo, cmd))
        self.jaw_cmd = cmd
        if self._jaw_slow and abs(target - self.jaw_cmd) < c.jaw_caught_up_rad:
            self._jaw_slow = False
        return self.jaw_cmd

    def diagnostics(self) -> dict:
        return {"state": self.state.value, "safety": self.safety_block or "OK",
                **{k: int(v) for k, v in self.counters.items()},
                **{f"safety_filter_{k}": int(v) for k, v in self.limiter.log.counts.items()}}
