"""The holder's arm loop: kinematic reference, joint integrator, acceleration feed-forward.

* The pivot IK's joint velocity is integrated into a *kinematic reference*
  `q_ref` that follows the setpoint exactly on the model.
* A joint-space integrator on `q_ref - q_measured` adds the offset the
  robot's PD needs against gravity sag, disturbances and tracking error, so
  the measured arm converges to `q_ref`.  It runs only while the view is
  still (during a motion the tracking lag would wind it up), with a per-joint
  gain bounded by PID stability `ki < kd / I` at the current inertia.
* The command is `q_ref + offset + M(q) ddq / kp + lead * dq` (the bridge's
  PD then supplies the inertia torque; the lead covers the link delay),
  clipped to the joint limits, with `dq` as velocity feed-forward.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin

from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP, UPPER_NAMES
from surgbot.control.holder_config import HolderConfig
from surgbot.kinematics.g1_arm import G1ScopeArm

MASS_REFRESH_STEPS = 25     # the inertia changes slowly with posture: M(q_ref) every this many steps
UNDRIVEN_KP = 1e9           # a joint the bridge does not drive: no feed-forward through it


class JointServo:
    """q_ref, the integral offset and the joint command of the scope arm."""

    def __init__(self, arm: G1ScopeArm, cfg: HolderConfig, active: np.ndarray):
        n = arm.nq
        self.arm = arm
        self.cfg = cfg
        self.dt = cfg.dt
        self.n = n
        kp = dict(zip(UPPER_NAMES, cfg.bridge_kp if cfg.bridge_kp is not None else DEFAULT_KP.tolist(), strict=True))
        kd = dict(zip(UPPER_NAMES, cfg.bridge_kd if cfg.bridge_kd is not None else DEFAULT_KD.tolist(), strict=True))
        self._inv_kp = np.array([1.0 / float(kp.get(nm, UNDRIVEN_KP)) for nm in arm.joint_names])
        self._kd = np.array([float(kd.get(nm, 0.0)) for nm in arm.joint_names])
        self.q_ref = np.zeros(n)
        self.dq_ref = np.zeros(n)
        self.offset = np.zeros(n)
        self.q_cmd = np.zeros(n)
        self._ddq = np.zeros(n)
        self._ki = np.full(n, cfg.integral_gain)
        self._M_over_kp = np.zeros((n, n))                 # rows of M scaled by 1/kp (active joints)
        self._lower_tri = np.tril_indices(n, -1)
        self._mass_count = 0
        acc_alpha = 1.0 - np.exp(-2 * np.pi * cfg.accel_filter_hz * self.dt)
        self._acc_keep = 1.0 - acc_alpha          # ddq <- keep ddq + (alpha / dt) (dq - dq_ref)
        self._acc_gain = acc_alpha / self.dt
        self._crba_symmetric: bool | None = None  # does pin.crba fill the lower triangle too
        self.set_active(active)

    def set_active(self, active: np.ndarray) -> None:
        """The joints the IK moves (the others follow the measurement, get no integral action)."""
        self.active = active
        self.active_idx = np.flatnonzero(active)
        self.active_names = tuple(self.arm.joint_names[i] for i in self.active_idx)
        self._inactive = ~active
        self._any_inactive = bool(self._inactive.any())    # (else q_ref needs no copy of them)
        self._stability_kd = self.cfg.integral_stability * self._kd
        self._inv_kp_column = (self._inv_kp * active)[:, None]
        self._dt_active = self.dt * active
        self._ki_dt_active = self._ki * self._dt_active

    def start(self, q_meas: np.ndarray) -> None:
        """Reference := the measured joints, at rest, no integral offset."""
        self.q_ref = q_meas.copy()
        self._ddq[:] = 0.0
        self.offset[:] = 0.0
        self.dq_ref[:] = 0.0

    def follow_inactive(self, q_meas: np.ndarray) -> None:
        """Joints the IK does not move track the measurement in the reference."""
        if self._any_inactive:
            np.copyto(self.q_ref, q_meas, where=self._inactive)

    def advance(self, dq: np.ndarray, q_meas: np.ndarray, integrate: bool) -> None:
        """Integrate the IK's joint velocity; low-pass the acceleration; integrate the offset if still."""
        dt = self.dt
        q_ref = self.q_ref
        q_ref += dq * dt
        ddq = self._ddq                 # low-passed acceleration: ddq += alpha ((dq - dq_ref) / dt - ddq)
        ddq *= self._acc_keep
        acc = dq - self.dq_ref
        acc *= self._acc_gain
        ddq += acc
        self.dq_ref = dq
        if integrate:
            off = self.offset
            step = q_ref - q_meas
            step *= self._ki_dt_active
            off += step
            lim = self.cfg.integral_limit
            np.maximum(off, -lim, out=off)
            np.minimum(off, lim, out=off)

    def command(self, dq: np.ndarray) -> np.ndarray:
        """The joint position command (all joints) for velocity `dq`; kept as `q_cmd`."""
        self._mass_count -= 1
        if self._mass_count <= 0:
            self._update_mass()
        if self.cfg.accel_feedforward:
            q = self._M_over_kp.dot(self._ddq)       # the PD then supplies the inertia torque M ddq
            q += self.q_ref
        else:
            q = self.q_ref.copy()
        q += self.offset
        q += self.cfg.command_lead_s * dq
        np.maximum(q, self.arm.limits.lower, out=q)
        np.minimum(q, self.arm.limits.upper, out=q)
        self.q_cmd = q
        return q

    def _update_mass(self) -> None:
        """Joint-space inertia at q_ref (symmetric) and the per-joint integral gains it bounds.

        Runs inside every `MASS_REFRESH_STEPS`-th step, so it is kept to a
        few calls: it must not stand out in the step-time tail.
        """
        M = np.array(pin.crba(self.arm.model, self.arm.data, self.q_ref))
        if self._crba_symmetric is None:      # pin 4's Python crba fills both triangles, older ones the upper
            self._crba_symmetric = bool(np.array_equal(M, M.T))
        if not self._crba_symmetric:
            M[self._lower_tri] = M.T[self._lower_tri]
        # per-joint PID stability bound ki < kd / I (I: the joint's inertia at this posture)
        np.minimum(self.cfg.integral_gain, self._stability_kd / M.diagonal(), out=self._ki)
        self._M_over_kp = M * self._inv_kp_column
        self._ki_dt_active = self._ki * self._dt_active
        self._mass_count = MASS_REFRESH_STEPS
