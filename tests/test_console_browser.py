"""The console page in a real browser (issue 12): headless Debian Chromium driven by Playwright, offline.

`surgbot sim` (camera on) + `surgbot console`; the page is loaded over HTTPS
from the console, authenticates with the token from the URL fragment,
enters an immersive session through IWER (installed from npm, served by the
console with `?xr=emulate`) and sends head and controller poses through its
own code; a test-side rclpy node checks what reaches `/teleop/*` (rate and
geometry: an emulated controller moved 10 cm to the right must arrive as a
10 cm move to the right in the operator frame).  Desktop mode is driven with
real key presses.  The video check compares the page's canvas, as a
screenshot, with the camera's own JPEG from ROS: same picture, not blank.
Every request to anything but the console is blocked and must not happen.
Record: the page's Record / Discard buttons and X / Y held in the headset
send `record` messages whose outcome the console shows (no recorder runs
here: "recorder not running"; the recording itself is tested in
test_console_node.py).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import rclpy.executors
from geometry_msgs.msg import PoseStamped
from PIL import Image
from playwright.sync_api import sync_playwright
from sensor_msgs.msg import CompressedImage, Joy

from surgbot import contract, geometry
from surgbot.rosutil import BackgroundSpinner, operator_stream_qos
from surgbot.teleop import browser
from surgbot.teleop import protocol as P
from surgbot.teleop.record import NOT_RUNNING
from tests.conftest import PYTHON
from tests.console_rig import wait_for_console_port

pytestmark = pytest.mark.sim

TOKEN = "browser-test-token"
# The page streams every frame (not only on change: a still hand must keep the link alive and
# the clutch state fresh). Its actual rate is a benchmark figure (bench/console.py
# console_page_pose_rate: 125 Hz, the page's cap); here only "streams", with a wide margin below any
# browser frame loop (60 Hz desktop, 72-90 Hz XR) so a loaded machine does not fail it.
MIN_STREAM_HZ = 20.0


class Listener:
    """rclpy node recording what the console publishes and the camera's JPEG."""

    def __init__(self):
        rclpy.init()
        self.node = n = rclpy.create_node("test_console_browser")
        self.lock = threading.Lock()
        self.right: list[tuple[float, np.ndarray]] = []
        self.head: list[float] = []
        self.joy: list[tuple[list[int], list[float]]] = []
        self.jpeg: bytes | None = None
        n.create_subscription(PoseStamped, contract.TELEOP_RIGHT, self._on_right, operator_stream_qos(100))
        n.create_subscription(PoseStamped, contract.TELEOP_HEAD, lambda m: self._append(self.head, time.monotonic()),
                              operator_stream_qos(100))
        n.create_subscription(Joy, contract.TELEOP_BUTTONS,
                              lambda m: self._append(self.joy, (list(m.buttons), list(m.axes))),
                              operator_stream_qos(100))
        n.create_subscription(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED,
                              lambda m: setattr(self, "jpeg", bytes(m.data)), 2)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)

    def _append(self, lst, v):
        with self.lock:
            lst.append(v)
            del lst[:-20000]

    def _on_right(self, msg):
        self._append(self.right, (time.monotonic(), geometry.pose_msg_to_matrix(msg)))

    def rate(self, lst, seconds: float) -> float:
        with self.lock:
            n0 = len(lst)
        time.sleep(seconds)
        with self.lock:
            return (len(lst) - n0) / seconds

    def last_right(self) -> np.ndarray:
        with self.lock:
            return self.right[-1][1].copy()

    def close(self):
        self.spinner.stop()                   # the spin thread has left rclpy before the node goes
        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture(scope="module")
