"""How every command source reacts to `/safety/state` (issue 16 item 1), and the shared limiter (item 2).

Cores only (ROS-free), each stepped with its own clock: the G1 bridge, the
teleop mapper, the policy executor, the holder's mode machine, and the
`SafetyStateWatch` they are driven by.  Expected values are computed here
from the inputs (targets frozen where they were, a step of exactly the limit
along the requested direction), never read back from the code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgbot.control.g1_arm import UPPER_LIMITS_TABLE
from surgbot.control.g1_bridge import G1BridgeCore
from surgbot.control.g1_bridge import State as BridgeState
from surgbot.control.holder_modes import ModeMachine
from surgbot.control.holder_modes import State as HolderState
from surgbot.control.policy_exec import PolicyExecutor
from surgbot.control.policy_exec import State as PolicyState
from surgbot.safety import checks
from surgbot.safety.filter import CAUSE_ROTATION_STEP, PoseLimiter
from surgbot.safety.state_watch import SafetyStateWatch, SafetyWatchConfig
from surgbot.teleop.mapper import State as MapperState
from tests.test_g1_bridge_core import Clock, engaged
from tests.test_policy_exec import DT as POLICY_DT
from tests.test_policy_exec import HOME, chunk
from tests.test_teleop_mapper import Rig, rot

pytestmark = pytest.mark.unit

BLOCK = "safety state ESTOP: e-stop requested"


# ---------------------------------------------------------------------- the watch
def test_watch_is_fail_safe_when_required_and_holds_once_a_supervisor_was_seen_when_not():
    ok = json.dumps({"state": "OK", "reasons": []})
    w = SafetyStateWatch.from_config(SafetyWatchConfig(require_safety_supervisor=True, safety_stale_s=0.25))
    assert not w.allows_motion(0.0) and "no /safety/state" in w.allows_motion(0.0).reason
    w.update(ok, 1.0)
    assert w.allows_motion(1.2)
    assert not w.allows_motion(1.26) and "silent for 260 ms" in w.allows_motion(1.26).reason
    w.update("{not json", 2.0)
    assert not w.allows_motion(2.0) and "MALFORMED" in w.allows_motion(2.0).reason
    w.update(json.dumps({"state": "FAULT", "reasons": ["psm_measured_js: silent for 120 ms"]}), 3.0)
    assert "psm_measured_js" in w.allows_motion(3.0).reason

    alone = SafetyStateWatch.from_config(SafetyWatchConfig(require_safety_supervisor=False))
    assert alone.allows_motion(0.0)                       # a node run alone (no supervisor in its rig)
    alone.update(ok, 1.0)
    assert not alone.allows_motion(1.0 + 0.3)             # ... but a supervisor that went silent holds
    with pytest.raises(ValueError, match="safety_stale_s"):
        SafetyWatchConfig(safety_stale_s=0.0)


# ---------------------------------------------------------------------- bridge
def test_bridge_holds_the_arm_where_it_is_at_full_weight_until_an_explicit_engage():
    # where the stop starts (the controlled stop from there along the path: tests/test_safe_stop.py)
    core = G1BridgeCore(limits=UPPER_LIMITS_TABLE, safety_stop_time_constant=0.0)
    clk = engaged(core)
    k = 6                                                 # left elbow in the upper-body order
    names = ["left_elbow_joint"]
    sag = 0.004                                           # the arm rests 4 mrad short of its target (load)
    clk.q[12 + k] -= sag
    clk.step(400)                                         # still: the bridge learns that offset
    goal = clk.q[12:29] + 0.2
    assert core.command(names, [float(goal[k])], now=clk.t)
    clk.step(50)                                          # targets slew at max_velocity toward the goal
    moving = core.target.copy()
    assert abs(moving[k] - clk.q[12 + k]) > 1e-2 and abs(moving[k] - goal[k]) > 1e-3
    clk.q[12 + k] += 0.5 * (moving[k] - sag - clk.q[12 + k])   # the arm lags: half-way there
    clk.feed()

    core.set_safety(BLOCK, clk.t)
    cmds = clk.step(200)
    assert all(c is not None for c in cmds)               # still streaming: never dropped
    # frozen where the arm is plus the offset it needs at rest: the lagging motion is not finished
    frozen = clk.q[12:29].copy()
    frozen[k] += sag
    for c in cmds:
        np.testing.assert_allclose(c.q, frozen, atol=1e-5)
        assert c.weight == 1.0 and not np.any(c.dq)
    assert moving[k] - cmds[0].q[k] > 1e-2               # not the raw targets
    assert not core.command(names, [float(goal[k])], now=clk.t)
    assert not core.release(clk.t)                        # the scope is not let go either
    assert not core.engage(clk.t)                         # engage does not lift a block

    core.set_safety("", clk.t)                            # reset: still holding until engage
    assert not core.command(names, [float(goal[k])], now=clk.t)
    np.testing.assert_allclose(clk.step(1)[0].q, cmds[-1].q, atol=1e-12)
    assert core.engage(clk.t) and core.command(names, [float(goal[k])], now=clk.t)
    clk.step(5)
    assert core.target[k] != cmds[-1].q[k]
    assert core.status(clk.t)["safety_stops"] == 1


def test_bridge_releasing_is_taken_back_to_full_weight_by_a_block():
    core = G1BridgeCore(limits=UPPER_LIMITS_TABLE)
    clk = engaged(core)
    assert core.release(clk.t)
    w0 = [c.weight for c in clk.step(100)][-1]
    assert w0 < 1.0
    core.set_safety(BLOCK, clk.t)
    weights = [c.weight for c in clk.step(1500)]
    assert weights[0] >= w0 and weights[-1] == 1.0 and core.state == BridgeState.ENGAGED


# ---------------------------------------------------------------------- mapper
def test_mapper_stops_at_once_and_needs_a_fresh_clutch_after_the_reset():
    r = Rig()
    r.send(clutch=True)
    assert r.core.state == MapperState.FOLLOWING
    assert r.move_hand([0.01, 0.0, 0.0], steps=5).servo_cp is not None
    r.core.set_safety(BLOCK)
    assert r.core.state == MapperState.NEED_CLUTCH
    for clutch in (True, False, True):                    # nothing while blocked, even a new clutch
        cmd = r.send(clutch=clutch)
        assert cmd.servo_cp is None and cmd.jaw is None and cmd.insertion_m_s is None
    assert r.core.state != MapperState.FOLLOWING
    r.core.set_safety("")
    assert r.send(clutch=True).servo_cp is None           # still clutched from before: release first
    r.send(clutch=False)
    assert r.send(clutch=True).servo_cp is not None
    assert r.core.diagnostics()["safety_stops"] == 1


def test_mapper_limits_through_the_shared_limiter_with_counted_causes():
    r = Rig()
    r.send()
    h = r.hand.copy()
    h[:3, 3] += [0.0, -1.0, 0.0]                          # 0.2 m for the tool: box and step
    r.send(hand=h)
    d = r.core.diagnostics()
    assert d["workspace_clipped"] >= 1 and d["step_limited"] >= 1
    assert d[f"safety_filter_{checks.CAUSE_WORKSPACE}"] >= 1 and d[f"safety_filter_{checks.CAUSE_STEP}"] >= 1
    reports = [t for lvl, t in r.core.events if "safety filter" in t]
    for _ in range(20):
        r.send(hand=h)
    again = [t for lvl, t in r.core.events if "safety filter" in t]
    assert len(again) == len(reports)                     # rate-limited: 20 more refusals, no new lines


# ---------------------------------------------------------------------- policy
def test_policy_publishes_nothing_after_a_block_and_needs_enable_after_the_reset():
    ex = PolicyExecutor()
    assert ex.set_instruction("reach") and ex.enable(True)
    t = POLICY_DT
    ex.on_measured(HOME, t)
    ex.observation_taken(t)
    ex.on_chunk(chunk(HOME[:3], (0.001, 0, 0)), ex.tick_index + 1, t)
    assert ex.tick(t).command is not None
    ex.set_safety(BLOCK)
    for _ in range(5):
        t += POLICY_DT
        ex.on_measured(HOME, t)
        out = ex.tick(t)
        assert out.command is None and out.state is PolicyState.DISABLED
    assert not ex.enable(True) and "safety" in ex.enable(True).reason
    ex.set_safety("")
    assert ex.state is PolicyState.DISABLED              # nothing resumes by itself
    assert ex.enable(True)
    st = ex.status(t)
    assert st["gate_rejections"]["safety stop"] == 1 and st["safety"] == "OK"


# ---------------------------------------------------------------------- holder
def test_holder_freezes_a_holding_arm_leaves_idle_alone_and_refuses_servo_commands():
    m = ModeMachine(fault_fulcrum_error_m=0.005, fault_persist_s=0.1)
    m.set(HolderState.HOLD)
    m.set_safety(BLOCK)
    assert m.mode == HolderState.FAULT and m.fault_by_safety
    assert "safety" in m.teleop_refusal()
    m.set_safety("")
    assert m.mode == HolderState.FAULT                    # until /endoscope/hold
    idle = ModeMachine(fault_fulcrum_error_m=0.005, fault_persist_s=0.1)
    idle.set_safety(BLOCK)
    assert idle.mode == HolderState.IDLE and "safety" in idle.teleop_refusal()   # no takeover while blocked
    own = ModeMachine(fault_fulcrum_error_m=0.005, fault_persist_s=0.1)
    own.set(HolderState.FAULT, "fulcrum")
    own.set_safety(BLOCK)
    assert own.mode == HolderState.FAULT and not own.fault_by_safety     # its own fault stays its own


# ---------------------------------------------------------------------- the limiter
def rotz(deg: float) -> np.ndarray:
    return rot([0, 0, 1], deg)


def test_limiter_clips_to_the_box_then_steps_at_most_the_limit_along_the_request():
    lim = PoseLimiter((-0.1, -0.1, -0.2), (0.1, 0.1, -0.05), max_step_m=0.004, max_rotation_step_rad=0.1)
    ref = np.array([0.0, 0.0, -0.1])
    p, R, causes = lim.limit([0.5, 0.0, -0.1], np.eye(3), ref, np.eye(3))
    np.testing.assert_allclose(p, [0.004, 0.0, -0.1])                 # toward the box edge, 4 mm
    assert causes == (checks.CAUSE_WORKSPACE, checks.CAUSE_STEP)
    p, R, causes = lim.limit(ref + [0.001, 0.002, 0.0], rotz(30.0), ref, np.eye(3))
    np.testing.assert_allclose(p, ref + [0.001, 0.002, 0.0])
    np.testing.assert_allclose(R, rotz(math.degrees(0.1)), atol=1e-12)  # 0.1 rad along the same axis
    assert causes == (CAUSE_ROTATION_STEP,)
    R180, short = checks.limit_rotation_step(np.eye(3), rotz(180.0), 0.1)
    assert short and abs(checks.rotation_angle_between(np.eye(3), R180) - 0.1) < 1e-9
    assert lim.log.counts == {checks.CAUSE_WORKSPACE: 1, checks.CAUSE_STEP: 1, CAUSE_ROTATION_STEP: 1}
    with pytest.raises(ValueError):
        PoseLimiter((0, 0, 0), (0, 1, 1), 0.01, 0.1)


def test_rotation_checks_refuse_reflections_singular_and_non_finite_matrices_and_measure_angles():
    R = rot([1, 2, 3], 40.0)
    ok = checks.rotation_matrix("R", R)
    assert ok and np.array_equal(ok.value, R)
    assert checks.rotation_matrix("R", R + 0.0002 * np.eye(3))                   # within tol (1e-3)
    for bad, cause in ((R @ np.diag([1.0, 1.0, -1.0]), checks.CAUSE_SINGULAR),   # a mirror: orthonormal, det -1
                       (np.diag([1.0, 1.0, 0.0]), checks.CAUSE_SINGULAR),
                       (R + 0.01 * np.eye(3), checks.CAUSE_SINGULAR),
                       (np.full((3, 3), np.nan), checks.CAUSE_NON_FINITE),
                       (np.eye(4), checks.CAUSE_SHAPE)):
        r = checks.rotation_matrix("R", bad)
        assert not r and checks.cause_of(r.reason) == cause, r.reason
    for deg in (0.0, 1e-4, 30.0, 90.0, 179.9, 180.0):
        assert checks.rotation_angle_between(R, R @ rotz(deg)) == pytest.approx(math.radians(deg), abs=1e-7)
    assert math.isnan(checks.rotation_angle_between(np.eye(3), np.full((3, 3), np.nan)))
    assert not checks.rotation_step_within("R", np.eye(3), rotz(10.0), math.radians(5.0))
    assert checks.rotation_step_within("R", np.eye(3), rotz(4.0), math.radians(5.0))
    p, clipped = checks.clip_to_box([0.5, -0.5, 0.0], (-0.1, -0.1, -0.1), (0.1, 0.1, 0.1))
    assert clipped and p.tolist() == [0.1, -0.1, 0.0]


def test_mapper_refuses_a_hand_glitch_when_configured_and_follows_on():
    from surgbot.teleop.config import MapperConfig
    r = Rig(MapperConfig(max_hand_jump_m=0.1))
    r.send()
    before = r.send().servo_cp
    glitch = r.hand.copy()
    glitch[:3, 3] += [0.0, 0.0, 1.0]
    assert r.send(hand=glitch).servo_cp is None                  # one sample 1 m away: refused
    assert r.core.counters["rejected_hand_jump"] == 1
    after_ = r.send().servo_cp                                   # the next real sample is followed again
    np.testing.assert_allclose(after_[:3, 3], before[:3, 3], atol=1e-12)
    assert r.core.state == MapperState.FOLLOWING


def test_policy_refuses_an_action_far_outside_the_box_when_configured():
    from surgbot.control.policy_exec import PolicyExecConfig
    ex = PolicyExecutor(PolicyExecConfig(workspace_refuse_margin_m=0.01))
    ex.on_measured(HOME, 0.0)
    hi = np.array(ex.config.workspace_max_m)
    a = HOME.copy()
    a[0] = hi[0] + 0.005                                         # 5 mm over: clipped
    ok = ex.gate(a)
    assert ok and ok.value[0] <= hi[0]
    a[0] = hi[0] + 0.02                                          # 2 cm over: refused
    assert not ex.gate(a) and "outside the workspace" in ex.gate(a).reason
    assert ex.limiter.log.counts[checks.CAUSE_WORKSPACE] >= 2


def test_a_restarted_bridge_engages_from_the_weight_the_robot_still_holds(tmp_path):
    from surgbot.control.bridge_memory import WeightMemory
    path = tmp_path / "bridge.json"
    first = G1BridgeCore(limits=UPPER_LIMITS_TABLE)
    clk = engaged(first)
    mem = WeightMemory(path)
    assert mem.offer(first.weight, clk.tick, clk.t)
    assert not mem.offer(first.weight, clk.tick + 2, clk.t + 1.0)       # unchanged: not rewritten
    assert WeightMemory(path).load(clk.tick + 1000) == 1.0                # same robot run, later
    assert WeightMemory(path).load(clk.tick - 1) is None                  # the robot restarted (tick went back)
    assert WeightMemory(tmp_path / "none.json").load(5) is None

    second = G1BridgeCore(limits=UPPER_LIMITS_TABLE)                      # the new process
    clk2 = Clock(second)
    clk2.tick, clk2.t = clk.tick, clk.t                                   # the same robot, still running
    clk2.feed()
    assert second.restore_weight(WeightMemory(path).load(clk2.tick + 10))
    assert second.engage(clk2.t)
    cmds = clk2.step(3)
    assert all(c.weight == 1.0 for c in cmds) and second.state == BridgeState.ENGAGED   # never toward 0
    np.testing.assert_allclose(cmds[0].q, clk2.q[12:29])                 # on the measured posture
    assert not second.restore_weight(0.5)                                 # only while IDLE
