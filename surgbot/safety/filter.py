"""`SafetyFilter`: the one gate every command path puts its outgoing commands through.

One instance per command stream (the teleop mapper's PSM tip, the policy
gate's PSM tip, ...).  A command is accepted or refused whole (never silently
clamped into something the sender did not ask for); a refused command
changes nothing, is counted by cause, and is reported through `report`
at most once per `log_period_s` per cause (a 1 kHz stream of bad input must
not flood the log).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from surgbot.config import check_ranges, param
from surgbot.results import Result
from surgbot.safety import checks

CAUSE_ROTATION_STEP = "rotation_step"


@dataclass(frozen=True)
class PoseFilterConfig:
    """Limits for a stream of tool-tip pose commands (position m, angles rad, jaw rad)."""

    # Default box: the PSM's reach in PSM1_base (tip 45 mm to 230 mm below the
    # RCM, +-100 mm sideways); each command source narrows it to its task.
    workspace_min_m: tuple[float, ...] = param((-0.10, -0.10, -0.23), "workspace box lower corner (x, y, z), m")
    workspace_max_m: tuple[float, ...] = param((0.10, 0.10, -0.045), "workspace box upper corner (x, y, z), m")
    max_step_m: float = param(0.005, "largest position change between two consecutive commands, m", lo=0.0)
    max_rotation_step_rad: float = param(0.2, "largest rotation between two consecutive commands, rad", lo=0.0)
    # Jaw limits belong to the arm (surgbot.kinematics.psm.JAW_LOWER/UPPER for a
    # PSM); the ground layer does not import kinematics, so the user passes them.
    jaw_min_rad: float | None = param(None, "jaw lower limit, rad; unset: the jaw is only checked for finiteness")
    jaw_max_rad: float | None = param(None, "jaw upper limit, rad; unset: the jaw is only checked for finiteness")
    log_period_s: float = param(1.0, "a rejection cause is reported at most this often, s", lo=0.0)

    def __post_init__(self):
        check_ranges(self)
        if len(self.workspace_min_m) != 3 or len(self.workspace_max_m) != 3:
            raise ValueError("workspace corners need 3 values each (x, y, z)")
        if any(lo >= hi for lo, hi in zip(self.workspace_min_m, self.workspace_max_m, strict=True)):
            raise ValueError("workspace_min_m must be below workspace_max_m on every axis: the box would be empty")
        if (self.jaw_min_rad is None) != (self.jaw_max_rad is None):
            raise ValueError("set both jaw limits or neither")
        if self.jaw_min_rad is not None and self.jaw_min_rad >= self.jaw_max_rad:
            raise ValueError("jaw_min_rad must be below jaw_max_rad")


class RejectionLog:
    """Counts refusals by cause; calls `report(cause, reason)` at most once per period per cause."""

    def __init__(self, period_s: float, report: Callable[[str, str], None] | None = None):
        self.period_s = period_s
        self.report = report
        self.counts: Counter[str] = Counter()
        self._last: dict[str, float] = {}

    def reject(self, reason: str, now: float) -> None:
        cause = checks.cause_of(reason)
        self.counts[cause] += 1
        last = self._last.get(cause)
        if self.report is not None and (last is None or now - last >= self.period_s):
            self._last[cause] = now
            n = self.counts[cause]
            self.report(cause, reason if n == 1 else f"{reason} ({n} so far)")

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class PoseSafetyFilter:
    """Checks tool-tip pose + jaw commands against workspace, step and jaw limits."""

    def __init__(self, config: PoseFilterConfig | None = None, report: Callable[[str, str], None] | None = None):
        self.cfg = config or PoseFilterConfig()
        self.log = RejectionLog(self.cfg.log_period_s, report)
        self._last_p: np.ndarray | None = None
        self._last_R: np.ndarray | None = None

    def reset(self, position=None, rotation=None) -> None:
        """Forget the previous command (e.g. on clutch-in); optionally start from a measured pose."""
        self._last_p = None if position is None else np.asarray(position, float).copy()
        self._last_R = None if rotation is None else np.asarray(rotation, float).copy()

    def check(self, position, rotation, jaw: float | None, now: float) -> Result[tuple[np.ndarray, np.ndarray]]:
        """Accept (and remember) or refuse one command; a refusal leaves the filter's state unchanged."""
        r = self._evaluate(position, rotation, jaw)
        if not r:
            self.log.reject(r.reason, now)
            return r
        self._last_p, self._last_R = r.value
        return r

    def _evaluate(self, position, rotation, jaw) -> Result[tuple[np.ndarray, np.ndarray]]:
        c = self.cfg
        p = checks.finite("position", position, 3)
        if not p:
            return p
        R = checks.rotation_matrix("rotation", rotation)
        if not R:
            return R
        if jaw is not None:
            if not math.isfinite(jaw):
                return Result.failure(f"{checks.CAUSE_NON_FINITE}: jaw is {jaw}")
            if c.jaw_min_rad is not None:
                lim = checks.within_limits("jaw", np.array([jaw]), [c.jaw_min_rad], [c.jaw_max_rad])
                if not lim:
                    return lim
        box = checks.in_box("tool tip", p.value, c.workspace_min_m, c.workspace_max_m)
        if not box:
            return box
        if self._last_p is not None:
            step = checks.step_within("tool tip", self._last_p, p.value, c.max_step_m)
            if not step:
                return step
        if self._last_R is not None:
            turn = checks.rotation_step_within("tool tip", self._last_R, R.value, c.max_rotation_step_rad)
            if not turn:
                return turn
        return Result.success((p.value, R.value))


