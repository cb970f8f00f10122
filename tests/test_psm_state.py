"""The ROS-free PSM core: the dVRK operating-state table command by command,
motion gating, trajectories against the dVRK limits, homing and FAULT."""

from __future__ import annotations

import numpy as np
import pytest

from surgbot.contract import PSM_JOINT_NAMES
from surgbot.kinematics import psm
from surgbot.sim.psm_core import PSMCore
from surgbot.sim.psm_state import (
    ACCEPTED,
    BRAKE_SLIP,
    DISABLED,
    ENABLED,
    FAULT,
    PAUSED,
    STATE_COMMANDS,
)
from surgbot.sim.psm_trajectory import TrapezoidTrajectory

pytestmark = pytest.mark.unit

DT = 0.002

# FACTS.md, typed out again here (not imported) so the code is checked against the table.
TABLE = {
    "DISABLED": {"enable", "disable", "home", "unhome", "pause"},
    "ENABLED": {"enable", "disable", "pause", "home", "unhome"},
    "PAUSED": {"disable", "pause", "resume", "unhome"},
    "FAULT": {"disable", "unhome"},
}


class Plant:
    """An ideal arm: measured joints follow the setpoint with one step of delay."""

    def __init__(self, core: PSMCore, q0=None):
        self.core, self.t = core, 0.0
        self.q = np.zeros(6) if q0 is None else np.asarray(q0, float)
        self.sp = core.step(0.0, self.q)
        self.offset = np.zeros(6)

    def run(self, seconds: float, record=None):
        for _ in range(int(round(seconds / DT))):
            self.t += DT
            self.sp = self.core.step(self.t, self.q)
            self.q = self.sp.q.copy() + self.offset
            if record is not None:
                record.append((self.t, self.sp.q.copy()))


def _in_state(state: str, homed: bool = True) -> tuple[PSMCore, Plant]:
    core = PSMCore()
    plant = Plant(core)
    core.outbox.clear()            # the start pose (insertion 0) sits on a limit: a warning
    if state == DISABLED:
        return core, plant
    core.state_command("home")
    plant.run(core.power_up_s + 3.0)
    assert core.state == ENABLED and core.is_homed
    if not homed:
        core.state_command("unhome")
    if state == PAUSED:
        core.state_command("pause")
    if state == FAULT:
        plant.offset = np.array([0.6, 0, 0, 0, 0, 0])
        while core.state != FAULT:      # this plant's push follows the setpoint: end it at the FAULT
            plant.run(DT)
        plant.offset[:] = 0
        plant.q = core.motion.q_sp.copy()   # and leave the arm where it FAULTed
    assert core.state == state
    core.outbox.clear()
    return core, plant


def test_accepted_table_matches_facts():
    assert {k: set(v) for k, v in ACCEPTED.items()} == TABLE


@pytest.mark.parametrize("state", ["DISABLED", "ENABLED", "PAUSED", "FAULT"])
@pytest.mark.parametrize("command", STATE_COMMANDS)
def test_state_command_table(state, command):
    core, plant = _in_state(state)
    accepted = core.state_command(command)
    assert bool(accepted) == (command in TABLE[state])
    if not accepted:
        assert core.outbox == [("warning", f"command {command} is not supported in state {state}")]
        assert core.state == state
        return
    plant.run(core.power_up_s + 3.0)
    expected = {
        ("DISABLED", "enable"): ENABLED, ("DISABLED", "home"): ENABLED,
        ("ENABLED", "pause"): PAUSED, ("PAUSED", "resume"): ENABLED,
    }.get((state, command), DISABLED if command == "disable" else state)
    assert core.state == expected
    if command == "unhome":
        assert not core.is_homed
    if command == "home":
        assert core.is_homed and not core.is_busy


@pytest.mark.parametrize("state", ["DISABLED", "ENABLED"])
@pytest.mark.parametrize("command", ["fly", "", " enable", "ENABLE", None])
def test_unknown_or_empty_state_command_is_a_warning_and_changes_nothing(state, command):
    core, plant = _in_state(state)
    before = core.operating_state()
    result = core.state_command(command)
    assert not result and result.reason
    assert core.outbox == [("warning", result.reason)] and repr(command) in result.reason
    plant.run(core.power_up_s + 0.5)
    assert core.operating_state() == before


def test_enable_goes_through_power_up_busy():
    core, plant = _in_state(DISABLED)
    core.state_command("enable")
    plant.run(0.1)
    assert core.is_busy and core.state == DISABLED
    plant.run(core.power_up_s)
    assert core.state == ENABLED and not core.is_busy and not core.is_homed


