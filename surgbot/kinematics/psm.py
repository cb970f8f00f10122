"""dVRK Patient Side Manipulator kinematics (modified DH, numpy only).

The table is the dVRK's (FACTS.md): the remote center of motion (RCM) is the
chain's origin, so every pose here is the tool tip in `PSM1_base`.  The same
table is built joint for joint into `sim/models/psm.xml`, so the twin and any
controller agree on what a joint vector means.

Inverse kinematics is closed form (the tool tip sits on the wrist-yaw axis, so
its position fixes the shaft line) and is polished by a few damped
Levenberg-Marquardt steps; the numerical solver alone (`ik_numeric`) is kept
for cross-checks and as a fallback near the (unreachable) singular poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgbot.contract import PSM_JOINT_NAMES

HALF_PI = np.pi / 2

# Modified DH rows: (alpha_{i-1}, a_{i-1}, theta, d, offset, prismatic)
DH = (
    (HALF_PI, 0.0, 0.0, 0.0, HALF_PI, False),      # yaw
    (-HALF_PI, 0.0, 0.0, 0.0, -HALF_PI, False),    # pitch
    (HALF_PI, 0.0, 0.0, 0.0, -0.4318, True),       # insertion
    (0.0, 0.0, 0.0, 0.4162, 0.0, False),           # roll
    (-HALF_PI, 0.0, 0.0, 0.0, -HALF_PI, False),    # wrist pitch
    (-HALF_PI, 0.0091, 0.0, 0.0, -HALF_PI, False),  # wrist yaw
)
INSERTION_OFFSET = -0.4318
ROLL_D = 0.4162
WRIST_A = 0.0091
TOOL_TIP_ROTATION = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])

N_JOINTS = 6
JOINT_NAMES = PSM_JOINT_NAMES
LOWER = np.array([-1.588, -0.925, 0.0, -4.538, -1.396, -1.396])
UPPER = np.array([1.588, 0.925, 0.24, 4.538, 1.396, 1.396])
JAW_LOWER, JAW_UPPER = -0.698, 1.396

# Wrist (frame 4 origin) depth past the RCM is insertion - (0.4318 - 0.4162).
WRIST_DEPTH_AT_ZERO = INSERTION_OFFSET + ROLL_D           # -0.0156 m
MIN_WRIST_DISTANCE = 0.045 + 0.002                          # 45 mm + 2 mm buffer
MIN_IK_INSERTION = MIN_WRIST_DISTANCE - WRIST_DEPTH_AT_ZERO  # 0.0626 m
HOME = np.array([0.0, 0.0, 0.12, 0.0, 0.0, 0.0])

# Trajectory and tracking limits (dVRK defaults, FACTS.md)
MAX_VELOCITY = np.array([np.deg2rad(90), np.deg2rad(90), 0.2] + [np.deg2rad(1080)] * 3)
MAX_ACCELERATION = np.array([np.deg2rad(90), np.deg2rad(90), 0.2] + [np.deg2rad(720)] * 3)
TRACKING_TOLERANCE = np.array([0.5, 0.5, 0.05, 0.6, 0.6, 0.6])
JAW_MAX_VELOCITY = np.deg2rad(1080)
JAW_MAX_ACCELERATION = np.deg2rad(720)
JAW_TRACKING_TOLERANCE = 0.6


class KinematicsError(ValueError):
    """Bad input to the kinematics (NaN/inf, wrong shape)."""


class UnreachablePose(KinematicsError):
    """No joint vector inside the limits reaches the requested pose."""


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _transform(alpha: float, a: float, theta: float, d: float) -> np.ndarray:
    """Modified DH link transform RotX(alpha) TransX(a) RotZ(theta) TransZ(d).

    Written out element by element with scalar math: the twin solves IK for
    every servo_cp inside a physics step, and building it from 3x3 numpy
    products made that step ten times longer (docs/performance.md)."""
    ca, sa = math.cos(alpha), math.sin(alpha)
    ct, st = math.cos(theta), math.sin(theta)
    return np.array([[ct, -st, 0.0, a],
                     [st * ca, ct * ca, -sa, -sa * d],
                     [st * sa, ct * sa, ca, ca * d],
                     [0.0, 0.0, 0.0, 1.0]])


def _numeric(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KinematicsError(f"{name} is not numeric: {exc}") from None


def check_joints(q, name: str = "joint vector") -> np.ndarray:
    """A finite float vector of the 6 PSM joints, or KinematicsError."""
    arr = _numeric(q, name)
    if arr.shape != (N_JOINTS,):
        raise KinematicsError(f"{name} must have {N_JOINTS} values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise KinematicsError(f"{name} contains NaN or inf: {arr.tolist()}")
    return arr


def check_pose(T, name: str = "pose") -> np.ndarray:
    """A finite 4x4 rigid transform (rotation orthonormal within 1e-3), or KinematicsError."""
    arr = _numeric(T, name)
    if arr.shape != (4, 4):
        raise KinematicsError(f"{name} must be 4x4, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise KinematicsError(f"{name} contains NaN or inf")
    R = arr[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
        raise KinematicsError(f"{name} rotation is not a proper rotation matrix")
    return arr


def within_limits(q, tol: float = 1e-9) -> bool:
    q = np.asarray(q, dtype=float)
    return bool((q >= LOWER - tol).all() and (q <= UPPER + tol).all())


def frames(q) -> list[np.ndarray]:
    """Base-frame transforms of DH frames 1..6 (index 0..5)."""
    q = check_joints(q)
    T = None
    out = []
    for i, (alpha, a, theta, d, offset, prismatic) in enumerate(DH):
        qi = float(q[i])
        if prismatic:
            Ti = _transform(alpha, a, theta, d + qi + offset)
        else:
            Ti = _transform(alpha, a, theta + qi + offset, d)
        T = Ti if T is None else T @ Ti
        out.append(T)
    return out


def fk(q) -> np.ndarray:
    """4x4 pose of the tool tip in PSM1_base (the RCM frame)."""
    T = frames(q)[-1].copy()
    T[:3, :3] = T[:3, :3] @ TOOL_TIP_ROTATION
    return T


def jacobian(q) -> np.ndarray:
    """6x6 geometric Jacobian of the tool tip in PSM1_base: rows (v; w)."""
    fr = frames(q)
    p = fr[-1][:3, 3]
    J = np.zeros((6, N_JOINTS))
    for i, Ti in enumerate(fr):
        z = Ti[:3, 2]
        if DH[i][5]:
            J[:3, i] = z
        else:
            J[:3, i] = np.cross(z, p - Ti[:3, 3])
            J[3:, i] = z
    return J


def rotation_error(R_goal: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Axis*angle rotating R onto R_goal, in the base frame."""
    Re = R_goal @ R.T
    cos = min(max((float(np.trace(Re)) - 1.0) / 2.0, -1.0), 1.0)
    angle = np.arccos(cos)
    v = np.array([Re[2, 1] - Re[1, 2], Re[0, 2] - Re[2, 0], Re[1, 0] - Re[0, 1]])
    s = np.linalg.norm(v)
    if angle < 1e-9:
        return 0.5 * v
    if s < 1e-9:  # angle ~ pi: axis from the symmetric part
        M = (Re + np.eye(3)) / 2.0
        axis = M[:, int(np.argmax(np.diag(M)))]
        return angle * axis / np.linalg.norm(axis)
    return angle * v / s


