"""HEAD_FOLLOW and TOOL_FOLLOW of `endoscope_holder` in the loop with the real sim (issue 5).

One rig for the module, as tests/test_endoscope_holder.py: `surgbot sim`
(MuJoCo twin: G1 over unitree DDS, PSM over CRTK), `g1_bridge` and the
holder node, engaged and holding.  The PSM is driven through its CRTK
topics (`PSMClient`), the head through `/teleop/head` + `/teleop/buttons`
(contract section 6).  Every number asserted is ground truth published by
the sim (`/sim/ground_truth/*`: the scope's optical frame, the port, the
PSM tool tip), projected through a pinhole built from the sim camera's
fovy and image size; never the holder's own estimate.

The box is shared and loaded (sim stalls of 0.5 s were seen while other
rigs ran), so the rig widens the holder's joint-state timeout and the
bridge's staleness window and slows the view (as the holder's node test
does; measured reasons in tests/endoscope_rig.py).  The contract's fulcrum
bounds (p99 < 1 mm, max < 2 mm) are asserted on the windows where the sim
kept real time, the loaded-box ones (p99 < 3 mm, max < 6 mm) over all
windows, and the excluded windows reported.  The framing bound (> 95%
of frames in the central 50% of the image) is the issue's own.  Measured
numbers are printed (-s).
"""

from __future__ import annotations

import math
import threading
import time

import mujoco
import numpy as np
import pinocchio as pin
import pytest
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Joy
from std_srvs.srv import SetBool, Trigger

from surgbot import contract
from surgbot.hw.crtk import PSMClient
from surgbot.nodes.endoscope_holder import scene_psm_base
from surgbot.sim.camera import DEFAULT_HEIGHT, DEFAULT_WIDTH
from surgbot.sim.camera_model import intrinsics
from surgbot.sim.scene import build_model, reset_to_stand
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
    stamp_of,
    start_holder_engaged,
    start_sim_and_bridge,
)

pytestmark = pytest.mark.sim

SCENE = "box_trainer"
HEAD_PAN_GAIN = 0.8           # distinct gains: the measured angles must follow each one
HEAD_TILT_GAIN = 0.6
SQUARE_SIDE = 0.03            # m
SQUARE_PERIOD_S = 20.0
SHAKE_HALF_WINDOW_S = 0.05     # the scope tip's shake is measured against its mean over +-this
# square centre in the optical frame of the scope's starting view (x right, y down, z forward):
# toward the PSM port and ~23 deg off the axis, so a scope that stays put frames well under
# 95% of it (asserted) and the holder has to turn to keep the tool central
SQUARE_CENTRE_IN_VIEW = np.array([0.028, -0.018, 0.08])


# ---------------------------------------------------------------------- geometry
class SceneGeometry:
    """What the test takes from the sim's scene model: PSM base, camera model."""

    def __init__(self):
        # the PSM base pose the holder node itself takes with `scene:=` (checked against ground truth
        # in the tool-follow test)
        self.psm_base_pose = scene_psm_base(SCENE)                          # x y z qx qy qz qw
        x, y, z, qx, qy, qz, qw = self.psm_base_pose
        self.psm_base = pin.SE3(pin.Quaternion(qw, qx, qy, qz).toRotationMatrix(), np.array([x, y, z]))
        m = build_model(SCENE)
        d = mujoco.MjData(m)
        reset_to_stand(m, d)
        cam = m.camera("endoscope_camera").id
        self.K = intrinsics(float(m.cam_fovy[cam]), DEFAULT_WIDTH, DEFAULT_HEIGHT)
        self.width, self.height = DEFAULT_WIDTH, DEFAULT_HEIGHT
        tip = d.site("endoscope_tip")
        # the camera sits a fraction of a mm ahead of the tip site: its centre in the tip frame
        self.cam_in_tip = tip.xmat.reshape(3, 3).T @ (d.cam_xpos[cam] - tip.xpos)

    def pixel(self, p_tip, R_tip, point) -> tuple[float, float, float]:
        """(u, v, depth) of a world point in the endoscope image (ROS optical frame of the tip)."""
        c = R_tip.T @ (np.asarray(point) - p_tip) - self.cam_in_tip
        uvw = self.K @ c
        return float(uvw[0] / c[2]), float(uvw[1] / c[2]), float(c[2])

    def in_central_half(self, p_tip, R_tip, point) -> bool:
        """Inside the central 50% of the image: the middle half of its width and of its height."""
        u, v, depth = self.pixel(p_tip, R_tip, point)
        return (depth > 0 and abs(u - self.width / 2) < self.width / 4
                and abs(v - self.height / 2) < self.height / 4)


