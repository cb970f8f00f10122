"""The node-level endoscope rig shared by test_endoscope_holder.py and test_endoscope_follow.py.

`surgbot sim` (MuJoCo twin: G1 over unitree DDS, PSM over CRTK) +
`g1_bridge` + the `endoscope_holder` node, each a subprocess, and a
test-side rclpy client that judges them only by the sim's ground truth
(`/sim/ground_truth/*`), never by the holder's own estimate.

The box is shared and loaded (rt/lowstate gaps of 100+ ms happen), so the
rig widens the holder's joint-state timeout and the bridge's staleness
window and slows the view: the sim runs below real time while the holder
runs on the wall clock.  The contract's fulcrum numbers are asserted in the
deterministic in-process loop (test_endoscope_holder_core.py).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pinocchio as pin
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from surgbot import contract
from tests.conftest import PYTHON, REPO

G1_DOMAIN = int(os.environ["SURGBOT_G1_DOMAIN"])

# view limits for the loaded box (sim-time accelerations stay realistic when the sim lags)
SLOW_VIEW = ("max_angular_speed_deg:=10.0", "max_angular_accel_deg:=15.0")


def line_distance(point, p, R) -> float:
    """Distance of `point` from the shaft line through `p` along R's z axis."""
    d = np.asarray(point) - p
    z = R[:, 2]
    return float(np.linalg.norm(d - np.dot(d, z) * z))


def pose_of(msg: PoseStamped):
    p, o = msg.pose.position, msg.pose.orientation
    R = pin.Quaternion(o.w, o.x, o.y, o.z).normalized().toRotationMatrix()
    return np.array([p.x, p.y, p.z]), R


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def pose_msg(p, R=None, frame: str = contract.WORLD_FRAME, quat=None, stamp=None) -> PoseStamped:
    """PoseStamped of position `p` and rotation `R` (or a raw xyzw `quat`, malformed ones included)."""
    m = PoseStamped()
    m.header.frame_id = frame
    if stamp is not None:
        m.header.stamp = stamp
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in p)
    if quat is None:
        q = pin.Quaternion(R)
        quat = (q.x, q.y, q.z, q.w)
    o = m.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat)
    return m