def pose_error(T_goal: np.ndarray, T: np.ndarray) -> tuple[float, float]:
    """(position error m, rotation error rad) between two poses."""
    return (float(np.linalg.norm(T_goal[:3, 3] - T[:3, 3])),
            float(np.linalg.norm(rotation_error(T_goal[:3, :3], T[:3, :3]))))


@dataclass
class IKResult:
    q: np.ndarray
    position_error: float      # m, of the returned q against the request
    rotation_error: float      # rad
    insertion_clamped: bool    # the request was too close to the RCM (dVRK clamp)
    iterations: int = 0


def _wrap_near(angle: float, ref: float) -> float:
    return angle + 2 * np.pi * np.round((ref - angle) / (2 * np.pi))


def _analytic_candidates(T: np.ndarray, seed: np.ndarray, clamp: bool) -> list[tuple[np.ndarray, bool]]:
    """Closed-form solutions (one per branch of the wrist-pitch link direction)."""
    p = T[:3, 3]
    R6 = T[:3, :3] @ TOOL_TIP_ROTATION.T
    z6 = R6[:, 2]
    perp = p - z6 * (z6 @ p)
    n = np.linalg.norm(perp)
    if n < 1e-9:
        return []
    out = []
    for sign in (1.0, -1.0):
        x5 = sign * perp / n
        p5 = p - WRIST_A * x5                     # wrist pitch point, on the shaft
        depth = np.linalg.norm(p5)
        if depth < 1e-9:
            continue
        d = p5 / depth
        q2 = math.asin(min(max(-float(d[1]), -1.0), 1.0))
        q1 = np.arctan2(d[0], -d[2])
        q3 = depth - WRIST_DEPTH_AT_ZERO
        clamped = False
        if clamp and q3 < MIN_IK_INSERTION:
            q3, clamped = MIN_IK_INSERTION, True
        q = np.array([q1, q2, q3, 0.0, 0.0, 0.0])
        R3 = frames(q)[2][:3, :3]
        z6_3 = R3.T @ z6
        # z6 in frame 3 is (cos q5 cos q4, cos q5 sin q4, -sin q5); |q5| < pi/2.
        q5 = math.asin(min(max(-float(z6_3[2]), -1.0), 1.0))
        q4 = _wrap_near(np.arctan2(z6_3[1], z6_3[0]), seed[3])
        q[3], q[4] = q4, q5
        R5 = frames(q)[4][:3, :3]
        M = (_rot_x(-HALF_PI)).T @ (R5.T @ R6)     # = RotZ(q6 - pi/2)
        q[5] = np.arctan2(M[1, 0], M[0, 0]) + HALF_PI
        q[5] = _wrap_near(q[5], 0.0)
        out.append((q, clamped))
    return out


