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

import eigenpy
import numpy as np
import pinocchio as pin

from surgbot.control.pivot_config import PivotConfig
from surgbot.geometry import rotation_aligning
from surgbot.kinematics.g1_arm import G1ScopeArm

_COS_5_DEG = math.cos(math.radians(5.0))
_THIN_UV = int(eigenpy.DecompositionOptions.ComputeThinU) | int(eigenpy.DecompositionOptions.ComputeThinV)


@dataclass
class View:
    """A pivot-feasible tip pose: orientation (z along the shaft) and depth past the fulcrum."""
    rotation: np.ndarray
    depth: float

    def tip_position(self, fulcrum: np.ndarray) -> np.ndarray:
        return fulcrum + self.depth * self.rotation[:, 2]

    def copy(self) -> View:
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
        self.weights = np.array([self.config.weight(nm) for nm in arm.joint_names])
        self.lower = arm.limits.lower + self.config.limit_margin
        self.upper = arm.limits.upper - self.config.limit_margin
        self.vmax = np.minimum(arm.limits.velocity, self.config.max_joint_speed)
        self.q_posture = arm.q_reference.copy()
        # [fulcrum x, y; orientation; depth] rows = T @ [Jv; Jw]; the fixed entries are set here
        self._inv_depth_scale = 1.0 / self.config.depth_scale
        self._T = np.zeros((6, 6))
        self._T[0, 0] = self._T[1, 1] = -1.0
        self._T[2:5, 3:6] = np.eye(3)
        self._T[5, 2] = self._inv_depth_scale
        # per-step constants (active joints, weights and gains are fixed at construction)
        self._w_active = self.active * self.weights
        self._posture_gain = self.config.k_posture * self.active
        self._model, self._data, self._tip_id = arm.model, arm.data, arm.tip_id
        self.info = StepInfo()

    # ---------------------------------------------------------------- geometry
    def state(self, q: np.ndarray) -> ScopeState:
        pin.forwardKinematics(self._model, self._data, q)
        return self._state_of(pin.updateFramePlacement(self._model, self._data, self._tip_id))

    def _state_of(self, M: pin.SE3) -> ScopeState:
        """State from a tip pose (pinocchio's `rotation`/`translation` return copies)."""
        f = M.actInv(self.fulcrum)                # R^T (p_f - p)
        fx, fy, fz = f.tolist()
        return ScopeState(M.translation, M.rotation, f, math.hypot(fx, fy), -fz)

    def project(self, position: np.ndarray, rotation: np.ndarray) -> tuple[View, list[str]]:
        """Nearest pivot-feasible view to a requested tip pose, and why it was changed (if it was).

        The shaft direction is the one from the fulcrum to the requested tip
        position; the requested orientation is rotated minimally onto it
        (keeps the roll); depth and the cone around the port axis are clipped.
        """
        reasons: list[str] = []
        lo, hi = self.config.depth_range
        z = rotation[:, 2]
        zx, zy, zz = z.tolist()
        px, py, pz = np.asarray(position, float).tolist()
        fx, fy, fz = self.fulcrum.tolist()
        dx, dy, dz = px - fx, py - fy, pz - fz
        depth = math.sqrt(dx * dx + dy * dy + dz * dz)
        if depth < 1e-6:
            ux, uy, uz = zx, zy, zz
        else:
            ux, uy, uz = dx / depth, dy / depth, dz / depth
        if ux * zx + uy * zy + uz * zz < _COS_5_DEG:
            reasons.append("orientation rotated onto the shaft through the fulcrum")
        u = np.array((ux, uy, uz))
        if self.port_axis is not None:
            ax, ay, az = self.port_axis.tolist()
            ang = math.acos(min(1.0, max(-1.0, ux * ax + uy * ay + uz * az)))
            amax = math.radians(self.config.max_angle_from_axis_deg)
            if ang > amax:
                axis = np.cross(self.port_axis, u)
                axis /= np.linalg.norm(axis)
                u = pin.exp3(axis * amax) @ self.port_axis
                reasons.append(f"pan/tilt {np.degrees(ang):.1f} deg clipped to {np.degrees(amax):.1f} deg "
                               "from the port axis")
        if depth < lo or depth > hi:
            reasons.append(f"insertion {depth * 1e3:.1f} mm clipped to [{lo * 1e3:.0f}, {hi * 1e3:.0f}] mm")
            depth = min(max(depth, lo), hi)
        R = rotation_aligning(z, u).dot(rotation)
        return View(R, float(depth)), reasons

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

        Written for a 500 Hz Python loop, where a step costs about one
        microsecond per numpy/pinocchio call whatever the matrix size: the
        scalar parts are Python floats, the task rows come from one 6x6
        product with the Jacobian, and no n x n matrix is formed.
        """
        cfg = self.config
        model, data, tip = self._model, self._data, self._tip_id
        pin.computeJointJacobians(model, data, q)
        M = pin.updateFramePlacement(model, data, tip)
        J = pin.getFrameJacobian(model, data, tip, pin.LOCAL)
        f = M.actInv(self.fulcrum)        # R^T (p_f - p)
        fx, fy, fz = f.tolist()
        R = M.rotation
        st = ScopeState(M.translation, R, f, math.hypot(fx, fy), -fz)
        # task rows = T @ [Jv; Jw]: fulcrum lateral f' = (-Jv + [f]x Jw) dq (rows x, y), orientation
        # Jw, depth -f_z' / depth_scale; only the [f]x entries of T change
        T = self._T
        T[0, 4], T[0, 5], T[1, 3], T[1, 5] = -fz, fy, fz, -fx
        T[5, 3], T[5, 4] = fy * self._inv_depth_scale, -fx * self._inv_depth_scale
        B = T.dot(J)
        k1 = cfg.k_fulcrum
        e1x, e1y = -k1 * fx, -k1 * fy
        n1 = math.hypot(e1x, e1y)
        if n1 > cfg.max_fulcrum_rate:
            s = cfg.max_fulcrum_rate / n1
            e1x, e1y = e1x * s, e1y * s
        kv = cfg.k_view
        ex, ey, ez = pin.log3(R.T.dot(target.rotation)).tolist()
        ex, ey, ez = kv * ex, kv * ey, kv * ez
        ed = kv * (target.depth + fz) / cfg.depth_scale
        n2 = math.sqrt(ex * ex + ey * ey + ez * ez + ed * ed)
        if n2 > cfg.max_view_rate:      # a far target must not ask for huge rates (chatter near singularities)
            s = cfg.max_view_rate / n2
            ex, ey, ez, ed = ex * s, ey * s, ez * s, ed * s
        if w_ff is not None:
            wx, wy, wz = w_ff.tolist() if isinstance(w_ff, np.ndarray) else w_ff
            ex, ey, ez = ex + wx, ey + wy, ez + wz
            ed += depth_ff / cfg.depth_scale
        err = (e1x, e1y, ex, ey, ez, ed)
        e3 = self.q_posture - q
        e3 *= self._posture_gain          # k_posture on the active joints, 0 elsewhere

        info = StepInfo()
        lower, upper = self.lower, self.upper
        free = self.active
        W = self._w_active
        e3f = e3
        inside = False                    # dq keeps every joint inside its margins
        z1 = None
        for _ in range(3):
            z1, z = self._solve(B, err, e3f, W, info)
            dq = z * W
            q_next = dq * dt
            q_next += q
            if not np.count_nonzero((q_next < lower) | (q_next > upper)):     # no joint crosses a margin
                inside = True
                break
            hit = free & (((q_next < lower) & (dq < 0)) | ((q_next > upper) & (dq > 0)))
            if not np.count_nonzero(hit):
                break
            free = free & ~hit
            W = free * self.weights
            e3f = e3 * free
            info.saturated.extend(self.arm.joint_names[i] for i in np.flatnonzero(hit))
        if np.count_nonzero(np.abs(dq) > self.vmax):
            dq1 = z1 * W
            dq = self._speed_limit(dq1, dq - dq1, info)
            inside = False
        # a joint already past its margin is only allowed to move back inside (a step that ends
        # inside every margin already does: a joint below `lower` then has dq > 0, above `upper` dq < 0)
        if not inside and np.count_nonzero((q < lower) | (q > upper)):
            dq = np.where((q < lower) & (dq < 0) | (q > upper) & (dq > 0), 0.0, dq)
        self.info = info
        return dq, st

    def _solve(self, B, err, e3f, W, info):
        """Task-priority DLS on the stacked rows B (fulcrum 2, view 4) with errors `err`, posture e3f.

        Weighted least norm: solve for z with dq = W z (W = weights of the free
        joints).  Returns (z1, z): the fulcrum part and the whole step.  The
        algebra is the textbook one,

            J1+ = J1^T (J1 J1^T)^-1,  N1 = I - J1+ J1,  z1 = J1+ e1,
            z2 = (J2 N1)+_damped (e2 - J2 z1),  z3 = (N1 - V V^T) e3  (V: row space of J2 N1),

        rearranged so that the 2x2 and 4-row pieces are Python floats, the
        10-wide rows come from one product with J1, and, away from a
        singularity (no damping), z2 + z3 = N1 e3 + (J2 N1)+ (e2 - J2 z1 - J2 N1 e3)
        is one SVD solve.
        """
        e1x, e1y, e2x, e2y, e2z, e2d = err
        BW = B * W
        J1 = BW[:2]
        S = BW.dot(J1.T)                  # rows 0-1: J1 J1^T, rows 2-5: C = J2 J1^T
        (a, b), (c, d), (c00, c01), (c10, c11), (c20, c21), (c30, c31) = S.tolist()
        h0, h1, h2, h3, h4, h5 = BW.dot(e3f).tolist()       # J1 e3, J2 e3
        # task 1: 2x2 damped normal equations (the fulcrum task is never near-singular in practice)
        a += 1e-8
        d += 1e-8
        det = a * d - b * c
        i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det
        g0, g1 = i00 * e1x + i01 * e1y, i10 * e1x + i11 * e1y        # z1 = J1^T g
        k0, k1 = i00 * h0 + i01 * h1, i10 * h0 + i11 * h1            # N1 e3 = e3 - J1^T k
        KG = np.array(((i00, i01), (i10, i11), (g0, g1), (g0 - k0, g1 - k1))).dot(J1)
        X = BW[2:] - S[2:].dot(KG[:2])    # J2 N1
        # task 2 in the null space of 1, damped by its smallest singular value
        # (Eigen's Jacobi SVD through eigenpy: same decomposition as numpy's, a third of the call cost)
        svd = eigenpy.HhJacobiSVD(X, _THIN_UV)
        s = svd.singularValues()
        smin = s.item(3)                  # 4 view rows, descending
        info.sigma_min = smin
        z = KG[3] + e3f                   # z1 + N1 e3
        cfg = self.config
        if smin >= cfg.sigma_singular:
            info.damping = 0.0
            # e2 - J2 z1 - J2 N1 e3 = e2 - h2 - C (g - k)
            u0, u1 = g0 - k0, g1 - k1
            z += svd.solve(np.array((e2x - h2 - c00 * u0 - c01 * u1, e2y - h3 - c10 * u0 - c11 * u1,
                                     e2z - h4 - c20 * u0 - c21 * u1, e2d - h5 - c30 * u0 - c31 * u1)))
            return KG[2], z
        lam2 = cfg.lambda_max ** 2 * (1.0 - (smin / cfg.sigma_singular) ** 2)
        info.damping = math.sqrt(lam2)
        U = svd.matrixU()
        V = svd.matrixV()
        r = np.array((e2x - c00 * g0 - c01 * g1, e2y - c10 * g0 - c11 * g1,
                      e2z - c20 * g0 - c21 * g1, e2d - c30 * g0 - c31 * g1))      # e2 - J2 z1
        y = U.T.dot(r)
        y *= s / (s * s + (lam2 + 1e-12))
        vt_e3 = V.T.dot(e3f)              # V V^T e3: drop directions with no singular value
        if smin <= 1e-6:
            vt_e3 *= s > 1e-6
        y -= vt_e3
        z += V.dot(y)
        return KG[2], z

    def _speed_limit(self, dq1, dq_rest, info):
        """Scale the view/posture part first, the fulcrum part only if it alone is too fast."""
        v = self.vmax
        dq = dq1 + dq_rest
        if not np.count_nonzero(np.abs(dq) > v):
            return dq
        if (np.abs(dq1) <= v).all():
            # largest alpha in [0,1] with |dq1 + alpha dq_rest| <= v per joint
            alpha = 1.0
            for a1, r, vm in zip(dq1.tolist(), dq_rest.tolist(), v.tolist(), strict=True):
                if r > 0.0:
                    h = (vm - a1) / r
                elif r < 0.0:
                    h = (-vm - a1) / r
                else:
                    continue
                if h < alpha:
                    alpha = h
            alpha = max(alpha, 0.0)
            info.speed_scale = alpha
            return dq1 + alpha * dq_rest
        scale = float(np.min(v / np.maximum(np.abs(dq), 1e-12)))
        info.speed_scale = scale
        return dq * scale
