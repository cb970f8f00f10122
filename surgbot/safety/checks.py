"""Pure safety checks shared by every command path.  Each returns a `Result` whose reason names the cause.

Causes are short stable identifiers (`CAUSE_*`) so counters and diagnostics
key on them; the reason text adds the numbers.
"""

from __future__ import annotations

import math
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
    if not np.isfinite(a).all():          # the method: ~half the cost of np.all() on a few values
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
    angle = rotation_angle_between(R_prev, R_new)
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
    # max |M^T M - I| (the columns' dot products) and the determinant on Python floats: a fifth of
    # numpy's cost for one 3x3, and this runs on every pose that reaches a node (the mapper's
    # 100-250 Hz state, every command through the safety filter)
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    err = max(abs(a * a + d * d + g * g - 1.0), abs(b * b + e * e + h * h - 1.0), abs(c * c + f * f + i * i - 1.0),
              abs(a * b + d * e + g * h), abs(a * c + d * f + g * i), abs(b * c + e * f + h * i))
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if not (err <= tol and abs(det - 1.0) <= tol):
        return Result.failure(f"{CAUSE_SINGULAR}: {name} is not a rotation (det {det:.3g})")
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


# ---------------------------------------------------------------------- shaping
# Command sources that shape rather than refuse (the teleop mapper follows a hand
# that may overshoot the box; the policy gate plays a chunk that may step too far)
# use these, so one definition of "in the box" and "one step" serves every path.
def clip_to_box(point, box_min: Sequence[float], box_max: Sequence[float]) -> tuple[np.ndarray, bool]:
    """`point` clipped into the box, and whether it had to be."""
    p = np.asarray(point, float)
    clipped = np.minimum(np.maximum(p, np.asarray(box_min, float)), np.asarray(box_max, float))   # np.clip: 2x slower
    return clipped, bool(np.any(clipped != p))


def limit_step(previous, new, max_step: float) -> tuple[np.ndarray, bool]:
    """`new`, or the point `max_step` from `previous` towards it (Euclidean), and whether it was shortened."""
    prev, target = np.asarray(previous, float), np.asarray(new, float)
    step = target - prev
    n = float(np.linalg.norm(step))
    if n <= max_step:
        return target, False
    return prev + step * (max_step / n), True


def rotation_angle_between(R_a: np.ndarray, R_b: np.ndarray) -> float:
    # trace(A^T B) is the sum of the elementwise products: one vdot, then scalar math (7x cheaper)
    c = (float(np.vdot(np.asarray(R_a, float), np.asarray(R_b, float))) - 1.0) / 2.0
    if not math.isfinite(c):
        return math.nan             # as np.arccos gave: min/max below would turn NaN into 0 deg
    return math.acos(max(-1.0, min(1.0, c)))


def limit_rotation_step(R_prev: np.ndarray, R_new: np.ndarray, max_angle_rad: float) -> tuple[np.ndarray, bool]:
    """`R_new`, or the rotation `max_angle_rad` of the way from `R_prev` along the geodesic to it."""
    R_a, R_b = np.asarray(R_prev, float), np.asarray(R_new, float)
    ang = rotation_angle_between(R_a, R_b)
    if ang <= max_angle_rad:
        return R_b, False
    R_rel = R_a.T @ R_b
    w = np.array([R_rel[2, 1] - R_rel[1, 2], R_rel[0, 2] - R_rel[2, 0], R_rel[1, 0] - R_rel[0, 1]])
    if np.linalg.norm(w) < 1e-9:   # ~180 deg: the axis is the column of R_rel + I with the largest norm
        k = int(np.argmax(np.diag(R_rel)))
        w = R_rel[:, k] + np.eye(3)[:, k]
    axis = w / np.linalg.norm(w)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    th = max_angle_rad
    return R_a @ (np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K), True
