"""`endoscope_holder` in the loop: sim (MuJoCo twin, unitree DDS) + g1_bridge + the holder node.

Everything goes through the contract: the holder reads `/g1/joint_states`
and writes `/g1/arm_command`; this test drives it with `/endoscope/*`
topics/services and judges it only by `/sim/ground_truth/*` (the sim's own
scope tip and port), never by the holder's estimate.  The box is shared and
loaded (rt/lowstate gaps of 100+ ms happen, see test_g1_bridge.py), so the
holder's joint-state timeout and the bridge's staleness window are widened;
the in-process loop (test_endoscope_holder_core.py) and bench/endoscope.py
hold the tight numbers.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pinocchio as pin
import pytest

from surgbot import contract
from tests.conftest import PYTHON, REPO

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PointStamped, PoseStamped, TwistStamped  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64, String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402

G1_DOMAIN = int(os.environ["SURGBOT_G1_DOMAIN"])


def line_distance(point, p, R) -> float:
    d = np.asarray(point) - p
    z = R[:, 2]
    return float(np.linalg.norm(d - np.dot(d, z) * z))


def pose_of(msg: PoseStamped):
    p, o = msg.pose.position, msg.pose.orientation
    R = pin.Quaternion(o.w, o.x, o.y, o.z).normalized().toRotationMatrix()
    return np.array([p.x, p.y, p.z]), R


class Client:
    def __init__(self):
        rclpy.init()
        self.node = rclpy.create_node("test_endoscope_holder_client")
        self.lock = threading.Lock()
        self.gt_tip: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.gt_fulcrum: np.ndarray | None = None
        self.cp: PoseStamped | None = None
        self.fulcrum: np.ndarray | None = None
        self.ferr: float | None = None
        self.mode: str | None = None
        self.diag = None
        self.bridge_state = ""
        n = self.node
        n.create_subscription(PoseStamped, contract.GT_ENDOSCOPE_TIP, self._on_gt_tip, 50)
        n.create_subscription(PointStamped, contract.GT_FULCRUM, self._on_gt_fulcrum, 10)
        n.create_subscription(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, lambda m: setattr(self, "cp", m), 10)
        n.create_subscription(PointStamped, contract.ENDOSCOPE_FULCRUM,
                              lambda m: setattr(self, "fulcrum", np.array([m.point.x, m.point.y, m.point.z])), 10)
        n.create_subscription(Float64, contract.ENDOSCOPE_FULCRUM_ERROR, lambda m: setattr(self, "ferr", m.data), 10)
        n.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: setattr(self, "mode", m.data),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.pub_cp = n.create_publisher(PoseStamped, contract.ENDOSCOPE_SERVO_CP, 10)
        self.pub_cv = n.create_publisher(TwistStamped, contract.ENDOSCOPE_SERVO_CV, 10)
        self.pub_dist = n.create_publisher(JointState, "/sim/g1/disturbance", 10)
        self.engage = n.create_client(Trigger, contract.G1_ENGAGE)
        self.hold = n.create_client(SetBool, contract.ENDOSCOPE_HOLD)
        self.set_fulcrum = n.create_client(Trigger, contract.ENDOSCOPE_SET_FULCRUM)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_gt_tip(self, msg):
        p, R = pose_of(msg)
        with self.lock:
            self.gt_tip.append((time.monotonic(), p, R))
            del self.gt_tip[:-5000]

    def _on_gt_fulcrum(self, msg):
        self.gt_fulcrum = np.array([msg.point.x, msg.point.y, msg.point.z])

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name == "endoscope_holder":
                self.diag = {kv.key: kv.value for kv in s.values}
            elif s.name == "g1_bridge":
                self.bridge_state = s.message

    def tip(self):
        with self.lock:
            return self.gt_tip[-1][1].copy(), self.gt_tip[-1][2].copy()

    def tips_since(self, t0: float):
        with self.lock:
            return [(p, R) for t, p, R in self.gt_tip if t >= t0]

    def call(self, cli, req, timeout=10.0):
        assert cli.wait_for_service(timeout_sec=timeout)
        fut = cli.call_async(req)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.done(), "service call timed out"
        return fut.result()

    def wait(self, cond, timeout=15.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def servo_cp(self, p, R, frame="world"):
        m = PoseStamped()
        m.header.frame_id = frame
        m.header.stamp = self.node.get_clock().now().to_msg()
        q = pin.Quaternion(R)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in p)
        m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = (
            float(q.x), float(q.y), float(q.z), float(q.w))
        self.pub_cp.publish(m)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture(scope="module")
def rig(module_processes):
    procs = module_processes
    sim = procs.start([PYTHON, "-m", "surgbot.cli", "sim", "--scene", "box_trainer", "--headless", "--no-camera",
                       "--g1-domain", str(G1_DOMAIN)], name="sim")
    bridge = procs.start([PYTHON, "-m", "surgbot.nodes.g1_bridge", "--ros-args", "--params-file",
                          str(REPO / "config" / "g1_bridge.yaml"), "-p", f"g1_domain:={G1_DOMAIN}",
                          "-p", "stale_after:=0.3", "-p", "max_velocity:=2.0"], name="g1_bridge")
    c = Client()
    ok = c.wait(lambda: c.gt_fulcrum is not None and bool(c.gt_tip), timeout=90)
    assert ok, "no ground truth from the sim:\n" + procs.log(sim)[-3000:]
    assert bridge.poll() is None, "g1_bridge died:\n" + procs.log(bridge)[-3000:]
    port = [float(v) for v in c.gt_fulcrum]
    holder = procs.start([PYTHON, "-m", "surgbot.nodes.endoscope_holder", "--ros-args", "--params-file",
                          str(REPO / "config" / "endoscope_holder.yaml"),
                          "-p", f"fulcrum:=[{port[0]!r}, {port[1]!r}, {port[2]!r}]",
                          "-p", "joint_state_timeout_s:=0.5",
                          # the loaded box runs the sim below real time while the holder runs on the
                          # wall clock: slower view motion keeps sim-time accelerations realistic
                          "-p", "max_angular_speed_deg:=10.0", "-p", "max_angular_accel_deg:=15.0"],
                         name="holder")
    assert c.wait(lambda: c.mode is not None, timeout=60), procs.log(holder)[-3000:]
    res = c.call(c.engage, Trigger.Request())
    assert res.success, res.message
    assert c.wait(lambda: c.bridge_state.startswith("ENGAGED"), timeout=30), c.bridge_state
    req = SetBool.Request()
    req.data = True
    res = c.call(c.hold, req)
    assert res.success, res.message
    time.sleep(2.0)
    yield {"client": c, "port": np.array(port), "procs": procs, "holder": holder}
    c.close()


def test_holds_the_scope_in_the_port_and_publishes_the_contract(rig):
    c = rig["client"]
    assert c.mode == "HOLD"
    t0 = time.monotonic()
    time.sleep(3.0)
    errs = [line_distance(rig["port"], p, R) for p, R in c.tips_since(t0)]
    assert len(errs) > 50
    assert max(errs) < 1e-3
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
    end = t0 + 30.0            # the loaded box may run the sim well below real time: wait for arrival

    def arrived():
        p, R = c.tip()
        return np.linalg.norm(p - p1) < 0.5e-3 and np.degrees(np.linalg.norm(pin.log3(R.T @ R1))) < 0.5

    while time.monotonic() < end and not arrived():
        c.servo_cp(p1, R1)
        time.sleep(0.02)
    assert c.mode == "TELEOP"
    assert c.wait(lambda: c.mode == "HOLD", 5.0)          # 200 ms without a command
    time.sleep(0.5)
    tips = c.tips_since(t0)
    errs = np.array([line_distance(port, p, R) for p, R in tips])
    p, R = c.tip()
    assert np.linalg.norm(p - p1) < 1e-3
    assert np.degrees(np.linalg.norm(pin.log3(R.T @ R1))) < 1.0
    # Loaded-box bounds: the sim runs below real time with 100+ ms stalls while the holder
    # runs on the wall clock; the contract numbers (p99 < 1 mm, max < 2 mm) are asserted in
    # the deterministic in-process loop (test_endoscope_holder_core.py) and the bench.
    assert np.percentile(errs, 99) < 3e-3 and errs.max() < 6e-3


def settled(c, span=0.5, tol=0.03e-3, timeout=15.0) -> bool:
    """The GT tip moved less than `tol` over the last `span` seconds."""
    def still():
        P = np.array([p for p, _ in c.tips_since(time.monotonic() - span)])
        return len(P) > 5 and np.ptp(P, axis=0).max() < tol
    return c.wait(still, timeout)


def test_bad_commands_leave_the_arm_holding(rig):
    c = rig["client"]
    assert settled(c)                # after the previous move
    p0, R0 = c.tip()
    for _ in range(10):
        c.servo_cp([float("nan"), 0.0, 0.0], R0)
        c.servo_cp(p0 + 0.02 * R0[:, 0], R0, frame="endoscope_tip")
        time.sleep(0.02)
    time.sleep(0.5)
    assert c.mode == "HOLD"
    p1, _ = c.tip()
    assert np.linalg.norm(p1 - p0) < 0.15e-3
    assert c.wait(lambda: c.diag is not None and int(c.diag["rejected"]) >= 10, 3)


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
    errs = [line_distance(rig["port"], p, R) for p, R in c.tips_since(t0)]
    assert max(errs) < 15e-3 and c.mode == "HOLD"


def test_set_fulcrum_captures_the_port(rig):
    c = rig["client"]
    res = c.call(c.set_fulcrum, Trigger.Request())
    assert res.success, res.message
    time.sleep(0.5)
    assert np.linalg.norm(c.fulcrum - rig["port"]) < 1e-3
