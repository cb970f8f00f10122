"""The G1's upper body as the bridge and the holder command it: joints, limits, PD gains, gravity.

The 17 upper-body joints in contract order (waist, left arm, right arm: the
right arm holds the endoscope), their position limits (from the MJCF, or the
generated table when it is not installed), the arm_sdk PD gains, and the
gravity torques the bridge sends as feed-forward at weight 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from surgbot import area_path, contract
from surgbot.results import Result
from surgbot.safety import checks

UPPER = tuple(contract.G1_UPPER_BODY)                     # indices 12..28
UPPER_NAMES = tuple(contract.G1_JOINT_NAMES[i] for i in UPPER)
UPPER_INDEX = {n: k for k, n in enumerate(UPPER_NAMES)}
N_UPPER = len(UPPER)
UPPER_SLICE = slice(UPPER[0], UPPER[-1] + 1)              # contiguous: a view, no copy per sample
assert tuple(range(contract.G1_NUM_JOINTS)[UPPER_SLICE]) == UPPER

# refusal cause: a joint name the upper body does not have (or twice, or a lower-body one)
CAUSE_NAMES = "names"

G1_MJCF = area_path("sim") / "models" / "g1_29dof.xml"

# Joint limits of the 17 upper-body joints (rad), generated from
# sim/models/g1_29dof.xml (= FACTS.md, Unitree URDF); used when the MJCF is not
# installed.  tests/test_g1_bridge_core.py checks it against the MJCF.
UPPER_LIMITS_TABLE = np.array([
    [-2.618, 2.618], [-0.52, 0.52], [-0.52, 0.52],
    [-3.0892, 2.6704], [-1.5882, 2.2515], [-2.618, 2.618], [-1.0472, 2.0944],
    [-1.97222, 1.97222], [-1.61443, 1.61443], [-1.61443, 1.61443],
    [-3.0892, 2.6704], [-2.2515, 1.5882], [-2.618, 2.618], [-1.0472, 2.0944],
    [-1.97222, 1.97222], [-1.61443, 1.61443], [-1.61443, 1.61443],
])

# arm_sdk gains per upper-body joint: waist, then shoulder p/r/y, elbow,
# wrist r/p/y per arm.  The left arm: stiffer than Unitree's example (60/1.5)
# at the shoulder/elbow.  The right arm holds the endoscope and gets 8x that
# stiffness (3x the damping): a position-controlled arm deflects by tau/kp
# before any outer loop can react, and a 1 Nm disturbance on a wrist joint at
# kp 30 moves the scope tip ~8 mm; at these gains the HOLD jitter under 1 Nm
# steps is ~0.16 mm RMS (bench endoscope.hold_jitter_rms).  The PD runs in
# the motor drivers, so the 500 Hz link does not bound it; wrist pitch/yaw
# are 5 Nm motors and saturate at ~20 mrad error.  To confirm on hardware
# (README): start from the left-arm figures and raise.
ARM_KP = [150, 150, 100, 100, 40, 30, 30]
ARM_KD = [3, 3, 2, 2, 1, 0.8, 0.8]
SCOPE_ARM_KP = [1200, 1200, 800, 800, 320, 240, 240]      # 8 x ARM_KP
SCOPE_ARM_KD = [9, 9, 6, 6, 3, 2.4, 2.4]                  # 3 x ARM_KD
DEFAULT_KP = np.array([200, 200, 200] + ARM_KP + SCOPE_ARM_KP, dtype=float)
DEFAULT_KD = np.array([5, 5, 5] + ARM_KD + SCOPE_ARM_KD, dtype=float)


def joint_limits_from_mjcf(path: Path | str = G1_MJCF) -> np.ndarray:
    """(17, 2) position limits of the upper-body joints, read with MuJoCo."""
    m = mujoco.MjModel.from_xml_path(str(path))
    return np.array([m.jnt_range[m.joint(n).id] for n in UPPER_NAMES], dtype=float)


def upper_limits() -> np.ndarray:
    try:
        return joint_limits_from_mjcf()
    except (OSError, ValueError):     # no MJCF installed (MuJoCo raises ValueError): the generated table
        return UPPER_LIMITS_TABLE.copy()


class GravityModel:
    """Gravity torques of the G1 (with its scope) at a measured posture, from the MJCF.

    The arm_sdk PD at weight 1 replaces the robot's own controller, so the
    bridge sends gravity as `tau` feed-forward; pelvis orientation from the IMU.
    """

    def __init__(self, path: Path | str = G1_MJCF):
        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_path(str(path))
        self.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)
        self.data = mujoco.MjData(self.model)
        self._qadr = np.array([self.model.jnt_qposadr[self.model.joint(n).id] for n in contract.G1_JOINT_NAMES])
        self._dadr = np.array([self.model.jnt_dofadr[self.model.joint(n).id] for n in contract.G1_JOINT_NAMES])
        free = [j for j in range(self.model.njnt) if self.model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        self._quat_adr = int(self.model.jnt_qposadr[free[0]]) + 3 if free else None
        self._out = np.zeros(self.model.nv)
        self._full = np.zeros((self.model.nv, self.model.nv))

    def _at(self, q29: np.ndarray, quat_wxyz: Sequence[float] | None) -> mujoco.MjData:
        """The model's data at a measured posture, still (qvel = qacc = 0), positions and inertias computed."""
        d = self.data
        d.qpos[self._qadr] = q29
        if self._quat_adr is not None and quat_wxyz is not None:
            d.qpos[self._quat_adr:self._quat_adr + 4] = quat_wxyz
        d.qvel[:] = 0.0
        d.qacc[:] = 0.0
        self._mj.mj_kinematics(self.model, d)
        self._mj.mj_comPos(self.model, d)
        return d

    def __call__(self, q29: np.ndarray, quat_wxyz: Sequence[float] | None = None) -> np.ndarray:
        self._mj.mj_rne(self.model, self._at(q29, quat_wxyz), 0, self._out)
        return self._out[self._dadr].copy()

    def inertia_diagonal(self, q29: np.ndarray, quat_wxyz: Sequence[float] | None) -> np.ndarray:
        """M_jj of the 17 upper-body joints (contract order) at a measured posture: each joint's
        inertia about its own axis with the others held, rotor armature included (the motors turn
        their rotors too).  What a safety stop scales each joint's damping by
        (surgbot/control/safe_stop.py)."""
        d = self._at(q29, quat_wxyz)
        self._mj.mj_crb(self.model, d)
        self._mj.mj_fullM(self.model, d, self._full)
        dofs = self._dadr[UPPER_SLICE]
        return self._full[dofs, dofs].copy()