def test_homing_reaches_home_within_3_deg():
    core, plant = _in_state(DISABLED)
    core.state_command("home")
    plant.run(core.power_up_s + 0.05)
    assert core.is_busy and not core.is_homed
    plant.run(3.0)
    assert core.is_homed and not core.is_busy
    assert np.all(np.abs(plant.q - psm.HOME) < np.deg2rad(3))


@pytest.mark.parametrize("state,homed", [("DISABLED", False), ("ENABLED", False), ("PAUSED", True),
                                         ("FAULT", True)])
def test_motion_rejected_unless_enabled_and_homed(state, homed):
    core, plant = _in_state(state, homed=homed)
    before = core.motion.q_sp.copy()
    q = psm.HOME + 0.1
    results = (core.move_jp([], q), core.servo_jp(PSM_JOINT_NAMES, q), core.servo_cp(psm.fk(q)),
               core.move_cp(psm.fk(q)), core.servo_cv([0.01, 0, 0], [0, 0, 0]), core.jaw_servo_jp([], [0.3]),
               core.jaw_move_jp(["jaw"], [0.3]), core.hold(), core.servo_jr([], [0.01] * 6),
               core.move_jr([], [0.01] * 6), core.servo_jf([], [0.1] * 6), core.free(),
               core.servo_cf([1, 0, 0, 0, 0, 0]), core.jaw_servo_jf([], [0.1]))
    assert not any(results) and all(r.reason for r in results)
    assert [k for k, _ in core.outbox] == ["error"] * len(results)
    plant.run(0.2)
    np.testing.assert_array_equal(core.motion.q_sp, before)


@pytest.mark.parametrize("names,positions,why", [
    ([], [0, 0, 0.1, 0, 0, np.nan], "NaN"),
    ([], [0, 0, 0.1, 0, 0], "6 positions"),
    (["yaw", "pitch", "insertion", "roll", "wrist_pitch", "elbow"], [0, 0, 0.1, 0, 0, 0], "elbow"),
    (["yaw", "yaw", "insertion", "roll", "wrist_pitch", "wrist_yaw"], [0, 0, 0.1, 0, 0, 0], "exactly"),
    ([], [0, 0, 0.3, 0, 0, 0], "limits"),
    ([], [2.0, 0, 0.1, 0, 0, 0], "limits"),
])
def test_bad_joint_commands_rejected_and_change_nothing(names, positions, why):
    core, plant = _in_state(ENABLED)
    before = core.motion.q_sp.copy()
    assert not core.move_jp(names, positions)
    assert not core.servo_jp(names, positions)
    assert len(core.outbox) == 2 and all(k == "error" and why in m for k, m in core.outbox)
    if why != "limits":                   # relative commands: same checks on the delta
        core.outbox.clear()
        assert not core.servo_jr(names, positions) and not core.move_jr(names, positions)
        assert len(core.outbox) == 2 and all(k == "error" and why in m for k, m in core.outbox)
    plant.run(0.1)
    np.testing.assert_array_equal(core.motion.q_sp, before)


def test_named_joints_in_any_order_are_accepted():
    core, plant = _in_state(ENABLED)
    goal = np.array([0.1, -0.1, 0.15, 0.2, 0.1, -0.1])
    order = [5, 3, 1, 0, 2, 4]
    assert core.servo_jp([PSM_JOINT_NAMES[i] for i in order], goal[order])
    np.testing.assert_allclose(core.motion.q_sp, goal)


def test_bad_poses_and_jaw_rejected():
    core, plant = _in_state(ENABLED)
    before = core.motion.q_sp.copy()
    T = psm.fk(psm.HOME)
    T_far = T.copy()
    T_far[2, 3] = -0.5
    T_nan = T.copy()
    T_nan[1, 1] = np.nan
    assert not core.servo_cp(T_far)
    assert not core.move_cp(T_nan)
    assert not core.servo_cv([np.inf, 0, 0], [0, 0, 0])
    assert not core.servo_cv([0, 0], [0, 0, 0])
    assert not core.jaw_servo_jp(["gripper"], [0.2])
    assert not core.jaw_servo_jp([], [2.0])
    assert not core.jaw_move_jp([], [0.1, 0.2])
    assert [k for k, _ in core.outbox] == ["error"] * 7
    plant.run(0.1)
    np.testing.assert_array_equal(core.motion.q_sp, before)


