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
* Every command passes the gate: non-finite or degenerate -> HOLD (a bad
  chunk also drops the plan, as a server error does);
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

from surgbot.config import check_ranges, param
from surgbot.geometry import matrix_to_rot6d, rot6d_to_matrix
from surgbot.kinematics import psm as psm_kin
from surgbot.results import Result
from surgbot.safety import checks
from surgbot.safety.filter import CAUSE_ROTATION_STEP, PoseLimiter

POSE_DIM = 10
JAW_LIMITS_RAD = (psm_kin.JAW_LOWER, psm_kin.JAW_UPPER)     # the PSM's own (FACTS.md, dVRK jaw)


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
    workspace_refuse_margin_m: float | None = param(
        None, "an action further than this outside the workspace box is refused (HOLD) instead of clipped: "
              "a policy that far out is wrong, not a little over (unset: always clipped)", lo=0.0)

    def __post_init__(self):
        check_ranges(self)
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
        self._newest_obs_time: float | None = None     # of the newest chunk accepted since enable
        self.server_lost = False       # the client's connection watch (on_server_lost)
        self._last_command: np.ndarray | None = None
        self._measured: np.ndarray | None = None
        self._measured_time = -math.inf
        self._request: tuple[int, float] | None = None    # (tick, time) of the request in flight
        self._server_error = ""
        self.last_server_error = ""    # kept for /policy/state until a good chunk arrives
        # when the request the server left unanswered past server_timeout_s was sent (None: no such
        # request since the last good chunk): /policy/state reports its age and the supervisor faults
        # on it at once, instead of only when the chunk in hand has aged past its own watchdog
        self._unanswered_since: float | None = None
        self.last_infer_ms = float("nan")
        self.safety_block = ""         # why /safety/state forbids commanding ("" = allowed)
        self.events: list[str] = []    # rate-limited safety-filter reports for the node's log
        self._now = 0.0
        c = self.config
        # the ground-layer limiter (surgbot.safety): box and per-tick step, each cause counted and
        # reported at most once a second
        self.limiter = PoseLimiter(c.workspace_min_m, c.workspace_max_m, c.max_step_m, c.max_step_rad,
                                   report=lambda cause, text: self.events.append(f"safety filter: {text}"))

    # --- inputs ---------------------------------------------------------------
    def enable(self, on: bool) -> Result:
        if on and not self.instruction:
            return Result.failure("no instruction set")
        if on and self.safety_block:
            return Result.failure(f"safety: {self.safety_block}")
        self.state = State.HOLD if on else State.DISABLED
        self.hold_reason = "waiting for the first chunk" if on else "disabled"
        self._plan, self._request, self._server_error = None, None, ""
        self._newest_obs_time = self._unanswered_since = None
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
        self._request = self._unanswered_since = None     # answered (a bad chunk is the gate's to judge)
        if a.ndim != 2 or a.shape[1] != POSE_DIM or a.shape[0] == 0 or not np.all(np.isfinite(a)):
            self.rejections["bad chunk"] += 1
            self._server_error = "bad chunk"
            self._plan = None          # a server that answers garbage: its earlier plan is not played on either
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
        self._newest_obs_time = new.obs_time
        return Result.success()

    def set_safety(self, block: str) -> None:
        """`block`: why `/safety/state` forbids commanding ("" = allowed).

        A block disables the executor at once (nothing is published, not even the HOLD repeat); once
        the state is OK again it stays disabled until `/policy/enable` (the user re-enables).
        """
        if block and not self.safety_block:
            self.rejections["safety stop"] += 1
            if self.state is not State.DISABLED:
                self.enable(False)
                self.hold_reason = f"safety: {block}"
        self.safety_block = block

    def on_server_lost(self, lost: bool) -> None:
        """The client's connection watch: while the server's connection is down, HOLD every tick (and
        /policy/state says so: the supervisor faults on it) instead of playing the plan in hand."""
        if lost and not self.server_lost:
            self.on_server_error("connection to the server lost")
        self.server_lost = bool(lost)

    def on_server_error(self, reason: str, unanswered: bool = False) -> None:
        """The server failed or timed out: drop the plan (hold) until a fresh chunk arrives.

        `unanswered`: the request got no answer within `server_timeout_s` (the core's own deadline or
        the client's timeout); /policy/state then reports the request's age until an answer comes
        (any answer: an error is an answer, and says so itself)."""
        if not unanswered:
            self._unanswered_since = None
        elif self._unanswered_since is None:
            self._unanswered_since = self._now if self._request is None else self._request[1]
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
        self._now = float(now)
        cfg = self.config
        if self.state is State.DISABLED:
            return TickOutput(None, State.DISABLED, False, "disabled")
        if now - self._measured_time > cfg.max_state_age_s:
            return self._hold("stale PSM state", now)
        if self.server_lost:
            return self._hold("server: connection lost", now, count=False)
        if self._request is not None and now - self._request[1] > cfg.server_timeout_s:
            self.on_server_error(f"server timeout ({cfg.server_timeout_s:.2f} s)", unanswered=True)
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
        finite = checks.finite("action", action, POSE_DIM)
        if not finite or np.shape(action) != (POSE_DIM,):
            self.limiter.refuse(finite.reason if not finite else f"{checks.CAUSE_SHAPE}: action shape", self._now)
            return Result.failure("NaN/Inf action")
        a = finite.value
        try:
            R = rot6d_to_matrix(a[3:9])
        except ValueError as exc:
            self.limiter.refuse(f"{checks.CAUSE_SINGULAR}: degenerate rotation", self._now)
            return Result.failure(f"degenerate rotation ({exc})")
        notes = []
        margin = cfg.workspace_refuse_margin_m
        if margin is not None:
            far = checks.in_box("action", a[:3], np.subtract(cfg.workspace_min_m, margin),
                                np.add(cfg.workspace_max_m, margin))
            if not far:
                self.limiter.refuse(far.reason, self._now)
                self.rejections["workspace"] += 1
                return Result.failure(f"outside the workspace by more than {margin * 1e3:.0f} mm")
        ref = self._last_command if self._last_command is not None else self._measured
        pos, R, causes = self.limiter.limit(a[:3], R, None if ref is None else ref[:3],
                                            None if ref is None else rot6d_to_matrix(ref[3:9]), self._now)
        for cause, note, counter in ((checks.CAUSE_WORKSPACE, "clipped to workspace", "workspace"),
                                     (checks.CAUSE_STEP, "step limited", "max step"),
                                     (CAUSE_ROTATION_STEP, "rotation step limited", "max rotation step")):
            if cause in causes:
                notes.append(note)
                self.rejections[counter] += 1
        jaw = float(np.clip(a[9], *JAW_LIMITS_RAD))
        if ref is not None and abs(jaw - ref[9]) > cfg.max_jaw_step_rad:
            jaw = float(ref[9] + math.copysign(cfg.max_jaw_step_rad, jaw - ref[9]))
            notes.append("jaw step limited")
            self.rejections["max jaw step"] += 1
        cmd = np.concatenate([pos, matrix_to_rot6d(R), [jaw]])
        return Result.success(cmd, "; ".join(notes))

    def status(self, now: float) -> dict:
        """What `/policy/state` publishes."""
        # the newest chunk's age even once its plan is dropped (server timeout or error): a server
        # that died or stalls mid-run must show as an ageing chunk to the supervisor's watchdog, not
        # as "no chunk" (None: before the first chunk since enable; nothing is commanded then)
        age = None if self._newest_obs_time is None or self.state is State.DISABLED else now - self._newest_obs_time
        return {"enabled": self.state is not State.DISABLED, "state": self.state.value,
                "instruction": self.instruction, "hold_reason": self.hold_reason,
                "last_server_error": self.last_server_error, "server_lost": self.server_lost,
                "chunk_age_s": age, "unanswered_request_age_s": None if self._unanswered_since is None or
                self.state is State.DISABLED else now - self._unanswered_since,
                "inference_ms": None if math.isnan(self.last_infer_ms) else self.last_infer_ms,
                "gate_rejections": dict(self.rejections), "safety": self.safety_block or "OK",
                "safety_filter": {k: int(v) for k, v in self.limiter.log.counts.items()}}