def rot_z(a):
    return pin.exp3(np.array([0.0, 0.0, a]))


def rot_y(a):
    return pin.exp3(np.array([0.0, a, 0.0]))


def view_angles_deg(R0, R1) -> tuple[float, float]:
    """Where the new optical axis points as seen in the old view: (left, down) in degrees."""
    a = R0.T @ R1[:, 2]
    return float(np.degrees(np.arctan2(-a[0], a[2]))), float(np.degrees(np.arctan2(a[1], a[2])))


# ---------------------------------------------------------------------- client
class Client(HolderClient):
    """The rig's client plus the PSM tool tip ground truth, head/buttons streaming, follow_tool and CRTK."""

    def __init__(self):
        super().__init__("test_endoscope_follow_client")
        n = self.node
        self.gt_psm: dict[int, np.ndarray] = {}                              # stamp -> world tool tip
        n.create_subscription(PoseStamped, contract.GT_PSM_TIP, self._on_gt_psm, 50)
        self.pub_head = n.create_publisher(PoseStamped, contract.TELEOP_HEAD, 10)
        self.pub_buttons = n.create_publisher(Joy, contract.TELEOP_BUTTONS, 10)
        self.follow_tool = n.create_client(SetBool, contract.ENDOSCOPE_FOLLOW_TOOL)
        self.psm = PSMClient(n)
        # the console streams the head and buttons continuously (~50 Hz); the test sets what it streams
        self.head_p = np.array([0.2, 0.0, 1.55])
        self.head_R = rot_z(np.radians(20.0))          # head frame: x forward, y left, z up
        self.deadman = False
        self.streaming = False
        self._stop = threading.Event()
        self.start()
        self.streamer = threading.Thread(target=self._stream, daemon=True)
        self.streamer.start()

    def _on_gt_psm(self, msg):
        p, _ = pose_of(msg)
        with self.lock:
            self.gt_psm[stamp_of(msg)] = p
            if len(self.gt_psm) > 6000:
                for k in sorted(self.gt_psm)[:1000]:
                    del self.gt_psm[k]

    def frames_since(self, t0: float, t1: float | None = None):
        """(scope p, scope R, tool p) from the same physics step, received in [t0, t1]."""
        t1 = math.inf if t1 is None else t1
        with self.lock:
            return [(p, R, self.gt_psm[s]) for t, s, p, R in self.gt_tip if t0 <= t <= t1 and s in self.gt_psm]

    def rejected(self) -> int:
        return int(self.diag["rejected"]) if self.diag else -1

    def head_msg(self, p, R, frame=contract.WORLD_FRAME, quat=None) -> PoseStamped:
        return pose_msg(p, R, frame, quat, stamp=self.node.get_clock().now().to_msg())

    def _stream(self):
        while not self._stop.wait(0.02):
            if not self.streaming:
                continue
            self.pub_head.publish(self.head_msg(self.head_p, self.head_R))
            joy = Joy()
            joy.header.stamp = self.node.get_clock().now().to_msg()
            joy.buttons = [1 if self.deadman else 0, 0]
            joy.axes = [0.0, 0.0]
            self.pub_buttons.publish(joy)

    def close(self):
        self._stop.set()
        self.streamer.join(1.0)
        self.psm.close()
        super().close()