def test_move_jp_trajectory_respects_dvrk_limits_and_is_synchronised():
    core, plant = _in_state(ENABLED)
    goal = np.array([1.2, -0.8, 0.2, 3.0, 1.0, -1.2])
    rec = []
    assert core.move_jp([], goal)
    assert core.is_busy
    plant.run(6.0, rec)
    t = np.array([r[0] for r in rec])
    q = np.array([r[1] for r in rec])
    v = np.diff(q, axis=0) / DT
    a = np.diff(v, axis=0) / DT
    assert np.all(np.abs(v).max(axis=0) <= psm.MAX_VELOCITY * 1.001)
    assert np.all(np.abs(a).max(axis=0) <= psm.MAX_ACCELERATION * 1.01)
    # yaw (1.2 rad at 90 deg/s, 90 deg/s^2) is the slowest; it never reaches cruise speed:
    # triangle of 2 sqrt(1.2 / (pi/2)) = 1.748 s
    moving = np.any(np.abs(v) > 1e-9, axis=1)
    ends = [t[np.flatnonzero(np.abs(v[:, j]) > 1e-9)[-1]] for j in range(6)]
    assert np.ptp(ends) < 2 * DT                       # all joints stop together
    assert abs(moving.sum() * DT - 2 * np.sqrt(1.2 / (np.pi / 2))) < 0.01
    np.testing.assert_allclose(q[-1], goal, atol=1e-12)
    assert ("goal_reached", True) in core.outbox and not core.is_busy


def test_interrupted_move_reports_goal_not_reached():
    core, plant = _in_state(ENABLED)
    core.move_jp([], psm.HOME + [0.5, 0, 0, 0, 0, 0])
    plant.run(0.2)
    core.hold()
    assert ("goal_reached", False) in core.outbox and not core.is_busy
    held = core.motion.q_sp.copy()
    plant.run(0.5)
    np.testing.assert_array_equal(core.motion.q_sp, held)


def test_servo_cv_integrates_twist_in_base_frame():
    core, plant = _in_state(ENABLED)
    p0 = psm.fk(core.motion.q_sp)[:3, 3]
    for _ in range(50):                     # 0.5 s of 10 mm/s along x, refreshed at 100 Hz
        core.servo_cv([0.01, 0, 0], [0, 0, 0])
        plant.run(0.01)
    p1 = psm.fk(core.motion.q_sp)[:3, 3]
    np.testing.assert_allclose(p1 - p0, [0.005, 0, 0], atol=1e-4)
    plant.run(0.5)           # the last twist acts for 100 ms (<= 1 mm more), then stops
    p2 = psm.fk(core.motion.q_sp)[:3, 3]
    assert 0.0 <= p2[0] - p1[0] <= 0.0011
    plant.run(0.5)
    np.testing.assert_allclose(psm.fk(core.motion.q_sp)[:3, 3], p2, atol=1e-12)


def test_tracking_error_faults_and_only_disable_clears():
    core, plant = _in_state(ENABLED)
    plant.offset = np.array([0, 0, 0.051, 0, 0, 0])    # insertion tolerance is 0.05 m
    plant.run(0.01)
    assert core.state == FAULT
    assert any(k == "error" and "insertion" in m for k, m in core.outbox)
    plant.offset[:] = 0
    for cmd in ("enable", "resume", "home", "pause"):
        assert not core.state_command(cmd)
        assert core.state == FAULT
    assert core.state_command("disable") and core.state == DISABLED


def test_unpowered_arm_pushed_past_the_brake_slip_stays_where_it_was_pushed():
    """A FAULTed (unpowered) arm pushed away is held where the push left it, not sprung back."""
    core, plant = _in_state(ENABLED)
    held = core.step(plant.t, plant.q).q.copy()
    push = np.array([0.3, 0, 0, 0, 0, 0])                # beyond the 0.5 rad yaw tolerance: FAULT
    q_pushed = held + np.array([0.6, 0, 0, 0, 0, 0])
    plant.t += DT
    core.step(plant.t, q_pushed)
    assert core.state == FAULT
    plant.t += DT
    sp = core.step(plant.t, q_pushed)                   # unpowered from here: the brakes slip
    assert np.allclose(sp.q, q_pushed)
    small = q_pushed + 0.5 * BRAKE_SLIP                 # a push within the slip is held against
    plant.t += DT
    assert np.allclose(core.step(plant.t, small).q, q_pushed)
    plant.t += DT
    assert np.allclose(core.step(plant.t, q_pushed + push).q, q_pushed + push)


