"""One geometry module: rotations, poses, the 10-d action/state vector, ROS stamps.

Ground layer: numpy only (ROS messages are duck-typed, never imported), so
cores, twins, the learning code and nodes share one implementation.

Conventions (contract): quaternions are (x, y, z, w) as in ROS; a 6D rotation
is the first two columns of the rotation matrix, column after column
(r00, r10, r20, r01, r11, r21); the 10-d vector is position (3, m),
6D rotation (6), jaw (rad).  Malformed input raises `ValueError` with the
reason, never returns a silently repaired value, except that a quaternion
within `QUAT_NORM_TOL` of unit length is normalised (messages carry float32
rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

QUAT_NORM_TOL = 1e-2          # |q| may differ from 1 by this much (float32 rounding in messages)
ZERO_NORM = 1e-9              # below this a quaternion or 6D column has no direction
ROT6D_PARALLEL_SIN = 1e-6     # 6D columns closer to parallel than this do not define a frame
POSE10_DIM = 10
PARALLEL_SIN = 1e-12         # rotation_aligning: vectors closer to (anti)parallel than this have no axis


def _finite_vector(values, n: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size != n:
        raise ValueError(f"{what}: expected {n} values, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what}: contains NaN or inf")
    return v


def quat_to_matrix(q_xyzw: Sequence[float], *, strict_norm: bool = False) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w).

    A zero, non-finite or (with `strict_norm`) non-unit quaternion raises
    `ValueError`: a command carrying (0, 0, 0, 0) must be rejected, not read as
    identity.
    """
    x, y, z, w = _finite_vector(q_xyzw, 4, "quaternion")
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n < ZERO_NORM:
        raise ValueError("quaternion has zero norm")
    if strict_norm and abs(n - 1.0) > QUAT_NORM_TOL:
        raise ValueError(f"quaternion norm {n:.4f} is not 1")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix, w >= 0 (Shepperd's method: stable near 180 deg)."""
    m = np.asarray(R, dtype=float)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)):
        raise ValueError("rotation matrix must be a finite 3x3")
    # Python floats: indexing numpy scalars one by one cost ~4x more (the console converts 2-3
    # poses per operator sample)
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = m.tolist()
    tr = m00 + m11 + m22
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s
    elif m00 > m11 and m00 > m22:
        s = 2.0 * math.sqrt(1.0 + m00 - m11 - m22)
        w, x, y, z = (m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s
    elif m11 > m22:
        s = 2.0 * math.sqrt(1.0 + m11 - m00 - m22)
        w, x, y, z = (m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s
    else:
        s = 2.0 * math.sqrt(1.0 + m22 - m00 - m11)
        w, x, y, z = (m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if w < 0:
        n = -n
    return x / n, y / n, z / n, w / n


def quat_to_rpy(q_xyzw: Sequence[float]) -> tuple[float, float, float]:
    """Roll, pitch, yaw (rad; R = Rz(yaw) Ry(pitch) Rx(roll), as an IMU reports them) of a unit
    quaternion.  Pitch is clamped to +-pi/2 at the gimbal lock."""
    x, y, z, w = (float(v) for v in q_xyzw)
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def is_rotation(R: np.ndarray, tol: float = 1e-6) -> bool:
    """True for a finite, orthonormal, right-handed 3x3."""
    m = np.asarray(R, dtype=float)
    return (m.shape == (3, 3) and bool(np.all(np.isfinite(m)))
            and bool(np.allclose(m.T @ m, np.eye(3), atol=tol)) and abs(np.linalg.det(m) - 1.0) < tol)


def matrix_to_rot6d(R: np.ndarray) -> np.ndarray:
    """The 6D rotation (contract section 7): first two columns, column after column."""
    m = np.asarray(R, dtype=float)
    return np.concatenate([m[:, 0], m[:, 1]])


def rot6d_to_matrix(v: Sequence[float]) -> np.ndarray:
    """Rotation from a 6D vector by Gram-Schmidt (Zhou et al. 2019); degenerate input -> ValueError."""
    a = _finite_vector(v, 6, "6D rotation")
    c0, c1 = a[:3], a[3:]
    n0 = np.linalg.norm(c0)
    if n0 < ZERO_NORM:
        raise ValueError("6D rotation: first column has zero norm")
    x = c0 / n0
    y = c1 - x * float(x @ c1)
    ny = np.linalg.norm(y)
    if ny < ROT6D_PARALLEL_SIN * max(np.linalg.norm(c1), ZERO_NORM) or ny < ZERO_NORM:
        raise ValueError("6D rotation: columns are parallel or zero")
    y = y / ny
    return np.column_stack([x, y, np.cross(x, y)])


def _axis_angle_matrix(kx: float, ky: float, kz: float, angle: float) -> np.ndarray:
    """Rodrigues: rotation by `angle` about the unit axis k."""
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return np.array([[c + t * kx * kx, t * kx * ky - s * kz, t * kx * kz + s * ky],
                     [t * kx * ky + s * kz, c + t * ky * ky, t * ky * kz - s * kx],
                     [t * kx * kz - s * ky, t * ky * kz + s * kx, c + t * kz * kz]])


def rotation_aligning(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b.

    (3-vector products as Python floats: `np.cross` alone costs more than
    the whole function; the endoscope holder runs this every step in its
    servo_cv/head/tool modes.)
    """
    ax, ay, az = np.asarray(a, float).tolist()
    bx, by, bz = np.asarray(b, float).tolist()
    vx, vy, vz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    s = math.sqrt(vx * vx + vy * vy + vz * vz)
    c = ax * bx + ay * by + az * bz
    if s >= PARALLEL_SIN:
        return _axis_angle_matrix(vx / s, vy / s, vz / s, math.atan2(s, c))
    if c > 0:
        return np.eye(3)
    # 180 deg: about any axis orthogonal to a (a x e_x, or a x e_y when a is along e_x)
    kx, ky, kz = (0.0, az, -ay) if ay * ay + az * az > 1e-12 else (-az, 0.0, ax)
    n = math.sqrt(kx * kx + ky * ky + kz * kz)
    return _axis_angle_matrix(kx / n, ky / n, kz / n, math.pi)


def pose_to_matrix(position: Sequence[float], q_xyzw: Sequence[float], *, strict_norm: bool = False) -> np.ndarray:
    """4x4 homogeneous transform of a position and a quaternion (x, y, z, w)."""
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q_xyzw, strict_norm=strict_norm)
    T[:3, 3] = _finite_vector(position, 3, "position")
    return T


def matrix_to_pose(T: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(position, quaternion x, y, z, w) of a 4x4."""
    m = np.asarray(T, dtype=float)
    if m.shape != (4, 4):
        raise ValueError("transform must be 4x4")
    return m[:3, 3].copy(), matrix_to_quat(m[:3, :3])


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 (R^T, -R^T p)."""
    m = np.asarray(T, dtype=float)
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return out


def pose10_from_matrix(T: np.ndarray, jaw: float) -> np.ndarray:
    """The 10-d state/action vector (contract section 7) of a tool-tip transform and jaw angle."""
    m = np.asarray(T, dtype=float)
    return np.concatenate([m[:3, 3], matrix_to_rot6d(m[:3, :3]), [float(jaw)]]).astype(np.float32)


def matrix_from_pose10(v: Sequence[float]) -> tuple[np.ndarray, float]:
    """(4x4 tool-tip transform, jaw) of a 10-d vector; malformed -> ValueError."""
    a = _finite_vector(v, POSE10_DIM, "10-d pose")
    T = np.eye(4)
    T[:3, :3] = rot6d_to_matrix(a[3:9])
    T[:3, 3] = a[:3]
    return T, float(a[9])


def rotation_angle(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle (rad) of the rotation between two rotation matrices."""
    c = (np.trace(np.asarray(R_a, float).T @ np.asarray(R_b, float)) - 1.0) / 2.0
    return math.acos(max(-1.0, min(1.0, c)))


# --- ROS messages (duck-typed: geometry_msgs Pose/PoseStamped, builtin_interfaces Time) ---------

def pose_msg_to_matrix(msg, *, strict_norm: bool = True) -> np.ndarray:
    """4x4 of a `Pose` or `PoseStamped`; NaN/inf, zero or non-unit quaternion -> ValueError."""
    pose = getattr(msg, "pose", msg)
    p, o = pose.position, pose.orientation
    return pose_to_matrix((p.x, p.y, p.z), (o.x, o.y, o.z, o.w), strict_norm=strict_norm)


def matrix_to_pose_msg(T: np.ndarray, msg):
    """Fill a `Pose` or `PoseStamped` from a 4x4; returns `msg`."""
    pose = getattr(msg, "pose", msg)
    p, q = matrix_to_pose(T)
    pose.position.x, pose.position.y, pose.position.z = p.tolist()
    o = pose.orientation
    o.x, o.y, o.z, o.w = q
    return msg


def stamp_to_sec(stamp) -> float:
    """Seconds of a `builtin_interfaces/Time` (or of a message with a header)."""
    st = getattr(getattr(stamp, "header", None), "stamp", stamp)
    return st.sec + 1e-9 * st.nanosec


def stamp_to_ns(stamp) -> int:
    st = getattr(getattr(stamp, "header", None), "stamp", stamp)
    return st.sec * 1_000_000_000 + st.nanosec


def sec_to_stamp(t: float, stamp):
    """Fill a `builtin_interfaces/Time` from seconds (>= 0); returns it."""
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"time {t!r} is not a finite, non-negative number of seconds")
    ns = int(round(t * 1e9))
    stamp.sec, stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return stamp


def ns_to_stamp(ns: int, stamp):
    stamp.sec, stamp.nanosec = int(ns) // 1_000_000_000, int(ns) % 1_000_000_000
    return stamp