class HolderClient:
    """Test-side rclpy node: ground truth, holder mode and diagnostics in; servo_cp and services out.

    Subclasses add their own endpoints in `__init__` after calling this one,
    then call `start()`.
    """

    def __init__(self, name: str):
        rclpy.init()
        self.node = n = rclpy.create_node(name)
        self.lock = threading.Lock()
        self.gt_tip: list[tuple[float, int, np.ndarray, np.ndarray]] = []   # (monotonic, stamp, p, R)
        self.gt_fulcrum: np.ndarray | None = None
        self.mode: str | None = None
        self.diag = None
        self.bridge_state = ""
        n.create_subscription(PoseStamped, contract.GT_ENDOSCOPE_TIP, self._on_gt_tip, 50)
        n.create_subscription(PointStamped, contract.GT_FULCRUM, self._on_gt_fulcrum, 10)
        n.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: setattr(self, "mode", m.data),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.pub_servo_cp = n.create_publisher(PoseStamped, contract.ENDOSCOPE_SERVO_CP, 10)
        self.engage = n.create_client(Trigger, contract.G1_ENGAGE)
        self.hold = n.create_client(SetBool, contract.ENDOSCOPE_HOLD)
        self.executor = rclpy.executors.SingleThreadedExecutor()

    def start(self) -> None:
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    # callbacks
    def _on_gt_tip(self, msg):
        p, R = pose_of(msg)
        with self.lock:
            self.gt_tip.append((time.monotonic(), stamp_of(msg), p, R))
            del self.gt_tip[:-6000]

    def _on_gt_fulcrum(self, msg):
        self.gt_fulcrum = np.array([msg.point.x, msg.point.y, msg.point.z])

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name == "endoscope_holder":
                self.diag = {kv.key: kv.value for kv in s.values}
            elif s.name == "g1_bridge":
                self.bridge_state = s.message

    # ground truth
    def tip(self):
        with self.lock:
            _, _, p, R = self.gt_tip[-1]
            return p.copy(), R.copy()

    def tips_since(self, t0: float):
        with self.lock:
            return [(p, R) for t, _, p, R in self.gt_tip if t >= t0]

    def settled(self, span=0.5, tol=0.03e-3, timeout=20.0) -> bool:
        """The GT scope tip moved less than `tol` over the last `span` seconds."""
        def still():
            P = np.array([p for p, _ in self.tips_since(time.monotonic() - span)])
            return len(P) > 5 and np.ptp(P, axis=0).max() < tol
        return self.wait(still, timeout)

    # commands
    def servo_cp(self, p, R, frame: str = contract.WORLD_FRAME):
        self.pub_servo_cp.publish(pose_msg(p, R, frame, stamp=self.node.get_clock().now().to_msg()))

    def servo_cp_until(self, p1, R1, mm: float, deg: float, timeout: float = 30.0) -> bool:
        """Stream servo_cp to (p1, R1) until the GT tip is within `mm` / `deg` of it (the loaded
        box may run the sim well below real time: wait for arrival, not for a fixed time)."""
        def arrived():
            p, R = self.tip()
            return np.linalg.norm(p - p1) < mm * 1e-3 and np.degrees(np.linalg.norm(pin.log3(R.T @ R1))) < deg

        end = time.monotonic() + timeout
        while time.monotonic() < end and not arrived():
            self.servo_cp(p1, R1)
            time.sleep(0.02)
        return arrived()

    # services / waiting
    def call(self, cli, req, timeout=10.0):
        assert cli.wait_for_service(timeout_sec=timeout)
        fut = cli.call_async(req)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.done(), "service call timed out"
        return fut.result()

    def set_bool(self, cli, value: bool):
        req = SetBool.Request()
        req.data = value
        return self.call(cli, req)

    def wait(self, cond, timeout=15.0) -> bool:
        """`cond()` became true within `timeout` (checked at least once)."""
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        return True

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def start_sim_and_bridge(procs, client: HolderClient, scene: str, stale_after: float, ready=lambda: True):
    """`surgbot sim` (no camera) + `g1_bridge` (holder speeds); returns once the sim's ground truth
    (and `ready()`) reaches `client`."""
    sim = procs.start([PYTHON, "-m", "surgbot.cli", "sim", "--scene", scene, "--headless", "--no-camera",
                       "--g1-domain", str(G1_DOMAIN)], name="sim")
    bridge = procs.start([PYTHON, "-m", "surgbot.nodes.g1_bridge", "--ros-args", "--params-file",
                          str(REPO / "config" / "g1_bridge.yaml"), "-p", f"g1_domain:={G1_DOMAIN}",
                          "-p", f"stale_after:={stale_after}", "-p", "max_velocity:=2.0"], name="g1_bridge")
    ok = client.wait(lambda: client.gt_fulcrum is not None and bool(client.gt_tip) and ready(), timeout=90)
    assert ok, "no ground truth from the sim:\n" + procs.log(sim)[-3000:]
    assert bridge.poll() is None, "g1_bridge died:\n" + procs.log(bridge)[-3000:]
    return sim, bridge


def start_holder_engaged(procs, client: HolderClient, params: list[str]):
    """The holder node (config file + `params`, fulcrum = the sim's port), the bridge engaged, HOLD on."""
    port = [float(v) for v in client.gt_fulcrum]
    args = [PYTHON, "-m", "surgbot.nodes.endoscope_holder", "--ros-args", "--params-file",
            str(REPO / "config" / "endoscope_holder.yaml"),
            "-p", f"fulcrum:=[{port[0]!r}, {port[1]!r}, {port[2]!r}]"]
    for p in params:
        args += ["-p", p]
    holder = procs.start(args, name="holder")
    assert client.wait(lambda: client.mode is not None, timeout=60), procs.log(holder)[-3000:]
    res = client.call(client.engage, Trigger.Request())
    assert res.success, res.message
    assert client.wait(lambda: client.bridge_state.startswith("ENGAGED"), timeout=30), client.bridge_state
    res = client.set_bool(client.hold, True)
    assert res.success, res.message
    return holder, np.array(port)
