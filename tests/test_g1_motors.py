"""The G1 twin's motor layer (sim/g1_motors.py): standing hold, arm_sdk blend, damping, rt/lowcmd."""

from __future__ import annotations

import numpy as np
import pytest

from surgbot import contract
from surgbot.hw import unitree_codec
from surgbot.sim.g1_motors import (
    STAND_KD,
    STAND_KP,
    STAND_RAMP_S,
    StandingController,
    damping_torques,
    lowcmd_torques,
)

pytestmark = pytest.mark.unit

N = contract.G1_NUM_JOINTS
UB = list(contract.G1_UPPER_BODY)
STAND = np.linspace(-0.3, 0.3, N)
GRAVITY = np.linspace(1.0, 2.0, N)


def _arm(q: float, kp: float, kd: float, tau: float) -> np.ndarray:
    mc = unitree_codec.new_lowcmd()["motor_cmd"].copy()
    mc["q"][UB], mc["kp"][UB], mc["kd"][UB], mc["tau"][UB] = q, kp, kd, tau
    return mc


def test_standing_at_the_stand_pose_and_still_is_gravity_feed_forward_alone():
    ctl = StandingController(STAND)
    np.testing.assert_allclose(ctl.torques(0.0, STAND, np.zeros(N), GRAVITY, None, 0.0), GRAVITY)
    # a posture off the pose and moving: the PD with Unitree's example gains
    q, dq = STAND + 0.1, np.full(N, 0.5)
    np.testing.assert_allclose(ctl.torques(0.0, q, dq, GRAVITY, None, 0.0),
                               GRAVITY - STAND_KP * 0.1 - STAND_KD * 0.5)


def test_a_reselected_standing_mode_ramps_its_targets_from_where_the_body_was():
    ctl = StandingController(STAND)
    start = np.zeros(N)
    ctl.restart(start, t=10.0)
    half = ctl.torques(10.0 + STAND_RAMP_S / 2, start, np.zeros(N), np.zeros(N), None, 0.0)
    np.testing.assert_allclose(half, STAND_KP * (STAND / 2))          # targets half way
    done = ctl.torques(10.0 + 2 * STAND_RAMP_S, start, np.zeros(N), np.zeros(N), None, 0.0)
    np.testing.assert_allclose(done, STAND_KP * STAND)


def test_arm_sdk_blends_the_upper_body_by_its_weight_and_leaves_the_legs():
    ctl = StandingController(STAND)
    arm = _arm(q=0.5, kp=40.0, kd=2.0, tau=0.25)
    q, dq = STAND.copy(), np.zeros(N)
    full = ctl.torques(0.0, q, dq, GRAVITY, arm, 1.0)
    np.testing.assert_allclose(full[UB], 0.25 + 40.0 * (0.5 - STAND[UB]))     # the sender's PD alone
    legs = [i for i in range(N) if i not in UB]
    np.testing.assert_allclose(full[legs], GRAVITY[legs])
    none = ctl.torques(0.0, q, dq, GRAVITY, arm, 0.0)
    np.testing.assert_allclose(none, GRAVITY)                                 # weight 0: not there
    half = ctl.torques(0.0, q, dq, GRAVITY, arm, 0.5)
    kp = 0.5 * STAND_KP[UB] + 0.5 * 40.0
    q_des = 0.5 * STAND[UB] + 0.5 * 0.5
    np.testing.assert_allclose(half[UB], 0.5 * GRAVITY[UB] + 0.5 * 0.25 + kp * (q_des - STAND[UB]))


def test_released_motors_damp_then_follow_lowcmd_and_mode_zero_is_off():
    dq = np.full(N, 2.0)
    np.testing.assert_allclose(damping_torques(dq), -STAND_KD * 2.0)
    cmd = unitree_codec.new_lowcmd()["motor_cmd"][:N].copy()
    cmd["mode"], cmd["q"], cmd["kp"], cmd["kd"], cmd["tau"] = 1, 1.0, 10.0, 1.0, 0.5
    cmd["mode"][3] = 0
    tau, enabled = lowcmd_torques(cmd, np.zeros(N), np.zeros(N))
    assert not enabled[3] and enabled.sum() == N - 1
    assert tau[3] == 0.0
    np.testing.assert_allclose(np.delete(tau, 3), 0.5 + 10.0)