def rig(module_processes):
    procs = module_processes
    listener = Listener()
    procs.start([PYTHON, "-m", "surgbot.cli", "sim", "--scene", "box_trainer", "--headless",
                 "--g1-domain", os.environ["SURGBOT_G1_DOMAIN"]], name="sim")
    console = procs.start([PYTHON, "-m", "surgbot.cli", "console", "--port", "0"], name="console",
                          env={"SURGBOT_CONSOLE_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(procs.tmp)})
    port = wait_for_console_port(procs, console)
    end = time.monotonic() + 90
    while listener.jpeg is None and time.monotonic() < end:
        time.sleep(0.2)
    assert listener.jpeg is not None, "no camera frames from the sim"
    origin = f"https://127.0.0.1:{port}"
    blocked: list[str] = []
    with sync_playwright() as pw:
        b = browser.launch(pw)
        yield {"listener": listener, "browser": b, "origin": origin, "blocked": blocked, "procs": procs,
               "console": console, "pages": []}
        b.close()
    listener.close()


def artifacts(tmp_path) -> Path:
    """Where screenshots go: $SURGBOT_TEST_ARTIFACTS (CI keeps it) or the test's tmp dir."""
    d = Path(os.environ.get("SURGBOT_TEST_ARTIFACTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def close_pages(rig):
    """Every page a test opened is closed after it, pass or fail (an open page keeps the operator seat)."""
    yield
    for page in rig["pages"]:
        if not page.is_closed():
            page.close()
    rig["pages"].clear()


def moved_on_ros(lst: Listener, T0: np.ndarray, timeout: float = 5.0) -> None:
    """Wait until /teleop/right shows a move of more than 9 cm from `T0` (a loaded box delays the
    page, the console and DDS alike: wait for the arrival, then settle 0.2 s)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and np.linalg.norm(lst.last_right()[:3, 3] - T0[:3, 3]) < 0.09:
        time.sleep(0.02)
    time.sleep(0.2)


def trigger_on_ros(lst: Listener, ok, timeout: float = 5.0) -> None:
    """Wait until the right trigger on /teleop/buttons satisfies `ok` (or the timeout; asserted after)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with lst.lock:
            if lst.joy and ok(lst.joy[-1][1][P.AX_RTRIG]):
                return
        time.sleep(0.02)


def open_page(rig, query: str = "", small: bool = True):
    """The page with the token in its fragment; `small`: the window the XR and rate runs use (the
    video check takes the full 640x480 canvas)."""
    size = browser.XR_WINDOW if small else (1280, 720)
    page = browser.offline_page(rig["browser"], rig["origin"], rig["blocked"], size)
    rig["pages"].append(page)
    page.goto(f"{rig['origin']}/{query}#token={TOKEN}")
    page.wait_for_function("window.surgbot && window.surgbot.stats.authed", timeout=30000)
    assert "token" not in page.url                     # the fragment is cleared from the address bar
    return page


def test_page_enters_vr_through_iwer_and_streams_poses(rig, tmp_path):
    lst = rig["listener"]
    page = open_page(rig, "?xr=emulate")
    page.wait_for_function("!document.getElementById('enter-vr').disabled", timeout=20000)
    page.click("#enter-vr")
    page.wait_for_function("window.surgbot.stats.mode === 'xr'", timeout=20000)
    page.evaluate("""() => { const r = xrDevice.controllers.right; r.position.set(0.2, 1.2, -0.4);
                             r.updateButtonValue('squeeze', 1.0); r.updateButtonValue('trigger', 0.5); }""")
    time.sleep(0.5)
    ros_rate = lst.rate(lst.right, 3.0)
    page_rate = page.evaluate("window.surgbot.sendRateHz()")
    server_rate = page.evaluate("window.surgbot.stats.status.xr_rate_hz")
    print(f"\nimmersive (IWER): page sends {page_rate:.1f} Hz, console accepts {server_rate:.1f} Hz, "
          f"/teleop/right at {ros_rate:.1f} Hz (newest-only: samples arriving < 2 ms apart are merged)")
    assert page_rate >= MIN_STREAM_HZ and server_rate >= MIN_STREAM_HZ and ros_rate > 0
    with lst.lock:
        buttons, axes = lst.joy[-1]
    assert buttons[P.BTN_CLUTCH] == 1 and axes[P.AX_RTRIG] == pytest.approx(0.5, abs=1e-6)
    # move the emulated controller 10 cm right (+x in OpenXR): the operator frame's -y
    T0 = lst.last_right()
    page.evaluate("() => xrDevice.controllers.right.position.set(0.3, 1.2, -0.4)")
    moved_on_ros(lst, T0)
    d = lst.last_right()[:3, 3] - T0[:3, 3]
    print(f"controller +10 cm right -> /teleop/right moved {np.round(d * 1e3, 2)} mm (x fwd, y left, z up)")
    np.testing.assert_allclose(d, [0.0, -0.1, 0.0], atol=2e-3)
    # the headset's own view: the video panel is drawn in the emulated session
    page.screenshot(path=str(artifacts(tmp_path) / "console_xr.png"))
    page.evaluate("() => xrDevice.controllers.right.updateButtonValue('squeeze', 0)")
    # Record in the headset: a quick press of X does nothing, Y held 1 s discards (X held would start)
    n0 = outcomes(page)
    hold_button(page, "x-button", 0.3)
    assert page.evaluate("window.surgbot.stats.recordSent") == []
    hold_button(page, "y-button", 1.3)
    last = record_outcome(page, "discard", n0)
    assert page.evaluate("window.surgbot.stats.recordSent") == ["discard"]
    assert not last["ok"] and last["message"] == NOT_RUNNING
    assert rig["blocked"] == []
    page.close()


def hold_button(page, button: str, seconds: float) -> None:
    page.evaluate(f"() => xrDevice.controllers.left.updateButtonValue('{button}', 1)")
    time.sleep(seconds)
    page.evaluate(f"() => xrDevice.controllers.left.updateButtonValue('{button}', 0)")


def outcomes(page) -> int:
    """How many record outcomes the console has given so far (its status counts them)."""
    page.wait_for_function("window.surgbot.stats.status && window.surgbot.stats.status.record", timeout=10000)
    return page.evaluate("(window.surgbot.stats.status.record.last || {n: 0}).n")


def record_outcome(page, action: str, n_before: int) -> dict:
    """The console's next record outcome after `n_before`; it must be for `action`."""
    page.wait_for_function(f"(window.surgbot.stats.status.record.last || {{n: 0}}).n > {n_before}", timeout=10000)
    last = page.evaluate("window.surgbot.stats.status.record.last")
    assert last["action"] == action and last["n"] == n_before + 1, last
    return last


def test_hand_tracked_side_sends_wrist_pose_and_pinch(rig):
    """Vision Pro style: no controllers, tracked hands (IWER's hand mode): wrist pose + pinch as trigger."""
    lst = rig["listener"]
    page = open_page(rig, "?xr=emulate")
    page.evaluate("() => { xrDevice.primaryInputMode = 'hand'; }")
    page.wait_for_function("!document.getElementById('enter-vr').disabled", timeout=20000)
    page.click("#enter-vr")
    page.wait_for_function("window.surgbot.stats.mode === 'xr'", timeout=20000)
    page.evaluate("() => { const h = xrDevice.hands.right; h.position.set(0.2, 1.2, -0.4); h.updatePinchValue(1.0); }")
    trigger_on_ros(lst, lambda v: v > 0.8)
    with lst.lock:
        _, axes = lst.joy[-1]
    T0 = lst.last_right()
    page.evaluate("() => xrDevice.hands.right.position.set(0.3, 1.2, -0.4)")
    moved_on_ros(lst, T0)
    d = lst.last_right()[:3, 3] - T0[:3, 3]
    print(f"\nhand tracking: pinch -> trigger {axes[P.AX_RTRIG]:.2f}; wrist +10 cm right -> {np.round(d * 1e3, 1)} mm")
    assert axes[P.AX_RTRIG] > 0.8
    np.testing.assert_allclose(d, [0.0, -0.1, 0.0], atol=5e-3)
    page.evaluate("() => xrDevice.hands.right.updatePinchValue(0.0)")
    trigger_on_ros(lst, lambda v: v < 0.2)
    with lst.lock:
        _, axes = lst.joy[-1]
    assert axes[P.AX_RTRIG] < 0.2
    page.close()


def test_video_is_decoded_and_shown(rig, tmp_path):
    lst = rig["listener"]
    page = open_page(rig, small=False)
    page.wait_for_function("window.surgbot.stats.framesDrawn > 30", timeout=30000)
    time.sleep(1.0)
    stats = page.evaluate("({n: window.surgbot.stats.framesDrawn, acked: window.surgbot.stats.acked,"
                          " ages: window.surgbot.stats.ages.slice(-60)})")
    shot = artifacts(tmp_path) / "console_video.png"
    page.locator("#video").screenshot(path=str(shot))
    print(f"\nvideo: {stats['n']} frames drawn, {stats['acked']} acked, age p50 "
          f"{np.median(stats['ages']):.1f} ms; screenshot {shot}")
    seen = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    cam = cv2.cvtColor(cv2.imdecode(np.frombuffer(lst.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    seen = cv2.resize(seen, (cam.shape[1], cam.shape[0]), interpolation=cv2.INTER_AREA)
    diff = np.abs(seen - cam.astype(float)).mean()
    print(f"canvas std {seen.std():.1f}, mean |canvas - camera JPEG| {diff:.1f} (of 255)")
    assert seen.std() > 10.0                               # not a blank frame
    assert diff < 12.0                                     # the camera's picture, not something else
    assert stats["acked"] > 0
    status = page.evaluate("window.surgbot.stats.status")
    assert status["glass_to_glass_ms"] is not None and status["video_sent"] > 30
    assert rig["blocked"] == []
    page.close()


def record_buttons_show_the_outcome(page) -> None:
    """Record and Discard on the page: the console answers in the status (no recorder runs in this rig)."""
    page.wait_for_function("!document.getElementById('record').disabled", timeout=10000)
    n0 = outcomes(page)
    page.click("#record")
    last = record_outcome(page, "start", n0)
    assert not last["ok"] and last["message"] == NOT_RUNNING
    page.wait_for_function("document.getElementById('overlay').textContent.includes('recorder not running')",
                           timeout=5000)
    assert page.text_content("#record") == "Record"                     # not recording: nothing started
    page.click("#discard")
    assert record_outcome(page, "discard", n0 + 1)["message"] == NOT_RUNNING


def test_desktop_mode_sends_the_same_messages(rig):
    lst = rig["listener"]
    page = open_page(rig)
    page.click("#desktop")
    page.wait_for_function("window.surgbot.stats.mode === 'desktop'", timeout=10000)
    time.sleep(0.3)
    T0 = lst.last_right()
    page.keyboard.down("Space")                           # clutch
    page.keyboard.down("KeyD")                            # hand to the right
    time.sleep(1.0)
    rate = lst.rate(lst.right, 1.0)
    page_rate = page.evaluate("window.surgbot.sendRateHz()")
    server_rate = page.evaluate("window.surgbot.stats.status.xr_rate_hz")
    with lst.lock:
        buttons, _ = lst.joy[-1]
    page.keyboard.up("KeyD")
    page.keyboard.up("Space")
    time.sleep(0.3)
    d = lst.last_right()[:3, 3] - T0[:3, 3]
    print(f"\ndesktop: page sends {page_rate:.1f} Hz, console accepts {server_rate:.1f} Hz, /teleop/right at "
          f"{rate:.1f} Hz; D held 2 s -> hand moved {np.round(d * 1e3, 1)} mm")
    assert page_rate >= MIN_STREAM_HZ and server_rate >= MIN_STREAM_HZ and rate > 0
    assert buttons[P.BTN_CLUTCH] == 1
    assert d[1] < -0.1 and abs(d[0]) < 1e-3 and abs(d[2]) < 1e-3    # right = -y in the operator frame
    with lst.lock:
        buttons, _ = lst.joy[-1]
    assert buttons[P.BTN_CLUTCH] == 0
    record_buttons_show_the_outcome(page)          # the page is open: its Record buttons cost ~1 s more
    assert rig["blocked"] == []
    page.close()

