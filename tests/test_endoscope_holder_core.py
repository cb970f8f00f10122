"""The holder core in an in-process MuJoCo loop (`surgbot.bench.arm_loop.ArmLoop`).

The scene model is the sim's own (`surgbot.sim.scene.build_model`); the G1 is held
by the twin's standing PD and the commanded joints by a PD with g1_bridge's
gains, speed limit and gravity feed-forward, 2 control periods of command
delay.  Every number asserted is ground truth from MuJoCo (site poses, the
`scope_port` site, the endoscope camera), not the controller's estimate.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import pytest

from surgbot.bench.arm_loop import ArmLoop
from surgbot.control.endoscope_holder import HEAD_FOLLOW, HOLD, TELEOP, TOOL_FOLLOW, HolderConfig
from surgbot.control.pivot_config import PivotConfig
from surgbot.kinematics.g1_arm import RIGHT_ARM_JOINTS, WAIST_JOINTS

# in-process MuJoCo loops over minutes of simulated time: not `unit` (seconds)
pytestmark = pytest.mark.sim

ARM_JOINTS = list(RIGHT_ARM_JOINTS)


def make_loop(scene: str = "box_trainer", **cfg) -> ArmLoop:
    """Scene loop whose holder has the default config plus `cfg` overrides (fulcrum = the port)."""
    probe = ArmLoop(scene)
    pivot = PivotConfig(active_joints=WAIST_JOINTS + RIGHT_ARM_JOINTS,
                        joint_weights={n: 0.5 for n in WAIST_JOINTS},
                        depth_range=cfg.pop("depth_range", (0.015, 0.15)))
    hc = HolderConfig(fulcrum=cfg.pop("fulcrum", tuple(probe.port)), pivot=pivot, **cfg)
    return ArmLoop(scene, holder_config=hc)


def quat(R):
    q = pin.Quaternion(R)
    return [q.x, q.y, q.z, q.w]


def held(loop: ArmLoop, settle: float = 1.5) -> ArmLoop:
    loop.run(0.3)
    ok, _ = loop.core.set_hold(True)
    assert ok and loop.core.mode == HOLD
    loop.run(settle)
    return loop


def line_angle(R0, R1) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(R0[:, 2], R1[:, 2]), -1, 1))))


def test_hold_removes_gravity_sag_without_bridge_feedforward():
    """No gravity feed-forward in the bridge: the arm sags on HOLD; the joint integrator takes it back."""
    loop = ArmLoop("box_trainer", gravity_ff=False)
    loop.run(0.3)
    p0, _ = loop.tip()
    loop.core.set_hold(True)
    dev = []
    loop.run(4.0, lambda lp: dev.append(np.linalg.norm(lp.tip()[0] - p0)))
    dev = np.array(dev) * 1e3
    assert dev.max() > 2.0                 # the sag is real (mm)
    assert dev[-250:].max() < 0.3          # and gone after 3.5 s
    assert loop.fulcrum_error() < 0.3e-3
    assert loop.core.mode == HOLD


def test_hold_under_joint_torque_disturbance():
    """Acceptance: 60 s of 1 Nm random steps (one right-arm joint at a time, every 1-3 s):
    tip drift < 0.5 mm, RMS jitter < 0.2 mm (transients included), never off the port."""
    loop = held(make_loop())
    p0, _ = loop.tip()
    rng = np.random.default_rng(7)
    P, ferr, next_change = [], [], [0.0]

    def each(lp):
        if lp.t >= next_change[0]:
            lp.disturbance[:] = 0.0
            lp.disturbance[lp.index[rng.choice(ARM_JOINTS)]] = rng.choice([-1.0, 1.0])
            next_change[0] = lp.t + rng.uniform(1.0, 3.0)
        P.append(lp.tip()[0])
        ferr.append(lp.fulcrum_error())

    loop.run(60.0, each)
    P = np.array(P)
    assert np.count_nonzero(np.linalg.norm(P - p0, axis=1) > 0.5e-3) > 100, "the disturbance is felt"
    drift = np.linalg.norm(P[-500:].mean(0) - p0)                  # last 1 s vs the start
    jitter = np.sqrt(np.mean(np.sum((P - P.mean(0)) ** 2, axis=1)))
    assert drift < 0.5e-3, drift
    assert jitter < 0.2e-3, jitter
    assert max(ferr) < 2e-3 and loop.core.mode == HOLD


@pytest.mark.parametrize("scene", ["box_trainer", "endonasal"])
def test_view_sequence_keeps_fulcrum_and_reaches_targets(scene):
    """Pan/tilt +-25 deg, insertion +30/-30 mm, roll +-45 deg via servo_cp, both scenes (full 60 s in bench)."""
    loop = held(make_loop(scene))
    c = loop.core
    v0 = c.setpoint.copy()
    port = loop.port
    ferr = []
    for move in [(25, 0, 0, 0), (-25, 0, 0, 0), (0, 25, 0, 0), (0, -25, 0, 0),
                 (0, 0, 0.03, 0), (0, 0, -0.03, 0), (0, 0, 0, 45), (0, 0, 0, -45)]:
        target, reasons = c.ik.move_view(v0, np.radians(move[0]), np.radians(move[1]), move[2], np.radians(move[3]))
        assert reasons == []
        p, q = target.tip_position(port), quat(target.rotation)
        loop.run(3.0, lambda lp, p=p, q=q: (lp.core.servo_cp(p, q, "world", lp.t), ferr.append(lp.fulcrum_error())))
        loop.run(0.3, lambda lp: ferr.append(lp.fulcrum_error()))
        tip, R = loop.tip()
        assert np.linalg.norm(tip - p) < 1e-3, move
        assert np.degrees(np.linalg.norm(pin.log3(R.T @ target.rotation))) < 1.0, move
        assert c.mode == HOLD     # the 200 ms timeout brought it back
    ferr = np.array(ferr)
    assert np.percentile(ferr, 99) < 1e-3
    assert ferr.max() < 2e-3


def test_teleop_tremor_suppressed_and_deliberate_motion_passes():
    loop = held(make_loop())
    c = loop.core
    v0 = c.setpoint.copy()
    p_still = v0.tip_position(loop.port)
    R0 = v0.rotation.copy()
    x_axis = R0[:, 0]
    q0 = quat(R0)
    P = []

    def still(lp):
        if int(round(lp.t * 500)) % 5 == 0:   # 100 Hz command stream
            tremor = 0.002 * np.sin(2 * np.pi * 8.0 * lp.t)
            lp.core.servo_cp(p_still + tremor * x_axis, q0, "world", lp.t)
        P.append(lp.tip()[0])

    loop.run(1.0, still)
    P.clear()
    loop.run(3.0, still)
    P = np.array(P)
    assert c.mode == TELEOP
    jitter = np.sqrt(np.mean(np.sum((P - P.mean(0)) ** 2, axis=1)))
    assert jitter < 0.2e-3

    # deliberate 0.5 Hz pan of +-5 deg with the same tremor on top
    amp = np.radians(5.0)
    t0 = loop.t
    cmd, meas = [], []

    def wave(lp):
        s = amp * np.sin(2 * np.pi * 0.5 * (lp.t - t0))
        v, _ = c.ik.move_view(v0, 0.0, s, 0.0, 0.0)
        if int(round(lp.t * 500)) % 5 == 0:
            tremor = 0.002 * np.sin(2 * np.pi * 8.0 * lp.t)
            lp.core.servo_cp(v.tip_position(loop.port) + tremor * x_axis, quat(v.rotation), "world", lp.t)
        _, R = lp.tip()
        cmd.append(s)
        meas.append(np.arctan2(np.dot(R[:, 2], x_axis), np.dot(R[:, 2], R0[:, 2])))

    loop.run(6.0, wave)
    cmd, meas = np.array(cmd)[500:], np.array(meas)[500:]
    lags = np.arange(0, 100)            # in 2 ms steps
    err = [np.mean((cmd[: len(cmd) - k] - meas[k:]) ** 2) for k in lags]
    lag_ms = 2.0 * lags[int(np.argmin(err))]
    assert lag_ms < 100.0
    assert np.sqrt(min(err)) < np.radians(0.5)     # and it is the same motion, not just shifted noise


def test_servo_cv_pans_about_the_fulcrum_and_times_out_to_hold():
    loop = held(make_loop())
    c = loop.core
    _, R0 = loop.tip()
    loop.run(1.0, lambda lp: lp.core.servo_cv([0, 0, 0], [0.0, 0.1, 0.0], "endoscope_tip", lp.t))
    assert c.mode == TELEOP
    loop.run(0.15)
    assert c.mode == TELEOP
    loop.run(0.1)
    assert c.mode == HOLD                              # > 200 ms without a command
    loop.run(1.5)
    _, R1 = loop.tip()
    assert abs(line_angle(R0, R1) - np.degrees(0.1)) < 0.5
    assert loop.fulcrum_error() < 0.5e-3


def test_bad_commands_are_rejected_and_the_arm_holds():
    loop = held(make_loop())
    c = loop.core
    p0, R0 = loop.tip()
    q0 = quat(R0)
    bad = [
        lambda t: c.servo_cp([np.nan, 0, 0], q0, "world", t),
        lambda t: c.servo_cp(p0, [0, 0, 0, np.inf], "world", t),
        lambda t: c.servo_cp(p0, q0, "endoscope_tip", t),
        lambda t: c.servo_cp(p0, [0, 0, 0, 0], "world", t),
        lambda t: c.servo_cv([0, 0, 0], [np.nan, 0, 0], "endoscope_tip", t),
        lambda t: c.servo_cv([0, 0, 0], [0.1, 0, 0], "world", t),
        lambda t: c.servo_cv([0, 0, 5.0], [0, 0, 0], "endoscope_tip", t),
        lambda t: c.update_joint_state(["right_elbow_joint"], [np.nan], t),
        lambda t: c.update_joint_state(["right_elbow_joint"], [0.1, 0.2], t),
    ]
    for b in bad:
        ok, reason = b(loop.t)
        assert not ok and reason
        assert c.mode == HOLD
    loop.run(0.5)
    p1, _ = loop.tip()
    assert np.linalg.norm(p1 - p0) < 0.05e-3
    # an out-of-range insertion is clipped (with a reason), not refused
    ok, reason = c.servo_cp(loop.port + 0.5 * R0[:, 2], q0, "world", loop.t)
    assert ok and "insertion" in reason and c.setpoint is not None


def test_a_stream_of_bad_input_is_counted_and_logged_once_a_period():
    """500 Hz of NaN servo_cv for 1.5 s (a broken teleop source) and a wrong-frame head pose: every message
    refused and counted by input, the log says each input once per rejection_log_period_s, the view holds."""
    loop = held(make_loop(rejection_log_period_s=1.0))
    c = loop.core
    p0, R0 = loop.tip()
    c.events.clear()
    t0 = loop.t
    for k in range(750):
        assert not c.servo_cv([0, 0, 0], [np.nan, 0, 0], "endoscope_tip", t0 + k * 0.002)
    assert not c.head(p0, quat(R0), "endoscope_tip", t0)
    errors = [text for level, text in c.events if level == "error"]
    assert errors == ["servo_cv: non-finite twist", "servo_cv: non-finite twist (501 so far)",
                      "head: bad frame or non-finite pose"], errors
    d = c.diagnostics()
    assert d["rejected_by_input"] == {"servo_cv": 750, "head": 1} and d["rejected"] == 751
    assert c.mode == HOLD
    loop.run(0.3)
    assert np.linalg.norm(loop.tip()[0] - p0) < 0.05e-3
    c.set_safety("estop")                      # a refused service call is answered every time: a person asked
    c.events.clear()
    assert not c.set_hold(True) and not c.set_hold(True)
    assert [level for level, _ in c.events].count("error") == 2


def test_fulcrum_captured_from_the_shaft_matches_the_port():
    """No fulcrum parameter: captured at the 50 mm entry depth; the sim's port site agrees."""
    loop = make_loop(fulcrum=None, entry_depth=0.05)
    loop.run(0.2)
    assert np.linalg.norm(loop.core.fulcrum - loop.port) < 0.5e-3
    held(loop)
    ok, _ = loop.core.set_fulcrum()          # re-capture at the current depth: same point
    assert ok and np.linalg.norm(loop.core.fulcrum - loop.port) < 0.5e-3
    assert loop.fulcrum_error() < 0.5e-3


