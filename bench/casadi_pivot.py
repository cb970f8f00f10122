"""The pivot problem as a CasADi + IPOPT NLP: the baseline the endoscope bench times the holder's
controller against (`surgbot bench --only endoscope`: endoscope.casadi_* rows).  CasADi is an
optional dependency of this comparison only (imported inside)."""

from __future__ import annotations

import numpy as np


def casadi_fk(model, frame_id: int):
    """Tip pose as CasADi expressions of q, from the pinocchio model's joint placements and axes
    (pinocchio's own casadi module is not in the PyPI wheel)."""
    import casadi as ca  # the baseline's optional dependency: only this comparison needs it

    q = ca.SX.sym("q", model.nq)
    poses = [(ca.SX.eye(3), ca.SX.zeros(3, 1))]
    for j in range(1, model.njoints):
        jm = model.joints[j]
        kind = jm.shortname()
        axis = {"JointModelRX": (1.0, 0.0, 0.0), "JointModelRY": (0.0, 1.0, 0.0),
                "JointModelRZ": (0.0, 0.0, 1.0)}.get(kind)
        if axis is None:
            axis = tuple(np.asarray(jm.axis, float))
        R_p, p_p = poses[model.parents[j]]
        M = model.jointPlacements[j]
        R = R_p @ ca.DM(M.rotation)
        p = p_p + R_p @ ca.DM(M.translation)
        a = np.asarray(axis) / np.linalg.norm(axis)
        K = ca.DM([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        th = q[jm.idx_q]
        Rj = ca.DM.eye(3) + ca.sin(th) * K + (1 - ca.cos(th)) * (K @ K)
        poses.append((R @ Rj, p))
    f = model.frames[frame_id]
    R_j, p_j = poses[f.parentJoint]
    return q, R_j @ ca.DM(f.placement.rotation), p_j + R_j @ ca.DM(f.placement.translation)


class CasadiPivotIK:
    """The pivot problem as one NLP per step, shaped like Unitree's XR teleop arm IK
    (weighted pose error + regularisation + smoothness, IPOPT), plus the fulcrum as a hard
    equality constraint and joint limits as bounds."""

    def __init__(self, arm, fulcrum: np.ndarray, active: np.ndarray):
        import casadi as ca  # optional dependency of the baseline only

        q, R, p = casadi_fk(arm.model, arm.tip_id)
        n = arm.nq
        self.active = active
        opti = ca.Opti()
        x = opti.variable(n)
        q_last = opti.parameter(n)
        q_post = opti.parameter(n)
        R_t = opti.parameter(3, 3)
        p_t = opti.parameter(3)
        fk = ca.Function("fk", [q], [R, p])
        Rx, px = fk(x)
        f = Rx.T @ (ca.DM(fulcrum) - px)
        cost = (50.0 * ca.sumsqr(px - p_t) + 0.5 * ca.sumsqr(Rx - R_t)
                + 0.02 * ca.sumsqr(x - q_post) + 0.1 * ca.sumsqr(x - q_last))
        opti.minimize(cost)
        opti.subject_to(f[0] == 0)
        opti.subject_to(f[1] == 0)
        lo, hi = arm.limits.lower, arm.limits.upper
        for i in range(n):
            if active[i]:
                opti.subject_to(opti.bounded(lo[i], x[i], hi[i]))
            else:
                opti.subject_to(x[i] == q_last[i])
        opti.solver("ipopt", {"print_time": False, "ipopt.print_level": 0, "ipopt.sb": "yes"},
                    {"max_iter": 50, "tol": 1e-6})
        self.opti, self.x, self.q_last, self.q_post, self.R_t, self.p_t = opti, x, q_last, q_post, R_t, p_t

    def solve(self, q_now: np.ndarray, q_posture: np.ndarray, R_target: np.ndarray, p_target: np.ndarray):
        o = self.opti
        o.set_value(self.q_last, q_now)
        o.set_value(self.q_post, q_posture)
        o.set_value(self.R_t, R_target)
        o.set_value(self.p_t, p_target)
        o.set_initial(self.x, q_now)
        try:
            sol = o.solve()
            return np.asarray(sol.value(self.x)).ravel()
        except RuntimeError:        # not converged in max_iter: take the last iterate, as the XR stack does
            return np.asarray(o.debug.value(self.x)).ravel()
