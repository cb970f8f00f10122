"""G1 / scene models: load in MuJoCo and pinocchio, match FACTS.md geometry, keyframe through the port."""

from __future__ import annotations

import mujoco
import numpy as np
import pinocchio as pin
import pytest

from surgbot.contract import G1_JOINT_NAMES, SCENES
from surgbot.sim.scene import G1_XML, INSERTION_DEPTH, STAND_POSTURE, build_model, reset_to_stand, task_bodies

pytestmark = pytest.mark.unit

# FACTS.md: "At q=0, pelvis frame" (left arm; the right arm mirrors y).
FACTS_Q0_LEFT = {
    "left_shoulder_pitch_link": (0.0, 0.100, 0.292),
    "left_elbow_link": (0.016, 0.147, 0.105),
    "left_wrist_yaw_link": (0.200, 0.149, 0.095),
}
FACTS_PALM_LEFT = (0.241, 0.152, 0.095)


@pytest.fixture(scope="module")
def g1():
    model = mujoco.MjModel.from_xml_path(str(G1_XML))
    return model, mujoco.MjData(model)


@pytest.fixture(scope="module", params=SCENES)
def scene(request):
    model = build_model(request.param, seed=0)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    return request.param, model, data


def _in_pelvis(model, data, pos):
    pid = model.body("pelvis").id
    return data.xmat[pid].reshape(3, 3).T @ (np.asarray(pos) - data.xpos[pid])


def _shaft_distance(data, point):
    base = data.site("endoscope_shaft_base").xpos
    tip = data.site("endoscope_tip").xpos
    u = (tip - base) / np.linalg.norm(tip - base)
    v = np.asarray(point) - base
    return float(np.linalg.norm(v - v.dot(u) * u)), float((tip - point).dot(u))


def test_g1_joint_order_is_contract_order(g1):
    model, _ = g1
    assert model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
    names = [model.joint(i).name for i in range(1, model.njnt)]
    assert names == list(G1_JOINT_NAMES)
    # qpos: 7 free-joint entries, then one per joint in contract order
    assert [int(model.jnt_qposadr[model.joint(n).id]) for n in G1_JOINT_NAMES] == list(range(7, 36))
    assert [model.actuator(i).name for i in range(model.nu)] == list(G1_JOINT_NAMES)
    assert np.all(model.actuator_trnid[:, 0] == np.arange(1, 30))


def test_g1_limits_efforts_masses_match_facts(g1):
    model, _ = g1

    def rng(n):
        return tuple(np.round(model.jnt_range[model.joint(n).id], 4))

    def eff(n):
        return float(model.actuator_ctrlrange[model.actuator(n).id][1])

    assert rng("left_shoulder_pitch_joint") == (-3.0892, 2.6704)
    assert rng("left_shoulder_roll_joint") == (-1.5882, 2.2515)
    assert rng("right_shoulder_roll_joint") == (-2.2515, 1.5882)
    assert rng("right_elbow_joint") == (-1.0472, 2.0944)
    assert rng("left_wrist_roll_joint") == (-1.9722, 1.9722)
    assert rng("right_wrist_yaw_joint") == (-1.6144, 1.6144)
    assert rng("waist_roll_joint") == (-0.52, 0.52)
    assert eff("right_elbow_joint") == 25 and eff("right_wrist_roll_joint") == 25
    assert eff("right_wrist_pitch_joint") == 5 and eff("left_wrist_yaw_joint") == 5
    assert eff("waist_yaw_joint") == 88 and eff("left_knee_joint") == 139
    assert np.all(model.actuator_ctrllimited == 1)
    arm_armature = model.dof_armature[6:]
    assert np.all((arm_armature >= 0.005) & (arm_armature <= 0.03))
    # masses (kg): pelvis 3.813, elbow 0.600, one arm ~3.5 with the hand, total ~33-35 (+ scope)
    assert model.body_mass[model.body("pelvis").id] == pytest.approx(3.813)
    assert model.body_mass[model.body("left_elbow_link").id] == pytest.approx(0.600)
    left_arm = model.body_subtreemass[model.body("left_shoulder_pitch_link").id]
    assert 3.3 < left_arm < 3.7
    robot = model.body_subtreemass[model.body("pelvis").id] - model.body_mass[model.body("endoscope").id]
    assert 33.0 <= robot <= 35.0


