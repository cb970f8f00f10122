"""Policy execution core (ROS-free): chunk scheduling, blending of overlapping chunks, safety gate.

Plain state in, command out, clock passed in, so the `policy_node`, the
in-process evaluation and the tests step the same object.

* Time is counted in control ticks (15 Hz).  A chunk answers the observation
  taken at tick `t_obs`: its action i is the command for tick `t_obs + i`
  (LeRobot's action chunk starts at the observed frame), so the entries for
  ticks that passed while the server was thinking are skipped.
* A new chunk is asked for when `request_fraction` of the current one is
  consumed (LeRobot async inference: at <= 50 % left); where the new chunk
  overlaps what is left of the old one they are blended
  `(1 - w) old + w new` (w = 0.7; the 6D rotation is re-orthonormalised).
* Every command passes the gate: non-finite or degenerate -> HOLD;
  outside the workspace box -> clipped to it; a step larger than the per-tick
  limits -> shortened; no chunk, a chunk older than `max_chunk_age_s`, a
  stale PSM state, or a server error/timeout -> HOLD (the last commanded pose
  is repeated; nothing is sent if nothing was commanded yet, so the arm keeps
  its own setpoint).  Each reason is counted and reported.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from surgbot.config import param
from surgbot.geometry import matrix_to_rot6d, rot6d_to_matrix, rotation_angle
from surgbot.results import Result

POSE_DIM = 10
JAW_LIMITS_RAD = (-0.698, 1.396)     # FACTS.md, dVRK jaw


class State(str, Enum):  # noqa: UP042 - the convention of surgbot.results
    DISABLED = "DISABLED"   # publishes nothing
    RUNNING = "RUNNING"     # executing a chunk
    HOLD = "HOLD"           # enabled, repeating the last command (reason in `hold_reason`)


@dataclass(frozen=True)
class PolicyExecConfig:
    rate_hz: float = param(15.0, "control rate, Hz (the policy's fps)", lo=1.0, hi=100.0)
    request_fraction: float = param(0.5, "ask for a new chunk once this fraction of the current one is played",
                                    lo=0.05, hi=1.0)
    blend_new_weight: float = param(0.7, "weight of the new chunk where chunks overlap", lo=0.0, hi=1.0)
    workspace_min_m: tuple[float, ...] = param((-0.10, -0.10, -0.22), "workspace box, lower corner in PSM1_base, m")
    workspace_max_m: tuple[float, ...] = param((0.10, 0.10, -0.04), "workspace box, upper corner in PSM1_base, m")
    max_step_m: float = param(0.006, "largest tool-tip translation per tick, m", lo=1e-4, hi=0.05)
    max_step_rad: float = param(0.12, "largest tool rotation per tick, rad", lo=1e-3, hi=1.0)
    max_jaw_step_rad: float = param(0.2, "largest jaw change per tick, rad", lo=1e-3, hi=1.5)
    max_chunk_age_s: float = param(1.5, "a chunk whose observation is older than this is not played", lo=0.05, hi=10.0)
    server_timeout_s: float = param(0.5, "no chunk this long after asking: HOLD", lo=0.05, hi=10.0)
    max_state_age_s: float = param(0.25, "PSM pose older than this: HOLD", lo=0.01, hi=5.0)

    def __post_init__(self):
        lo, hi = np.asarray(self.workspace_min_m, float), np.asarray(self.workspace_max_m, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError("workspace_min_m/workspace_max_m must be 3 values with min < max")
        for name in ("rate_hz", "max_step_m", "max_step_rad", "max_jaw_step_rad", "max_chunk_age_s",
                     "server_timeout_s", "max_state_age_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0")
        if not (0.0 < self.request_fraction <= 1.0 and 0.0 <= self.blend_new_weight <= 1.0):
            raise ValueError("request_fraction must be in (0, 1], blend_new_weight in [0, 1]")


def blend_pose10(old: np.ndarray, new: np.ndarray, w_new: float) -> np.ndarray:
    """Weighted blend of 10-d poses; the rotation part is brought back onto SO(3)."""
    out = (1.0 - w_new) * np.asarray(old, float) + w_new * np.asarray(new, float)
    out[3:9] = matrix_to_rot6d(rot6d_to_matrix(out[3:9]))
    return out


@dataclass
class TickOutput:
    command: np.ndarray | None     # 10-d pose to publish (None: publish nothing)
    state: State
    request_chunk: bool            # the node should send the current observation to the server now
    reason: str = ""               # why HOLD, or what the gate changed


@dataclass
class _Plan:
    start_tick: int                # tick of actions[0]
    actions: np.ndarray            # [N, 10]
    obs_time: float                # clock time of the observation it answers
    length: int                    # chunk length H (for the request rule)


@dataclass
class PolicyExecutor:
    config: PolicyExecConfig = field(default_factory=PolicyExecConfig)

    def __post_init__(self):
        self.state = State.DISABLED
        self.hold_reason = "disabled"
        self.instruction = ""
        self.tick_index = 0
        self.rejections: Counter[str] = Counter()
        self._plan: _Plan | None = None
        self._last_command: np.ndarray | None = None
        self._measured: np.ndarray | None = None
        self._measured_time = -math.inf
        self._request: tuple[int, float] | None = None    # (tick, time) of the request in flight
        self._server_error = ""
        self.last_server_error = ""    # kept for /policy/state until a good chunk arrives
        self.last_infer_ms = float("nan")

    # --- inputs ---------------------------------------------------------------
    def enable(self, on: bool) -> Result:
        if on and not self.instruction:
            return Result.failure("no instruction set")
        self.state = State.HOLD if on else State.DISABLED
        self.hold_reason = "waiting for the first chunk" if on else "disabled"
        self._plan, self._request, self._server_error = None, None, ""
        self._last_command = None
        return Result.success()

    def set_instruction(self, text: str) -> Result:
        if not isinstance(text, str) or not text.strip() or len(text) > 512:
            return Result.failure("instruction must be a non-empty string of at most 512 characters")
        if text != self.instruction:
            self.instruction = text
            self._plan, self._request = None, None    # a new task: the old plan no longer applies
        return Result.success()

    def on_measured(self, pose10: np.ndarray, now: float) -> Result:
        p = np.asarray(pose10, dtype=float)
        if p.shape != (POSE_DIM,) or not np.all(np.isfinite(p)):
            self.rejections["bad measured pose"] += 1
            return Result.failure("measured pose must be 10 finite values")
        self._measured, self._measured_time = p, float(now)
        return Result.success()

    @property
    def measured(self) -> np.ndarray | None:
        """The last measured 10-d pose (what the node sends as the observation's state)."""
        return None if self._measured is None else self._measured.copy()

    def observation_taken(self, now: float) -> None:
        """The node sent the observation of this tick to the server."""
        self._request = (self.tick_index, float(now))
        self._server_error = ""

    def on_chunk(self, actions: np.ndarray, obs_tick: int, obs_time: float, infer_ms: float = float("nan")) -> Result:
        """A chunk answering the observation taken at `obs_tick`; blended with what is left of the plan."""
        a = np.asarray(actions, dtype=float)
        self._request = None
        if a.ndim != 2 or a.shape[1] != POSE_DIM or a.shape[0] == 0 or not np.all(np.isfinite(a)):
            self.rejections["bad chunk"] += 1
            self._server_error = "bad chunk"
            return Result.failure(f"chunk must be finite [H, {POSE_DIM}], got {a.shape}")
        self.last_infer_ms = float(infer_ms)
        self.last_server_error = ""
        new = _Plan(obs_tick, a.copy(), float(obs_time), a.shape[0])
        old = self._plan
        if old is not None and self.config.blend_new_weight < 1.0:
            for k in range(max(new.start_tick, old.start_tick), min(new.start_tick + len(new.actions),
                                                                  old.start_tick + len(old.actions))):
                i, j = k - new.start_tick, k - old.start_tick
                try:
                    new.actions[i] = blend_pose10(old.actions[j], new.actions[i], self.config.blend_new_weight)
                except ValueError:   # degenerate rotation: keep the new action, the gate checks it
                    pass
        self._plan = new
        return Result.success()

    def on_server_error(self, reason: str) -> None:
        """The server failed or timed out: drop the plan (hold) until a fresh chunk arrives."""
        self._request = None
        self._plan = None
        self._server_error = self.last_server_error = reason or "server error"
        self.rejections["server error"] += 1

    # --- one control tick --------------------------------------------------------
    def _want_chunk(self) -> bool:
        if self._request is not None:
            return False
        if self._plan is None:
            return True
        played = self.tick_index - self._plan.start_tick
        return played >= self.config.request_fraction * self._plan.length

    def _hold(self, reason: str, now: float, count: bool = True) -> TickOutput:
        self.state, self.hold_reason = State.HOLD, reason
        if count:
            self.rejections[reason.split(":")[0]] += 1
        # Repeat the last command; before any, send nothing: the arm keeps its own setpoint
        # (re-commanding the measured pose would let the arm creep by its tracking error).
        cmd = self._last_command
        return TickOutput(None if cmd is None else cmd.copy(), State.HOLD, self._want_chunk() and not
                          self._server_error, reason)

    def tick(self, now: float) -> TickOutput:
        """Advance one control tick at clock time `now`."""
        self.tick_index += 1
        cfg = self.config
        if self.state is State.DISABLED:
            return TickOutput(None, State.DISABLED, False, "disabled")
        if now - self._measured_time > cfg.max_state_age_s:
            return self._hold("stale PSM state", now)
        if self._request is not None and now - self._request[1] > cfg.server_timeout_s:
            self.on_server_error(f"server timeout ({cfg.server_timeout_s:.2f} s)")
        if self._server_error:
            err = self._server_error
            self._server_error = ""   # ask again on the next tick
            return self._hold(f"server: {err}", now)
        plan = self._plan
        if plan is None:
            return self._hold("waiting for a chunk", now, count=False)
        if now - plan.obs_time > cfg.max_chunk_age_s:
            self._plan = None
            return self._hold("chunk too old", now)
        i = self.tick_index - plan.start_tick
        if i >= len(plan.actions):
            return self._hold("chunk exhausted", now)
        result = self.gate(plan.actions[max(i, 0)])
        if not result.ok:
            return self._hold(f"gate: {result.reason}", now)
        self._last_command = result.value
        self.state, self.hold_reason = State.RUNNING, ""
        return TickOutput(result.value.copy(), State.RUNNING, self._want_chunk(), result.reason)

    # --- the gate ---------------------------------------------------------------
    def gate(self, action: np.ndarray) -> Result:
        """Command for this tick from a planned action, or a refusal (-> HOLD)."""
        cfg = self.config
        a = np.asarray(action, dtype=float)
        if a.shape != (POSE_DIM,) or not np.all(np.isfinite(a)):
            return Result.failure("NaN/Inf action")
        try:
            R = rot6d_to_matrix(a[3:9])
        except ValueError as exc:
            return Result.failure(f"degenerate rotation ({exc})")
        notes = []
        pos = np.clip(a[:3], cfg.workspace_min_m, cfg.workspace_max_m)
        if not np.allclose(pos, a[:3]):
            notes.append("clipped to workspace")
            self.rejections["workspace"] += 1
        jaw = float(np.clip(a[9], *JAW_LIMITS_RAD))
        ref = self._last_command if self._last_command is not None else self._measured
        if ref is not None:
            step = pos - ref[:3]
            n = float(np.linalg.norm(step))
            if n > cfg.max_step_m:
                pos = ref[:3] + step * (cfg.max_step_m / n)
                notes.append("step limited")
                self.rejections["max step"] += 1
            R_ref = rot6d_to_matrix(ref[3:9])
            ang = rotation_angle(R_ref, R)
            if ang > cfg.max_step_rad:
                R = _slerp(R_ref, R, cfg.max_step_rad / ang)
                notes.append("rotation step limited")
                self.rejections["max rotation step"] += 1
            if abs(jaw - ref[9]) > cfg.max_jaw_step_rad:
                jaw = float(ref[9] + math.copysign(cfg.max_jaw_step_rad, jaw - ref[9]))
                notes.append("jaw step limited")
                self.rejections["max jaw step"] += 1
        cmd = np.concatenate([pos, matrix_to_rot6d(R), [jaw]])
        return Result.success(cmd, "; ".join(notes))

    def status(self, now: float) -> dict:
        """What `/policy/state` publishes."""
        age = None if self._plan is None else now - self._plan.obs_time
        return {"enabled": self.state is not State.DISABLED, "state": self.state.value,
                "instruction": self.instruction, "hold_reason": self.hold_reason,
                "last_server_error": self.last_server_error,
                "chunk_age_s": age, "inference_ms": None if math.isnan(self.last_infer_ms) else self.last_infer_ms,
                "gate_rejections": dict(self.rejections)}


def _slerp(R_a: np.ndarray, R_b: np.ndarray, s: float) -> np.ndarray:
    """Rotation a fraction `s` of the way from R_a to R_b (axis-angle of R_a^T R_b)."""
    R_rel = R_a.T @ R_b
    ang = rotation_angle(np.eye(3), R_rel)
    if ang < 1e-9:
        return R_b
    w = np.array([R_rel[2, 1] - R_rel[1, 2], R_rel[0, 2] - R_rel[2, 0], R_rel[1, 0] - R_rel[0, 1]])
    if np.linalg.norm(w) < 1e-9:   # ~180 deg: the axis is the column of R_rel + I with the largest norm
        k = int(np.argmax(np.diag(R_rel)))
        axis = R_rel[:, k] + np.eye(3)[:, k]
    else:
        axis = w
    axis = axis / np.linalg.norm(axis)
    th = s * ang
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return R_a @ (np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K)
