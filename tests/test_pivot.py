"""Pivot IK core and the pinocchio arm model, checked against MuJoCo and geometry.

The pinocchio model must agree with MuJoCo's forward kinematics of the same
MJCF (one source of truth); the IK is checked by running it kinematically and
measuring the fulcrum distance and the reached view with MuJoCo's own site
poses, not with the controller's estimate.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pinocchio as pin
import pytest

from surgbot.control.pivot import PivotIK
from surgbot.control.pivot_config import PivotConfig
from surgbot.geometry import rotation_aligning
from surgbot.kinematics.g1_arm import DEFAULT_MJCF, RIGHT_ARM_JOINTS, WAIST_JOINTS, G1ScopeArm

pytestmark = pytest.mark.unit

# A 7-DoF right arm from FACTS.md offsets with the scope in a fixed child body
# of a fixed body, under a root body with a non-zero pos: the layout on which
# pin 4.1's MJCF parser misplaces frames (G1ScopeArm must repair it).
FIXTURE_XML = """
<mujoco model="g1_right_arm_fixture"><compiler angle="radian"/>
<worldbody><body name="pelvis" pos="0 0 0.793"><inertial pos="0 0 0" mass="3.8" diaginertia="0.05 0.05 0.05"/>
<body name="torso_link"><inertial pos="0 0 0.2" mass="6.8" diaginertia="0.1 0.1 0.1"/>
<body name="right_shoulder_pitch_link" pos="0.0039563 -0.10022 0.24778" euler="-0.27931 0 0">
<inertial pos="0 -0.03 0" mass="0.718" diaginertia="0.0005 0.0005 0.0005"/>
<joint name="right_shoulder_pitch_joint" axis="0 1 0" range="-3.0892 2.6704"/>
<body name="right_shoulder_roll_link" pos="0 -0.038 -0.013831" euler="0.27925 0 0">
<inertial pos="0 0 -0.02" mass="0.643" diaginertia="0.0005 0.0005 0.0005"/>
<joint name="right_shoulder_roll_joint" axis="1 0 0" range="-2.2515 1.5882"/>
<body name="right_shoulder_yaw_link" pos="0 -0.00624 -0.1032">
<inertial pos="0 0 -0.05" mass="0.734" diaginertia="0.001 0.001 0.0005"/>
<joint name="right_shoulder_yaw_joint" axis="0 0 1" range="-2.618 2.618"/>
<body name="right_elbow_link" pos="0.015783 0 -0.080518">
<inertial pos="0.05 0 0" mass="0.6" diaginertia="0.0005 0.001 0.001"/>
<joint name="right_elbow_joint" axis="0 1 0" range="-1.0472 2.0944"/>
<body name="right_wrist_roll_link" pos="0.100 -0.00189 -0.010">
<inertial pos="0.02 0 0" mass="0.0854" diaginertia="0.0001 0.0001 0.0001"/>
<joint name="right_wrist_roll_joint" axis="1 0 0" range="-1.97222 1.97222"/>
<body name="right_wrist_pitch_link" pos="0.038 0 0">
<inertial pos="0.02 0 0" mass="0.484" diaginertia="0.0003 0.0003 0.0003"/>
<joint name="right_wrist_pitch_joint" axis="0 1 0" range="-1.61443 1.61443"/>
<body name="right_wrist_yaw_link" pos="0.046 0 0">
<inertial pos="0.02 0 0" mass="0.0846" diaginertia="0.0001 0.0001 0.0001"/>
<joint name="right_wrist_yaw_joint" axis="0 0 1" range="-1.61443 1.61443"/>
<body name="right_hand" pos="0.0415 -0.003 0"><inertial pos="0.02 0 0" mass="0.17" diaginertia="0.0002 0.0002 0.0002"/>
<body name="endoscope" pos="0.02 0 0"><inertial pos="0.12 0 0" mass="0.15" diaginertia="0.00001 0.0008 0.0008"/>
<site name="endoscope_shaft_base" pos="0 0 0" quat="0.5 -0.5 0.5 -0.5"/>
<site name="endoscope_tip" pos="0.30 0 0" quat="0.5 -0.5 0.5 -0.5"/>
</body></body></body></body></body></body></body></body></body></body></body>
</worldbody></mujoco>
"""

STAND = {"right_shoulder_pitch_joint": -0.4, "right_shoulder_roll_joint": -0.15,
         "right_shoulder_yaw_joint": 0.3, "right_elbow_joint": 0.6, "right_wrist_pitch_joint": 0.6}


def mj_site(mj, md, arm: G1ScopeArm, q: np.ndarray, site: str = "endoscope_tip"):
    """MuJoCo's own pose of a site with the arm joints at q (others at qpos0)."""
    md.qpos[:] = mj.qpos0
    for n, v in zip(arm.joint_names, q, strict=True):
        md.qpos[mj.jnt_qposadr[mj.joint(n).id]] = v
    mujoco.mj_kinematics(mj, md)
    s = mj.site(site).id
    return md.site_xpos[s].copy(), md.site_xmat[s].reshape(3, 3).copy()