def test_g1_q0_positions_match_facts(g1):
    model, data = g1
    mujoco.mj_resetData(model, data)
    mujoco.mj_kinematics(model, data)
    for body, facts in FACTS_Q0_LEFT.items():
        left = _in_pelvis(model, data, data.xpos[model.body(body).id])
        assert np.linalg.norm(left - facts) < 0.005, (body, left, facts)
        right = _in_pelvis(model, data, data.xpos[model.body(body.replace("left_", "right_")).id])
        mirrored = np.array(facts) * [1, -1, 1]
        assert np.linalg.norm(right - mirrored) < 0.005, (body, right, mirrored)
    left_palm = _in_pelvis(model, data, data.site("left_palm").xpos)
    right_palm = _in_pelvis(model, data, data.site("right_palm").xpos)
    assert np.linalg.norm(left_palm - FACTS_PALM_LEFT) < 0.005
    assert np.linalg.norm(right_palm - np.array(FACTS_PALM_LEFT) * [1, -1, 1]) < 0.005
    # FACTS: forearm points forward at q=0; elbow q=+pi/2 hangs it straight down.
    wrist0 = data.xpos[model.body("left_wrist_roll_link").id] - data.xpos[model.body("left_elbow_link").id]
    assert wrist0[0] > 0.09 and abs(wrist0[2]) < 0.02
    data.qpos[model.jnt_qposadr[model.joint("left_elbow_joint").id]] = np.pi / 2
    mujoco.mj_kinematics(model, data)
    wrist90 = data.xpos[model.body("left_wrist_roll_link").id] - data.xpos[model.body("left_elbow_link").id]
    assert wrist90[2] < -0.09 and abs(wrist90[0]) < 0.02
    # shoulder pitch axis in the world: (0, 0.961, 0.276) for the left arm
    axis = data.xaxis[model.joint("left_shoulder_pitch_joint").id]
    assert np.allclose(axis, [0, 0.961, 0.276], atol=0.002)


def test_endoscope_geometry_and_frames(g1):
    model, data = g1
    mujoco.mj_resetData(model, data)
    mujoco.mj_forward(model, data)
    base = data.site("endoscope_shaft_base").xpos
    tip = data.site("endoscope_tip").xpos
    assert np.linalg.norm(tip - base) == pytest.approx(0.180, abs=1e-6)      # working length
    shaft = model.geom("endoscope_shaft")
    assert 2 * shaft.size[0] == pytest.approx(0.004)                        # 4 mm diameter
    R_tip = data.site("endoscope_tip").xmat.reshape(3, 3)
    u = (tip - base) / np.linalg.norm(tip - base)
    assert np.allclose(R_tip[:, 2], u, atol=1e-6)                          # optical z along the shaft (0 deg)
    # at q=0 the hand points forward (+x) with its z up: optical x = right (-y), y = down (-z)
    assert np.allclose(R_tip[:, 0], [0, -1, 0], atol=1e-3)
    assert np.allclose(R_tip[:, 1], [0, 0, -1], atol=1e-3)
    # MuJoCo camera looks along its -z with y up: optical frame rotated 180 deg about x
    cam = model.camera("endoscope_camera").id
    R_cam = data.cam_xmat[cam].reshape(3, 3)
    assert np.allclose(R_cam[:, 0], R_tip[:, 0], atol=1e-6)
    assert np.allclose(R_cam[:, 1], -R_tip[:, 1], atol=1e-6)
    assert np.allclose(-R_cam[:, 2], R_tip[:, 2], atol=1e-6)
    assert np.linalg.norm(data.cam_xpos[cam] - tip) < 0.001
    assert 70 <= model.cam_fovy[cam] <= 80
    # the shaft base is on the shaft axis, in front of the palm
    palm = data.site("right_palm").xpos
    assert 0.0 < (base - palm).dot(u) < 0.1
    assert np.linalg.norm((base - palm) - (base - palm).dot(u) * u) < 1e-6


def test_g1_loads_in_pinocchio_with_the_same_kinematics(g1):
    model, data = g1
    pm = pin.buildModelFromMJCF(str(G1_XML))
    pd = pm.createData()
    assert [pm.names[i] for i in range(2, pm.njoints)] == list(G1_JOINT_NAMES)
    rng = np.random.default_rng(3)
    q_joints = rng.uniform(-0.5, 0.5, 29)
    mujoco.mj_resetData(model, data)
    data.qpos[7:] = q_joints
    mujoco.mj_kinematics(model, data)
    q = pin.neutral(pm)
    q[7:] = q_joints
    pin.framesForwardKinematics(pm, pd, q)
    pelvis = data.xpos[model.body("pelvis").id]
    for site in ("left_palm", "right_palm", "endoscope_tip", "endoscope_shaft_base"):
        pin_pos = pd.oMf[pm.getFrameId(site)].translation
        assert np.linalg.norm(pin_pos - (data.site(site).xpos - pelvis)) < 1e-6, site
    R_pin = pd.oMf[pm.getFrameId("endoscope_tip")].rotation
    assert np.allclose(R_pin, data.site("endoscope_tip").xmat.reshape(3, 3), atol=1e-6)