def ik_numeric(T_goal, seed, iterations: int = 100, tol_pos: float = 1e-7,
               tol_rot: float = 1e-7, damping: float = 1e-4) -> tuple[np.ndarray, int]:
    """Damped least squares (Levenberg-Marquardt) on the tip pose, joint limits clamped."""
    T_goal = check_pose(T_goal)
    q = np.clip(check_joints(seed, "seed"), LOWER, UPPER)
    # Weight orientation by a 5 cm lever so metres and radians compare.
    w = np.array([1, 1, 1, 0.05, 0.05, 0.05])
    it = 0
    for it in range(1, iterations + 1):  # noqa: B007 - the iteration count is returned after the loop
        T = fk(q)
        e = np.concatenate([T_goal[:3, 3] - T[:3, 3], rotation_error(T_goal[:3, :3], T[:3, :3])])
        if np.linalg.norm(e[:3]) < tol_pos and np.linalg.norm(e[3:]) < tol_rot:
            break
        J = jacobian(q) * w[:, None]
        ew = e * w
        lam = damping + 0.1 * float(ew @ ew)
        dq = J.T @ np.linalg.solve(J @ J.T + lam * np.eye(6), ew)
        q = np.clip(q + dq, LOWER, UPPER)
    return q, it


def ik(T_goal, seed=None, clamp_insertion: bool = True, tol_pos: float = 1e-4,
       tol_rot: float = np.deg2rad(0.1)) -> IKResult:
    """Joint vector putting the tool tip at `T_goal` (4x4, PSM1_base).

    Closed form first, polished by LM steps; among branches the one inside the
    limits and closest to `seed` wins.  Poses that need the wrist closer than
    47 mm to the RCM are clamped as on the dVRK (`insertion_clamped`); poses
    whose solution leaves the joint limits raise `UnreachablePose`.
    """
    T_goal = check_pose(T_goal)
    seed = HOME.copy() if seed is None else check_joints(seed, "seed")
    best: IKResult | None = None
    rejected = []
    candidates = _analytic_candidates(T_goal, seed, clamp_insertion)
    if not candidates:
        q, it = ik_numeric(T_goal, seed)
        candidates = [(q, False)]
    for q, clamped in candidates:
        # roll may be shifted by 2 pi to stay near the seed while inside limits
        for k in (0.0, 2 * np.pi, -2 * np.pi):
            qk = q.copy()
            qk[3] += k
            if within_limits(qk, 1e-6):
                q = qk
                break
        if not within_limits(q, 1e-6):
            rejected.append(q)
            continue
        q = q.clip(LOWER, UPPER)
        T = fk(q)
        pe, re = pose_error(T_goal, T)
        it = 0
        if not clamped and (1e-9 < pe < 1e-3 or (pe < 1e-3 and 1e-7 < re < 1e-2)):
            # closed form is exact on the model; polish only round-off-level misses
            q2, it = ik_numeric(T_goal, q, iterations=5, tol_pos=1e-10, tol_rot=1e-10)
            pe2, re2 = pose_error(T_goal, fk(q2))
            if pe2 + 0.05 * re2 < pe + 0.05 * re:
                q, pe, re = q2, pe2, re2
        res = IKResult(q, pe, re, clamped, it)
        if not clamped and (pe > tol_pos or re > tol_rot):
            rejected.append(q)
            continue
        if best is None or np.linalg.norm(q - seed) < np.linalg.norm(best.q - seed):
            best = res
    if best is None:
        if rejected:
            q = rejected[0]
            bad = [f"{JOINT_NAMES[i]}={q[i]:.4f} (limits {LOWER[i]:.3f}..{UPPER[i]:.3f})"
                   for i in range(N_JOINTS) if not (LOWER[i] - 1e-6 <= q[i] <= UPPER[i] + 1e-6)]
            raise UnreachablePose("pose outside the PSM workspace: " + (", ".join(bad) or "no exact solution"))
        raise UnreachablePose("pose outside the PSM workspace")
    return best


def clamp_to_limits(q) -> tuple[np.ndarray, list[str]]:
    """q clipped into the joint limits, and the names of the joints that were clipped."""
    q = check_joints(q)
    clipped = np.clip(q, LOWER, UPPER)
    names = [JOINT_NAMES[i] for i in range(N_JOINTS) if clipped[i] != q[i]]
    return clipped, names