def test_head_follow_pans_with_the_deadman_held():
    loop = held(make_loop())
    c = loop.core
    head_p = np.array([0.0, 0.0, 1.6])
    c.head(head_p, [0, 0, 0, 1], "world", loop.t)
    c.buttons([1], loop.t)
    assert c.mode == HEAD_FOLLOW
    _, R0 = loop.tip()
    yaw = np.radians(10.0)
    qz = [0, 0, np.sin(yaw / 2), np.cos(yaw / 2)]
    loop.run(2.0, lambda lp: lp.core.head(head_p, qz, "world", lp.t))
    _, R1 = loop.tip()
    assert abs(line_angle(R0, R1) - 10.0) < 0.5
    # head turned left -> the view moved left: the new axis has a negative component on the old image x
    assert np.dot(R1[:, 2], R0[:, 0]) < 0
    c.buttons([0], loop.t)
    assert c.mode == HOLD
    assert loop.fulcrum_error() < 1e-3


def test_tool_follow_keeps_the_tool_in_the_central_image():
    """A tool tip tracing a 3 cm square in 20 s stays in the central 50% of the image (MuJoCo camera)."""
    loop = held(make_loop(psm_base_pose=(0, 0, 0, 0, 0, 0, 1)))     # PSM1_base == world here
    c = loop.core
    m = loop.model
    cam = m.camera("endoscope_camera").id
    fy = 120.0 / np.tan(np.radians(m.cam_fovy[cam]) / 2)          # 320x240 image, square pixels
    p0, R0 = loop.tip()
    centre = p0 + 0.05 * R0[:, 2] + 0.008 * R0[:, 0]
    corners = [centre + 0.015 * (a * R0[:, 0] + b * R0[:, 1]) for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    ok, _ = c.set_follow_tool(True)
    assert ok and c.mode == TOOL_FOLLOW
    inside, ferr = [], []

    def each(lp):
        s = (lp.t - t0) / 5.0
        k = int(s) % 4
        a = s - int(s)
        tool = corners[k] + a * (corners[(k + 1) % 4] - corners[k])
        lp.core.psm_tip(tool, "PSM1_base", lp.t)
        ferr.append(lp.fulcrum_error())
        if int(round(lp.t * 500)) % 17 == 0:       # ~30 Hz "frames"
            d = lp.data
            pc = d.cam_xmat[cam].reshape(3, 3).T @ (tool - d.cam_xpos[cam])   # MuJoCo camera: looks along -z
            u, v = 160 + fy * pc[0] / -pc[2], 120 - fy * pc[1] / -pc[2]
            inside.append(pc[2] < 0 and abs(u - 160) < 80 and abs(v - 120) < 60)

    t0 = loop.t
    loop.run(20.0, each)
    assert np.mean(inside) > 0.95
    assert np.percentile(ferr, 99) < 1e-3 and max(ferr) < 2e-3
    assert c.mode == TOOL_FOLLOW


def test_hold_is_stable_with_a_slow_link():
    """The DDS round trip (holder -> bridge -> robot -> bridge -> holder) can reach 10-20 ms on a loaded
    host: after a view change HOLD must settle, not limit-cycle (an integral gain of 60 1/s did at 12 ms)."""
    probe = ArmLoop("box_trainer")
    pivot = PivotConfig(active_joints=WAIST_JOINTS + RIGHT_ARM_JOINTS, joint_weights={n: 0.5 for n in WAIST_JOINTS})
    loop = held(ArmLoop("box_trainer", delay_steps=10,
                        holder_config=HolderConfig(fulcrum=tuple(probe.port), pivot=pivot)))
    c = loop.core
    target, _ = c.ik.move_view(c.setpoint.copy(), np.radians(10), np.radians(10), 0.005, 0.0)
    p, q = target.tip_position(loop.port), quat(target.rotation)
    loop.run(3.0, lambda lp: lp.core.servo_cp(p, q, "world", lp.t))
    P, ferr = [], []
    loop.run(3.0, lambda lp: (P.append(lp.tip()[0]), ferr.append(lp.fulcrum_error())))
    P = np.array(P)
    assert c.mode == HOLD
    assert np.ptp(P[-500:], axis=0).max() < 0.03e-3          # still over the last second
    assert np.linalg.norm(P[-1] - p) < 1e-3 and max(ferr) < 2e-3


def _turn_with_states_every(every: int, **cfg) -> tuple[float, float, float]:
    """Turn the view 10 deg with a joint state every `every`-th control period: (s until the setpoint
    has turned, fraction of steps that waited for a state, max ground-truth fulcrum error m)."""
    loop = held(make_loop(**cfg))
    c = loop.core
    R0 = c.setpoint.rotation.copy()
    target, _ = c.ik.move_view(c.setpoint.copy(), np.radians(10), 0.0, 0.0, 0.0)
    p, q = target.tip_position(loop.port), quat(target.rotation)
    paced0, t0 = c.stats["paced_steps"], loop.t
    rows = []

    def each(lp):
        lp.measuring = len(rows) % every == every - 1
        lp.core.servo_cp(p, q, "world", lp.t)
        rows.append((lp.t - t0, line_angle(R0, lp.core.setpoint.rotation), lp.fulcrum_error()))

    loop.run(1.5, each)
    assert c.mode == TELEOP
    return (next(t for t, a, _ in rows if a > 9.9), (c.stats["paced_steps"] - paced0) / len(rows),
            max(e for *_, e in rows))


def test_the_view_moves_in_robot_time_when_joint_states_come_slower():
    """A twin running at half the wall clock's speed (a loaded host) sends half the joint states per
    wall second: the reference advances joint_state_period_s per state, so the view's motion takes
    twice the wall time (the arm sees the configured speed and acceleration in its own time) and
    stays on the port."""
    t_full, paced_full, ferr_full = _turn_with_states_every(1)
    # every 4th period: 8 ms, half the bridge's 250 Hz
    t_half, paced_half, ferr_half = _turn_with_states_every(4)
    # the same states without pacing (joint_state_period_s 0): the wall clock alone
    t_wall, paced_wall, _ = _turn_with_states_every(4, joint_state_period_s=0.0)
    assert paced_full == 0 and paced_wall == 0
    assert 0.45 < paced_half < 0.55, paced_half            # every other step waited for a state
    assert 1.8 < t_half / t_full < 2.2, (t_half, t_full)
    assert abs(t_wall - t_full) < 0.01, (t_wall, t_full)
    assert ferr_half < 1e-3 and ferr_full < 1e-3, (ferr_half, ferr_full)
