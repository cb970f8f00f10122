"""Pinocchio model of the G1 right arm carrying the endoscope.

One source of truth: the model is built from the same MJCF the MuJoCo twin
loads (`pinocchio.buildModelFromMJCF`), so the controller and the sim cannot
drift apart.  pin 4.1's MJCF parser mis-composes placements of bodies without
joints (it drops the root body's `pos` and composes a site in a fixed child
body with the wrong parent offset), so after parsing, every joint placement
and every frame we use is re-derived from MuJoCo's own forward kinematics of
the same file, then cross-checked at random configurations (`max_fk_error`).

The full model is reduced to the right arm's 7 joints plus, optionally, the
3 waist joints; everything else (floating base, legs, left arm) is locked at a
reference configuration.  Waist joints are always kept in the reduced model
so their *measured* values enter the kinematics; `use_waist` only decides
whether the controller may move them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
import pinocchio as pin

from surgbot import area_path
from surgbot.contract import G1_JOINT_NAMES, G1_RIGHT_ARM, G1_WAIST
from surgbot.geometry import quat_to_matrix

DEFAULT_MJCF = area_path("sim") / "models" / "g1_29dof.xml"
TIP_FRAME = "endoscope_tip"
SHAFT_BASE_FRAME = "endoscope_shaft_base"
RIGHT_ARM_JOINTS = tuple(G1_JOINT_NAMES[i] for i in G1_RIGHT_ARM)
WAIST_JOINTS = tuple(G1_JOINT_NAMES[i] for i in G1_WAIST)
DEFAULT_CAMERA_FOVY_DEG = 60.0      # a model without the endoscope camera (test fixtures)
# FACTS.md: wrist pitch/yaw are 5 Nm / 22 rad/s motors, the other arm joints 25 Nm / 37 rad/s
SMALL_WRIST_VELOCITY, ARM_VELOCITY = 22.0, 37.0        # rad/s
SMALL_WRIST_EFFORT, ARM_EFFORT = 5.0, 25.0             # Nm


def pose_to_se3(pos, quat_xyzw) -> pin.SE3:
    """SE3 of a position and an (x, y, z, w) quaternion (zero or non-finite: ValueError)."""
    return pin.SE3(quat_to_matrix(quat_xyzw), np.asarray(pos, float))


def _mj_joint_frame(mj: mujoco.MjModel, md: mujoco.MjData, jid: int) -> pin.SE3:
    """World pose of a MuJoCo joint frame (its body frame moved to the joint's `pos`)."""
    bid = mj.jnt_bodyid[jid]
    R = md.xmat[bid].reshape(3, 3).copy()
    return pin.SE3(R, md.xpos[bid] + R @ mj.jnt_pos[jid])


@dataclass
class ArmLimits:
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class G1ScopeArm:
    """Reduced pinocchio model: waist (3) + right arm (7) with the scope frames.

    `q` vectors of this class are in `self.joint_names` order (waist first, then
    the right arm, as in the contract's joint order).
    """

    def __init__(self, mjcf_path: str | Path = DEFAULT_MJCF, *,
                 base_pose: tuple | None = None,
                 reference: dict[str, float] | None = None,
                 tip_frame: str = TIP_FRAME, shaft_base_frame: str = SHAFT_BASE_FRAME):
        self.mjcf_path = str(mjcf_path)
        full = pin.buildModelFromMJCF(self.mjcf_path)
        mj = mujoco.MjModel.from_xml_path(self.mjcf_path)
        md = mujoco.MjData(mj)
        self._mj, self._md = mj, md
        reference = dict(reference or {})
        base = pose_to_se3(*base_pose) if base_pose is not None else None

        q_full = self._full_q(full, mj, reference, base)
        self._repair_placements(full, mj, md, q_full)
        self.max_fk_error = self._cross_check(full, mj, md, q_full)
        if self.max_fk_error > 1e-6:
            raise ValueError(f"pinocchio and MuJoCo disagree by {self.max_fk_error:.3g} m on {mjcf_path}")

        keep = [n for n in WAIST_JOINTS + RIGHT_ARM_JOINTS if full.existJointName(n)]
        missing = [n for n in RIGHT_ARM_JOINTS if n not in keep]
        if missing:
            raise ValueError(f"{mjcf_path} lacks right-arm joints {missing}")
        lock = [j for j in range(1, full.njoints) if full.names[j] not in keep]
        self.model = pin.buildReducedModel(full, lock, q_full)
        self.data = self.model.createData()
        self.joint_names = tuple(self.model.names[j] for j in range(1, self.model.njoints))
        if any(self.model.joints[j].nq != 1 for j in range(1, self.model.njoints)):
            raise ValueError("expected only 1-DoF joints in the reduced arm model")
        self.nq = self.model.nq
        self.arm_idx = np.array([self.joint_names.index(n) for n in RIGHT_ARM_JOINTS])
        self.waist_idx = np.array([self.joint_names.index(n) for n in WAIST_JOINTS if n in self.joint_names], dtype=int)
        self.tip_id = self.model.getFrameId(tip_frame)
        self.shaft_base_id = self.model.getFrameId(shaft_base_frame)
        if self.tip_id >= len(self.model.frames) or self.shaft_base_id >= len(self.model.frames):
            raise ValueError(f"{mjcf_path} lacks sites {tip_frame!r}/{shaft_base_frame!r}")
        self.limits = self._limits(mj)
        self.q_reference = np.array([reference.get(n, 0.0) for n in self.joint_names])
        tip_frame, base_frame = self.model.frames[self.tip_id], self.model.frames[self.shaft_base_id]
        shaft = tip_frame.placement.translation - base_frame.placement.translation
        # a length only if both sites ride the same joint (a rigid shaft)
        self.shaft_length = (float(np.linalg.norm(shaft)) if tip_frame.parentJoint == base_frame.parentJoint
                             else float("nan"))
        self.camera_fovy_deg = (float(mj.cam_fovy[mj.camera("endoscope_camera").id])
                                if _has(mj, mujoco.mjtObj.mjOBJ_CAMERA, "endoscope_camera")
                                else DEFAULT_CAMERA_FOVY_DEG)

    # ------------------------------------------------------------------ build
    @staticmethod
    def _full_q(full: pin.Model, mj: mujoco.MjModel, reference: dict, base: pin.SE3 | None) -> np.ndarray:
        q = pin.neutral(full)
        for j in range(1, full.njoints):
            jm = full.joints[j]
            name = full.names[j]
            if jm.nq == 7:     # free flyer: the base pose in world
                M = base if base is not None else pin.SE3.Identity()
                free = [i for i in range(mj.njnt) if mj.jnt_type[i] == mujoco.mjtJoint.mjJNT_FREE]
                if base is None and free:
                    a = mj.jnt_qposadr[free[0]]
                    p, w = mj.qpos0[a:a + 3], mj.qpos0[a + 3:a + 7]
                    M = pin.SE3(quat_to_matrix((w[1], w[2], w[3], w[0])), p.copy())     # MuJoCo: w x y z
                q[jm.idx_q:jm.idx_q + 7] = pin.SE3ToXYZQUAT(M)
            elif jm.nq == 1:
                q[jm.idx_q] = float(reference.get(name, 0.0))
        return q

    @staticmethod
    def _mj_set(mj: mujoco.MjModel, md: mujoco.MjData, full: pin.Model, q: np.ndarray) -> None:
        md.qpos[:] = mj.qpos0
        for j in range(1, full.njoints):
            jid = _mj_joint_id(mj, full, j)
            if jid < 0:
                continue
            jm = full.joints[j]
            a = mj.jnt_qposadr[jid]
            if jm.nq == 7:
                x = q[jm.idx_q:jm.idx_q + 7]
                md.qpos[a:a + 3] = x[:3]
                md.qpos[a + 3:a + 7] = [x[6], x[3], x[4], x[5]]
            else:
                md.qpos[a] = q[jm.idx_q]
        mujoco.mj_kinematics(mj, md)

    def _repair_placements(self, full: pin.Model, mj, md, q: np.ndarray) -> None:
        """Re-derive joint and frame placements from MuJoCo's kinematics at `q`."""
        self._mj_set(mj, md, full, q)
        world = {0: pin.SE3.Identity()}
        for j in range(1, full.njoints):
            jid = _mj_joint_id(mj, full, j)
            if jid < 0:
                raise ValueError(f"joint {full.names[j]!r} not in MuJoCo model")
            M_j = _mj_joint_frame(mj, md, jid)
            if full.joints[j].nq == 7:
                # the free flyer's motion carries the body pose; its placement is identity
                full.jointPlacements[j] = pin.SE3.Identity()
                world[j] = M_j
                continue
            # undo this joint's own motion so the placement is its zero-position pose
            axis = mj.jnt_axis[jid]
            qj = q[full.joints[j].idx_q]
            M_zero = M_j * pin.SE3(pin.exp3(-axis * qj), np.zeros(3))
            world[j] = M_j
            full.jointPlacements[j] = world[full.parents[j]].actInv(M_zero)
            # pinocchio's revolute joint axis must match MuJoCo's axis in the joint frame
        for f in full.frames:
            if f.parentJoint >= len(world):
                continue
            if f.type == pin.FrameType.OP_FRAME and _has(mj, mujoco.mjtObj.mjOBJ_SITE, f.name):
                s = mj.site(f.name).id
                M = pin.SE3(md.site_xmat[s].reshape(3, 3).copy(), md.site_xpos[s].copy())
            elif f.type == pin.FrameType.BODY and _has(mj, mujoco.mjtObj.mjOBJ_BODY, f.name):
                b = mj.body(f.name).id
                M = pin.SE3(md.xmat[b].reshape(3, 3).copy(), md.xpos[b].copy())
            else:
                continue
            f.placement = world[f.parentJoint].actInv(M)
        # frames are stored by value: write them back
        for i, f in enumerate(list(full.frames)):
            full.frames[i] = f

    def _cross_check(self, full: pin.Model, mj, md, q_ref: np.ndarray, n: int = 5) -> float:
        """Largest position/orientation mismatch of sites between pinocchio and MuJoCo."""
        rng = np.random.default_rng(0)
        d = full.createData()
        worst = 0.0
        for k in range(n):
            q = q_ref.copy()
            if k:
                for j in range(1, full.njoints):
                    jm = full.joints[j]
                    if jm.nq == 1:
                        q[jm.idx_q] += rng.uniform(-0.5, 0.5)
            pin.framesForwardKinematics(full, d, q)
            self._mj_set(mj, md, full, q)
            for i, f in enumerate(full.frames):
                if f.type == pin.FrameType.OP_FRAME and _has(mj, mujoco.mjtObj.mjOBJ_SITE, f.name):
                    s = mj.site(f.name).id
                    dp = np.linalg.norm(d.oMf[i].translation - md.site_xpos[s])
                    dR = np.linalg.norm(d.oMf[i].rotation - md.site_xmat[s].reshape(3, 3))
                    worst = max(worst, dp, 0.1 * dR)
        return float(worst)

    def _limits(self, mj) -> ArmLimits:
        lo, hi = [], []
        for n in self.joint_names:
            jid = mj.joint(n).id
            if mj.jnt_limited[jid]:
                lo.append(mj.jnt_range[jid][0])
                hi.append(mj.jnt_range[jid][1])
            else:
                lo.append(-np.pi)
                hi.append(np.pi)
        small = [("wrist_pitch" in n or "wrist_yaw" in n) for n in self.joint_names]
        vel = np.where(small, SMALL_WRIST_VELOCITY, ARM_VELOCITY)
        eff = np.where(small, SMALL_WRIST_EFFORT, ARM_EFFORT)
        return ArmLimits(np.array(lo), np.array(hi), vel, eff)

    # ---------------------------------------------------------------- runtime
    def q_from_names(self, names, positions, q_out: np.ndarray | None = None) -> np.ndarray:
        """Model-order q from a (name, position) list; joints not given keep q_out's value."""
        q = self.q_reference.copy() if q_out is None else q_out
        index = {n: i for i, n in enumerate(self.joint_names)}
        for n, p in zip(names, positions, strict=True):
            i = index.get(n)
            if i is not None:
                q[i] = p
        return q

    def tip_pose(self, q: np.ndarray) -> pin.SE3:
        pin.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.tip_id].copy()

    def tip_position_rotation(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tip position and rotation (copies); joint FK plus the tip frame only (the model has ~70
        frames, `tip_pose` updates them all: this is the per-control-step path)."""
        pin.forwardKinematics(self.model, self.data, q)
        M = pin.updateFramePlacement(self.model, self.data, self.tip_id)
        return M.translation.copy(), M.rotation.copy()

    def frame_pose(self, q: np.ndarray, frame: str) -> pin.SE3:
        pin.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.model.getFrameId(frame)].copy()

    def tip_jacobian_local(self, q: np.ndarray) -> tuple[pin.SE3, np.ndarray]:
        """Tip pose and its 6xn LOCAL Jacobian ([v; w] in the tip frame), one C++ pass."""
        pin.computeJointJacobians(self.model, self.data, q)
        M = pin.updateFramePlacement(self.model, self.data, self.tip_id)
        return M, pin.getFrameJacobian(self.model, self.data, self.tip_id, pin.LOCAL)


def _mj_joint_id(mj: mujoco.MjModel, full: pin.Model, j: int) -> int:
    """MuJoCo joint id of pinocchio joint j (the free joint is matched by type, its name may differ)."""
    jid = mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_JOINT, full.names[j])
    if jid < 0 and full.joints[j].nq == 7:
        free = [i for i in range(mj.njnt) if mj.jnt_type[i] == mujoco.mjtJoint.mjJNT_FREE]
        jid = free[0] if free else -1
    return jid


def _has(mj: mujoco.MjModel, objtype, name: str) -> bool:
    return mujoco.mj_name2id(mj, objtype, name) >= 0