@pytest.fixture(scope="module")
def g1():
    arm = G1ScopeArm(DEFAULT_MJCF, reference=STAND)
    mj = mujoco.MjModel.from_xml_path(str(DEFAULT_MJCF))
    return arm, mj, mujoco.MjData(mj)


@pytest.fixture(scope="module")
def fixture_arm(tmp_path_factory):
    path = tmp_path_factory.mktemp("mjcf") / "arm.xml"
    path.write_text(FIXTURE_XML)
    arm = G1ScopeArm(path, reference=STAND)
    mj = mujoco.MjModel.from_xml_path(str(path))
    return arm, mj, mujoco.MjData(mj)


@pytest.mark.parametrize("which", ["g1", "fixture_arm"])
def test_model_matches_mujoco(which, request):
    arm, mj, md = request.getfixturevalue(which)
    assert set(RIGHT_ARM_JOINTS) <= set(arm.joint_names)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(arm.limits.lower, arm.limits.upper)
        for site in ("endoscope_tip", "endoscope_shaft_base"):
            p, R = mj_site(mj, md, arm, q, site)
            M = arm.frame_pose(q, site)
            assert np.linalg.norm(M.translation - p) < 1e-9
            assert np.linalg.norm(M.rotation - R) < 1e-9
    # the shaft runs along the tip's z axis (optical frame, z forward)
    q = arm.q_reference
    tip, base = arm.frame_pose(q, "endoscope_tip"), arm.frame_pose(q, "endoscope_shaft_base")
    shaft = tip.translation - base.translation
    assert np.dot(shaft / np.linalg.norm(shaft), tip.rotation[:, 2]) > 1 - 1e-9


def test_local_jacobian_matches_finite_differences(g1):
    arm, mj, md = g1
    q = arm.q_reference + 0.1
    M, J = arm.tip_jacobian_local(q)
    M, J = M.copy(), J.copy()
    eps = 1e-6
    for i in range(arm.nq):
        dq = np.zeros(arm.nq)
        dq[i] = eps
        p2, R2 = mj_site(mj, md, arm, q + dq)
        v = M.rotation.T @ (p2 - M.translation) / eps
        w = pin.log3(M.rotation.T @ R2) / eps
        assert np.allclose(J[:3, i], v, atol=1e-5)
        assert np.allclose(J[3:, i], w, atol=1e-5)


def _setup_ik(arm, waist=True, depth=0.05, **cfg):
    q0 = arm.q_reference.copy()
    M = arm.tip_pose(q0)
    fulcrum = M.translation - depth * M.rotation[:, 2]
    active = (WAIST_JOINTS if waist else ()) + RIGHT_ARM_JOINTS
    ik = PivotIK(arm, fulcrum, PivotConfig(active_joints=active, **cfg), port_axis=M.rotation[:, 2])
    return ik, q0, fulcrum


def _line_distance(point, p, R):
    d = point - p
    z = R[:, 2]
    return float(np.linalg.norm(d - np.dot(d, z) * z))


@pytest.mark.parametrize("move", [(25, 0, 0, 0), (-25, 0, 0, 0), (0, 25, 0, 0), (0, -25, 0, 0),
                                  (0, 0, 0.03, 0), (0, 0, -0.025, 0), (0, 0, 0, 45), (0, 0, 0, -45)])
def test_view_moves_keep_the_fulcrum(g1, move):
    """Kinematic loop: the shaft stays on the fulcrum and the view lands on target (MuJoCo FK)."""
    arm, mj, md = g1
    ik, q, fulcrum = _setup_ik(arm)
    target, reasons = ik.move_view(ik.view_of(q), np.radians(move[0]), np.radians(move[1]), move[2],
                                   np.radians(move[3]))
    assert reasons == []
    worst = 0.0
    dt = 0.002
    for k in range(1500):
        dq, _ = ik.step(q, target, dt)
        assert np.all(np.abs(dq) <= ik.vmax + 1e-9)
        q = q + dq * dt
        if k % 25 == 0:
            p, R = mj_site(mj, md, arm, q)
            worst = max(worst, _line_distance(fulcrum, p, R))
    p, R = mj_site(mj, md, arm, q)
    assert worst < 1e-4                                    # 0.1 mm on the way
    assert np.linalg.norm(p - target.tip_position(fulcrum)) < 1e-4
    assert np.degrees(np.linalg.norm(pin.log3(R.T @ target.rotation))) < 0.05
    # the reached view is the requested geometric one: depth along the shaft and pan angle
    assert abs(np.dot(p - fulcrum, R[:, 2]) - (0.05 + move[2])) < 1e-4