# ---------------------------------------------------------------------- rig
def start_scope_and_psm(procs, c, geo: SceneGeometry, holder_params: list[str]):
    """Sim + bridge, the holder engaged in HOLD (told where the PSM's base is, slow view moves, plus
    `holder_params`), and the PSM enabled and homed; returns (holder process, port point)."""
    start_sim_and_bridge(procs, c, SCENE, stale_after=0.6, ready=lambda: bool(c.gt_psm))
    base = ", ".join(repr(v) for v in geo.psm_base_pose)
    holder, port = start_holder_engaged(procs, c, [f"psm_base_pose:=[{base}]", "joint_state_timeout_s:=1.0",
                                                   *holder_params, *SLOW_VIEW])
    # the PSM powers up and homes (CRTK, as on a dVRK console) while the holder settles
    c.psm.wait_for_state(10.0)
    c.psm.enable(10.0)
    c.psm.home(30.0)
    return holder, port


@pytest.fixture(scope="module")
def rig(module_processes):
    procs = module_processes
    geo = SceneGeometry()
    c = Client()
    holder, port = start_scope_and_psm(procs, c, geo, [f"head_pan_gain:={HEAD_PAN_GAIN}",
                                                       f"head_tilt_gain:={HEAD_TILT_GAIN}"])
    assert c.settled(timeout=20.0)
    p0, R0 = c.tip()
    yield {"client": c, "geo": geo, "port": port, "procs": procs, "holder": holder,
           "start_view": (p0, R0)}
    c.close()


def holder_log(rig) -> str:
    return rig["procs"].log(rig["holder"])[-2000:]


def fulcrum_errors(port, tips) -> np.ndarray:
    return np.array([line_distance(port, p, R) for p, R in tips])


MIN_TURN_DEG = 1.0       # the view has started following the head (the turns asked here are 6 deg and more)


def follow_head_to(rig, head_R, R0) -> tuple[float, float, np.ndarray, float]:
    """Turn the head (deadman held) to `head_R` and let the view settle: the view's (left, down)
    angles from `R0` in degrees, the GT fulcrum errors on the way, and when the turn began."""
    c = rig["client"]
    t0 = time.monotonic()
    c.head_R = head_R
    # wait for the turn to start before waiting for it to end: on the loaded box the sim may run at a
    # tenth of real time (and the holder pause on late measurements), so a fixed sleep can end before
    # the view moved and `settled` would then see the still start (CI: 0.01 deg after 1 s)
    turned = c.wait(lambda: max(map(abs, view_angles_deg(R0, c.tip()[1]))) > MIN_TURN_DEG, timeout=20.0)
    assert turned, f"the view did not start turning in 20 s\n{holder_log(rig)}"
    assert c.settled(timeout=20.0)
    assert c.mode == "HEAD_FOLLOW", holder_log(rig)
    _, R1 = c.tip()
    left, down = view_angles_deg(R0, R1)
    return left, down, fulcrum_errors(rig["port"], c.tips_since(t0)), t0


def assert_node_level_fulcrum(rig, t0: float, t1: float, label: str, errs: np.ndarray) -> None:
    # The contract bounds (p99 < 1 mm, max < 2 mm) on the windows where the loop kept real time
    # (tests/endoscope_rig.py judge_windows, reported); over all windows the loaded-box bounds, as
    # tests/test_endoscope_holder.py: a sim that stalls between joint states lags the holder
    assert_contract_fulcrum(judge_windows(rig["client"], rig["port"], t0, t1, label))
    assert len(errs) > 50
    big = np.flatnonzero(errs > LOADED_P99_M)
    assert np.percentile(errs, 99) < LOADED_P99_M and errs.max() < LOADED_MAX_M, (
        f"fulcrum error p99 {np.percentile(errs, 99) * 1e3:.2f} mm, max {errs.max() * 1e3:.2f} mm at "
        f"sample {int(np.argmax(errs))} of {len(errs)}; > {LOADED_P99_M * 1e3:.0f} mm in samples "
        f"{big[:3].tolist()}..{big[-3:].tolist()}")


