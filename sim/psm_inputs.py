"""Input checks of the PSM's commands, pure functions (no state).

Each returns the command's value in the core's units and order, or raises
`ValueError` whose text is the one-line reason the arm reports on `error`
("<command> rejected: ..."): NaN/inf, wrong lengths, unknown or repeated
joint names, joint limits, actuator effort ranges.
"""

from __future__ import annotations

import math

import numpy as np

from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES
from surgbot.kinematics import psm as kin

# Joint effort limits (N m, N): the twin's actuator force ranges (sim/models/psm.xml).
MAX_EFFORT = np.array([30.0, 30.0, 40.0, 2.0, 2.0, 2.0])
JAW_MAX_EFFORT = 2.0
WRENCH_AXES = ("fx", "fy", "fz", "tx", "ty", "tz")


def numbers(what: str, values, expected: tuple[str, ...]) -> np.ndarray:
    """`values` as a float vector of len(expected)."""
    try:
        v = np.asarray(list(values), dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} rejected: positions are not numbers") from None
    if v.shape != (len(expected),):
        n = len(expected)
        raise ValueError(f"{what} rejected: expected {n} position{'s' if n > 1 else ''} "
                         f"({', '.join(expected)}), got {v.size}")
    return v


def ordered(what: str, names, values, expected: tuple[str, ...]) -> np.ndarray:
    """`values` in the order of `expected` (reordered by `names` when names are given)."""
    names = list(names or [])
    v = numbers(what, values, expected)
    if not names:
        return v
    if sorted(names) != sorted(expected) or len(set(names)) != len(expected):
        unknown = [n for n in names if n not in expected]
        raise ValueError(f"{what} rejected: joint names must be exactly {list(expected)}"
                         + (f"; unknown {unknown}" if unknown else ""))
    return v[[names.index(n) for n in expected]]


def finite(what: str, v: np.ndarray, quantity: str = "positions") -> np.ndarray:
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} rejected: {quantity} contain NaN or inf")
    return v


def within_limits(what: str, q: np.ndarray) -> np.ndarray:
    bad = [f"{PSM_JOINT_NAMES[i]}={q[i]:.4f} not in [{kin.LOWER[i]:.3f}, {kin.UPPER[i]:.3f}]"
           for i in range(6) if not (kin.LOWER[i] <= q[i] <= kin.UPPER[i])]
    if bad:
        raise ValueError(f"{what} rejected: outside joint limits: {'; '.join(bad)}")
    return q


def joint_positions(what: str, names, positions) -> np.ndarray:
    """Six finite joint positions within the joint limits."""
    return within_limits(what, finite(what, ordered(what, names, positions, PSM_JOINT_NAMES)))


def joint_goal(what: str, names, deltas, q_sp: np.ndarray) -> np.ndarray:
    """A relative command (jr): setpoint + six finite deltas, the goal within the joint limits."""
    d = finite(what, ordered(what, names, deltas, PSM_JOINT_NAMES))
    return within_limits(what, q_sp + d)


def jaw_position(what: str, names, positions) -> float:
    names = list(names or [])
    v = float(numbers(what, positions, (PSM_JAW_NAME,))[0])
    if names and names != [PSM_JAW_NAME]:
        raise ValueError(f"{what} rejected: joint name must be '{PSM_JAW_NAME}', got {names}")
    if not math.isfinite(v):
        raise ValueError(f"{what} rejected: jaw position is NaN or inf")
    if not (kin.JAW_LOWER <= v <= kin.JAW_UPPER):
        raise ValueError(f"{what} rejected: jaw {v:.4f} not in [{kin.JAW_LOWER}, {kin.JAW_UPPER}]")
    return v


def efforts(what: str, names, values, expected: tuple[str, ...] = PSM_JOINT_NAMES,
            limit: np.ndarray = MAX_EFFORT) -> np.ndarray:
    """Finite joint efforts within the actuators' force range."""
    e = finite(what, ordered(what, names, values, expected), "efforts")
    return effort_range(what, e, expected, limit, "effort")


def effort_range(what: str, e: np.ndarray, expected: tuple[str, ...], limit: np.ndarray,
                 label: str) -> np.ndarray:
    over = [f"{expected[i]}={e[i]:.3g} beyond +-{limit[i]:g}" for i in np.flatnonzero(np.abs(e) > limit)]
    if over:
        raise ValueError(f"{what} rejected: {label} outside the actuator range: {'; '.join(over)}")
    return e


def wrench(what: str, values) -> np.ndarray:
    """(fx, fy, fz, tx, ty, tz), finite."""
    w = numbers(what, values, WRENCH_AXES)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what} rejected: wrench contains NaN or inf")
    return w


def twist(what: str, linear, angular) -> tuple[np.ndarray, np.ndarray]:
    """(linear m/s, angular rad/s), 3 finite values each."""
    try:
        v = np.asarray(list(linear), float)
        w = np.asarray(list(angular), float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} rejected: twist is not numeric") from None
    if v.shape != (3,) or w.shape != (3,):
        raise ValueError(f"{what} rejected: twist needs 3 linear and 3 angular values")
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(w))):
        raise ValueError(f"{what} rejected: twist contains NaN or inf")
    return v, w