def test_scenes_load_with_robots_and_port(scene):
    name, model, data = scene
    assert model.opt.timestep == pytest.approx(0.002)
    # G1 block first: pelvis free joint then contract order
    assert [int(model.jnt_qposadr[model.joint(n).id]) for n in G1_JOINT_NAMES] == list(range(7, 36))
    for site in ("scope_port", "endoscope_tip", "endoscope_shaft_base", "imu", "left_palm", "right_palm",
                 "PSM1_tool_tip", "psm_port"):
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site) >= 0, site
    assert model.body("PSM1_base").id > 0
    key = model.key("stand")
    for jname, q in STAND_POSTURE.items():
        assert key.qpos[model.jnt_qposadr[model.joint(jname).id]] == pytest.approx(q)
        lo, hi = model.jnt_range[model.joint(jname).id]
        margin = 0.1 if "shoulder" in jname or "elbow" in jname or "wrist" in jname else 0.0
        assert lo + margin <= q <= hi - margin, jname
    # the PSM's RCM is at its port
    assert np.linalg.norm(data.xpos[model.body("PSM1_base").id] - data.site("psm_port").xpos) < 1e-9


def test_stand_keyframe_puts_scope_through_port(scene):
    name, model, data = scene
    dist, inserted = _shaft_distance(data, data.site("scope_port").xpos)
    assert dist < 0.001
    assert 0.040 <= inserted <= 0.060
    assert inserted == pytest.approx(INSERTION_DEPTH, abs=1e-6)
    # feet on the floor (pelvis 0.793 m), scope tip above the table/tissue
    foot_z = min(data.geom_xpos[g][2] - model.geom_size[g][2] for g in range(model.ngeom)
                 if model.geom_bodyid[g] == model.body("left_ankle_roll_link").id)
    assert abs(foot_z) < 0.005


def test_stand_held_by_pd_keeps_scope_in_port(scene):
    """Physics, not just kinematics: the welded pelvis and a joint PD with gravity
    feed-forward (the G1 twin's job in the product; here written in the test) keep
    the shaft in the port, and 500 Hz explicit PD on this model is stable."""
    name, model, data = scene
    d = mujoco.MjData(model)
    reset_to_stand(model, d)
    qadr = np.array([model.jnt_qposadr[model.joint(n).id] for n in G1_JOINT_NAMES])
    dadr = np.array([model.jnt_dofadr[model.joint(n).id] for n in G1_JOINT_NAMES])
    act = np.array([model.actuator(n).id for n in G1_JOINT_NAMES])
    q_des = d.qpos[qadr].copy()
    kp = np.full(29, 60.0)
    kp[:12] = 150.0
    kd = np.full(29, 2.0)
    for _ in range(500):                               # 1 s
        tau = d.qfrc_bias[dadr] + kp * (q_des - d.qpos[qadr]) - kd * d.qvel[dadr]
        d.ctrl[act] = np.clip(tau, *model.actuator_ctrlrange[act].T)
        mujoco.mj_step(model, d)
    assert np.all(np.isfinite(d.qpos))
    pelvis_drift = np.linalg.norm(d.xpos[model.body("pelvis").id] - [0, 0, 0.793])
    assert pelvis_drift < 0.002
    dist, inserted = _shaft_distance(d, d.site("scope_port").xpos)
    assert dist < 0.003 and 0.04 < inserted < 0.06


def test_seed_places_objects_reproducibly():
    a = build_model("box_trainer", seed=7)
    b = build_model("box_trainer", seed=7)
    c = build_model("box_trainer", seed=8)
    names = task_bodies(a)
    assert {"target_red", "target_green", "target_blue", "needle", "block_0"} <= set(names)
    pa = np.array([a.body(n).pos for n in names])
    pb = np.array([b.body(n).pos for n in names])
    pc = np.array([c.body(n).pos for n in names])
    assert np.array_equal(pa, pb)
    assert np.max(np.linalg.norm(pa - pc, axis=1)) > 0.005
    e1, e2 = build_model("endonasal", 1), build_model("endonasal", 2)
    port = e1.site("scope_port").pos
    for m in (e1, e2):
        depth = np.linalg.norm(m.body("sphenoid_target").pos - port)
        assert 0.070 <= depth <= 0.090
    assert np.linalg.norm(e1.body("sphenoid_target").pos - e2.body("sphenoid_target").pos) > 1e-4


def test_objects_rest_stably(scene):
    """Free objects (blocks, needle) settle on the pad without jitter or tunnelling."""
    name, model, data = scene
    d = mujoco.MjData(model)
    reset_to_stand(model, d)
    free = [model.body(n).id for n in task_bodies(model) if model.body(n).jntnum[0] > 0]
    start = d.xpos[free].copy()
    for _ in range(1000):                              # 2 s
        mujoco.mj_step(model, d)
    assert np.all(np.isfinite(d.qpos))
    if free:
        assert np.max(np.linalg.norm(d.xpos[free] - start, axis=1)) < 0.003
        assert np.max(np.abs(d.cvel[free])) < 0.05