def test_trapezoid_short_move_is_triangular():
    tr = TrapezoidTrajectory([0.0], [0.01], [1.0], [1.0], 0.0)
    # 0.01 rad at 1 rad/s^2: triangle of 2*sqrt(0.01) = 0.2 s, peak speed 0.1 rad/s
    assert tr.duration == pytest.approx(0.2)
    _, v, _ = tr.sample(0.1)
    assert v[0] == pytest.approx(0.1)


def test_relative_joint_commands_add_to_the_setpoint():
    core, plant = _in_state(ENABLED)
    q0 = core.motion.q_sp.copy()
    delta = np.array([0.05, -0.02, 0.01, 0.1, 0.0, -0.1])
    assert core.servo_jr([], delta)
    np.testing.assert_allclose(core.motion.q_sp, q0 + delta, atol=1e-15)
    assert core.move_jr([], -delta)
    plant.run(3.0)
    np.testing.assert_allclose(core.motion.q_sp, q0, atol=1e-12)
    core.outbox.clear()
    assert not core.servo_jr([], [0, 0, 1.0, 0, 0, 0])          # insertion beyond its 0.24 m limit
    assert core.outbox[0][0] == "error" and "limits" in core.outbox[0][1]


def test_effort_mode_setpoint_follows_the_arm_and_position_command_leaves_it():
    core, plant = _in_state(ENABLED)
    tau = np.array([1.0, -2.0, 3.0, 0.1, 0.0, -0.1])
    assert core.servo_jf([], tau)
    plant.offset = np.array([0.01, 0.0, 0.002, 0.0, 0.0, 0.0])     # the arm moves under the effort
    sp = core.step(plant.t + DT, plant.q + plant.offset)
    np.testing.assert_array_equal(sp.effort, tau)
    np.testing.assert_allclose(sp.q, plant.q + plant.offset)        # no tracking error, no FAULT
    assert core.state == ENABLED
    plant.offset[:] = 0
    assert core.free()
    assert np.all(core.step(plant.t + 2 * DT, plant.q).effort == 0.0)
    assert core.hold()
    assert core.step(plant.t + 3 * DT, plant.q).effort is None


def test_servo_cf_is_jacobian_transpose_of_the_wrench():
    core, plant = _in_state(ENABLED)
    q = core.q_meas.copy()
    w = np.array([0.5, -0.3, 1.0, 0.0, 0.01, 0.0])
    assert core.servo_cf(w)
    # J^T w by finite differences of the tip position/rotation (virtual work), not psm.jacobian
    eps, tau = 1e-6, np.zeros(6)
    T0 = psm.fk(q)
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = eps
        T1 = psm.fk(q + dq)
        dp = (T1[:3, 3] - T0[:3, 3]) / eps
        dR = (T1[:3, :3] @ T0[:3, :3].T - np.eye(3)) / eps
        omega = np.array([dR[2, 1], dR[0, 2], dR[1, 0]])
        tau[i] = dp @ w[:3] + omega @ w[3:]
    np.testing.assert_allclose(core.motion.effort, tau, atol=1e-5)
    R = T0[:3, :3]
    assert core.servo_cf(np.concatenate([R.T @ w[:3], R.T @ w[3:]]), body=True)   # same wrench, tip frame
    np.testing.assert_allclose(core.motion.effort, tau, atol=1e-5)


@pytest.mark.parametrize("call,why", [
    (lambda c: c.servo_jf([], [0, 0, np.nan, 0, 0, 0]), "NaN"),
    (lambda c: c.servo_jf([], [0, 0, 0, 0, 0]), "6 positions"),
    (lambda c: c.servo_jf([], [31.0, 0, 0, 0, 0, 0]), "actuator range"),
    (lambda c: c.servo_jf(["yaw"] * 6, [0] * 6), "exactly"),
    (lambda c: c.servo_cf([np.inf, 0, 0, 0, 0, 0]), "NaN"),
    (lambda c: c.servo_cf([0, 0, 0]), "6 positions"),
    (lambda c: c.servo_cf([0, 0, 500.0, 0, 0, 0]), "actuator range"),
    (lambda c: c.jaw_servo_jf([], [np.nan]), "NaN"),
    (lambda c: c.jaw_servo_jf([], [0.1, 0.2]), "1 position"),
    (lambda c: c.jaw_servo_jf(["gripper"], [0.1]), "exactly"),
    (lambda c: c.set_trajectory_ratio(0.0), "(0, 1]"),
    (lambda c: c.set_trajectory_ratio(float("nan")), "(0, 1]"),
    (lambda c: c.set_gravity_compensation("yes"), "bool"),
])
def test_bad_effort_and_setting_commands_rejected_and_change_nothing(call, why):
    core, plant = _in_state(ENABLED)
    m = core.motion
    before = (m.q_sp.copy(), m.effort, m.jaw_effort, m.trajectory_ratio, core.gravity_compensation)
    result = call(core)
    assert not result
    assert len(core.outbox) == 1 and core.outbox[0][0] == "error" and why in core.outbox[0][1], core.outbox
    after = (m.q_sp.copy(), m.effort, m.jaw_effort, m.trajectory_ratio, core.gravity_compensation)
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]


