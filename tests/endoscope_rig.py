"""The node-level endoscope rig shared by test_endoscope_holder.py and test_endoscope_follow.py.

`surgbot sim` (MuJoCo twin: G1 over unitree DDS, PSM over CRTK) +
`g1_bridge` + the `endoscope_holder` node, each a subprocess, and a
test-side rclpy client that judges them only by the sim's ground truth
(`/sim/ground_truth/*`), never by the holder's own estimate.

Everything else is the shipped config/*.yaml.  The overrides, each for a
measured reason (the rig records `rt/lowstate` receive gaps and the sim's
real-time factor during every judged motion and prints them at the end of
the run, "node-level windows: ..."):
* g1_bridge `stale_after` (shipped 0.05 s): on this 2-core box with other
  suites running, `rt/lowstate` gaps of 45-190 ms were measured in quiet
  HOLD (issue 19 runs; bench/g1.py g1.lowstate.gaps_over_50ms is 0 on a
  quiet box), which would FAULT the bridge mid-test; the test takes the
  worst measured gap with margin (0.3 s; 0.6 s in the follow rig, which
  runs the PSM twin and a CRTK client as well);
* holder `joint_state_timeout_s` (shipped 0.1 s): the same gaps plus the
  bridge's republishing, same margins (0.5 s / 1.0 s);
* bridge `max_velocity` 2.0 rad/s: not for load, the holder needs it
  (config/endoscope_holder.yaml header; README);
* SLOW_VIEW (view 10 deg/s, 15 deg/s^2 instead of 45, 60): sim real-time
  factors of 0.5-0.9 were measured during motions; the holder paces its
  reference by the joint states it receives (`joint_state_period_s`), but
  the sim also stalls between them, so a slower view keeps the sim-time
  accelerations the arm sees in the range it meets on a real-time robot.
Fulcrum bounds: the contract's (p99 < 1 mm, max < 2 mm) on the windows of
each motion where the loop kept real time, as it did in the window before
(`judge_windows`: a stall's catch-up transient runs into the next window;
CI had 4.5 mm in such a window), a loaded-box
bound over all windows; the excluded windows are reported.  The in-process
loop (test_endoscope_holder_core.py) asserts the contract on every sample.
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
from geometry_msgs.msg import PointStamped, PoseStamped, Vector3Stamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from surgbot import contract
from surgbot.hw import unitree
from surgbot.rosutil import BackgroundSpinner
from surgbot.sim.entry_point import ENTRY_FORCE_TOPIC
from tests.conftest import NODE_WINDOW_REPORT, PYTHON, REPO

G1_DOMAIN = int(os.environ["SURGBOT_G1_DOMAIN"])

# view limits for the loaded box (measured sim rtf 0.5-0.9 during motions: see the module doc)
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


# Node-level fulcrum bounds are judged per window of wall time, on the windows where the loop ran
# as a robot does (the contract's numbers hold for a robot that runs in real time; the holder paces
# its reference by the joint states it gets, but a sim that stalls between them still lags it):
# * the sim kept real time: sim seconds per wall second >= KEPT_MIN_RTF, from the ground-truth
#   stamps (published every 10 ms of physics time, stamped with the sim's wall clock);
# * `rt/lowstate` arrived without a gap over the contract's 50 ms watchdog (section 8; what the
#   shipped bridge config would FAULT on), as received by a subscriber in this process.
WINDOW_S = 0.5
KEPT_MIN_RTF = 0.9
KEPT_MAX_GAP_S = 0.050
GT_PERIOD_S = 0.01            # sim/ground_truth.py default rate 100 Hz of physics time
CONTRACT_P99_M = 1e-3         # contract: fulcrum error p99 < 1 mm, max < 2 mm (issue 5)
CONTRACT_MAX_M = 2e-3
# Over all windows (the loaded box): p99 and max.  The max is set by short transients (20-60 ms of
# sim time, the shaft off the line and back) seen only while the sim ran at 0.1-0.6 of real time:
# 6.09 mm in CI (2 cores, 47 % of holder steps paused for stale states), 2.6-6.7 mm in five
# TOOL_FOLLOW runs on a 2-core Xeon VM.  Most were the G1 twin applying held-back arm_sdk targets at
# once; since it takes them every physics step (sim/g1_twin.py) six runs gave 2.6-4.2 mm.  8 mm keeps
# a margin for a slower CI box until its figures are in; FAULT is 15 mm held 0.5 s
# (HolderConfig.fault_fulcrum_error), injury from 20 mm (FACTS).
LOADED_P99_M = 3e-3
LOADED_MAX_M = 8e-3


TICK_OFFSET = 4 + 12          # LowState_ XCDR1: 4-byte encapsulation header, then version u32[2], 2 u8, tick


class LowstateMonitor:
    """`rt/lowstate` as received in this process: (monotonic receive time, tick in ms of sim time)."""

    def __init__(self):
        from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowState_
        unitree.init_channel(G1_DOMAIN, "lo")
        self.lock = threading.Lock()
        self.rows: list[tuple[float, int]] = []
        self.reader = unitree.RawReader(unitree.participant(), contract.G1_TOPIC_LOWSTATE, LowState_, self._on)

    def _on(self, data: bytes, t_recv: float) -> None:
        # only the receive time is needed (the tick is read for the report): no decode, no CRC, so
        # this 500 Hz callback takes no CPU from the test's own streams
        with self.lock:
            self.rows.append((t_recv, int.from_bytes(data[TICK_OFFSET:TICK_OFFSET + 4], "little")))
            if len(self.rows) > 200_000:
                del self.rows[:100_000]

    def between(self, t0: float, t1: float) -> np.ndarray:
        with self.lock:
            return np.array([r for r in self.rows if t0 <= r[0] <= t1], dtype=float).reshape(-1, 2)

    def close(self) -> None:
        self.reader.close()


def judge_windows(client: HolderClient, port, t0: float, t1: float, label: str) -> dict:
    """Split [t0, t1] (this process's monotonic clock) into WINDOW_S windows; keep those where the
    loop ran in real time (see KEPT_*), as it did in the window before; return the ground-truth
    fulcrum errors of the kept windows and of all, and a one-line report (also printed at the end
    of the run by tests/conftest.py)."""
    ls = client.lowstate.between(t0 - 1.0, t1)
    with client.lock:
        gt = [(t, stamp * 1e-9, line_distance(port, p, R)) for t, stamp, p, R in client.gt_tip if t0 <= t <= t1]
        force = [f for t, f in client.entry_force if t0 <= t <= t1]
    kept, excluded, notes = [], [], []
    worst_gap, rtfs = 0.0, []
    # each judged motion starts from a settled arm; a window right after a stalled one starts
    # with that stall's transient (the arm catching up in sim time), so it is excluded too
    after_realtime = True
    edges = np.arange(t0, t1 - 0.05, WINDOW_S)
    for a in edges:
        b = min(a + WINDOW_S, t1)
        rows = [(s, e) for t, s, e in gt if a <= t < b]
        errs = [e for _, e in rows]
        stamps = [s for s, _ in rows]
        rtf = (len(stamps) - 1) * GT_PERIOD_S / (stamps[-1] - stamps[0]) \
            if len(stamps) > 2 and stamps[-1] > stamps[0] else 0.0
        recv = ls[(ls[:, 0] >= a) & (ls[:, 0] < b), 0] if len(ls) else np.zeros(0)
        before = ls[ls[:, 0] < a, 0] if len(ls) else np.zeros(0)
        times = np.concatenate([before[-1:], recv, [b]])
        gap = float(np.max(np.diff(times))) if len(times) > 1 else b - a
        worst_gap = max(worst_gap, gap)
        rtfs.append(rtf)
        realtime = rtf >= KEPT_MIN_RTF and gap <= KEPT_MAX_GAP_S
        if realtime and after_realtime:
            kept += errs
        else:
            excluded += errs
            after = ", after a stalled window" if realtime else ""
            notes.append(f"{a - t0:.1f}s (rtf {rtf:.2f}, gap {gap * 1e3:.0f} ms{after})")
        after_realtime = realtime
    kept_a, all_a = np.array(kept), np.array(kept + excluded)

    def stats(x):
        return f"p99 {np.percentile(x, 99) * 1e3:.2f} mm, max {x.max() * 1e3:.2f} mm" if len(x) else "n/a"

    line = (f"{label}: {len(edges) - len(notes)}/{len(edges)} windows of {WINDOW_S} s kept "
            f"(sim rtf >= {KEPT_MIN_RTF}, rt/lowstate gap <= {KEPT_MAX_GAP_S * 1e3:.0f} ms, in it and the window "
            f"before); fulcrum error "
            f"kept {stats(kept_a)}, all {stats(all_a)}; sim rtf min {min(rtfs, default=0):.2f}, "
            f"worst rt/lowstate gap {worst_gap * 1e3:.0f} ms; force on the port tissue max "
            f"{max(force, default=float('nan')):.3f} N; excluded: {', '.join(notes) or 'none'}")
    NODE_WINDOW_REPORT.append(line)
    print("\n" + line)
    return {"kept": kept_a, "all": all_a, "windows": len(edges), "excluded": len(notes), "line": line}


def assert_contract_fulcrum(judged: dict) -> None:
    """The contract's fulcrum bounds on the windows where the loop kept real time (none kept: the
    report says so and only the caller's loaded-box bound applies)."""
    kept = judged["kept"]
    if len(kept):
        assert np.percentile(kept, 99) < CONTRACT_P99_M and kept.max() < CONTRACT_MAX_M, judged["line"]


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
        self.entry_force: list[tuple[float, float]] = []     # (monotonic, |force on the port tissue| N)
        n.create_subscription(Vector3Stamped, ENTRY_FORCE_TOPIC, self._on_entry_force, 50)
        n.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: setattr(self, "mode", m.data),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        # the holder publishes its measured tip only once it has a joint state of the bridge's
        self.holder_measured = 0
        n.create_subscription(PoseStamped, contract.ENDOSCOPE_MEASURED_CP,
                              lambda _m: setattr(self, "holder_measured", self.holder_measured + 1), 10)
        self.pub_servo_cp = n.create_publisher(PoseStamped, contract.ENDOSCOPE_SERVO_CP, 10)
        self.engage = n.create_client(Trigger, contract.G1_ENGAGE)
        self.hold = n.create_client(SetBool, contract.ENDOSCOPE_HOLD)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.spinner: BackgroundSpinner | None = None
        self.lowstate = LowstateMonitor()

    def start(self) -> None:
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    # callbacks
    def _on_gt_tip(self, msg):
        p, R = pose_of(msg)
        with self.lock:
            self.gt_tip.append((time.monotonic(), stamp_of(msg), p, R))
            del self.gt_tip[:-6000]

    def _on_entry_force(self, msg):
        v = msg.vector
        with self.lock:
            self.entry_force.append((time.monotonic(), float(np.linalg.norm([v.x, v.y, v.z]))))
            del self.entry_force[:-6000]

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

    def stop_spinning(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()
            self.spinner = None

    def close(self):
        self.lowstate.close()
        self.stop_spinning()
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
    # Its mode is latched at start, before DDS has matched its /g1/joint_states subscription with the
    # bridge (seconds on a loaded box: HOLD then failed with "no joint state yet"): wait for its state.
    assert client.wait(lambda: client.holder_measured > 0, timeout=60), procs.log(holder)[-3000:]
    res = client.call(client.engage, Trigger.Request())
    assert res.success, res.message
    assert client.wait(lambda: client.bridge_state.startswith("ENGAGED"), timeout=30), client.bridge_state
    res = client.set_bool(client.hold, True)
    assert res.success, res.message
    return holder, np.array(port)
