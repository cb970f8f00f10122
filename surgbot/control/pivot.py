"""Pivot-constrained differential IK for a scope held through a fulcrum.

Task priority, damped least squares, no QP (fixed small matrices, so a step
fits a 500 Hz budget in Python):

1. fulcrum (hard): the fulcrum expressed in the tip frame, `f = R^T (p_f - p)`,
   must lie on the shaft line, i.e. `f_x = f_y = 0`.  Its rate is
   `f' = -v - w x f = (-Jv + [f]x Jw) dq` (LOCAL Jacobian of the tip).
2. view, in the null space of 1: tip orientation (3, LOCAL) and insertion
   depth `-f_z` (1).  With 1 holding, these 4 numbers fix the tip pose
   (pan/tilt/roll about the fulcrum and insertion), so the 6 rows of 1+2 are
   consistent and a 7-DoF arm keeps 1 DoF of self-motion for
3. posture, in the null space of 1 and 2.

Joint position limits are handled by freezing a joint that would cross its
margin and solving again without it (saturation in the null space); joint
speed limits by scaling the view/posture part first and the fulcrum part only
if it alone is too fast.  Near a singularity of the view task the damping
rises smoothly with the smallest singular value (slows down, never jumps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pinocchio as pin

from surgbot.kinematics.g1_arm import G1ScopeArm


@dataclass
class PivotConfig:
    k_fulcrum: float = 60.0          # 1/s, lateral fulcrum error convergence
    k_view: float = 30.0             # 1/s, view error convergence
    k_posture: float = 0.5           # 1/s, pull to the posture in the remaining null space
    max_view_rate: float = 1.0       # cap on the view task's commanded rate (rad/s; insertion / depth_scale)
    max_fulcrum_rate: float = 0.05   # m/s cap on the lateral correction
    depth_scale: float = 0.1         # m: insertion row divided by this (rad-comparable units)
    sigma_singular: float = 0.08     # below this smallest singular value, damping rises
    lambda_max: float = 0.1         # damping at a full singularity
    limit_margin: float = 0.03       # rad kept from each joint limit
    max_joint_speed: float = 1.0     # rad/s, cap on every joint (also below the hardware cap)
    depth_range: tuple = (0.02, 0.15)    # m, allowed insertion depth (fulcrum to tip)
    max_angle_from_axis_deg: float = 60.0  # pan/tilt cone around the port axis
    active_joints: tuple | None = None     # names the solver may move (default: right arm)
    joint_weights: dict = field(default_factory=dict)  # name -> weight (< 1: moved less, e.g. waist)


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def rotation_aligning(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b."""
    v = np.cross(a, b)
    s = np.linalg.norm(v)
    c = float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        # 180 deg: any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        return pin.exp3(np.pi * axis / np.linalg.norm(axis))
    return pin.exp3(v / s * np.arctan2(s, c))


@dataclass
class View:
    """A pivot-feasible tip pose: orientation (z along the shaft) and depth past the fulcrum."""
    rotation: np.ndarray
    depth: float

    def tip_position(self, fulcrum: np.ndarray) -> np.ndarray:
        return fulcrum + self.depth * self.rotation[:, 2]

    def copy(self) -> "View":
        return View(self.rotation.copy(), float(self.depth))


@dataclass
class ScopeState:
    """Where the scope is relative to the fulcrum (from one FK pass)."""
    tip_position: np.ndarray
    tip_rotation: np.ndarray
    fulcrum_in_tip: np.ndarray      # f = R^T (p_f - p)
    fulcrum_error: float            # lateral distance of the fulcrum from the shaft line, m
    depth: float                    # insertion: tip ahead of the fulcrum along the shaft, m


@dataclass
class StepInfo:
    saturated: list = field(default_factory=list)   # joints frozen at a limit this step
    speed_scale: float = 1.0                          # < 1 when the joint speed cap bound
    sigma_min: float = 0.0                            # smallest singular value of the view task
    damping: float = 0.0


