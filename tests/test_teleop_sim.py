"""Teleop in the loop (issue 12): sim + g1_bridge + endoscope_holder + teleop_console + teleop_mapper.

The operator is a WebSocket client speaking the page's protocol over TLS
(token hello, Origin, `xr` messages at 90 Hz, 4x4 column-major poses in the
OpenXR frame).  Everything asserted is ground truth published by the sim:
the PSM tool tip and the scope's optical frame (`/sim/ground_truth/*`),
the tool projected through the camera model built from the scene (the
follow test's `SceneGeometry`), never the mapper's own output.

Motion bounds: 0.2 x a 5 cm hand motion within 1 mm, no jump > 0.5 mm on
re-clutch (the issue's numbers).  "Still" bounds (0.2 mm, 0.3 deg) are the
PSM twin's and the holder's noise on this loaded box with a margin: the
holder's HOLD jitter is ~0.16 mm RMS at the tip under torque steps
(README), the PSM twin tracks servo_cp to ~1e-5 m.
"""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pinocchio as pin
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
from std_srvs.srv import Trigger

from surgbot import contract
from surgbot import processes as child_processes
from surgbot.hw.crtk import PSMClient
from surgbot.rosutil import operator_stream_qos
from tests.conftest import PYTHON, REPO
from tests.console_rig import wait_for_console_port
from tests.endoscope_rig import HolderClient, pose_of
from tests.test_endoscope_follow import SceneGeometry, start_scope_and_psm

pytestmark = pytest.mark.sim

SCENE = "box_trainer"
TOKEN = "teleop-sim-test-token"
STILL_MM = 0.2
STILL_DEG = 0.3

# Tries of a measurement that a load-induced link loss spoiled.  While this rig runs on the 2-core VM,
# even a bare 90 Hz asyncio sleeper in its own session wakes up to ~300 ms late (21 of 7200 wake-ups
# over 100 ms in 80 s, measured beside it), so the 200 ms link timeout fires every few seconds there.
LOAD_ATTEMPTS = 6


class Operator:
    """tests/teleop_operator.py in its own process: the page's protocol at 90 Hz, steered over stdin."""

    def __init__(self, procs, port: int):
        log = procs.tmp / "operator.log"
        self.log = log
        self.proc = child_processes.start([PYTHON, "-m", "tests.teleop_operator", str(port), TOKEN], cwd=REPO,
                                          stdin=subprocess.PIPE, stdout=open(log, "wb"),
                                          stderr=subprocess.STDOUT)
        procs.procs.append((self.proc, log))
        self.sent = 0

    def welcomed(self) -> bool:
        return "welcome" in self.log.read_text(errors="replace")

    def send(self, **cmd) -> None:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        self.sent += 1
        end = time.monotonic() + 5
        while f"ack {self.sent}" not in self.log.read_text(errors="replace") and time.monotonic() < end:
            time.sleep(0.01)

    def move(self, delta, seconds: float) -> None:
        self.send(hand=list(delta), seconds=seconds)
        time.sleep(seconds)

    def turn_head(self, yaw_deg: float, seconds: float) -> None:
        self.send(head_yaw=yaw_deg, seconds=seconds)

    def close(self) -> None:
        try:
            self.send(quit=True)
        except (BrokenPipeError, OSError):
            pass


