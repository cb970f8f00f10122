"""Pure safety checks shared by every command path.  Each returns a `Result` whose reason names the cause.

Causes are short stable identifiers (`CAUSE_*`) so counters and diagnostics
key on them; the reason text adds the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgbot.results import Result

CAUSE_NON_FINITE = "non_finite"
CAUSE_SHAPE = "shape"
CAUSE_LIMIT = "limit"
CAUSE_STEP = "step"
CAUSE_WORKSPACE = "workspace"
CAUSE_STALE = "stale"
CAUSE_SINGULAR = "singular"


def finite(name: str, values, size: int | None = None) -> Result[np.ndarray]:
    """`values` as a float array of `size` elements, all finite."""
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return Result.failure(f"{CAUSE_SHAPE}: {name} is not numeric")
    if size is not None and a.size != size:
        return Result.failure(f"{CAUSE_SHAPE}: {name} has {a.size} values, {size} expected")
    if not np.all(np.isfinite(a)):
        return Result.failure(f"{CAUSE_NON_FINITE}: {name} contains NaN or inf")
    return Result.success(a)


def within_limits(name: str, values: np.ndarray, lower: Sequence[float], upper: Sequence[float]) -> Result:
    lo, hi = np.asarray(lower, float), np.asarray(upper, float)
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        i = int(bad[0])
        return Result.failure(f"{CAUSE_LIMIT}: {name}[{i}] = {values[i]:.4g} outside [{lo[i]:.4g}, {hi[i]:.4g}]")
    return Result.success()


def in_box(name: str, point: np.ndarray, box_min: Sequence[float], box_max: Sequence[float]) -> Result:
    lo, hi = np.asarray(box_min, float), np.asarray(box_max, float)
    if np.any(point < lo) or np.any(point > hi):
        return Result.failure(f"{CAUSE_WORKSPACE}: {name} {np.round(point, 4).tolist()} outside the workspace "
                              f"{lo.tolist()} .. {hi.tolist()}")
    return Result.success()


def step_within(name: str, previous: np.ndarray, new: np.ndarray, max_step: float) -> Result:
    """Euclidean step from `previous` to `new` at most `max_step` (a jump is refused, not clamped)."""
    step = float(np.linalg.norm(np.asarray(new, float) - np.asarray(previous, float)))
    if step > max_step:
        return Result.failure(f"{CAUSE_STEP}: {name} jumps {step:.4g} > {max_step:.4g} in one tick")
    return Result.success()


def rotation_step_within(name: str, R_prev: np.ndarray, R_new: np.ndarray, max_angle_rad: float) -> Result:
    c = (np.trace(np.asarray(R_prev, float).T @ np.asarray(R_new, float)) - 1.0) / 2.0
    angle = float(np.arccos(np.clip(c, -1.0, 1.0)))
    if angle > max_angle_rad:
        return Result.failure(f"{CAUSE_STEP}: {name} turns {np.degrees(angle):.3g} deg > "
                              f"{np.degrees(max_angle_rad):.3g} deg in one tick")
    return Result.success()


def rotation_matrix(name: str, R, tol: float = 1e-3) -> Result[np.ndarray]:
    """A finite, orthonormal, right-handed 3x3 (a singular or reflected matrix is refused)."""
    r = finite(name, R, 9)
    if not r:
        return r
    m = r.value.reshape(3, 3)
    if not np.allclose(m.T @ m, np.eye(3), atol=tol) or abs(np.linalg.det(m) - 1.0) > tol:
        return Result.failure(f"{CAUSE_SINGULAR}: {name} is not a rotation (det {np.linalg.det(m):.3g})")
    return Result.success(m)


def fresh(name: str, age_s: float | None, max_age_s: float) -> Result:
    """`age_s` None means never received."""
    if age_s is None:
        return Result.failure(f"{CAUSE_STALE}: no {name} received")
    if age_s > max_age_s:
        return Result.failure(f"{CAUSE_STALE}: {name} is {age_s * 1e3:.0f} ms old (> {max_age_s * 1e3:.0f} ms)")
    return Result.success()


def cause_of(reason: str) -> str:
    """The `CAUSE_*` identifier at the start of a refusal reason."""
    return reason.split(":", 1)[0]
