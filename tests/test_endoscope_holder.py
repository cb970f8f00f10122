"""`endoscope_holder` in the loop: sim (MuJoCo twin, unitree DDS) + g1_bridge + the holder node.

Everything goes through the contract: the holder reads `/g1/joint_states`
and writes `/g1/arm_command`; this test drives it with `/endoscope/*`
topics/services and judges it only by `/sim/ground_truth/*` (the sim's own
scope tip and port), never by the holder's estimate.  The box is shared and
loaded (rt/lowstate gaps of 100+ ms happen), so the holder's joint-state
timeout and the bridge's staleness window are widened (measured reasons in
tests/endoscope_rig.py); the contract's fulcrum bounds are asserted on the
windows where the sim kept real time, and the excluded windows reported.
"""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pinocchio as pin
import pytest
import rclpy.duration
from geometry_msgs.msg import PointStamped, PoseStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64
from std_srvs.srv import Trigger

from surgbot import contract
from tests.endoscope_rig import (
    LOADED_MAX_M,
    LOADED_P99_M,
    SLOW_VIEW,
    HolderClient,
    assert_contract_fulcrum,
    judge_windows,
    line_distance,
    pose_msg,
    pose_of,
    start_holder_engaged,
    start_sim_and_bridge,
)

pytestmark = pytest.mark.sim


class Client(HolderClient):
    """The rig's client plus the holder's own state topics, set_fulcrum and the sim's disturbance hook."""

    def __init__(self):
        super().__init__("test_endoscope_holder_client")
        self.cp: PoseStamped | None = None
        self.fulcrum: np.ndarray | None = None
        self.ferr: float | None = None
        n = self.node
        n.create_subscription(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, lambda m: setattr(self, "cp", m), 10)
        n.create_subscription(PointStamped, contract.ENDOSCOPE_FULCRUM,
                              lambda m: setattr(self, "fulcrum", np.array([m.point.x, m.point.y, m.point.z])), 10)
        n.create_subscription(Float64, contract.ENDOSCOPE_FULCRUM_ERROR, lambda m: setattr(self, "ferr", m.data), 10)
        self.pub_dist = n.create_publisher(JointState, "/sim/g1/disturbance", 10)
        self.set_fulcrum = n.create_client(Trigger, contract.ENDOSCOPE_SET_FULCRUM)
        self.start()


@pytest.fixture(scope="module")
def rig(module_processes):
    procs = module_processes
    c = Client()
    # overrides of the shipped files for the loaded box, each measured: see tests/endoscope_rig.py
    start_sim_and_bridge(procs, c, "box_trainer", stale_after=0.3)      # rt/lowstate gaps up to 190 ms
    holder, port = start_holder_engaged(procs, c, ["joint_state_timeout_s:=0.5", *SLOW_VIEW])
    time.sleep(2.0)
    yield {"client": c, "port": port, "procs": procs, "holder": holder}
    c.close()


def test_holds_the_scope_in_the_port_and_publishes_the_contract(rig):
    c = rig["client"]
    assert c.mode == "HOLD"
    t0 = time.monotonic()
    time.sleep(3.0)
    errs = [line_distance(rig["port"], p, R) for p, R in c.tips_since(t0)]
    assert len(errs) > 50
    assert max(errs) < 1e-3
    assert_contract_fulcrum(judge_windows(c, rig["port"], t0, time.monotonic(), "holder HOLD 3 s"))
    p_gt, R_gt = c.tip()
    p_cp, R_cp = pose_of(c.cp)
    assert c.cp.header.frame_id == "world"
    assert np.linalg.norm(p_cp - p_gt) < 1e-3          # the holder's view of the tip is the sim's
    assert np.linalg.norm(c.fulcrum - rig["port"]) < 1e-9
    assert 0.0 <= c.ferr < 1e-3
    assert c.wait(lambda: c.diag is not None, 5)
    for key in ("mode", "fulcrum_error_mm", "tip_jitter_rms_mm_1s", "step_ms_p99", "period_ms_p99"):
        assert key in c.diag
    P = np.array([p for p, _ in c.tips_since(time.monotonic() - 2.0)])
    assert np.sqrt(np.mean(np.sum((P - P.mean(0)) ** 2, axis=1))) < 0.2e-3     # steady: no jitter


