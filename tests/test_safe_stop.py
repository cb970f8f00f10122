"""SafeStop and the bridge's controlled safety stop: a moving arm is damped to rest along its path.

The unit tests pin the stop (rest point, damping) and how the bridge streams it (one sample, safe to
hold: zero velocity, gravity only, raised kd); the sim tests run the real bridge core and holder in
the in-process MuJoCo loop (`surgbot.bench.bridge_loop`) and judge the scope tip by ground truth
after an e-stop in TOOL_FOLLOW, against an instant freeze in the same process, with and without the
bridge's stream stalling as on a loaded machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from surgbot import contract
from surgbot.control.g1_arm import DEFAULT_KD, N_UPPER, UPPER, UPPER_LIMITS_TABLE, UPPER_NAMES, GravityModel
from surgbot.control.g1_bridge import G1BridgeCore, State
from surgbot.control.g1_bridge_config import G1BridgeConfig
from surgbot.control.safe_stop import STOP_TRAVEL, SafeStop

BLOCK = "ESTOP: e-stop requested"
DT = 0.002


def moving_path(stop: SafeStop, q0: np.ndarray, v0: np.ndarray, t_end: float = 10.0) -> None:
    for k in range(100, -1, -1):                                        # the commanded path up to t_end
        stop.observe(t_end - k * DT, q0 - v0 * k * DT)


# ---------------------------------------------------------------------- the stop
@pytest.mark.unit
def test_the_stop_rests_ahead_on_the_path_with_every_joint_damped_on_one_time_scale():
    stop = SafeStop(0.02, max_kd=100.0)
    q0, v0 = np.array([0.1, -0.2, 0.3]), np.array([0.4, -0.1, 0.0])
    moving_path(stop, q0, v0)
    np.testing.assert_allclose(stop.path_velocity(), v0)
    inertia, kd = np.array([0.8, 0.05, 0.01]), np.array([5.0, 2.0, 3.0])
    rest, stop_kd = stop.start(q0, 2.0, kd, inertia)
    np.testing.assert_allclose(rest, q0 + v0 * STOP_TRAVEL * 0.02)     # on the path, a little ahead
    # M/tau: waist 40, arm 2.5; a joint whose own kd is higher keeps it (it stops sooner, never later)
    np.testing.assert_allclose(stop_kd, [40.0, 2.5, 3.0])


@pytest.mark.unit
def test_the_damping_is_capped_and_never_lowered():
    stop = SafeStop(0.01, max_kd=20.0)
    moving_path(stop, np.zeros(3), np.array([0.1, 0.1, 0.1]))
    _, stop_kd = stop.start(np.zeros(3), 2.0, np.array([5.0, 30.0, 1.0]), np.array([0.8, 0.8, 0.001]))
    np.testing.assert_allclose(stop_kd, [20.0, 30.0, 1.0])             # cap; own kd above it; own kd kept


@pytest.mark.unit
def test_the_path_velocity_averages_bursts_and_needs_enough_of_the_path():
    stop = SafeStop(0.02, 20.0)
    assert stop.path_velocity() is None
    stop.observe(0.0, np.zeros(2))
    stop.observe(0.004, np.ones(2))
    assert stop.path_velocity() is None                                 # 4 ms of path: taken as still
    t, q = 0.004, 1.0
    for k in range(60):                                                 # bursts: 5 ticks of 2 mrad, 5 still
        t += DT
        q += 0.002 if (k // 5) % 2 == 0 else 0.0
        stop.observe(t, np.array([q, -q]))
    v = stop.path_velocity()
    assert 0.35 < v[0] < 0.65 and v[1] == pytest.approx(-v[0])         # the mean speed, not 1 rad/s or 0
    stop.forget_path()
    assert stop.path_velocity() is None


@pytest.mark.unit
def test_a_wild_path_is_clipped_and_what_is_unknown_freezes_at_once_with_the_arms_own_gains():
    kd, inertia = np.array([5.0, 2.0]), np.array([0.5, 0.05])
    stop = SafeStop(0.02, 20.0)
    stop.observe(0.0, np.zeros(2))
    stop.observe(0.02, np.array([50.0, -1e9]))
    rest, _ = stop.start(np.zeros(2), 0.5, kd, inertia)
    np.testing.assert_allclose(rest, [0.5, -0.5] * np.array(STOP_TRAVEL * 0.02))   # at most max_speed
    for posture_kd in (stop.start(np.ones(2), 0.5, kd, None),                    # no inertias
                       stop.start(np.ones(2), 0.5, kd, np.array([np.nan, 1.0])),  # NaN inertia
                       stop.start(np.ones(2), 0.5, kd, np.ones(3))):              # wrong length
        np.testing.assert_array_equal(posture_kd[0], np.ones(2))
        np.testing.assert_array_equal(posture_kd[1], kd)
    bad = SafeStop(0.02, 20.0)
    bad.observe(0.0, np.zeros(2))
    bad.observe(0.02, np.array([np.nan, 0.0]))
    np.testing.assert_array_equal(bad.start(np.ones(2), 0.5, kd, inertia)[0], np.ones(2))  # NaN path
    now = SafeStop(0.0, 20.0)
    now.observe(0.0, np.zeros(2))
    now.observe(0.02, np.ones(2))
    rest, stop_kd = now.start(np.ones(2), 0.5, kd, inertia)
    np.testing.assert_array_equal(rest, np.ones(2))
    np.testing.assert_array_equal(stop_kd, kd)
    with pytest.raises(ValueError, match="time_constant_s"):
        SafeStop(-0.01, 20.0)
    with pytest.raises(ValueError, match="max_kd"):
        SafeStop(0.01, float("nan"))


@pytest.mark.unit
def test_the_stop_parameters_are_checked_and_the_stop_fits_the_estop_budget():
    cfg = G1BridgeConfig()
    assert cfg.safety_stop_time_constant == pytest.approx(0.012) and cfg.safety_stop_max_kd == pytest.approx(20.0)
    assert 3 * cfg.safety_stop_time_constant < 0.05                    # an arm joint at 5 % within the budget
    for bad in (-0.001, 0.05, float("nan")):
        with pytest.raises(ValueError, match="safety_stop_time_constant"):
            G1BridgeConfig(safety_stop_time_constant=bad)
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="safety_stop_max_kd"):
            G1BridgeConfig(safety_stop_max_kd=bad)


@pytest.mark.unit
def test_the_inertia_diagonal_is_the_mass_matrix_diagonal_with_the_rotor_armature():
    """`GravityModel.inertia_diagonal` = diag M(q) of the upper body; without armature each entry is
    the torque MuJoCo's inverse dynamics needs for a unit acceleration of that joint alone (less
    gravity); the armature adds to every entry."""
    import mujoco

    rng = np.random.default_rng(0)
    q = np.zeros(contract.G1_NUM_JOINTS)
    q[list(UPPER)] = rng.uniform(-0.3, 0.3, N_UPPER)
    model = GravityModel()
    with_armature = model.inertia_diagonal(q, None)
    armature = model.model.dof_armature[model._dadr[list(UPPER)]].copy()
    model.model.dof_armature[:] = 0.0
    ours = model.inertia_diagonal(q, None)
    d = model.data
    bias, full = np.zeros(model.model.nv), np.zeros(model.model.nv)
    d.qacc[:] = 0.0
    mujoco.mj_rne(model.model, d, 1, bias)
    for j, dof in enumerate(model._dadr[list(UPPER)]):
        d.qacc[:] = 0.0
        d.qacc[dof] = 1.0
        mujoco.mj_rne(model.model, d, 1, full)
        assert ours[j] == pytest.approx(full[dof] - bias[dof], rel=1e-9)
    assert np.all(ours > 0) and np.all(armature > 0)
    np.testing.assert_allclose(with_armature, ours + armature, rtol=1e-9)
    assert ours[1] > 10 * ours[16]                                       # waist roll vs right wrist yaw


# ---------------------------------------------------------------------- the bridge
class MovingArm:
    """Commands the bridge along a straight joint path at `velocity` each tick (moving) and reports
    an arm that is where its targets are (fresh lowstate every tick)."""

    def __init__(self, core: G1BridgeCore, velocity: np.ndarray):
        self.core, self.t, self.tick = core, 100.0, 0
        self.q = np.zeros(contract.G1_NUM_JOINTS)
        self.q[list(UPPER)] = np.linspace(-0.3, 0.4, N_UPPER)
        self.dq = np.zeros(contract.G1_NUM_JOINTS)
        self.velocity = velocity

    def step(self, n: int = 1, moving: bool = True) -> list:
        out = []
        for _ in range(n):
            self.t += DT
            self.tick += 1
            self.dq[list(UPPER)] = self.velocity if moving else 0.0
            self.core.on_lowstate(self.q, self.dq, self.tick, self.t)
            if moving:
                goal = self.q[list(UPPER)] + self.velocity * DT
                assert self.core.command(UPPER_NAMES, goal, now=self.t)
            out.append(self.core.step(self.t))
            if moving:
                self.q[list(UPPER)] = out[-1].q
        return out


def engaged_and_moving(**overrides) -> tuple[G1BridgeCore, MovingArm]:
    model = GravityModel()
    core = G1BridgeCore(limits=UPPER_LIMITS_TABLE, gravity=model, inertia=model.inertia_diagonal, **overrides)
    v = np.zeros(N_UPPER)
    v[[1, 10, 16]] = (0.05, 0.1, -0.4)                    # waist roll, right shoulder pitch, right wrist yaw
    arm = MovingArm(core, v)
    arm.step(1, moving=False)
    assert core.engage(arm.t)
    arm.step(1100, moving=False)
    assert core.state == State.ENGAGED
    arm.step(50)                                          # moving along the path for longer than its window
    return core, arm


@pytest.mark.unit
def test_a_moving_arm_is_stopped_by_one_sample_that_is_safe_to_hold():
    """Every sample after the block is the same: the rest point ahead on the path, no velocity, gravity
    only, the raised damping; a robot that keeps the first one through a stalled stream stops alike."""
    core, arm = engaged_and_moving()
    q0, v = core.measured_upper(), arm.velocity            # the last lowstate: where the stop starts
    core.set_safety(BLOCK, arm.t)
    gravity = GravityModel()
    cmds = arm.step(40, moving=False)                     # the twin's arm follows; what the bridge sends matters
    assert all(c is not None and c.weight == 1.0 for c in cmds)
    tau = 0.012
    for c in cmds:
        np.testing.assert_allclose(c.q, q0 + v * STOP_TRAVEL * tau, atol=1e-9)
        assert not np.any(c.dq)
        np.testing.assert_allclose(c.tau, gravity(arm.q, None)[12:29], atol=1e-9)
        np.testing.assert_array_equal(c.kd, cmds[0].kd)
        np.testing.assert_array_equal(c.kp, core.kp)
    kd = cmds[0].kd
    assert np.all(kd >= DEFAULT_KD) and kd[1] == pytest.approx(20.0)   # the waist damped up to the cap
    assert kd[16] == pytest.approx(DEFAULT_KD[16])                       # the wrist's own kd already stops it
    assert core.freeze_info["stop_max_kd"] == pytest.approx(20.0)
    assert not core.command(["right_wrist_yaw_joint"], [0.0], now=arm.t)


@pytest.mark.unit
def test_engage_after_the_reset_returns_to_the_arms_own_damping():
    core, arm = engaged_and_moving()
    core.set_safety(BLOCK, arm.t)
    stopped = arm.step(2, moving=False)[-1]
    assert np.any(stopped.kd > DEFAULT_KD)
    assert not core.engage(arm.t)                                          # still blocked: refused
    assert np.any(arm.step(1, moving=False)[0].kd > DEFAULT_KD)
    core.set_safety("", arm.t)
    assert core.engage(arm.t)
    held = core.target.copy()
    for c in arm.step(20, moving=False):
        np.testing.assert_allclose(c.q, held, atol=1e-12)                   # held where the stop left it
        np.testing.assert_array_equal(c.kd, DEFAULT_KD)


@pytest.mark.unit
def test_a_zero_time_constant_freezes_at_once_as_before():
    core, arm = engaged_and_moving(safety_stop_time_constant=0.0)
    measured = core.measured_upper()
    core.set_safety(BLOCK, arm.t)
    first = arm.step(1, moving=False)[0]
    np.testing.assert_allclose(first.q, measured, atol=1e-9)               # the arm tracks exactly: no offset
    assert not np.any(first.dq)
    np.testing.assert_array_equal(first.kd, DEFAULT_KD)


# ---------------------------------------------------------------------- in the loop
@pytest.mark.sim
def test_an_estop_in_tool_follow_leaves_the_scope_tip_where_it_was():
    """The real bridge core and holder in the in-process MuJoCo loop, the scope following a moving
    tool at ~13 mm/s: the controlled stop keeps the tip within 0.5 mm (measured 0.26-0.36), an
    instant freeze of the same arm moves it > 1 mm (measured 1.21-1.27: the light joints stop first)."""
    from surgbot.bench.bridge_loop import estop_in_tool_follow

    for follow_s in (0.5, 1.3):
        controlled, speed = estop_in_tool_follow(follow_s)
        instant, _ = estop_in_tool_follow(follow_s, safety_stop_time_constant=0.0)
        assert speed > 10.0                               # it was moving
        assert controlled < 0.5, (controlled, instant)
        assert controlled < 0.5 * instant, (controlled, instant)


@pytest.mark.sim
def test_an_estop_with_the_bridge_stream_stalling_still_stops_the_scope_within_1_mm():
    """The same with the bridge and the holder starved now and then (8-32 ms stalls, the robot keeping
    the last sample), the stop landing in or next to a stall.  Seeds 0 and 10 are the two worst of 16
    for the first design (a 15 ms deceleration with a braking feed-forward: 2.05 and 1.85 mm, its
    brake held through a stall threw the arm back); this stop: 0.27 and 0.33 mm (all 16: median
    0.42, max 0.82; frozen at once: median 1.05, max 1.51)."""
    from surgbot.bench.bridge_loop import estop_with_stalls

    for seed in (0, 10):
        stalled = estop_with_stalls(seed)
        assert stalled < 1.0, (seed, stalled)