class Client(HolderClient):
    def __init__(self):
        super().__init__("test_teleop_sim_client")
        n = self.node
        self.gt_psm: list[tuple[float, np.ndarray]] = []
        self.mapper: dict | None = None
        n.create_subscription(PoseStamped, contract.GT_PSM_TIP, self._on_gt_psm, 50)
        n.create_subscription(String, "/teleop/mapper_state", lambda m: setattr(self, "mapper", json.loads(m.data)),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.head_yaw_seen: float | None = None          # the console's /teleop/head, as the holder gets it
        n.create_subscription(PoseStamped, contract.TELEOP_HEAD, self._on_head, operator_stream_qos(50))
        self.psm = PSMClient(n)
        self.start()

    def _on_head(self, msg):
        _, R = pose_of(msg)
        self.head_yaw_seen = float(np.degrees(np.arctan2(R[1, 0], R[0, 0])))

    def _on_gt_psm(self, msg):
        p, _ = pose_of(msg)
        with self.lock:
            self.gt_psm.append((time.monotonic(), p))
            del self.gt_psm[:-6000]

    def tool(self) -> np.ndarray:
        with self.lock:
            return self.gt_psm[-1][1].copy()

    def tools_since(self, t0: float) -> np.ndarray:
        with self.lock:
            return np.array([p for t, p in self.gt_psm if t >= t0])

    def tool_settled(self, span=0.3, tol=0.02e-3, timeout=10.0) -> bool:
        def still():
            P_ = self.tools_since(time.monotonic() - span)
            return len(P_) > 5 and np.ptp(P_, axis=0).max() < tol
        return self.wait(still, timeout)

    def close(self):
        # the spinner leaves rclpy before the PSM client's endpoints go (destroying them under a
        # spinning executor raised InvalidHandle in its thread)
        self.stop_spinning()
        self.psm.close()
        super().close()


@pytest.fixture(scope="module")
def rig(module_processes):
    procs = module_processes
    geo = SceneGeometry()
    c = Client()
    holder, _ = start_scope_and_psm(procs, c, geo, ["head_pan_gain:=1.0"])
    console = procs.start([PYTHON, "-m", "surgbot.cli", "console", "--port", "0", "--video-source", "none"],
                          name="console", env={"SURGBOT_CONSOLE_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(procs.tmp)})
    mapper = procs.start([PYTHON, "-m", "surgbot.nodes.teleop_mapper", "--ros-args", "--params-file",
                          str(REPO / "config" / "teleop_mapper.yaml"), "-p", f"scene:={SCENE}"], name="mapper")
    port = wait_for_console_port(procs, console)
    assert c.wait(lambda: c.mapper is not None and c.mapper["state"] == "READY", 60), (c.mapper, procs.log(mapper))
    op = Operator(procs, port)
    assert c.wait(op.welcomed, 30), op.log.read_text() + procs.log(console)
    assert c.settled(timeout=20.0) and c.tool_settled()
    yield {"client": c, "op": op, "geo": geo, "procs": procs, "mapper": mapper, "console": console,
           "holder": holder}
    op.close()
    c.close()


def logs(rig) -> str:
    p = rig["procs"]
    return "\n".join(f"--- {n}\n{p.log(rig[n])[-1500:]}" for n in ("mapper", "console", "holder"))


@pytest.fixture(autouse=True)
def fresh(rig):
    """Each test starts released, the holder in HOLD: a FAULT in one (a > 1 s stall of the loaded box
    stops the joint states; the holder then freezes, as it must) does not cascade (as in
    test_endoscope_follow.py)."""
    c, op = rig["client"], rig["op"]
    op.send(streaming=True, clutch=0, deadman=0, a=0, b=0, zoom=0)
    assert c.wait(lambda: c.mapper["state"] == "READY", 5), c.mapper
    if c.mode == "FAULT" or not c.bridge_state.startswith("ENGAGED"):
        if not c.bridge_state.startswith("ENGAGED"):
            assert c.call(c.engage, Trigger.Request()).success
            assert c.wait(lambda: c.bridge_state.startswith("ENGAGED"), timeout=30), c.bridge_state
        assert c.set_bool(c.hold, True).success
    assert c.wait(lambda: c.mode == "HOLD", 10), c.mode
    yield


def clutch_in(c, op) -> bool:
    """Release, then squeeze: True once the mapper follows.  False when a load-induced link loss got in
    the way (it leaves the mapper wanting a release; the caller tries again)."""
    op.send(clutch=0)
    if not c.wait(lambda: c.mapper["state"] == "READY", 3):
        return False
    op.send(clutch=1)
    return c.wait(lambda: c.mapper["state"] == "FOLLOWING", 3)


def clutched_move(rig, delta, seconds: float, attempts: int = LOAD_ATTEMPTS):
    """Clutch (if needed), move the hand by `delta`, let the tool settle: (p0, p1, scope p, scope R, setpoints).

    A window in which the mapper lost the link or re-clutched is measured again: on this shared box
    200 ms stalls of a process happen, and the mapper then stops, as it must (asserted in the
    link-loss test); that is not the scaling under test.
    """
    c, op = rig["client"], rig["op"]
    for attempt in range(attempts):
        if c.mapper["state"] != "FOLLOWING" and not clutch_in(c, op):
            print(f"\n(window {attempt + 1}: no clutch-in under load: {c.mapper}; again)")
            continue
        before = (c.mapper.get("link_lost", 0), c.mapper.get("clutch_in", 0))
        assert c.tool_settled()
        p0, (sp0, _), (scope_p, scope_R) = c.tool(), c.psm.setpoint_cp(), c.tip()
        op.move(delta, seconds)
        assert c.tool_settled(timeout=10)
        p1, (sp1, _) = c.tool(), c.psm.setpoint_cp()
        if c.mapper["state"] == "FOLLOWING" and (c.mapper.get("link_lost", 0), c.mapper.get("clutch_in", 0)) == before:
            return p0, p1, scope_p, scope_R, sp0, sp1
        print(f"\n(window {attempt + 1} hit a link loss / re-clutch under load: {c.mapper}; measuring again)")
        op.move(-np.asarray(delta), seconds)
    raise AssertionError("every measurement window hit a link loss:\n" + logs(rig))


def test_psm_follows_the_hand_scaled_in_the_camera_frame_only_while_clutched(rig):
    c, op, geo = rig["client"], rig["op"], rig["geo"]
    # not clutched: the hand moves, the tool does not
    t0 = time.monotonic()
    p_before = c.tool()
    op.move((0.05, 0, 0), 1.0)
    time.sleep(0.3)
    assert np.ptp(c.tools_since(t0), axis=0).max() < STILL_MM * 1e-3
    # clutched: right then up, 5 cm each, in the operator's frame (facing the video)
    op.send(clutch=1)          # (a link loss here leaves the clutch-in to clutched_move, which tries again)
    c.wait(lambda: c.mapper["state"] == "FOLLOWING", 3)
    time.sleep(0.3)
    for delta, cam_axis, sign, name in (((0.05, 0, 0), 0, +1, "right"), ((0, 0.05, 0), 1, -1, "up")):
        p0, p1, scope_p, scope_R, sp0, sp1 = clutched_move(rig, delta, 1.5)
        u0, v0, _ = geo.pixel(scope_p, scope_R, p0)
        expected = sign * 0.2 * 0.05 * scope_R[:, cam_axis]      # camera axes of the GT scope
        err = np.linalg.norm((p1 - p0) - expected)
        u1, v1, _ = geo.pixel(scope_p, scope_R, p1)
        print(f"\nhand 5 cm {name}: tool moved {np.linalg.norm(p1 - p0) * 1e3:.2f} mm, error vs 0.2x in the "
              f"camera frame {err * 1e3:.3f} mm (PSM setpoint moved {np.linalg.norm(sp1 - sp0, axis=0)[3] * 1e3:.2f} "
              f"mm); image ({u0:.1f}, {v0:.1f}) -> ({u1:.1f}, {v1:.1f}) px; mapper {c.mapper}")
        assert err < 1e-3, logs(rig)
        if name == "right":
            assert u1 - u0 > 5 and abs(v1 - v0) < 0.5 * (u1 - u0)      # right in the image
        else:
            assert v0 - v1 > 5 and abs(u1 - u0) < 0.5 * (v0 - v1)      # up in the image
    # released: the hand moves back, the tool holds
    op.send(clutch=0)
    assert c.wait(lambda: c.mapper["state"] == "READY", 3)
    t1 = time.monotonic()
    op.move((-0.05, -0.05, 0), 1.0)
    time.sleep(0.3)
    assert np.ptp(c.tools_since(t1), axis=0).max() < STILL_MM * 1e-3
    assert np.linalg.norm(c.tool() - p_before) > 10e-3              # (it did move while clutched)


def test_reclutch_does_not_jump(rig):
    c, op = rig["client"], rig["op"]
    for attempt in range(LOAD_ATTEMPTS):
        # released first: a load-induced link loss (a 200 ms gap in the operator's stream trips the
        # watchdog, as it should) may have left the mapper wanting a release (NEED_CLUTCH)
        if not clutch_in(c, op):
            print(f"\n(attempt {attempt + 1}: no clutch-in under load: {c.mapper}; again)")
            continue
        op.move((0.03, 0.0, -0.03), 1.0)
        assert c.tool_settled()
        op.send(clutch=0)
        if not c.wait(lambda: c.mapper["state"] == "READY", 3):
            print(f"\n(attempt {attempt + 1}: no release under load: {c.mapper}; again)")
            continue
        op.move((-0.06, 0.04, 0.05), 1.0)                 # hand wanders while released
        assert c.tool_settled()
        lost = c.mapper.get("link_lost", 0)
        p0 = c.tool()
        t0 = time.monotonic()
        op.send(clutch=1)
        following = c.wait(lambda: c.mapper["state"] == "FOLLOWING", 3)
        time.sleep(1.0)
        if following and c.mapper.get("link_lost", 0) == lost:
            break
        print(f"\n(attempt {attempt + 1} hit a link loss under load: {c.mapper}; again)")
    else:
        raise AssertionError("every attempt hit a link loss:\n" + logs(rig))
    jump = np.linalg.norm(c.tools_since(t0) - p0, axis=1).max()
    print(f"\nre-clutch: largest tool displacement in the second after it {jump * 1e3:.3f} mm")
    assert jump < 0.5e-3


def test_link_loss_stops_the_psm_and_needs_a_fresh_clutch(rig):
    """The stream stops mid-motion: nothing more is commanded (the PSM's own setpoint stays put and
    the arm settles on it), the mapper wants a fresh clutch, and a link that comes back with the
    clutch still squeezed moves nothing."""
    c, op = rig["client"], rig["op"]
    for _ in range(LOAD_ATTEMPTS):  # a load-induced link loss before the planned one: start that again
        if not clutch_in(c, op):
            continue
        op.send(hand=[0.0, 0.0, 0.10], seconds=2.0)     # moving when the link drops
        time.sleep(0.8)
        if c.mapper["state"] == "FOLLOWING":
            break
        op.send(hand=[0.0, 0.0, -0.10], seconds=1.0)
        time.sleep(1.0)
    assert c.mapper["state"] == "FOLLOWING", logs(rig)
    op.send(streaming=False)
    t_loss = time.monotonic()
    assert c.wait(lambda: c.mapper["state"] == "NEED_CLUTCH", 2), c.mapper
    detected = time.monotonic() - t_loss
    # the arm finishes its last servo step, then rests: still for a whole second, as a sim running far
    # below real time moves little in 0.3 s (a 0.3 s "rest" was followed by 0.21 mm of creep once)
    assert c.tool_settled(span=1.0, timeout=15)
    sp0, _ = c.psm.setpoint_cp()
    settled = c.tool()
    time.sleep(1.0)
    sp1, _ = c.psm.setpoint_cp()
    drift = np.linalg.norm(c.tool() - settled)
    setpoint_change = np.linalg.norm(sp1[:3, 3] - sp0[:3, 3])
    # the link comes back with the clutch still squeezed and the hand elsewhere: nothing moves
    op.send(hand=[0.03, 0.0, 0.0])
    t_back = time.monotonic()
    op.send(streaming=True)
    time.sleep(1.0)
    moved_back = np.ptp(c.tools_since(t_back), axis=0).max()
    print(f"\nlink loss: mapper stopped after {detected * 1e3:.0f} ms, PSM setpoint change afterwards "
          f"{setpoint_change * 1e3:.4f} mm, tool drift {drift * 1e3:.3f} mm; back with the clutch held: "
          f"tool moved {moved_back * 1e3:.3f} mm")
    # (that it never fires before 200 ms is asserted on exact clocks in test_teleop_mapper.py and
    # test_console_server.py; here the operator process's own stalls blur when the stream stopped)
    assert setpoint_change < 1e-6 and drift < STILL_MM * 1e-3
    assert moved_back < STILL_MM * 1e-3 and c.mapper["state"] == "NEED_CLUTCH"
    # a fresh clutch (release, squeeze); one that a load-induced link loss got in the way of is tried again
    assert any(clutch_in(c, op) for _ in range(LOAD_ATTEMPTS)), (c.mapper, logs(rig))
    p0, p1, *_ = clutched_move(rig, (0.0, 0.0, -0.03), 1.0)
    moved = np.linalg.norm(p1 - p0)
    print(f"fresh clutch: hand 3 cm forward -> tool {moved * 1e3:.2f} mm; mapper {c.mapper}; "
          f"PSM setpoint {np.round(c.psm.setpoint_cp()[0][:3, 3] * 1e3, 1)} mm")
    assert moved > 4e-3                                 # a fresh clutch drives again
    op.send(clutch=0)


def view_turn_deg(R0, R1) -> float:
    return float(np.degrees(np.linalg.norm(pin.log3(R0.T @ R1))))


def test_head_yaw_pans_the_scope_only_with_the_deadman_and_link_loss_stops_it(rig):
    c, op = rig["client"], rig["op"]
    assert c.settled(timeout=40)
    _, R0 = c.tip()
    for attempt in range(LOAD_ATTEMPTS):
        # a load-induced link loss mid-turn releases the deadman, as it must (asserted below); pressed
        # again, the head is followed from the new press on, so the turn is measured again from the start
        lost = c.mapper.get("link_lost", 0)

        def link_lost_since(lost=lost) -> bool:
            return c.mapper.get("link_lost", 0) != lost

        op.turn_head(15.0, 1.5)                      # no deadman: nothing moves
        time.sleep(2.0)
        _, R1 = c.tip()
        if attempt == 0:
            no_deadman = view_turn_deg(R0, R1)
            assert c.mode == "HOLD" and no_deadman < STILL_DEG, (no_deadman, logs(rig))

        def panned_right(R1=R1) -> bool:             # the view is slowed (SLOW_VIEW) and the sim stalls:
            _, R = c.tip()                           # wait for the motion, do not guess its duration
            return view_turn_deg(R1, R) > 5.0 and (R1.T @ R[:, 2])[0] > 0.05

        op.send(deadman=1)
        if c.wait(lambda: c.mode == "HEAD_FOLLOW", 3):
            op.turn_head(0.0, 1.5)                   # turn right by 15 deg from the press
            c.wait(lambda: panned_right() or link_lost_since(), 30)
            if panned_right() or not link_lost_since():
                break
        else:
            # only a link loss (the console then releases the deadman) excuses a press not followed
            assert link_lost_since(), (c.mode, c.mapper, logs(rig))
        print(f"\n(attempt {attempt + 1} hit a link loss under load: {c.mapper}; again)")
        op.send(deadman=0)
        assert c.wait(lambda: c.mode == "HOLD", 3), (c.mode, logs(rig))
        assert c.settled(timeout=40)
    _, R2 = c.tip()
    pan = view_turn_deg(R1, R2)
    right = float((R1.T @ R2[:, 2])[0])             # new optical axis seen in the old view: +x = right
    print(f"\nhead yaw 15 deg right with the deadman: view turned {pan:.2f} deg (x {right:+.3f}); "
          f"without: {no_deadman:.3f} deg; /teleop/head yaw now {c.head_yaw_seen}; holder {c.diag}")
    assert pan > 5.0 and right > 0.05, logs(rig)
    # link loss while the head is turning: the console releases the deadman, the view stops
    op.turn_head(-20.0, 4.0)                         # 5 deg/s, 20 deg more if it went on
    time.sleep(0.5)
    _, R_loss = c.tip()
    op.send(streaming=False)
    assert c.wait(lambda: c.mode == "HOLD", 2), (c.mode, logs(rig))

    # the head goes on turning for 3.5 s (17.5 deg more); a holder still following would follow it.
    # Judged after the head has stopped and the slowed view could have caught up (the loaded sim
    # runs below real time, so "still" over a wall-clock window proves little)
    time.sleep(6.0)
    _, R3 = c.tip()
    after_loss = view_turn_deg(R_loss, R3)
    print(f"link loss during a head turn: holder back to HOLD; the view turned {after_loss:.2f} deg after the "
          f"loss while the head turned 17.5 deg more")
    # bound: the slowed view (10 deg/s) for the 200 ms timeout plus the detection and the arm's lag
    assert after_loss < 5.0 and c.mode == "HOLD"
    op.send(deadman=0)


def test_stick_zooms_and_buttons_switch_the_holder_mode(rig):
    c, op = rig["client"], rig["op"]
    assert c.settled(timeout=40)
    p0, R0 = c.tip()
    op.send(zoom=-1.0)                                 # left stick forward: the scope goes in
    assert c.wait(lambda: c.mode == "TELEOP", 3), (c.mode, logs(rig))
    # held until it has gone 4 mm in (the loaded sim runs below real time: wait for motion, not time);
    # the settled pose ends up to ~0.2 mm short of the moving one, hence 4 mm for a 3 mm bound
    c.wait(lambda: float(np.dot(c.tip()[0] - p0, R0[:, 2])) > 4e-3, 20)
    op.send(zoom=0.0)
    assert c.wait(lambda: c.mode == "HOLD", 3), c.mode          # 200 ms without servo_cv: HOLD
    assert c.settled(timeout=40)
    p1, R1 = c.tip()
    along = float(np.dot(p1 - p0, R0[:, 2]))           # along the old optical axis
    across = float(np.linalg.norm((p1 - p0) - along * R0[:, 2]))
    print(f"\nzoom: stick forward -> scope {along * 1e3:.1f} mm in along its axis, {across * 1e3:.2f} mm across")
    assert along > 3e-3 and across < 0.2 * along
    op.send(a=1)                                       # A: TOOL_FOLLOW
    assert c.wait(lambda: c.mode == "TOOL_FOLLOW", 5), (c.mode, logs(rig))
    op.send(a=0)
    op.send(b=1)                                       # B: HOLD
    assert c.wait(lambda: c.mode == "HOLD", 5), (c.mode, logs(rig))
    op.send(b=0)