def test_projection_onto_pivot_feasible_poses(g1):
    arm, _, _ = g1
    ik, q, fulcrum = _setup_ik(arm, depth_range=(0.02, 0.1), max_angle_from_axis_deg=30.0)
    view = ik.view_of(q)
    # a pose 1 cm off to the side with the old orientation: shaft re-aimed through the fulcrum
    p = view.tip_position(fulcrum) + 0.01 * view.rotation[:, 0]
    v, reasons = ik.project(p, view.rotation)
    assert _line_distance(fulcrum, v.tip_position(fulcrum), v.rotation) < 1e-12
    assert np.allclose(np.linalg.norm(v.tip_position(fulcrum) - fulcrum), np.linalg.norm(p - fulcrum))
    # too deep: clipped to the range, with a reason
    v, reasons = ik.project(fulcrum + 0.3 * view.rotation[:, 2], view.rotation)
    assert abs(v.depth - 0.1) < 1e-12 and any("insertion" in r for r in reasons)
    # outside the cone around the port axis: clipped to 30 deg
    R = pin.exp3(np.array([np.radians(50), 0, 0])) @ view.rotation
    v, reasons = ik.project(fulcrum + 0.05 * R[:, 2], R)
    ang = np.degrees(np.arccos(np.dot(v.rotation[:, 2], ik.port_axis)))
    assert abs(ang - 30.0) < 1e-6 and any("clipped" in r for r in reasons)
    # rotation_aligning is the smallest rotation taking a to b
    a, b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    Ra = rotation_aligning(a, b)
    assert np.allclose(Ra @ a, b) and abs(np.linalg.norm(pin.log3(Ra)) - np.pi / 2) < 1e-12


def test_joint_limits_hold_and_fulcrum_stays(g1):
    """A view that needs the wrist past its limit: the joint stops at the margin, the shaft stays on the fulcrum."""
    arm, mj, md = g1
    ik, q, fulcrum = _setup_ik(arm)
    target, _ = ik.move_view(ik.view_of(q), 0, 0, 0, np.radians(170))   # roll far beyond the wrist range
    dt = 0.002
    saturated = set()
    for _ in range(3000):
        dq, _ = ik.step(q, target, dt)
        q = q + dq * dt
        saturated |= set(ik.info.saturated)
        assert np.all(q >= arm.limits.lower - 1e-9) and np.all(q <= arm.limits.upper + 1e-9)
    p, R = mj_site(mj, md, arm, q)
    assert saturated, "expected a joint to hit its limit margin"
    assert _line_distance(fulcrum, p, R) < 2e-4


def test_singularity_slows_down_never_jumps(g1):
    """Arm only (waist locked): +40 mm insertion stretches the arm straight; steps stay small and bounded."""
    arm, mj, md = g1
    ik, q, fulcrum = _setup_ik(arm, waist=False)
    target, _ = ik.move_view(ik.view_of(q), 0, 0, 0.04, 0)
    dt = 0.002
    prev = None
    smin = []
    for _ in range(2000):
        dq, _ = ik.step(q, target, dt)
        if prev is not None:     # (the first step starts at the speed cap: the target is a 40 mm step)
            assert np.max(np.abs(dq - prev)) < 0.2      # rad/s change per 2 ms step: no jumps
        prev = dq
        q = q + dq * dt
        smin.append(ik.info.sigma_min)
    p, R = mj_site(mj, md, arm, q)
    assert min(smin) < ik.config.sigma_singular           # it did reach the singular region
    assert _line_distance(fulcrum, p, R) < 5e-4           # and still kept the shaft on the fulcrum


def test_fixture_chain_pivots_too(fixture_arm):
    """The same IK on the FACTS.md-built chain (no scene needed)."""
    arm, mj, md = fixture_arm
    ik, q, fulcrum = _setup_ik(arm, waist=False)
    target, _ = ik.move_view(ik.view_of(q), np.radians(10), 0, 0.01, np.radians(20))
    for _ in range(1500):
        dq, _ = ik.step(q, target, 0.002)
        q = q + dq * 0.002
    p, R = mj_site(mj, md, arm, q)
    assert _line_distance(fulcrum, p, R) < 1e-4
    assert np.linalg.norm(p - target.tip_position(fulcrum)) < 1e-3
