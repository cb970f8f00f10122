"""The scope's entry point pushes back (sim/entry_point.py): the force is physical and visible.

* unit: the force is the scene's documented stiffness times the shaft's
  lateral offset, perpendicular to the shaft, and MuJoCo receives it as a
  force at the shaft point (the generalized force equals `mj_applyFT` at that
  point, MuJoCo's own routine);
* in the in-process loop: a holder that keeps the fulcrum loads the nostril
  by < 0.5 N under 1 Nm disturbances (the goal), a scope dragged off the port
  loads it by k times the ground-truth fulcrum error;
* in the twin: `/sim/ground_truth/entry_force` reports the force while a
  joint torque pushes the standing arm off the port, equal to k times the
  fulcrum error from `/sim/ground_truth/endoscope_tip` and `/fulcrum`.
"""

from __future__ import annotations

import os
import time

import mujoco
import numpy as np
import pytest
from geometry_msgs.msg import PointStamped, PoseStamped, Vector3Stamped
from sensor_msgs.msg import JointState

from surgbot import contract
from surgbot.bench.arm_loop import ArmLoop
from surgbot.control.endoscope_holder import FAULT, HOLD
from surgbot.sim import scene as scenes
from surgbot.sim import scene_layouts
from surgbot.sim.entry_point import ENTRY_FORCE_TOPIC, EntryModel, entry_stiffness
from tests.conftest import PYTHON
from tests.endoscope_rig import line_distance, pose_of
from tests.test_sim import listener_node

G1_DOMAIN = int(os.environ["SURGBOT_G1_DOMAIN"])
ARM = ["right_shoulder_pitch_joint", "right_shoulder_roll_joint", "right_shoulder_yaw_joint",
       "right_elbow_joint", "right_wrist_roll_joint", "right_wrist_pitch_joint", "right_wrist_yaw_joint"]
NOSTRIL_GOAL_N = 0.5


def shaft_line_distance(data, port) -> tuple[float, np.ndarray]:
    """Lateral offset of the shaft (sites base -> tip) from the port, and the unit shaft axis."""
    base, tip = data.site("endoscope_shaft_base").xpos, data.site("endoscope_tip").xpos
    u = (tip - base) / np.linalg.norm(tip - base)
    d = port - base
    return float(np.linalg.norm(d - np.dot(d, u) * u)), u


@pytest.mark.unit
@pytest.mark.parametrize("scene, k", [("box_trainer", scene_layouts.PORT_STIFFNESS),
                                      ("endonasal", scene_layouts.NOSTRIL_STIFFNESS)])
def test_entry_force_is_the_documented_spring_applied_at_the_shaft(scene, k):
    m = scenes.build_model(scene)
    d = mujoco.MjData(m)
    scenes.reset_to_stand(m, d)
    assert entry_stiffness(m) == k
    entry = EntryModel(m)
    port = d.site("scope_port").xpos.copy()
    assert entry.contact(d).magnitude < 1e-9, "the stand pose puts the shaft through the port"
    # swing the shaft sideways with the waist (the port stays): a few millimetres of offset
    d.qpos[m.jnt_qposadr[m.joint("waist_yaw_joint").id]] += 0.01
    mujoco.mj_forward(m, d)
    offset, u = shaft_line_distance(d, port)
    assert 2e-3 < offset < 10e-3
    c = entry.contact(d)
    assert c.engaged
    assert c.magnitude == pytest.approx(k * offset, rel=1e-9)
    assert abs(np.dot(c.force_on_tissue, u)) < 1e-9 * k, "no axial component (sliding is free)"
    assert np.dot(c.force_on_tissue, c.point - port) > 0, "the scope pushes the tissue away from the port"
    # MuJoCo sees it as a force at the shaft point: the generalized force equals mj_applyFT's
    d.xfrc_applied[:] = 0.0
    mujoco.mj_forward(m, d)
    without = d.qfrc_smooth.copy()
    entry.apply(d)
    mujoco.mj_forward(m, d)
    expected = np.zeros(m.nv)
    body = m.body("endoscope").id
    mujoco.mj_applyFT(m, d, -c.force_on_tissue, np.zeros(3), c.point, body, expected)
    np.testing.assert_allclose(d.qfrc_smooth - without, expected, atol=1e-9)