def check_upper_command(names: Sequence[str], positions: Sequence[float], velocities: Sequence[float] | None,
                        limits: np.ndarray) -> Result:
    """A command for named upper-body joints, checked whole: value (joint indices, positions,
    velocities or None), or a failure with its cause (shape, finite, names, limit)."""
    names = list(names)
    if len(names) == 0:
        return Result.failure(f"{checks.CAUSE_SHAPE}: empty command: no joint names")
    r = checks.finite("positions", positions, len(names))
    if not r:
        return r
    pos = r.value.ravel()
    vel = None
    if velocities is not None and len(velocities) > 0:
        r = checks.finite("velocities", velocities, len(names))
        if not r:
            return r
        vel = r.value.ravel()
    if len(set(names)) != len(names):
        return Result.failure(f"{CAUSE_NAMES}: duplicate joint names")
    lower = [n for n in names if n in contract.G1_INDEX and n not in UPPER_INDEX]
    if lower:
        return Result.failure(f"{CAUSE_NAMES}: not upper-body joints (arm_sdk drives indices 12..28 only): "
                              f"{lower}")
    unknown = [n for n in names if n not in UPPER_INDEX]
    if unknown:
        return Result.failure(f"{CAUSE_NAMES}: unknown joint names: {unknown}")
    idx = np.array([UPPER_INDEX[n] for n in names])
    lo, hi = limits[idx, 0], limits[idx, 1]
    bad = [f"{n}={p:.4f} not in [{a:.4f}, {b:.4f}]"
           for n, p, a, b in zip(names, pos, lo, hi, strict=True) if not a <= p <= b]
    if bad:
        return Result.failure(f"{checks.CAUSE_LIMIT}: target outside joint limits: " + "; ".join(bad))
    return Result.success((idx, pos, vel))