class PivotIK:
    """One differential-IK step: joint velocities that keep the shaft on the fulcrum and move the view."""

    def __init__(self, arm: G1ScopeArm, fulcrum: np.ndarray, config: PivotConfig | None = None,
                 port_axis: np.ndarray | None = None):
        self.arm = arm
        self.config = config or PivotConfig()
        self.fulcrum = np.asarray(fulcrum, float).copy()
        self.port_axis = None if port_axis is None else np.asarray(port_axis, float) / np.linalg.norm(port_axis)
        n = arm.nq
        self.n = n
        names = self.config.active_joints or tuple(arm.joint_names[i] for i in arm.arm_idx)
        self.active = np.array([nm in names for nm in arm.joint_names])
        self.weights = np.array([float(self.config.joint_weights.get(nm, 1.0)) for nm in arm.joint_names])
        self.lower = arm.limits.lower + self.config.limit_margin
        self.upper = arm.limits.upper - self.config.limit_margin
        self.vmax = np.minimum(arm.limits.velocity, self.config.max_joint_speed)
        self.q_posture = arm.q_reference.copy()
        self._J2 = np.zeros((4, n))
        self._S = np.zeros((3, 3))
        self._eye = np.eye(n)
        self.info = StepInfo()

    # ---------------------------------------------------------------- geometry
    def state(self, q: np.ndarray) -> ScopeState:
        M = self.arm.tip_pose(q)
        return self._state_from(M.translation, M.rotation)

    def _state_from(self, p: np.ndarray, R: np.ndarray) -> ScopeState:
        f = R.T @ (self.fulcrum - p)
        return ScopeState(p.copy(), R.copy(), f, math.hypot(f[0], f[1]), float(-f[2]))

    def project(self, position: np.ndarray, rotation: np.ndarray) -> tuple[View, list[str]]:
        """Nearest pivot-feasible view to a requested tip pose, and why it was changed (if it was).

        The shaft direction is the one from the fulcrum to the requested tip
        position; the requested orientation is rotated minimally onto it
        (keeps the roll); depth and the cone around the port axis are clipped.
        """
        reasons: list[str] = []
        lo, hi = self.config.depth_range
        d = np.asarray(position, float) - self.fulcrum
        depth = float(np.linalg.norm(d))
        if depth < 1e-6:
            u = rotation[:, 2].copy()
        else:
            u = d / depth
        if float(np.dot(u, rotation[:, 2])) < np.cos(np.radians(5.0)):
            reasons.append("orientation rotated onto the shaft through the fulcrum")
        if self.port_axis is not None:
            ang = float(np.arccos(np.clip(np.dot(u, self.port_axis), -1.0, 1.0)))
            amax = np.radians(self.config.max_angle_from_axis_deg)
            if ang > amax:
                axis = np.cross(self.port_axis, u)
                axis /= np.linalg.norm(axis)
                u = pin.exp3(axis * amax) @ self.port_axis
                reasons.append(f"pan/tilt {np.degrees(ang):.1f} deg clipped to {np.degrees(amax):.1f} deg from the port axis")
        if depth < lo or depth > hi:
            reasons.append(f"insertion {depth * 1e3:.1f} mm clipped to [{lo * 1e3:.0f}, {hi * 1e3:.0f}] mm")
            depth = float(np.clip(depth, lo, hi))
        R = rotation_aligning(rotation[:, 2], u) @ rotation
        return View(R, depth), reasons

    def view_of(self, q: np.ndarray) -> View:
        """The pivot-feasible view nearest to where the scope is at q."""
        s = self.state(q)
        view, _ = self.project(s.tip_position, s.tip_rotation)
        return view

    def move_view(self, view: View, pan: float, tilt: float, insertion: float, roll: float) -> tuple[View, list[str]]:
        """View rotated about the fulcrum by small angles in the tip frame.

        pan = rotation about the tip x axis (angular.x), tilt about y
        (angular.y), roll about z, insertion along z (m).
        """
        R = view.rotation @ pin.exp3(np.array([pan, tilt, roll]))
        p = self.fulcrum + (view.depth + insertion) * R[:, 2]
        return self.project(p, R)

    # -------------------------------------------------------------------- step
    def step(self, q: np.ndarray, target: View, dt: float,
             w_ff: np.ndarray | None = None, depth_ff: float = 0.0) -> tuple[np.ndarray, ScopeState]:
        """Joint velocity (model order) for one control period, and the scope state at q.

        `w_ff` (tip-frame angular velocity) and `depth_ff` are the target's own
        motion, fed forward so a moving target is followed without lag.
        """
        cfg = self.config
        M, J = self.arm.tip_jacobian_local(q)
        p = M.translation
        R = M.rotation
        st = self._state_from(p, R)
        f = st.fulcrum_in_tip
        Jv = J[:3]
        Jw = J[3:]
        S = self._S           # skew(f), filled in place
        S[0, 1], S[0, 2], S[1, 2] = -f[2], f[1], -f[0]
        S[1, 0], S[2, 0], S[2, 1] = f[2], -f[1], f[0]
        Jf = S @ Jw - Jv
        J1 = Jf[:2]
        e1 = -cfg.k_fulcrum * f[:2]
        n1 = math.hypot(e1[0], e1[1])
        if n1 > cfg.max_fulcrum_rate:
            e1 *= cfg.max_fulcrum_rate / n1
        J2 = self._J2
        J2[:3] = Jw
        J2[3] = -Jf[2] / cfg.depth_scale
        e_rot = pin.log3(R.T @ target.rotation)
        e2 = np.empty(4)
        e2[:3] = cfg.k_view * e_rot
        e2[3] = cfg.k_view * (target.depth - st.depth) / cfg.depth_scale
        n2 = math.sqrt(e2 @ e2)
        if n2 > cfg.max_view_rate:      # a far target must not ask for huge rates (chatter near singularities)
            e2 *= cfg.max_view_rate / n2
        if w_ff is not None:
            e2[:3] += w_ff
            e2[3] += depth_ff / cfg.depth_scale
        e3 = cfg.k_posture * (self.q_posture - q)

        free = self.active.copy()
        info = StepInfo()
        dq1 = dq_rest = None
        for _ in range(3):
            dq1, dq_rest = self._solve(J1, e1, J2, e2, e3, free, info)
            dq = dq1 + dq_rest
            q_next = q + dq * dt
            hit = free & (((q_next < self.lower) & (dq < 0)) | ((q_next > self.upper) & (dq > 0)))
            if not hit.any():
                break
            free &= ~hit
            info.saturated.extend(self.arm.joint_names[i] for i in np.flatnonzero(hit))
        dq = self._speed_limit(dq1, dq_rest, info)
        # a joint already past its margin is only allowed to move back inside
        dq = np.where((q < self.lower) & (dq < 0) | (q > self.upper) & (dq > 0), 0.0, dq)
        self.info = info
        return dq, st

    def _solve(self, J1, e1, J2, e2, e3, free, info):
        # weighted least norm: solve for z with dq = W z (W = weights of the free joints)
        W = free * self.weights
        J1f = J1 * W
        J2f = J2 * W
        # task 1: 2x2 damped normal equations (the fulcrum task is never near-singular in practice)
        A1 = J1f @ J1f.T
        a, b, c, d = A1[0, 0] + 1e-8, A1[0, 1], A1[1, 0], A1[1, 1] + 1e-8
        det = a * d - b * c
        J1p = J1f.T @ np.array([[d, -b], [-c, a]]) * (1.0 / det)
        dq1 = J1p @ e1
        N1 = self._eye - J1p @ J1f
        # task 2 in the null space of 1, damped by its smallest singular value
        JN = J2f @ N1
        U, s, Vt = np.linalg.svd(JN, full_matrices=False)
        smin = s[-1]
        cfg = self.config
        lam2 = 0.0 if smin >= cfg.sigma_singular else cfg.lambda_max ** 2 * (1.0 - (smin / cfg.sigma_singular) ** 2)
        info.sigma_min = float(smin)
        info.damping = float(np.sqrt(lam2))
        inv = s / (s * s + lam2 + 1e-12)
        r = (e2 - J2f @ dq1)
        dq2 = Vt.T @ (inv * (U.T @ r))
        # task 3 in what is left
        keep = s > 1e-6
        V = Vt[keep]
        N2 = N1 - V.T @ V
        dq3 = N2 @ (e3 * free)
        return dq1 * W, (dq2 + dq3) * W

    def _speed_limit(self, dq1, dq_rest, info):
        """Scale the view/posture part first, the fulcrum part only if it alone is too fast."""
        v = self.vmax
        dq = dq1 + dq_rest
        if np.all(np.abs(dq) <= v):
            return dq
        if np.all(np.abs(dq1) <= v):
            # largest alpha in [0,1] with |dq1 + alpha dq_rest| <= v per joint
            with np.errstate(divide="ignore", invalid="ignore"):
                hi = np.where(dq_rest > 0, (v - dq1) / dq_rest, np.where(dq_rest < 0, (-v - dq1) / dq_rest, np.inf))
            alpha = float(np.clip(np.min(hi), 0.0, 1.0))
            info.speed_scale = alpha
            return dq1 + alpha * dq_rest
        scale = float(np.min(v / np.maximum(np.abs(dq), 1e-12)))
        info.speed_scale = scale
        return dq * scale
