"""PSM kinematics against the MuJoCo model built from the same DH table, and against geometry."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from surgbot.contract import PSM_JOINT_NAMES
from surgbot.kinematics import psm
from surgbot.sim.psm_twin import MODEL_PATH

pytestmark = pytest.mark.unit

POS_TOL = 1e-4                 # 0.1 mm
ROT_TOL = np.deg2rad(0.1)      # 0.1 deg


@pytest.fixture(scope="module")
def mj():
    model = mujoco.MjModel.from_xml_path(str(MODEL_PATH))
    data = mujoco.MjData(model)
    qadr = np.array([model.jnt_qposadr[model.joint(n).id] for n in PSM_JOINT_NAMES])
    return model, data, qadr


def _site_pose(model, data, name):
    sid = model.site(name).id
    T = np.eye(4)
    T[:3, :3] = data.site_xmat[sid].reshape(3, 3)
    T[:3, 3] = data.site_xpos[sid]
    return T


def test_fk_matches_mujoco_model_over_1000_random_joint_vectors(mj):
    model, data, qadr = mj
    rng = np.random.default_rng(0)
    worst_p = worst_r = 0.0
    for _ in range(1000):
        q = rng.uniform(psm.LOWER, psm.UPPER)
        data.qpos[:] = 0
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        pe, re = psm.pose_error(_site_pose(model, data, "PSM1_tool_tip"), psm.fk(q))
        worst_p, worst_r = max(worst_p, pe), max(worst_r, re)
    assert worst_p < POS_TOL and worst_r < ROT_TOL, (worst_p, worst_r)


def test_fk_home_pose_from_the_dh_numbers():
    # At home the shaft points along -z of PSM1_base; the tip is at the wrist depth
    # (0.12 - 0.4318 + 0.4162) plus the 9.1 mm wrist link, and its z axis is the shaft.
    T = psm.fk(psm.HOME)
    np.testing.assert_allclose(T[:3, 3], [0, 0, -(0.12 - 0.4318 + 0.4162 + 0.0091)], atol=1e-12)
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-12)


def test_jacobian_matches_mujoco_site_jacobian(mj):
    model, data, qadr = mj
    dadr = np.array([model.jnt_dofadr[model.joint(n).id] for n in PSM_JOINT_NAMES])
    rng = np.random.default_rng(1)
    sid = model.site("PSM1_tool_tip").id
    for _ in range(50):
        q = rng.uniform(psm.LOWER, psm.UPPER)
        data.qpos[:] = 0
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jp, jr, sid)
        J = psm.jacobian(q)
        np.testing.assert_allclose(J[:3], jp[:, dadr], atol=1e-9)
        np.testing.assert_allclose(J[3:], jr[:, dadr], atol=1e-9)


def test_ik_round_trip_over_random_reachable_poses():
    rng = np.random.default_rng(2)
    worst_p = worst_r = 0.0
    for _ in range(500):
        q = rng.uniform(psm.LOWER, psm.UPPER)
        q[2] = rng.uniform(psm.MIN_IK_INSERTION, psm.UPPER[2])
        T = psm.fk(q)
        seed = np.clip(q + rng.normal(0, 0.2, 6), psm.LOWER, psm.UPPER)
        res = psm.ik(T, seed=seed)
        assert psm.within_limits(res.q)
        pe, re = psm.pose_error(T, psm.fk(res.q))
        worst_p, worst_r = max(worst_p, pe), max(worst_r, re)
    assert worst_p < POS_TOL and worst_r < ROT_TOL, (worst_p, worst_r)


def test_ik_from_home_seed_reaches_poses_far_from_the_seed():
    rng = np.random.default_rng(3)
    for _ in range(100):
        q = rng.uniform(psm.LOWER * 0.8, psm.UPPER * 0.8)
        q[2] = rng.uniform(0.08, 0.22)
        T = psm.fk(q)
        pe, re = psm.pose_error(T, psm.fk(psm.ik(T).q))
        assert pe < POS_TOL and re < ROT_TOL


def test_rcm_fixed_while_all_joints_move_in_mujoco(mj):
    """Drive every joint through the position servos; the shaft line must pass
    through the RCM (port) point and the RCM site must not move."""
    model, data, qadr = mj
    mujoco.mj_resetData(model, data)
    roll = model.body("PSM1_roll_link").id
    base = model.body("PSM1_base").id
    rcm = model.site("PSM1_rcm").id
    rcm0 = None
    worst = 0.0
    seen = []
    acts = [model.actuator(f"PSM1_{n}").id for n in PSM_JOINT_NAMES]
    for k in range(1500):
        t = k * model.opt.timestep
        data.ctrl[acts] = psm.HOME + np.array([1.2, 0.8, 0.1, 3, 1.2, 1.2]) * np.sin(
            2 * np.pi * np.array([0.5, 0.7, 0.3, 0.9, 1.1, 1.3]) * t)
        data.ctrl[acts[2]] = 0.12 + 0.1 * np.sin(2 * np.pi * 0.3 * t)
        mujoco.mj_step(model, data)
        seen.append(data.qpos[qadr].copy())
        if rcm0 is None:
            rcm0 = data.site_xpos[rcm].copy()
        p, z = data.xpos[roll], data.xmat[roll].reshape(3, 3)[:, 2]
        r = data.xpos[base] - p
        worst = max(worst, np.linalg.norm(r - z * (r @ z)), np.linalg.norm(data.site_xpos[rcm] - rcm0))
    travel = np.ptp(np.array(seen), axis=0)
    assert np.all(travel[[0, 1, 3, 4, 5]] > 1.0) and travel[2] > 0.15, travel   # every joint really moved
    assert worst < 1e-4, worst


def test_ik_clamps_insertion_to_keep_the_wrist_away_from_the_rcm():
    q = psm.HOME.copy()
    q[2] = 0.03                    # wrist only 14.4 mm past the RCM
    res = psm.ik(psm.fk(q), seed=psm.HOME)
    assert res.insertion_clamped
    wrist = psm.frames(res.q)[3][:3, 3]
    assert np.linalg.norm(wrist) >= 0.047 - 1e-9


@pytest.mark.parametrize("bad", [
    [0, 0, np.nan, 0, 0, 0], [0, 0, 0.1, np.inf, 0, 0], [0, 0, 0.1], [0] * 7, "abc"])
def test_fk_rejects_bad_joint_vectors(bad):
    with pytest.raises(psm.KinematicsError):
        psm.fk(bad)


def test_ik_rejects_bad_and_unreachable_poses():
    T = psm.fk(psm.HOME)
    bad = T.copy()
    bad[0, 3] = np.nan
    with pytest.raises(psm.KinematicsError):
        psm.ik(bad)
    with pytest.raises(psm.KinematicsError):
        psm.ik(T[:3])
    skew = T.copy()
    skew[:3, :3] *= 2
    with pytest.raises(psm.KinematicsError):
        psm.ik(skew)
    far = T.copy()
    far[2, 3] = -0.5               # needs insertion 0.39 m > 0.24 m
    with pytest.raises(psm.UnreachablePose, match="insertion"):
        psm.ik(far)
    side = np.eye(4)
    side[:3, :3] = T[:3, :3]
    side[:3, 3] = [0.0, 0.15, -0.02]   # shaft pitched ~80 deg: beyond pitch limit 0.925
    with pytest.raises(psm.UnreachablePose):
        psm.ik(side)
