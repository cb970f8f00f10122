"""G1 bridge core: ramps, hold, bad input, staleness (no ROS, no threads)."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from surgbot import contract
from surgbot.control.g1_arm import (
    G1_MJCF,
    N_UPPER,
    UPPER,
    UPPER_LIMITS_TABLE,
    UPPER_NAMES,
    GravityModel,
    joint_limits_from_mjcf,
)
from surgbot.control.g1_bridge import G1BridgeCore, State

pytestmark = pytest.mark.unit

DT = 0.002


def measured_posture() -> np.ndarray:
    q = np.zeros(contract.G1_NUM_JOINTS)
    q[list(UPPER)] = np.linspace(-0.3, 0.4, N_UPPER)   # away from zero, inside all limits
    return q


class Clock:
    """A robot that answers every tick with fresh lowstate."""

    def __init__(self, core: G1BridgeCore, q=None):
        self.core, self.t, self.tick = core, 100.0, 0
        self.q = measured_posture() if q is None else q

    def feed(self):
        self.tick += 2
        self.core.on_lowstate(self.q, np.zeros(contract.G1_NUM_JOINTS), self.tick, self.t)

    def step(self, n=1, feed=True):
        out = []
        for _ in range(n):
            self.t += DT
            if feed:
                self.feed()
            out.append(self.core.step(self.t))
        return out


@pytest.fixture
def core():
    c = G1BridgeCore(limits=UPPER_LIMITS_TABLE)
    return c


def engaged(core) -> Clock:
    clk = Clock(core)
    clk.feed()
    assert core.engage(clk.t)
    clk.step(1100)
    assert core.state == State.ENGAGED
    return clk


def test_limits_table_is_the_mjcf():
    np.testing.assert_allclose(joint_limits_from_mjcf(G1_MJCF), UPPER_LIMITS_TABLE, atol=1e-9)


def test_engage_starts_from_measured_posture_and_ramps_continuously(core):
    clk = Clock(core)
    clk.feed()
    assert core.step(clk.t) is None, "IDLE must not stream"
    assert core.engage(clk.t)
    cmds = clk.step(1100)
    q_meas = clk.q[list(UPPER)]
    # First sample: exactly the measured posture, weight one tick into the ramp.
    np.testing.assert_allclose(cmds[0].q, q_meas, atol=1e-12)
    assert cmds[0].weight == pytest.approx(DT / 2.0)
    w = np.array([c.weight for c in cmds])
    assert np.all(np.diff(w) >= -1e-12) and np.max(np.diff(w)) <= DT / 2.0 + 1e-8
    # 2 s ramp = 1000 ticks of 2 ms.
    assert w[998] < 1.0 and w[999] == pytest.approx(1.0)
    assert core.state == State.ENGAGED
    for c in cmds:
        np.testing.assert_allclose(c.q, q_meas, atol=1e-12)   # no command: no motion


def test_target_motion_is_rate_limited_and_reaches_goal(core):
    clk = engaged(core)
    start = core.target.copy()
    goal = dict(right_elbow_joint=1.2, right_wrist_pitch_joint=-0.9)
    assert core.command(list(goal), list(goal.values()), now=clk.t)
    cmds = clk.step(3000)
    qs = np.array([c.q for c in cmds])
    steps = np.abs(np.diff(np.vstack([start, qs]), axis=0))
    assert steps.max() <= 0.5 * DT + 1e-12
    k_elbow, k_wp = UPPER_NAMES.index("right_elbow_joint"), UPPER_NAMES.index("right_wrist_pitch_joint")
    # elbow travels |1.2 - q0| at 0.5 rad/s: reaches it after that many ticks, not before
    ticks_needed = math.ceil(abs(1.2 - start[k_elbow]) / (0.5 * DT))
    assert qs[ticks_needed - 2, k_elbow] != pytest.approx(1.2, abs=1e-9)
    assert qs[ticks_needed + 1, k_elbow] == pytest.approx(1.2, abs=1e-12)
    assert qs[-1, k_wp] == pytest.approx(-0.9, abs=1e-12)
    others = [k for k in range(N_UPPER) if k not in (k_elbow, k_wp)]
    np.testing.assert_allclose(qs[:, others], np.tile(start[others], (len(qs), 1)))


def test_holds_last_target_without_new_commands(core):
    clk = engaged(core)
    assert core.command(["right_elbow_joint"], [0.7], now=clk.t)
    clk.step(2000)
    held = core.target.copy()
    cmds = clk.step(2500)        # 5 s without commands
    assert all(c is not None for c in cmds)
    for c in cmds:
        np.testing.assert_array_equal(c.q, held)
        assert c.weight == 1.0


def test_velocity_limit_holds_in_real_time_when_calls_bunch(core):
    clk = engaged(core)
    assert core.command(["right_elbow_joint"], [1.5], now=clk.t)
    before = core.target.copy()
    for _ in range(50):               # 50 calls at the same instant
        core.step(clk.t)
    np.testing.assert_allclose(core.target, before, atol=1e-12)


def test_release_ramps_down_then_stops(core):
    clk = engaged(core)
    assert core.release(clk.t)
    cmds = clk.step(1100)
    sent = [c for c in cmds if c is not None]
    w = np.array([c.weight for c in sent])
    assert w[0] == pytest.approx(1.0 - DT / 2.0)
    assert np.all(np.diff(w) <= 1e-12) and np.min(np.diff(w)) >= -DT / 2.0 - 1e-8
    assert w[-1] == 0.0 and len(sent) == 1000   # the weight-0 sample is sent, then silence
    assert core.state == State.IDLE
    for c in sent:
        np.testing.assert_allclose(c.q, sent[0].q)


def snapshot(core):
    return (core.state, core.weight, core.target.copy(), core.goal.copy())


@pytest.mark.parametrize("names,pos,vel,why", [
    (["right_elbow_joint"], [float("nan")], None, "non_finite: positions"),
    (["right_elbow_joint"], [float("inf")], None, "non_finite: positions"),
    (["right_elbow_joint"], [0.1], [float("nan")], "non_finite: velocities"),
    (["right_elbow_jont"], [0.1], None, "unknown"),
    (["left_knee_joint"], [0.1], None, "upper-body"),
    (["right_elbow_joint", "right_wrist_yaw_joint"], [0.1], None, "shape: positions has 1 values, 2 expected"),
    (["right_elbow_joint"], [0.1], [0.1, 0.2], "velocities"),
    (["right_elbow_joint", "right_elbow_joint"], [0.1, 0.2], None, "duplicate"),
    (["right_elbow_joint"], [2.5], None, "limits"),
    ([], [], None, "empty"),
])
def test_bad_commands_rejected_without_state_change(core, names, pos, vel, why):
    clk = engaged(core)
    assert core.command(["right_elbow_joint"], [0.5], now=clk.t)
    clk.step(10)
    before = snapshot(core)
    res = core.command(names, pos, vel, now=clk.t)
    assert not res and why in res.reason
    cause = res.reason.split(":", 1)[0]            # counted by cause for the diagnostics
    assert core.status(clk.t)["commands_rejected_by_cause"] == {cause: 1}
    after = snapshot(core)
    assert before[:2] == after[:2]
    np.testing.assert_array_equal(before[2], after[2])
    np.testing.assert_array_equal(before[3], after[3])


def test_commands_rejected_unless_engaged(core):
    clk = Clock(core)
    clk.feed()
    res = core.command(["right_elbow_joint"], [0.5], now=clk.t)
    assert not res and "not engaged" in res.reason


def test_bad_lowstate_rejected(core):
    q = measured_posture()
    q[25] = float("nan")
    assert not core.on_lowstate(q, np.zeros(29), 2, 1.0)
    assert not core.on_lowstate(np.zeros(12), np.zeros(12), 2, 1.0)
    assert core.lowstate_age(1.0) == math.inf
    assert not core.engage(1.0)


def test_stale_lowstate_faults_and_needs_explicit_engage(core):
    clk = engaged(core)
    assert core.command(["right_elbow_joint"], [0.9], now=clk.t)
    clk.step(100)
    w_before = core.weight
    # the robot stops answering: 50 ms still fine, then FAULT and silence
    cmds = clk.step(25, feed=False)
    assert all(c is not None for c in cmds)
    cmds = clk.step(5, feed=False)
    assert cmds[-1] is None and core.state == State.FAULT and "stale" in core.reason
    # fresh state alone does not resume
    clk.q = measured_posture()
    clk.q[25] = 0.55
    assert all(c is None for c in clk.step(50))
    assert not core.command(["right_elbow_joint"], [0.9], now=clk.t)
    # explicit engage: from the measured posture, weight continues from where it was
    assert core.engage(clk.t)
    c = clk.step(1)[0]
    np.testing.assert_allclose(c.q, clk.q[list(UPPER)], atol=1e-12)
    assert c.weight == pytest.approx(min(1.0, w_before + DT / 2.0))


def test_repeated_tick_is_not_fresh(core):
    q = measured_posture()
    assert core.on_lowstate(q, np.zeros(29), 10, 1.0)
    assert not core.on_lowstate(q, np.zeros(29), 10, 1.04)
    assert core.lowstate_age(1.06) == pytest.approx(0.06)


def test_shutdown_holds_unless_release_on_shutdown(core):
    clk = engaged(core)
    res = core.shutdown(clk.t)
    assert not res and "holds the last" in res.reason and core.state == State.ENGAGED
    core2 = G1BridgeCore(limits=UPPER_LIMITS_TABLE, release_on_shutdown=True)
    clk2 = engaged(core2)
    assert core2.shutdown(clk2.t) and core2.state == State.RELEASING


def test_gravity_model_matches_subtree_statics():
    """Elbow torque = weight of everything distal x its lever arm about the elbow axis."""
    g = GravityModel()
    q = np.zeros(29)
    tau = g(q, [1, 0, 0, 0])
    m, d = g.model, mujoco.MjData(g.model)
    d.qpos[:] = g.data.qpos
    mujoco.mj_forward(m, d)
    for name in ("right_elbow_joint", "right_shoulder_pitch_joint", "left_elbow_joint"):
        jid = m.joint(name).id
        body = m.jnt_bodyid[jid]
        mass = m.body_subtreemass[body]
        com = d.subtree_com[body]
        axis = d.xaxis[jid]
        lever = com - d.xanchor[jid]
        expected = np.dot(np.cross(lever, mass * m.opt.gravity), axis)
        # rne gives the bias force; the torque needed to hold = bias = -gravity moment
        assert tau[contract.G1_INDEX[name]] == pytest.approx(-expected, rel=1e-6, abs=1e-9)
    # waist yaw axis is vertical: gravity exerts no torque about it
    assert tau[contract.G1_INDEX["waist_yaw_joint"]] == pytest.approx(0.0, abs=1e-9)


def test_config_file_gains_are_the_core_defaults():
    """config/g1_bridge.yaml and DEFAULT_KP/KD are one set of gains (the holder sizes its integrator by them)."""
    from pathlib import Path

    import yaml

    from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP
    path = Path(__file__).resolve().parents[1] / "config" / "g1_bridge.yaml"
    params = yaml.safe_load(path.read_text())["g1_bridge"]["ros__parameters"]
    assert params["kp"] == DEFAULT_KP.tolist() and params["kd"] == DEFAULT_KD.tolist()
    right = slice(10, 17)
    assert np.all(DEFAULT_KP[right] >= 4 * DEFAULT_KP[3:10]), "the scope arm is the stiff one"