def test_servo_cp_moves_the_view_about_the_port(rig):
    c = rig["client"]
    port = rig["port"]
    p0, R0 = c.tip()
    depth = float(np.dot(p0 - port, R0[:, 2]))
    R1 = R0 @ pin.exp3(np.array([0.0, np.radians(10.0), np.radians(10.0)]))
    p1 = port + (depth + 0.005) * R1[:, 2]
    t0 = time.monotonic()
    c.servo_cp_until(p1, R1, mm=0.5, deg=0.5)
    assert c.mode == "TELEOP"
    assert c.wait(lambda: c.mode == "HOLD", 5.0)          # 200 ms without a command
    time.sleep(0.5)
    judged = judge_windows(c, port, t0, time.monotonic(), "holder servo_cp 10+10 deg, +5 mm")
    p, R = c.tip()
    assert np.linalg.norm(p - p1) < 1e-3
    assert np.degrees(np.linalg.norm(pin.log3(R.T @ R1))) < 1.0
    # the contract bounds where the sim kept real time; in the windows where the loaded box
    # stalled the sim (reported) only the loaded-box bounds are asserted
    assert_contract_fulcrum(judged)
    assert np.percentile(judged["all"], 99) < LOADED_P99_M and judged["all"].max() < LOADED_MAX_M, judged["line"]


def test_bad_commands_leave_the_arm_holding(rig):
    c = rig["client"]
    assert c.settled(timeout=15.0)   # after the previous move
    p0, R0 = c.tip()
    old = c.node.get_clock().now() - rclpy.duration.Duration(seconds=5.0)
    for _ in range(10):
        c.servo_cp([float("nan"), 0.0, 0.0], R0)
        c.servo_cp(p0 + 0.02 * R0[:, 0], R0, frame="endoscope_tip")
        c.pub_servo_cp.publish(pose_msg(p0 + 0.01 * R0[:, 0], R0, stamp=old.to_msg()))   # 5 s old: stale
        time.sleep(0.02)
    time.sleep(0.5)
    assert c.mode == "HOLD"
    p1, _ = c.tip()
    assert np.linalg.norm(p1 - p0) < 0.15e-3
    # every refusal counted by input (the stale ones too), however few lines the log got
    assert c.wait(lambda: c.diag is not None and json.loads(c.diag["rejected_by_input"]).get("servo_cp", 0) >= 30, 3)


def test_hold_recovers_from_a_joint_torque_disturbance(rig):
    c = rig["client"]
    p0, _ = c.tip()
    msg = JointState()
    msg.name = ["right_elbow_joint", "right_wrist_pitch_joint"]
    msg.effort = [3.0, -2.0]        # the scope arm is stiff (bridge SCOPE_ARM_KP): 1 Nm moves it < 1 mm
    t0 = time.monotonic()
    c.pub_dist.publish(msg)
    time.sleep(0.5)
    # corrected while the torque is still on (within seconds of sim time on a loaded box) ...
    assert c.wait(lambda: np.linalg.norm(c.tip()[0] - p0) < 0.15e-3, timeout=10.0)
    peak = max(np.linalg.norm(p - p0) for p, _ in c.tips_since(t0))
    assert peak > 0.5e-3              # the torque did push the arm (the sim applied it)
    c.pub_dist.publish(JointState())
    time.sleep(0.5)
    # ... and again after it is gone
    assert c.wait(lambda: np.linalg.norm(c.tip()[0] - p0) < 0.15e-3, timeout=10.0)
    judged = judge_windows(c, rig["port"], t0, time.monotonic(), "holder HOLD, 3 + 2 Nm steps on and off")
    # in-process the same steps give p99 0.36 mm, max 0.65 mm: the contract bounds apply where the
    # sim kept real time; a stalled window (reported) may only stay below the FAULT threshold
    assert_contract_fulcrum(judged)
    assert judged["all"].max() < 15e-3 and c.mode == "HOLD"


def test_set_fulcrum_captures_the_port(rig):
    c = rig["client"]
    res = c.call(c.set_fulcrum, Trigger.Request())
    assert res.success, res.message
    time.sleep(0.5)
    assert np.linalg.norm(c.fulcrum - rig["port"]) < 1e-3


def test_a_holder_that_did_not_run_reads_the_joint_states_that_queued_before_judging_their_age(rig):
    """SIGSTOP the holder for longer than its joint-state timeout while /g1/joint_states keep coming:
    on waking, its late tick must not call them stale (rclpy runs the timer before the queued
    messages; seen mid-task in `surgbot demo` as "joint state 101 ms old"): it skips that tick,
    stays in HOLD and counts it; the scope stays where it was (the bridge held its targets)."""
    c, holder = rig["client"], rig["holder"]
    assert c.mode == "HOLD"
    p0, _ = c.tip()
    stop_s = 0.7                     # > the rig's joint_state_timeout_s (0.5)
    holder.send_signal(signal.SIGSTOP)
    try:
        time.sleep(stop_s)
    finally:
        holder.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    assert c.mode == "HOLD", c.mode
    assert c.wait(lambda: int((c.diag or {}).get("late_ticks_skipped", "0")) >= 1, 5), c.diag
    assert np.linalg.norm(c.tip()[0] - p0) < 1e-3
