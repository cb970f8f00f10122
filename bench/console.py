"""Teleop console figures (issue 12): WebSocket receive -> /PSM1/servo_cp, video age, server CPU, page pose rate.

Processes: `surgbot console` and `teleop_mapper` (real nodes); this process
publishes the robot state the mapper needs to command (an ENABLED PSM, a
scope pose) and 320x240 JPEG q80 camera frames at 30 fps, stamped when
published, on `/endoscope/image_raw/compressed`, and listens.

* `console_ws_to_servo_cp`: the console stamps `/teleop/right` when it takes
  the `xr` message off the socket; the mapper stamps `/PSM1/servo_cp` when
  it publishes the command made from it (one clock): receive -> publish,
  two processes and two DDS hops.  Goal p99 < 2 ms.
* `console_video_age_at_receive` / `console_glass_to_glass`: headless
  Chromium running the full page in an immersive session (IWER), frame age
  when its socket delivers the frame and when it is drawn (page clock =
  camera stamp clock on one machine), the way the anchor's 248 ms was taken.
* `console_server_cpu_30fps`: the console process's CPU time over the video
  run / wall time (percent of one core), anchor: Vuer 92%.
* `console_page_pose_rate`: `xr` messages the page's own XR frame loop sent
  per second (what reached `/teleop/head`, newest-only, in the note).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from surgbot import processes
from surgbot.bench import dds_domains, figure
from surgbot.teleop.url import wait_for_served_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-console-token"
XR_HZ = 90.0
VIDEO_HZ = 30.0
VUER_AGE_P50_MS = 248.0        # ../shared/FACTS.md: Vuer as televuer sets it up, same machine class
VUER_AGE_P99_MS = 346.0
VUER_CPU_PCT = 92.0
CONSOLE_UP_TIMEOUT_S = 120.0   # import + certificate + DDS discovery on a loaded 2-core machine
BARE_AGE_P50_MS = 2.0          # bare aiohttp newest-frame server + minimal canvas page (FACTS)


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return processes.start(args, cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _frames(n: int = 30) -> list[bytes]:
    """n distinct 320x240 JPEG q80 frames (moving shapes over a gradient: realistic sizes)."""
    import cv2
    out = []
    yy, xx = np.mgrid[0:240, 0:320]
    for i in range(n):
        img = np.stack([(xx + 4 * i) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        cv2.circle(img, (40 + 8 * i, 120), 30, (255, 200, 40), -1)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
        out.append(buf.tobytes())
    return out


class _Robot:
    """rclpy side: fake robot state for the mapper, camera frames, and the stamps we measure."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import PoseStamped

        from surgbot import contract
        from surgbot.hw.crtk import message_types, spin_in_background
        from surgbot.rosutil import latched_qos, operator_stream_qos
        rclpy.init()
        self.node = n = rclpy.create_node("bench_console")
        self.lock = threading.Lock()
        self.right: list[int] = []
        self.servo: list[int] = []
        self.head_arrivals: list[float] = []
        n.create_subscription(PoseStamped, contract.TELEOP_RIGHT, lambda m: self._stamp(self.right, m),
                              operator_stream_qos(200))
        n.create_subscription(PoseStamped, contract.psm_topic("servo_cp"), lambda m: self._stamp(self.servo, m), 200)
        n.create_subscription(PoseStamped, contract.TELEOP_HEAD, self._on_head, operator_stream_qos(200))
        self.pub_cam = n.create_publisher(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, 10)
        self.pub_psm = n.create_publisher(PoseStamped, contract.psm_topic("measured_cp"), 10)
        # the arm as a dVRK console reports it (crtk_msgs/OperatingState, latched)
        OperatingState = message_types()["OperatingState"]
        self.pub_state = n.create_publisher(OperatingState, contract.psm_topic("operating_state"), latched_qos())
        self.pub_state.publish(OperatingState(state="ENABLED", is_homed=True, is_busy=False))
        from sensor_msgs.msg import CompressedImage
        self.pub_img = n.create_publisher(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED, 2)
        self._PoseStamped, self._CompressedImage = PoseStamped, CompressedImage
        self.frames = _frames()
        self.video = False
        n.create_timer(0.01, self._on_state_timer)
        n.create_timer(1.0 / VIDEO_HZ, self._on_video_timer)
        self.spinner = spin_in_background(n)

    def _stamp(self, lst, msg):
        with self.lock:
            lst.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def _on_head(self, _msg):
        with self.lock:
            self.head_arrivals.append(time.monotonic())

    def _pose(self, frame: str, p, q):
        m = self._PoseStamped()
        m.header.stamp = self.node.get_clock().now().to_msg()
        m.header.frame_id = frame
        m.pose.position.x, m.pose.position.y, m.pose.position.z = p
        m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = q
        return m

    def _on_state_timer(self):
        # scope looking along world +x (optical z), PSM tool in the middle of its workspace
        self.pub_cam.publish(self._pose("world", (0.4, 0.0, 1.0), (0.5, -0.5, 0.5, -0.5)))
        self.pub_psm.publish(self._pose("PSM1_base", (0.0, 0.0, -0.11), (0.0, 1.0, 0.0, 0.0)))

    def _on_video_timer(self):
        if not self.video:
            return
        m = self._CompressedImage()
        m.header.stamp = self.node.get_clock().now().to_msg()
        m.format = "jpeg"
        m.data = self.frames[int(time.monotonic() * VIDEO_HZ) % len(self.frames)]
        self.pub_img.publish(m)

    def latencies_ms(self) -> list[float]:
        """servo_cp stamp - the /teleop/right stamp it was made from (the newest one not after it)."""
        with self.lock:
            right, servo = np.array(sorted(self.right)), np.array(sorted(self.servo))
        if right.size == 0 or servo.size == 0:
            return []
        idx = np.searchsorted(right, servo, side="right") - 1
        ok = idx >= 0
        return list((servo[ok] - right[idx[ok]]) * 1e-6)

    def close(self):
        import rclpy
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.try_shutdown()


