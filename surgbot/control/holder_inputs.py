"""Input checks of the endoscope holder: each returns the refusal reason ("" if the input is good).

Pure functions: a refused input changes nothing (the holder logs the reason,
counts it and keeps its mode).  Messages carry float32 and unnormalised
quaternions, so a quaternion is accepted within `ROTATION_QUAT_NORM` of unit
length and normalised; NaN/inf, a zero or scaled quaternion, a wrong frame,
unknown or missing joints are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from surgbot import contract
from surgbot.control.holder_config import ROTATION_QUAT_NORM
from surgbot.safety import checks

LINEAR_XY_EPS = 1e-9        # m/s: servo_cv linear x/y above this is reported as ignored


def finite(*arrays) -> bool:
    """Every array numeric and finite (the ground layer's check, as on every command path)."""
    return all(checks.finite("input", a) for a in arrays)


def quat_refusal(what: str, quat_xyzw: Sequence[float]) -> str:
    lo, hi = ROTATION_QUAT_NORM
    norm = float(np.linalg.norm(quat_xyzw))
    return "" if lo < norm < hi else f"{what}: quaternion norm {norm:.3f} is not a rotation"


def servo_cp_refusal(position: Sequence[float], quat_xyzw: Sequence[float], frame_id: str) -> str:
    """A desired tip pose in world."""
    if frame_id != contract.WORLD_FRAME:
        return f"servo_cp: frame_id {frame_id!r}, expected {contract.WORLD_FRAME!r}"
    if not finite(position, quat_xyzw):
        return "servo_cp: non-finite pose"
    return quat_refusal("servo_cp", quat_xyzw)


def servo_cv_refusal(linear: Sequence[float], angular: Sequence[float], frame_id: str,
                     max_angular: float, max_linear: float) -> str:
    """A view velocity in the tip frame (rad/s, m/s) within the configured limits."""
    if frame_id not in (contract.ENDOSCOPE_TIP_FRAME, ""):
        return f"servo_cv: frame_id {frame_id!r}, expected {contract.ENDOSCOPE_TIP_FRAME!r}"
    if not finite(linear, angular):
        return "servo_cv: non-finite twist"
    w = float(np.linalg.norm(angular))
    v = abs(float(linear[2]))
    if w > max_angular or v > max_linear:
        return f"servo_cv: |w| {w:.2f} rad/s or |v| {v:.3f} m/s over the limit"
    return ""


def head_refusal(position: Sequence[float], quat_xyzw: Sequence[float], frame_id: str) -> str:
    """The surgeon's head pose in world."""
    if frame_id != contract.WORLD_FRAME or not finite(position, quat_xyzw):
        return "head: bad frame or non-finite pose"
    return quat_refusal("head", quat_xyzw)


def psm_tip_refusal(position: Sequence[float], frame_id: str) -> str:
    """The PSM tool tip in PSM1_base."""
    if frame_id not in (contract.PSM_BASE_FRAME, "") or not finite(position):
        return "psm measured_cp: bad frame or non-finite"
    return ""


@functools.lru_cache(maxsize=8)
def _joint_order(model_names: tuple[str, ...], names: tuple[str, ...]) -> tuple[np.ndarray | None, list[str]]:
    """Index of each model joint in a message's names (the last index of a repeated name), or the
    missing ones.  Cached: a publisher sends the same names in every message (250 Hz here)."""
    where = {nm: k for k, nm in enumerate(names)}
    missing = [nm for nm in model_names if nm not in where]
    if missing:
        return None, missing
    return np.array([where[nm] for nm in model_names], dtype=np.intp), []


def joint_positions(model_names: Sequence[str], names: Sequence[str],
                    positions: Sequence[float]) -> tuple[np.ndarray | None, str]:
    """Positions in `model_names` order from a (names, positions) message, or (None, reason)."""
    names = tuple(names)
    positions = np.asarray(positions, float)
    if len(names) != len(positions):
        return None, f"joint state: {len(names)} names but {len(positions)} positions"
    if not finite(positions):
        return None, "joint state: non-finite position"
    order, missing = _joint_order(tuple(model_names), names)
    if order is None:
        return None, f"joint state lacks {missing}"
    return positions[order], ""
