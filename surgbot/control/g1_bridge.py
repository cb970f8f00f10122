"""ROS-free core of the G1 bridge: arm commands by joint name -> `rt/arm_sdk` every 2 ms.

The bridge never lets the arm jump and never drops the scope:

* every target moves toward its goal at most `max_velocity` (default
  0.5 rad/s, Unitree's arm_sdk example figure) per second of real time;
* `engage` starts from the MEASURED posture (target = goal = measured q)
  and ramps the arm_sdk weight 0 -> 1 over `ramp_time` (2 s); `release`
  ramps it back to 0 over the same time, then stops streaming;
* with no new command the last target is held (never dropped);
* `rt/lowstate` older than `stale_after` (50 ms) while streaming -> stop
  streaming, FAULT (IDLE streams nothing, so it only reports the age).
  The robot keeps the last arm_sdk command (as the twin does), so the arm
  holds.  Only fresh state plus an explicit `engage` resumes; that engage
  starts from the weight last sent, so the blend is continuous;
* bad input (NaN/inf, unknown or lower-body names, mismatched lengths,
  duplicates, targets outside the joint limits) is rejected with a reason
  and changes nothing;
* shutdown while engaged holds the last targets (the stream stops, the
  robot keeps them) unless `release_on_shutdown`.

Time is passed in (`now`, seconds, monotonic); `step(now)` is called by the
node's 500 Hz timer and is steppable in a test without threads.  The upper
body's joints, limits, PD gains and gravity model are `surgbot.control.g1_arm`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from surgbot import contract
from surgbot.control.g1_arm import N_UPPER, UPPER_NAMES, UPPER_SLICE, check_upper_command, upper_limits
from surgbot.control.g1_bridge_config import G1BridgeConfig
from surgbot.control.rest_offset import RestOffset
from surgbot.control.safe_stop import SafeStop
from surgbot.control.target_shaper import TargetShaper
from surgbot.results import Result
from surgbot.safety import checks
from surgbot.safety.filter import RejectionLog

# refusal causes of the bridge's own (the shared ones are surgbot.safety.checks.CAUSE_*; joint
# names: g1_arm.CAUSE_NAMES)
CAUSE_STATE = "state"
CAUSE_SAFETY = "safety"


class State(StrEnum):
    IDLE = "IDLE"            # not streaming, robot in its own standing control (weight 0)
    ENGAGING = "ENGAGING"    # weight ramping up
    ENGAGED = "ENGAGED"      # weight 1, following commands
    RELEASING = "RELEASING"  # weight ramping down
    FAULT = "FAULT"          # lowstate stale: not streaming, robot holds the last command


STREAMING = (State.ENGAGING, State.ENGAGED, State.RELEASING)


@dataclass
class ArmSdkCommand:
    """One rt/arm_sdk sample: per upper-body joint (contract order 12..28) + weight."""

    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    weight: float


@dataclass
class _Lowstate:
    q: np.ndarray
    dq: np.ndarray
    tick: int
    t_recv: float
    quat: np.ndarray | None = None


@dataclass
class Counters:
    commands_accepted: int = 0
    commands_rejected: int = 0
    lowstate_received: int = 0
    lowstate_rejected: int = 0
    faults: int = 0
    sent: int = 0
    safety_stops: int = 0
    extra: dict = field(default_factory=dict)


class G1BridgeCore:
    """State machine + target shaping for rt/arm_sdk (see module doc)."""

    def __init__(self, config: G1BridgeConfig | None = None, *, limits: np.ndarray | None = None,
                 gravity: Callable[[np.ndarray, Sequence[float] | None], np.ndarray] | None = None,
                 inertia: Callable[[np.ndarray, Sequence[float] | None], np.ndarray] | None = None,
                 **overrides):
        """`overrides` replace fields of `config` (e.g. `release_on_shutdown=True` in a test).

        `gravity(q29, quat_wxyz)`: the 29 joints' gravity torques (tau feed-forward); `inertia(q29,
        quat_wxyz)`: the 17 upper-body joints' M_jj (a safety stop's damping;
        `GravityModel.inertia_diagonal`).
        """
        cfg = dataclasses.replace(config or G1BridgeConfig(), **overrides)
        self.config = cfg
        self.limits = np.asarray(limits if limits is not None else upper_limits(), dtype=float)
        if self.limits.shape != (N_UPPER, 2) or not np.all(np.isfinite(self.limits)):
            raise ValueError(f"limits must be ({N_UPPER}, 2) finite, got shape {self.limits.shape}")
        self.kp = np.asarray(cfg.kp, dtype=float)
        self.kd = np.asarray(cfg.kd, dtype=float)
        self.max_velocity = cfg.max_velocity
        self.ramp_time = cfg.ramp_time
        self.stale_after = cfg.stale_after
        self.dt = cfg.dt
        self.gravity = gravity
        self.inertia = inertia
        self.release_on_shutdown = cfg.release_on_shutdown

        self.state = State.IDLE
        self.reason = "waiting for rt/lowstate"
        self.weight = 0.0
        self.shaper = TargetShaper(self.limits, cfg.max_velocity, cfg.command_timeout)
        self._last_step: float | None = None
        self._lowstate: _Lowstate | None = None
        self.rest = RestOffset(N_UPPER)  # where a safety stop freezes a moving arm
        self.stop = SafeStop(cfg.safety_stop_time_constant, cfg.safety_stop_max_kd)   # and how it stops there
        self.stop_kd: np.ndarray | None = None   # the damping a safety stop holds the arm with (None: own kd)
        # the last safety freeze, for the log: how old the posture was, how far the targets stepped
        # (back from where a moving arm was headed), how fast the arm was moving
        self.freeze_info: dict | None = None
        self.counters = Counters()
        self.rejections = RejectionLog(0.0)   # counts by cause; the node logs (throttled)
        self.safety_block = ""       # why /safety/state forbids motion ("" = allowed)
        self.safety_stopped = ""     # set by a block, cleared only by an explicit engage once allowed

    @property
    def target(self) -> np.ndarray:
        """rad, the upper body's targets being sent (17, contract order)."""
        return self.shaper.target

    @property
    def goal(self) -> np.ndarray:
        """rad, what the targets move toward (the last command, or where a stop holds)."""
        return self.shaper.goal

    # ------------------------------------------------------------------ inputs
    def on_lowstate(self, q29: Sequence[float], dq29: Sequence[float], tick: int, t_recv: float,
                    quat_wxyz: Sequence[float] | None = None) -> Result:
        rq = checks.finite("lowstate q", q29, contract.G1_NUM_JOINTS)
        rdq = checks.finite("lowstate dq", dq29, contract.G1_NUM_JOINTS)
        for r in (rq, rdq):
            if not r:
                self.counters.lowstate_rejected += 1
                return r
        q, dq = rq.value.ravel(), rdq.value.ravel()
        prev = self._lowstate
        if prev is not None and int(tick) == prev.tick:
            # A repeated tick is not news: the robot's clock did not move.
            return Result.failure("lowstate tick did not advance")
        self._lowstate = _Lowstate(q.copy(), dq.copy(), int(tick), float(t_recv),
                                   None if quat_wxyz is None else np.asarray(quat_wxyz, dtype=float))
        self.counters.lowstate_received += 1
        return Result.success()

    def lowstate_age(self, now: float) -> float:
        return math.inf if self._lowstate is None else max(0.0, now - self._lowstate.t_recv)

    def measured_upper(self) -> np.ndarray | None:
        return None if self._lowstate is None else self._lowstate.q[UPPER_SLICE].copy()

    def command(self, names: Sequence[str], positions: Sequence[float],
                velocities: Sequence[float] | None = None, now: float = 0.0) -> Result:
        """Set goals for a subset of the 17 upper-body joints; all or nothing."""
        res = self._check_command(list(names), positions, velocities)
        if not res.ok:
            self.counters.commands_rejected += 1
            self.rejections.reject(res.reason, now)
            return res
        self.shaper.set_goals(*res.value, now)
        self.counters.commands_accepted += 1
        return Result.success()

    def _check_command(self, names: list[str], positions: Sequence[float],
                       velocities: Sequence[float] | None) -> Result:
        res = check_upper_command(names, positions, velocities, self.limits)
        if not res:
            return res
        if self.state not in (State.ENGAGING, State.ENGAGED):
            return Result.failure(f"{CAUSE_STATE}: not engaged (state {self.state.value}): call /g1/engage first")
        if self.safety_stopped:
            return Result.failure(f"{CAUSE_SAFETY}: safety stop ({self.safety_stopped}): holding; /g1/engage after "
                                  "/safety/reset")
        return res

    def set_safety(self, block: str, now: float) -> None:
        """`/safety/state` forbids motion (`block` says why) or allows it again ("").

        A block stops the arm where it is now: from the measured posture plus the offset it needs at
        rest (`RestOffset`: neither the raw targets, which a lagging arm still moves to, nor the bare
        measured posture, which sags), a moving arm is damped to rest along its path with the time
        constant `safety_stop_time_constant` (`SafeStop`: one sample, safe to hold however long the
        stream stalls); and the bridge keeps streaming it: an engaged or engaging arm ends at full
        weight, a releasing one is taken back up (the scope is never dropped).  Commands and
        `release` are refused until an explicit `engage` once the state allows motion again.
        """
        if block and not self.safety_block:
            self.counters.safety_stops += 1
            if self.state in STREAMING:
                frozen = self.rest.freeze(self.measured_upper(), self.target)
                ls = self._lowstate
                inertia = None if self.inertia is None or ls is None else self.inertia(ls.q, ls.quat)
                rest, self.stop_kd = self.stop.start(frozen, self.max_velocity, self.kd, inertia)
                rest = np.clip(rest, self.limits[:, 0], self.limits[:, 1])
                self.freeze_info = self._freeze_info(now, rest)
                self.shaper.hold(rest)
                self.safety_stopped = block
                if self.state == State.RELEASING:
                    self.state = State.ENGAGING
                self.reason = f"safety stop: {block}: holding the targets"
            elif self.state == State.FAULT:
                self.safety_stopped = block
        self.safety_block = block

    def _freeze_info(self, now: float, rest: np.ndarray) -> dict:
        """For the log: how old the posture was, how far the targets stepped (back from where a lagging
        arm was headed), how fast the arm and its path were moving, how hard the stop damps."""
        velocity = None if self._lowstate is None else np.abs(self._lowstate.dq[UPPER_SLICE])
        fastest = None if velocity is None else int(np.argmax(velocity))
        path = self.stop.path_velocity()
        return {"lowstate_age_ms": round(self.lowstate_age(now) * 1e3, 1),
                "target_step_rad": float(np.max(np.abs(rest - self.target))),
                "max_dq": None if velocity is None else float(velocity[fastest]),
                "max_dq_joint": None if velocity is None else UPPER_NAMES[fastest],
                "offset_known": self.rest.offset is not None,
                "path_speed_rad_s": None if path is None else float(np.max(np.abs(path))),
                "stop_max_kd": float(np.max(self.stop_kd)) if self.stop_kd is not None else None}

    def engage(self, now: float) -> Result:
        """Engage (ramp the weight up from the measured posture), or resume commands after a safety stop.

        While `/safety/state` forbids motion, engage only takes a FAULTed bridge back to streaming
        its measured posture (hold, still refusing commands); it never lifts a safety stop.
        """
        if self.lowstate_age(now) > self.stale_after:
            return Result.failure(f"no fresh rt/lowstate (age {self.lowstate_age(now) * 1e3:.0f} ms)")
        if self.safety_block and self.state != State.FAULT:
            return Result.failure(f"safety: {self.safety_block}: holding; engage again after /safety/reset")
        if self.safety_block:
            self.safety_stopped = self.safety_block
        elif self.safety_stopped:
            self.safety_stopped = ""
            self.stop.forget_path()
            self.stop_kd = None
            self.shaper.hold()
            if self.state in (State.ENGAGING, State.ENGAGED):
                self.reason = "engage requested: commands accepted again after the safety stop"
                return Result.success(self.state, self.reason)
        if self.state in (State.ENGAGING, State.ENGAGED):
            return Result.success(self.state, f"already {self.state.value}")
        if self.state in (State.IDLE, State.FAULT):
            # Start where the arm is; after a FAULT the robot still holds the
            # weight last sent, so the ramp continues from there.
            self.shaper.hold(self.measured_upper())
            self.rest.reset()
            self.stop.forget_path()
            if not self.safety_stopped:
                self.stop_kd = None
        self.state = State.ENGAGING if self.weight < 1.0 else State.ENGAGED
        self.reason = "engage requested"
        self._last_step = None
        return Result.success(self.state, f"engaging from weight {self.weight:.3f}")

    def restore_weight(self, weight: float) -> Result:
        """An IDLE bridge starts from the weight the robot still holds (a previous bridge's last sample)."""
        if self.state != State.IDLE:
            return Result.failure(f"only an IDLE bridge takes a remembered weight (state {self.state.value})")
        if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
            return Result.failure(f"weight {weight} not in [0, 1]")
        self.weight = float(weight)
        return Result.success(self.weight)

    def release(self, now: float) -> Result:
        if self.state in (State.IDLE,):
            return Result.success(self.state, "already released")
        if self.state == State.FAULT:
            return Result.failure("FAULT: no fresh rt/lowstate, cannot stream the release ramp")
        if self.safety_stopped:
            return Result.failure(f"safety stop ({self.safety_stopped}): the scope is held, not released; "
                                  "release after /safety/reset and engage")
        self.state = State.RELEASING
        self.reason = "release requested"
        self.shaper.hold()   # where we are, while the weight goes down
        return Result.success(self.state, f"releasing from weight {self.weight:.3f}")

    def shutdown(self, now: float) -> Result:
        """What to do at node shutdown: ok=True means 'run the release ramp first'."""
        if self.state not in STREAMING:
            return Result.failure(f"not streaming ({self.state.value}): nothing to do")
        if self.release_on_shutdown:
            self.release(now)
            return Result.success(self.state, "release_on_shutdown: ramping the weight to 0 before exit")
        return Result.failure(f"shutdown while {self.state.value} (weight {self.weight:.3f}): streaming stops and "
                             "the robot holds the last arm_sdk targets; release_on_shutdown is false, "
                             "so the scope is not dropped")

    # ------------------------------------------------------------------ output
    def step(self, now: float) -> ArmSdkCommand | None:
        """The next rt/arm_sdk sample, or None when nothing must be streamed."""
        age = self.lowstate_age(now)
        if age > self.stale_after and self.state in STREAMING:
            was = self.state
            self.state = State.FAULT
            self.reason = (f"rt/lowstate stale ({age * 1e3:.0f} ms > {self.stale_after * 1e3:.0f} ms) "
                           f"while {was.value}: streaming stopped, robot holds the last command")
            self.counters.faults += 1
            self._last_step = None
            return None
        if self.state not in STREAMING:
            return None
        elapsed = self.dt if self._last_step is None else min(self.dt, max(0.0, now - self._last_step))
        self._last_step = now

        dq = self.shaper.advance(now, elapsed)

        if self.state == State.ENGAGING:
            self.weight = min(1.0, self.weight + elapsed / self.ramp_time)
            if self.weight > 1.0 - 1e-9:
                self.weight = 1.0
            if self.weight >= 1.0:
                self.state, self.reason = State.ENGAGED, "engaged"
        elif self.state == State.RELEASING:
            self.weight = max(0.0, self.weight - elapsed / self.ramp_time)
            if self.weight < 1e-9:
                self.weight = 0.0

        if self._lowstate is not None:
            self.rest.update(self.target, self._lowstate.q[UPPER_SLICE], self._lowstate.dq[UPPER_SLICE], dq)
        self.stop.observe(now, self.target)
        tau = np.zeros(N_UPPER)
        if self.gravity is not None and self._lowstate is not None:
            tau = np.asarray(self.gravity(self._lowstate.q, self._lowstate.quat))[UPPER_SLICE]
        kd = self.kd if self.stop_kd is None else self.stop_kd
        cmd = ArmSdkCommand(q=self.target.copy(), dq=dq, tau=tau, kp=self.kp.copy(), kd=kd.copy(),
                            weight=self.weight)
        if self.state == State.RELEASING and self.weight <= 0.0:
            self.state, self.reason = State.IDLE, "released"   # this weight-0 sample is the last one
        self.counters.sent += 1
        return cmd

    def status(self, now: float) -> dict:
        return {"state": self.state.value, "reason": self.reason, "weight": self.weight,
                "lowstate_age": self.lowstate_age(now), "faults": self.counters.faults,
                "commands_accepted": self.counters.commands_accepted,
                "commands_rejected": self.counters.commands_rejected,
                "commands_rejected_by_cause": dict(self.rejections.counts),
                "lowstate_received": self.counters.lowstate_received,
                "lowstate_rejected": self.counters.lowstate_rejected, "sent": self.counters.sent,
                "safety": self.safety_stopped or "OK", "safety_stops": self.counters.safety_stops}