async def _operator(port: int, seconds: float) -> int:
    """The page's protocol from a script: clutch held, hand moving, XR_HZ for `seconds`."""
    import aiohttp

    from surgbot.teleop import protocol as P
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    sent = 0
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, headers={"Origin": f"https://127.0.0.1:{port}"})
        await ws.send_str(json.dumps({"type": "hello", "token": TOKEN}))
        await ws.receive(timeout=10)
        t0 = next_t = time.monotonic()
        while time.monotonic() - t0 < seconds:
            hand = np.eye(4)
            hand[:3, 3] = (0.25 + 0.02 * np.sin(time.monotonic()), 1.1, -0.35)
            msg = {"type": "xr", "t": time.time() * 1e3, "head": P.column_major(np.eye(4)),
                   "right": {"pose": P.column_major(hand), "trigger": 0.0, "squeeze": 1.0}}
            await ws.send_str(json.dumps(msg))
            sent += 1
            next_t += 1.0 / XR_HZ
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        await ws.close()
    return sent


def _page_run(origin: str, seconds: float, robot: _Robot, console_pid: int) -> dict:
    import psutil
    from playwright.sync_api import sync_playwright

    from surgbot.teleop import browser
    proc = psutil.Process(console_pid)
    blocked: list[str] = []
    with sync_playwright() as pw:
        b = browser.launch(pw)
        page = browser.offline_page(b, origin, blocked, browser.XR_WINDOW)
        page.goto(f"{origin}/?xr=emulate#token={TOKEN}")
        page.wait_for_function("window.surgbot && window.surgbot.stats.authed", timeout=60000)
        page.wait_for_function("!document.getElementById('enter-vr').disabled", timeout=30000)
        page.click("#enter-vr")
        page.wait_for_function("window.surgbot.stats.mode === 'xr'", timeout=30000)
        page.wait_for_function("window.surgbot.stats.framesDrawn > 10", timeout=30000)
        page.evaluate("() => { window.surgbot.stats.ages.length = 0; window.surgbot.stats.recvAges.length = 0; }")
        with robot.lock:
            robot.head_arrivals.clear()
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
        sent0 = page.evaluate("window.surgbot.stats.sent")
        drawn0 = page.evaluate("window.surgbot.stats.framesDrawn")
        time.sleep(seconds)
        cpu1, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
        stats = page.evaluate("({ages: window.surgbot.stats.ages, recv: window.surgbot.stats.recvAges,"
                              " sent: window.surgbot.stats.sent, drawn: window.surgbot.stats.framesDrawn,"
                              " status: window.surgbot.stats.status})")
        with robot.lock:
            heads = len(robot.head_arrivals)
        b.close()
    dt = t1 - t0
    return {"ages": stats["ages"], "recv": stats["recv"], "cpu_pct": 100.0 * (cpu1 - cpu0) / dt,
            "page_rate": (stats["sent"] - sent0) / dt, "ros_rate": heads / dt,
            "fps": (stats["drawn"] - drawn0) / dt, "status": stats["status"], "blocked": blocked}