@pytest.mark.unit
def test_a_scope_dragged_off_the_port_loads_the_tissue_by_k_times_the_fulcrum_error():
    loop = ArmLoop("box_trainer")
    loop.run(0.3)
    assert loop.core.set_hold(True).ok
    loop.run(1.0)
    assert loop.entry_force() < 0.05
    for j in ("right_shoulder_pitch_joint", "right_shoulder_roll_joint"):
        loop.disturbance[loop.index[j]] = 40.0          # beats the 25 Nm actuators
    rows = []
    loop.run(1.5, lambda lp: rows.append((lp.fulcrum_error(), lp.entry_force(), lp.entry_contact.engaged,
                                          lp.core.mode)))
    err = np.array([r[0] for r in rows])
    force = np.array([r[1] for r in rows])
    engaged = np.array([r[2] for r in rows])
    k = scene_layouts.PORT_STIFFNESS
    # the force of each step is computed before that step's physics: compare with the error one step
    # earlier, while the port is on the inserted shaft (dragged far enough, the scope leaves the port)
    both = engaged[1:] & engaged[:-1]
    assert both.sum() > 20
    np.testing.assert_allclose(force[1:][both], k * err[:-1][both], rtol=0.02, atol=0.01)
    assert force[engaged].max() > k * loop.core.cfg.fault_fulcrum_error
    assert rows[-1][3] == FAULT


@pytest.mark.unit
def test_hold_under_1nm_disturbances_loads_the_nostril_less_than_half_a_newton():
    loop = ArmLoop("endonasal")
    loop.run(0.3)
    assert loop.core.set_hold(True).ok
    loop.run(1.0)
    rng = np.random.default_rng(11)
    force, next_change = [], [0.0]

    def each(lp):
        if lp.t >= next_change[0]:
            lp.disturbance[:] = 0.0
            lp.disturbance[lp.index[rng.choice(ARM)]] = rng.choice([-1.0, 1.0])
            next_change[0] = lp.t + rng.uniform(1.0, 3.0)
        force.append(lp.entry_force())

    loop.run(15.0, each)
    assert loop.core.mode == HOLD
    assert max(force) < NOSTRIL_GOAL_N, max(force)


@pytest.mark.sim
def test_twin_publishes_the_entry_force_of_a_pushed_arm(processes):
    sim = processes.start([PYTHON, "-m", "surgbot.cli", "sim", "--scene", "endonasal", "--headless", "--no-camera",
                           "--g1-domain", str(G1_DOMAIN), "--duration", "120"], name="sim")
    got = {"force": [], "tip": [], "fulcrum": None}
    with listener_node("test_entry_point_listener") as (node, ex):
        node.create_subscription(Vector3Stamped, ENTRY_FORCE_TOPIC,
                                 lambda m: got["force"].append((time.monotonic(), m)), 50)
        node.create_subscription(PoseStamped, contract.GT_ENDOSCOPE_TIP,
                                 lambda m: got["tip"].append((time.monotonic(), m)), 50)
        node.create_subscription(PointStamped, contract.GT_FULCRUM, lambda m: got.__setitem__("fulcrum", m), 10)
        push = node.create_publisher(JointState, "/sim/g1/disturbance", 10)

        def spin_until(cond, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end and not cond():
                ex.spin_once(timeout_sec=0.05)
            return cond()

        assert spin_until(lambda: got["force"] and got["tip"] and got["fulcrum"], 90), processes.log(sim)[-3000:]
        port = np.array([got["fulcrum"].point.x, got["fulcrum"].point.y, got["fulcrum"].point.z])
        spin_until(lambda: False, 1.0)
        at_rest = [np.linalg.norm([m.vector.x, m.vector.y, m.vector.z]) for _, m in got["force"][-20:]]
        msg = JointState()
        msg.name, msg.effort = ["right_wrist_pitch_joint"], [2.0]     # the standing arm (kp 60) yields
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            push.publish(msg)
            spin_until(lambda: False, 0.2)
        forces = [(t, m) for t, m in got["force"] if t > t0 + 2.0]
        tips = [(t, m) for t, m in got["tip"] if t > t0 + 2.0]
        assert forces and tips
        f = forces[-1][1]
        assert f.header.frame_id == contract.WORLD_FRAME
        fn = float(np.linalg.norm([f.vector.x, f.vector.y, f.vector.z]))
        # the sim's own tip and port: the force is the nostril's stiffness times the fulcrum error
        errs = [line_distance(port, *pose_of(m)) for _, m in tips[-10:]]
        assert max(at_rest) < 0.05
        assert fn > 0.2, "a 2 Nm wrist torque on the soft standing arm visibly loads the nostril"
        assert fn == pytest.approx(scene_layouts.NOSTRIL_STIFFNESS * float(np.median(errs)), rel=0.1)
    processes.stop(sim)