@pytest.fixture(autouse=True)
def holding(rig):
    """Each test starts from HOLD with the deadman up: a FAULT in one (a >1 s stall of the loaded
    box stops the joint states; the holder then freezes, as it must) does not cascade."""
    c = rig["client"]
    c.deadman = False
    c.streaming = True
    if c.mode == "FAULT" or not c.bridge_state.startswith("ENGAGED"):
        if not c.bridge_state.startswith("ENGAGED"):
            assert c.call(c.engage, Trigger.Request()).success
            assert c.wait(lambda: c.bridge_state.startswith("ENGAGED"), timeout=30), c.bridge_state
        assert c.set_bool(c.hold, True).success
        c.settled()
    assert c.wait(lambda: c.mode == "HOLD", 3.0), c.mode
    yield


# ---------------------------------------------------------------------- HEAD_FOLLOW
def test_head_yaw_pans_the_view_about_the_port(rig):
    c = rig["client"]
    base_R = c.head_R.copy()
    rig["head_base_R"] = base_R
    c.streaming = True
    time.sleep(0.3)
    assert c.settled()
    p0, R0 = c.tip()
    c.deadman = True
    assert c.wait(lambda: c.mode == "HEAD_FOLLOW", 3.0), c.mode
    yaw = 12.0
    left, down, errs, t0 = follow_head_to(rig, base_R @ rot_z(np.radians(yaw)), R0)    # look left
    print(f"\nHEAD_FOLLOW yaw {yaw:.1f} deg (pan gain {HEAD_PAN_GAIN}): view left {left:.2f} deg, "
          f"down {down:.2f} deg; fulcrum error p99 {np.percentile(errs, 99) * 1e3:.2f} mm, "
          f"max {errs.max() * 1e3:.2f} mm")
    assert abs(left - HEAD_PAN_GAIN * yaw) < 1.0
    assert abs(down) < 1.0
    assert c.mode == "HEAD_FOLLOW"
    assert_node_level_fulcrum(rig, t0, time.monotonic(), "HEAD_FOLLOW yaw", errs)


def test_releasing_the_deadman_holds_the_view(rig):
    c = rig["client"]
    c.deadman = False
    assert c.wait(lambda: c.mode == "HOLD", 3.0), c.mode
    assert c.settled()
    p0, R0 = c.tip()
    # the head keeps moving: the view does not
    base_R = rig["head_base_R"]
    for k in range(1, 51):
        c.head_R = base_R @ rot_z(np.radians(-0.3 * k)) @ rot_y(np.radians(0.2 * k))
        time.sleep(0.02)
    time.sleep(0.5)
    p1, R1 = c.tip()
    assert c.mode == "HOLD"
    assert np.linalg.norm(p1 - p0) < 0.15e-3
    assert np.degrees(np.linalg.norm(pin.log3(R0.T @ R1))) < 0.1


def test_head_pitch_tilts_the_view_after_a_new_press(rig):
    """A new press takes the head's current pose as the reference: only the pitch after it counts."""
    c = rig["client"]
    ref_R = c.head_R.copy()                  # where the previous test left the head
    p0, R0 = c.tip()
    c.deadman = True
    assert c.wait(lambda: c.mode == "HEAD_FOLLOW", 3.0), c.mode
    time.sleep(0.3)
    p_pressed, _ = c.tip()
    assert np.linalg.norm(p_pressed - p0) < 0.15e-3       # pressing alone moves nothing
    pitch = 10.0
    left, down, errs, t0 = follow_head_to(rig, ref_R @ rot_y(np.radians(pitch)), R0)  # look down
    print(f"\nHEAD_FOLLOW pitch {pitch:.1f} deg (tilt gain {HEAD_TILT_GAIN}): view down {down:.2f} deg, "
          f"left {left:.2f} deg; fulcrum error p99 {np.percentile(errs, 99) * 1e3:.2f} mm, "
          f"max {errs.max() * 1e3:.2f} mm")
    series = [round(view_angles_deg(R0, R)[1], 2) for _, R in c.tips_since(t0)[::25]]
    assert abs(down - HEAD_TILT_GAIN * pitch) < 1.0, f"view down over time: {series}\n" + holder_log(rig)
    assert abs(left) < 1.0
    assert_node_level_fulcrum(rig, t0, time.monotonic(), "HEAD_FOLLOW pitch", errs)