def run(quick: bool) -> list[dict]:
    dds_domains()
    seconds = 6.0 if quick else 30.0
    tmp = Path(tempfile.mkdtemp(prefix="bench_console_"))
    env = dict(os.environ, SURGBOT_CONSOLE_TOKEN=TOKEN, XDG_CONFIG_HOME=str(tmp))
    console = _start([sys.executable, "-m", "surgbot.cli", "console", "--port", "0"], env, tmp / "console.log")
    mapper = _start([sys.executable, "-m", "surgbot.nodes.teleop_mapper", "--ros-args", "--params-file",
                     str(REPO / "config" / "teleop_mapper.yaml"),
                     "-p", "psm_base_pose:=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]"], env, tmp / "mapper.log")
    robot = _Robot()
    try:
        port = wait_for_served_port(lambda: (tmp / "console.log").read_text(errors="replace"),
                                    lambda: console.poll() is None, CONSOLE_UP_TIMEOUT_S)
        time.sleep(3.0)                               # the mapper sees the robot state (READY)
        print(f"  bench console: {XR_HZ:.0f} Hz xr for {seconds:.0f} s ...", file=sys.stderr, flush=True)
        sent = asyncio.run(_operator(port, seconds))
        lat = robot.latencies_ms()
        robot.video = True
        print(f"  bench console: page in chromium, {VIDEO_HZ:.0f} fps video for {seconds:.0f} s ...",
              file=sys.stderr, flush=True)
        page = _page_run(f"https://127.0.0.1:{port}", seconds, robot, console.pid)
    finally:
        robot.close()
        processes.stop(console)
        processes.stop(mapper)
    if not lat:
        raise RuntimeError("no /PSM1/servo_cp from the mapper: " + (tmp / "mapper.log").read_text()[-2000:])
    if page["blocked"]:
        raise RuntimeError(f"the page asked for other origins: {page['blocked'][:3]}")
    return [
        figure("console_ws_to_servo_cp", "ms", samples=lat,
               note=f"console receive -> mapper publish, 2 processes ({len(lat)} of {sent} xr at {XR_HZ:.0f} Hz); "
                    "goal p99 < 2 ms"),
        figure("console_video_age_at_receive", "ms", samples=page["recv"], anchor=VUER_AGE_P50_MS,
               anchor_source="Vuer 0.1.6 as televuer, p50 (FACTS)", baseline=None,
               note=f"capture stamp -> page socket, full XR page in headless chromium, 320x240 q80 {VIDEO_HZ:.0f} fps; "
                    f"Vuer p99 {VUER_AGE_P99_MS:.0f} ms; bare aiohttp+canvas p50 {BARE_AGE_P50_MS:.0f} ms"),
        figure("console_glass_to_glass", "ms", samples=page["ages"],
               note="capture stamp -> frame drawn on the page (decoded, on the canvas, texture queued); goal p50 < 20"),
        figure("console_server_cpu_30fps", "% of a core", value=page["cpu_pct"], anchor=VUER_CPU_PCT,
               anchor_source="Vuer server per client (FACTS)", note="console process, one XR page + video; goal < 10"),
        figure("console_page_pose_rate", "Hz", value=page["page_rate"], higher_is_better=True,
               note=f"xr messages sent by the page's XR frame loop (IWER, capped at 125/s); /teleop/head got "
                    f"{page['ros_rate']:.1f}/s (newest-only), video drawn {page['fps']:.1f} fps"),
    ]