def test_trajectory_ratio_slows_moves():
    core, plant = _in_state(ENABLED)
    goal = core.motion.q_sp + np.array([0.5, 0, 0, 0, 0, 0])
    assert core.move_jp([], goal)
    for ratio in (1.0, 0.5, 0.05):
        assert core.set_trajectory_ratio(ratio)
        assert core.move_jp([], goal)
        # yaw moves 0.5 rad with v = a = ratio * 90 deg/s(^2): trapezoid or triangle
        v, a, dist = ratio * np.pi / 2, ratio * np.pi / 2, 0.5
        expected = dist / v + v / a if dist >= v * v / a else 2 * np.sqrt(dist / a)
        assert core.motion.traj.duration == pytest.approx(expected, rel=1e-9)


def test_twin_config_from_the_shipped_yaml_and_bad_values():
    from pathlib import Path

    from surgbot.config import config_from_yaml
    from surgbot.sim.psm_twin import PSMTwinConfig

    yaml = Path(__file__).resolve().parents[1] / "config" / "psm.yaml"
    cfg = config_from_yaml(PSMTwinConfig, yaml, "sim_node")
    assert (cfg.psm_rate_hz, cfg.psm_namespace) == (100.0, "/PSM1")
    for bad in ({"psm_rate_hz": 0.0}, {"psm_rate_hz": 2000.0}, {"psm_rate_hz": float("nan")},
                {"psm_namespace": "PSM1"}, {"psm_namespace": "/PSM 1"}, {"psm_secondary_rate_hz": -1.0}):
        with pytest.raises(ValueError):
            PSMTwinConfig(**bad)


def test_measured_cf_is_the_contact_wrench_mujoco_applies_to_the_arm():
    """The tool pressed into a block: J^T (contact wrench at the tip) must equal MuJoCo's own
    generalized contact force on the six arm joints (qfrc_constraint; no joint limit is active)."""
    import mujoco

    from surgbot.sim.psm_twin import MODEL_PATH, PSMTwin
    from surgbot.sim.world import SimWorld

    spec = mujoco.MjSpec.from_file(str(MODEL_PATH))
    model = spec.compile()
    data = mujoco.MjData(model)
    qadr = [model.jnt_qposadr[model.joint(n).id] for n in PSM_JOINT_NAMES]
    data.qpos[qadr] = psm.HOME
    mujoco.mj_forward(model, data)
    tip = data.site("PSM1_tool_tip")
    z = tip.xmat.reshape(3, 3)[:, 2]                 # the fingers point along the tip frame's z
    half = 0.01
    block = spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[half] * 3,
                                    pos=tip.xpos + z * (0.0098 + 0.001 + half), contype=1, conaffinity=2)
    block.quat = [1, 0, 0, 0]
    model = spec.compile()
    data = mujoco.MjData(model)
    data.qpos[qadr] = psm.HOME
    mujoco.mj_forward(model, data)
    world = SimWorld(model, data, scene="psm_block")
    twin = world.add(PSMTwin())
    twin.core.state_command("home")
    while world.time < 3.0:
        world.step()
    assert twin.core.is_homed
    twin._submit("servo_jp", ([], psm.HOME + [0, 0, 0.004, 0, 0, 0], None))   # 3 mm into the block
    while world.time < 4.0:
        world.step()
    assert data.ncon > 0
    w = twin._snap["wrench"]
    tau_from_wrench = psm.jacobian(twin._snap["q"]).T @ w
    dadr = [model.jnt_dofadr[model.joint(n).id] for n in PSM_JOINT_NAMES]
    np.testing.assert_allclose(tau_from_wrench, data.qfrc_constraint[dadr], atol=1e-6 + 1e-6 * np.abs(w).max())
    assert np.linalg.norm(w[:3]) > 1.0               # really pressing (kp 1000 N/m x ~3 mm)
    world.close()