def send_bad_head(c, make_bad) -> tuple[float, float, int]:
    """Deadman held (HEAD_FOLLOW), then only `make_bad(turned)` messages reach the holder (4 rounds).

    `turned` is a head pose 15 deg of yaw away: what a wrongly accepted message would ask for.
    Returns how far the GT tip moved (m), how far the view turned (deg), and how many
    messages the holder counted as rejected.
    """
    c.deadman = True
    assert c.wait(lambda: c.mode == "HEAD_FOLLOW", 3.0), c.mode
    assert c.settled()
    assert c.wait(lambda: c.diag is not None, 3.0)
    turned = c.head_R @ rot_z(np.radians(15.0))
    bad = make_bad(turned)
    c.streaming = False
    try:
        time.sleep(0.1)
        rejected0 = c.rejected()
        p0, R0 = c.tip()
        for _ in range(4):
            for m in bad:
                c.pub_head.publish(m)
                time.sleep(0.02)
        joy = Joy()
        joy.buttons = [1, 0]
        c.pub_buttons.publish(joy)                        # deadman still held
        time.sleep(1.5)
        p1, R1 = c.tip()
        c.wait(lambda: c.rejected() >= rejected0 + 4 * len(bad), 3.0)
        return (float(np.linalg.norm(p1 - p0)), float(np.degrees(np.linalg.norm(pin.log3(R0.T @ R1)))),
                c.rejected() - rejected0)
    finally:
        c.streaming = True


def test_malformed_head_messages_are_rejected_and_change_nothing(rig):
    c = rig["client"]
    nan = float("nan")
    moved, turned_deg, rejected = send_bad_head(c, lambda turned: [
        c.head_msg([nan, 0.0, 1.5], turned),                               # NaN position
        c.head_msg(c.head_p, turned, quat=(nan, 0.0, 0.0, 1.0)),           # NaN orientation
        c.head_msg(c.head_p, turned, frame="head"),                        # wrong frame_id
        c.head_msg(c.head_p, turned, frame=""),                            # no frame_id
    ])
    assert c.mode == "HEAD_FOLLOW"
    assert moved < 1e-3 and turned_deg < 1.0, (moved, turned_deg)        # (accepted: ~5 deg; drift on a loaded box)
    assert rejected >= 16
    c.deadman = False


def test_a_head_quaternion_that_is_not_a_rotation_is_rejected(rig):
    """(0, 0, 0, 0) must not be read as the identity: relative to the reference that is a big turn."""
    c = rig["client"]
    try:
        moved, turned_deg, rejected = send_bad_head(c, lambda turned: [
            c.head_msg(c.head_p, turned, quat=(0.0, 0.0, 0.0, 0.0)),
            c.head_msg(c.head_p, turned, quat=(0.0, 0.0, 0.0, 3.0)),
        ])
        assert c.mode == "HEAD_FOLLOW"
        assert moved < 1e-3 and turned_deg < 1.0, (moved, turned_deg)
        assert rejected >= 8
    finally:
        c.deadman = False
        assert c.wait(lambda: c.mode == "HOLD", 3.0)


def test_releasing_the_deadman_mid_motion_stops_the_view(rig):
    """Release while the view is turning: it stops near where it was, not at the head's goal."""
    c = rig["client"]
    assert c.mode == "HOLD"
    assert c.settled()
    _, R0 = c.tip()
    ref_R = c.head_R.copy()
    c.deadman = True
    assert c.wait(lambda: c.mode == "HEAD_FOLLOW", 3.0), c.mode
    yaw = -25.0                                          # look right: the goal is 20 deg of pan

    def right_deg():
        return -view_angles_deg(R0, c.tip()[1])[0]

    c.head_R = ref_R @ rot_z(np.radians(yaw))
    assert c.wait(lambda: right_deg() > 3.0, 15.0), f"view turned only {right_deg():.2f} deg"
    c.deadman = False
    at_release = right_deg()
    assert c.wait(lambda: c.mode == "HOLD", 3.0), c.mode
    assert c.settled(timeout=20.0)
    final = right_deg()
    goal = -HEAD_PAN_GAIN * yaw
    print(f"\nHEAD_FOLLOW released at {at_release:.2f} deg of a {goal:.1f} deg pan: view stopped at {final:.2f} deg")
    # the setpoint runs ahead of the measured scope (more so on a loaded box): it stops where the
    # setpoint was at the release, a few degrees past `at_release`, far short of the goal
    assert final - at_release < 0.5 * (goal - at_release)
    assert c.mode == "HOLD"