class PoseLimiter:
    """Shapes a tool-tip pose stream: clipped into the workspace box, each step shortened to the limits.

    For sources that must keep following (a hand past the box edge keeps the
    tool at the edge; a chunk that jumps is played at the allowed speed)
    rather than refuse.  Each shaping is counted by cause in `log` (and
    reported at most once per `log_period_s` per cause); non-finite or
    non-rigid poses are refused by `checks.finite` / `checks.rotation_matrix`
    before they get here.
    """

    def __init__(self, workspace_min_m: Sequence[float], workspace_max_m: Sequence[float], max_step_m: float,
                 max_rotation_step_rad: float, log_period_s: float = 1.0,
                 report: Callable[[str, str], None] | None = None):
        lo, hi = np.asarray(workspace_min_m, float), np.asarray(workspace_max_m, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError("workspace corners need 3 values each with min < max")
        if not (max_step_m > 0 and max_rotation_step_rad > 0):
            raise ValueError("step limits must be > 0")
        self.lo, self.hi = lo, hi
        self.max_step_m, self.max_rotation_step_rad = float(max_step_m), float(max_rotation_step_rad)
        self.log = RejectionLog(log_period_s, report)

    def limit(self, position, rotation, ref_position=None, ref_rotation=None,
              now: float = 0.0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """(position, rotation, causes): clipped to the box, then at most one step from the reference."""
        notes = []
        p, clipped = checks.clip_to_box(position, self.lo, self.hi)
        if clipped:
            notes.append(checks.CAUSE_WORKSPACE)
            self.log.reject(f"{checks.CAUSE_WORKSPACE}: tool tip {np.round(np.asarray(position, float), 4).tolist()} "
                            f"clipped to the box {self.lo.tolist()} .. {self.hi.tolist()}", now)
        R = np.asarray(rotation, float)
        if ref_position is not None:
            p, short = checks.limit_step(ref_position, p, self.max_step_m)
            if short:
                notes.append(checks.CAUSE_STEP)
                self.log.reject(f"{checks.CAUSE_STEP}: tool tip step shortened to {self.max_step_m * 1e3:.1f} mm", now)
        if ref_rotation is not None:
            R, turned = checks.limit_rotation_step(ref_rotation, R, self.max_rotation_step_rad)
            if turned:
                notes.append(CAUSE_ROTATION_STEP)
                self.log.reject(f"{CAUSE_ROTATION_STEP}: tool rotation step shortened to "
                                f"{np.degrees(self.max_rotation_step_rad):.1f} deg", now)
        return p, R, tuple(notes)

    def refuse(self, reason: str, now: float) -> None:
        """Count (and rate-limit-report) a refusal the source decided itself (non-finite input, ...)."""
        self.log.reject(reason, now)

