"""The G1's joint torques as the robot's motor layer makes them, for the twin (ROS- and DDS-free).

Three regimes, chosen by the motion mode (see sim/g1_twin.py for what the robot's documentation
leaves open and the twin chose):

* standing: a PD hold of the stand pose with Unitree's example gains plus gravity feed-forward (a
  balance controller is model based), its targets ramped from the posture it started in over
  STAND_RAMP_S; `rt/arm_sdk` blends q, dq, kp, kd and tau of the upper body linearly with it by its
  weight, so at weight 1 the sender's own PD (and feed-forward, if any) drives the arm;
* released, before the first `rt/lowcmd`: damping (tau = -kd dq), like the robot's damping state;
* released, following `rt/lowcmd`: each motor's own PD + tau, mode 0 = off (zero torque).
"""

from __future__ import annotations

import numpy as np

from surgbot import contract

# Standing controller gains (FACTS: Unitree low-level example gains), arms a bit
# stiffer (60 / 1.5, Unitree's arm_sdk example figures) to hold a scope.
_KP_LEG = [60, 60, 60, 100, 40, 40]
_KD_LEG = [1, 1, 1, 2, 1, 1]
STAND_KP = np.array(_KP_LEG * 2 + [60, 40, 40] + [60] * 14, dtype=float)
STAND_KD = np.array(_KD_LEG * 2 + [1, 1, 1] + [1.5] * 14, dtype=float)
STAND_RAMP_S = 2.0
_UPPER = list(contract.G1_UPPER_BODY)


class StandingController:
    """The standing mode's PD hold of `stand` (29 joint targets, rad), blended with arm_sdk."""

    def __init__(self, stand: np.ndarray):
        self.stand = np.asarray(stand, dtype=float).copy()
        self._from = self.stand.copy()
        self._t0 = -1e9                 # long ago: the stand pose itself until restart() says otherwise

    def restart(self, q: np.ndarray, t: float) -> None:
        """The mode was (re)selected at time t with the body at q: ramp from there."""
        self._from, self._t0 = np.asarray(q, dtype=float).copy(), t

    def torques(self, t: float, q: np.ndarray, dq: np.ndarray, gravity: np.ndarray,
                arm: np.ndarray | None, weight: float) -> np.ndarray:
        """Joint torques at time t; `arm` the last arm_sdk MotorCmd_ records, `weight` its blend 0..1."""
        s = min(1.0, (t - self._t0) / STAND_RAMP_S)
        q_des = self._from + s * (self.stand - self._from)
        dq_des = np.zeros_like(q_des)
        kp, kd = STAND_KP.copy(), STAND_KD.copy()
        tau_ff = np.array(gravity, dtype=float)
        if arm is not None and weight > 0.0:
            w, ub = weight, _UPPER
            q_des[ub] = (1 - w) * q_des[ub] + w * arm["q"][ub]
            dq_des[ub] = (1 - w) * dq_des[ub] + w * arm["dq"][ub]
            kp[ub] = (1 - w) * kp[ub] + w * arm["kp"][ub]
            kd[ub] = (1 - w) * kd[ub] + w * arm["kd"][ub]
            tau_ff[ub] = (1 - w) * tau_ff[ub] + w * arm["tau"][ub]
        return tau_ff + kp * (q_des - q) + kd * (dq_des - dq)


def damping_torques(dq: np.ndarray) -> np.ndarray:
    """Released, no rt/lowcmd yet: the robot's damping state."""
    return -STAND_KD * dq


def lowcmd_torques(cmd: np.ndarray, q: np.ndarray, dq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(torques, enabled) from the first 29 MotorCmd_ records of an rt/lowcmd; mode 0 = motor off."""
    tau = cmd["tau"] + cmd["kp"] * (cmd["q"] - q) + cmd["kd"] * (cmd["dq"] - dq)
    enabled = cmd["mode"] != 0
    return np.where(enabled, tau, 0.0), enabled