def test_view_returns_to_the_start_for_tool_follow(rig):
    """servo_cp back to the starting view, where the square was laid out (PSM reach, framing margin)."""
    c = rig["client"]
    p1, R1 = rig["start_view"]
    assert c.servo_cp_until(p1, R1, mm=1.0, deg=1.0)
    assert c.wait(lambda: c.mode == "HOLD", 5.0)


# ---------------------------------------------------------------------- TOOL_FOLLOW
def test_tool_follow_keeps_the_psm_tip_in_the_central_image(rig):
    """The PSM traces a 3 cm square in 20 s; the tool tip stays in the central 50% of the image."""
    c, geo, port = rig["client"], rig["geo"], rig["port"]
    psm = c.psm
    assert c.mode == "HOLD", holder_log(rig)
    # the holder's PSM base (from the scene) agrees with the sim: CRTK measured_cp mapped to world
    # is the ground-truth tool tip (once the homed arm has come to rest: on a loaded box it was
    # still settling here, 1.2 mm apart)
    def psm_base_error() -> float:
        T, _ = psm.measured_cp()
        with c.lock:
            gt_tool = c.gt_psm[max(c.gt_psm)]
        return float(np.linalg.norm(geo.psm_base.act(T[:3, 3]) - gt_tool))

    assert c.wait(lambda: psm_base_error() < 1e-3, timeout=10.0), f"{psm_base_error() * 1e3:.2f} mm"
    T, _ = psm.measured_cp()

    p0, R0 = c.tip()
    centre = p0 + R0 @ SQUARE_CENTRE_IN_VIEW
    h = SQUARE_SIDE / 2
    corners = [centre + h * (a * R0[:, 0] + b * R0[:, 1]) for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    base_inv = geo.psm_base.inverse()

    def psm_pose(world_point):
        Tc = T.copy()
        Tc[:3, 3] = base_inv.act(world_point)
        return Tc

    assert psm.move_cp(psm_pose(corners[0])).wait(20.0), psm.errors[-3:]
    follow_t0 = time.monotonic()
    res = c.set_bool(c.follow_tool, True)
    assert res.success, res.message
    assert c.mode == "TOOL_FOLLOW"

    def tool_off_axis_deg():
        p, R = c.tip()
        with c.lock:
            d = c.gt_psm[max(c.gt_psm)] - p
        return float(np.degrees(np.arccos(np.dot(d, R[:, 2]) / np.linalg.norm(d))))

    try:
        before = tool_off_axis_deg()
        assert before > 15.0                       # the scope has to turn to centre the tool
        # centred and still (a follower that swings through the tool would pass a bare angle test)
        assert c.wait(lambda: tool_off_axis_deg() < 3.0 and c.settled(span=0.5, tol=0.05e-3, timeout=0.0),
                      timeout=20.0), f"tool {tool_off_axis_deg():.1f} deg off, scope not settled on it\n" \
            + holder_log(rig)

        # trace the square (servo_cp stream at 50 Hz, constant speed along the edges)
        stop = threading.Event()
        errors_before = len(psm.errors)

        def trace():
            t_start = time.monotonic()
            while not stop.is_set():
                s = (time.monotonic() - t_start) / (SQUARE_PERIOD_S / 4)
                if s >= 4:
                    break
                k = int(s)
                a = s - k
                psm.servo_cp(psm_pose(corners[k] + a * (corners[(k + 1) % 4] - corners[k])))
                time.sleep(0.02)

        t0 = time.monotonic()
        tracer = threading.Thread(target=trace, daemon=True)
        tracer.start()
        tracer.join(SQUARE_PERIOD_S + 5.0)
        stop.set()
        t1 = time.monotonic()
        assert not psm.errors[errors_before:], psm.errors[errors_before:]
        assert c.mode == "TOOL_FOLLOW"

        frames = c.frames_since(t0, t1)
        assert len(frames) > 200, f"only {len(frames)} ground-truth frames in {t1 - t0:.1f} s"
        tools = np.array([tool for _, _, tool in frames])
        # the PSM really traced the square: its tip spans ~3 cm on both square axes
        span = np.ptp(np.c_[tools @ R0[:, 0], tools @ R0[:, 1]], axis=0)
        assert np.all(span > 0.8 * SQUARE_SIDE) and np.all(span < 1.2 * SQUARE_SIDE), span
        inside = np.array([geo.in_central_half(p, R, tool) for p, R, tool in frames])
        # a scope left where it started would lose the tool: the framing is the follower's doing
        static = np.array([geo.in_central_half(p0, R0, tool) for tool in tools])
        errs = fulcrum_errors(port, [(p, R) for p, R, _ in c.frames_since(follow_t0, t1)])
        p_end, R_end = c.tip()
        turned = float(np.degrees(np.arccos(np.clip(np.dot(R0[:, 2], R_end[:, 2]), -1, 1))))
        print(f"\nTOOL_FOLLOW: {len(frames)} frames, tool in central 50%: {inside.mean():.3f} "
              f"(scope left in place: {static.mean():.3f}); tool {before:.1f} deg off-axis at follow start; "
              f"scope turned {turned:.1f} deg; fulcrum error p99 {np.percentile(errs, 99) * 1e3:.2f} mm, "
              f"max {errs.max() * 1e3:.2f} mm ({len(errs)} samples)")
        # the view's shake: each scope tip sample against the mean of the samples within 50 ms of it
        # (sim time); stalls of a loaded box that reach the arm as bursts of commands show here
        with c.lock:
            stamped = sorted((s, p) for t, s, p, R in c.gt_tip if t0 <= t <= t1)
        st = np.array([s for s, _ in stamped], dtype=float) * 1e-9
        tips = np.array([p for _, p in stamped])
        shake = [np.linalg.norm(tips[i] - tips[np.abs(st - st[i]) <= SHAKE_HALF_WINDOW_S].mean(0))
                 for i in range(len(tips))]
        print(f"  scope tip shake (vs its {2 * SHAKE_HALF_WINDOW_S:.1f} s mean): p50 "
              f"{np.percentile(shake, 50) * 1e3:.3f} mm, p99 {np.percentile(shake, 99) * 1e3:.3f} mm, "
              f"max {np.max(shake) * 1e3:.3f} mm ({len(tips)} samples)")
        uv = np.array([geo.pixel(p, R, tool)[:2] for p, R, tool in frames])
        worst = np.abs(uv - [geo.width / 2, geo.height / 2]).max(axis=0)
        paused = (f"{c.diag.get('paused_steps')}/{c.diag.get('steps')}, waiting for robot time (twin slower "
                  f"than the wall clock): {c.diag.get('paced_steps')}") if c.diag else "?"
        print(f"  largest offset from the image centre: {worst[0]:.0f} px (x), {worst[1]:.0f} px (y) "
              f"(limits {geo.width / 4:.0f}, {geo.height / 4:.0f}); holder steps paused for stale joint "
              f"states: {paused}")
        assert inside.mean() > 0.95, f"outside at frames {np.flatnonzero(~inside)[[0, -1]]} of {len(inside)}"
        assert static.mean() < 0.9
        assert_node_level_fulcrum(rig, follow_t0, t1, "TOOL_FOLLOW square", errs)
    finally:
        res = c.set_bool(c.follow_tool, False)
    assert res.success and c.mode == "HOLD", res.message
