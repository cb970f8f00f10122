"""The `teleop_console` node as a process (issue 12 security acceptance), judged on the ROS side.

A test-side rclpy listener records everything on `/teleop/*` while real
clients misbehave over TLS: a wrong or missing token (4401, nothing
published), a 10,000-message fuzz run (the process stays up, every message
on ROS is a finite rigid pose / a well-formed Joy, the console's own status
counts every rejection), plain HTTP (no answer), and the listening socket is
on loopback only.  `surgbot console` bad input exits 2 with one line.
Record (issue 17): `record` messages over the socket cut episodes of a real
`surgbot data record --source ros` process fed by this test's image and
PSM pose (z rising at a known speed, so each recorded frame tells when it
was published): the kept episode lies between its start and stop, the
discarded one is not in the dataset.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import subprocess
import threading
import time

import aiohttp
import numpy as np
import psutil
import pytest
import rclpy
import rclpy.executors
from geometry_msgs.msg import PoseStamped
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from sensor_msgs.msg import Image, JointState, Joy

from surgbot import contract, geometry
from surgbot.geometry import matrix_from_pose10
from surgbot.policies.data.dataset import IMAGE_KEY, SIDECAR, STATE_KEY
from surgbot.policies.data.ros_source import STALE_S
from surgbot.rosutil import BackgroundSpinner, operator_stream_qos
from surgbot.teleop import protocol as P
from surgbot.teleop.record import NOT_RUNNING
from tests.conftest import PYTHON, REPO
from tests.console_rig import wait_for_console_port
from tests.test_console_server import fuzz_messages, xr_msg

pytestmark = pytest.mark.sim

TOKEN = "node-test-token"
# DDS discovery of the console's publishers by the listener (seconds on a loaded 2-core machine), then
# a little more for the endpoints to match (the graph sees a publisher just before its data flows)
DISCOVERY_TIMEOUT_S = 30.0
DISCOVERY_SETTLE_S = 0.5


class Listener:
    def __init__(self):
        rclpy.init()
        self.node = n = rclpy.create_node("test_console_node")
        self.lock = threading.Lock()
        self.poses: list[tuple[str, PoseStamped]] = []
        self.joys: list[Joy] = []
        for topic in (contract.TELEOP_HEAD, contract.TELEOP_LEFT, contract.TELEOP_RIGHT):
            n.create_subscription(PoseStamped, topic, lambda m, t=topic: self._add(self.poses, (t, m)),
                                  operator_stream_qos(1000))
        n.create_subscription(Joy, contract.TELEOP_BUTTONS, lambda m: self._add(self.joys, m),
                              operator_stream_qos(1000))
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)

    def _add(self, lst, v):
        with self.lock:
            lst.append(v)

    def wait_for_publishers(self) -> None:
        """The console's /teleop publishers discovered: the streams are best effort without history, so
        what the console publishes before then is lost to this listener (a loaded machine's fuzz test
        once saw nothing at all), and "nothing published" would prove nothing."""
        topics = (contract.TELEOP_HEAD, contract.TELEOP_LEFT, contract.TELEOP_RIGHT, contract.TELEOP_BUTTONS)
        end = time.monotonic() + DISCOVERY_TIMEOUT_S
        while any(self.node.count_publishers(t) == 0 for t in topics):
            assert time.monotonic() < end, f"console publishers on {topics} not seen in {DISCOVERY_TIMEOUT_S} s"
            time.sleep(0.05)
        time.sleep(DISCOVERY_SETTLE_S)

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.poses), len(self.joys)

    def close(self):
        self.spinner.stop()                   # the spin thread has left rclpy before the node goes
        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture(scope="module")
def console(module_processes):
    procs = module_processes
    listener = Listener()
    proc = procs.start([PYTHON, "-m", "surgbot.nodes.teleop_console", "--ros-args", "--params-file",
                        str(REPO / "config" / "teleop_console.yaml"), "-p", "port:=0",
                        "-p", "max_message_rate_hz:=1000000.0", "-p", "rate_burst:=1000000",
                        "-p", "video_source:=none"],
                       name="console", env={"SURGBOT_CONSOLE_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(procs.tmp)})
    port = wait_for_console_port(procs, proc)
    listener.wait_for_publishers()
    yield {"port": port, "proc": proc, "listener": listener, "procs": procs}
    listener.close()


def ssl_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def ws_connect(s, port, token=TOKEN, hello=True):
    ws = await s.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=ssl_ctx(), headers={"Origin": f"https://127.0.0.1:{port}"},
                            max_msg_size=0)
    if hello:
        await ws.send_str(json.dumps({"type": "hello", "token": token}))
    return ws


def test_listens_on_loopback_only_and_refuses_plain_http(console):
    conns = [c for c in psutil.Process(console["proc"].pid).net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN]
    assert conns and all(c.laddr.ip == "127.0.0.1" for c in conns), conns

    async def plain():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{console['port']}/", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
    asyncio.run(plain())
    assert console["proc"].poll() is None


def test_wrong_token_4401_and_nothing_published(console):
    lst = console["listener"]
    before = lst.counts()

    async def body():
        async with aiohttp.ClientSession() as s:
            for token, hello in (("nope", True), ("", True), (TOKEN[:-1], True), (TOKEN, False)):
                ws = await ws_connect(s, console["port"], token, hello)
                for i in range(20):                      # poses right behind the bad hello
                    await ws.send_str(json.dumps(xr_msg(t=float(i))))
                msg = await ws.receive(timeout=15)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
    asyncio.run(body())
    time.sleep(1.0)
    assert lst.counts() == before


def fuzz_rejections(status: dict) -> int:
    """Rejections on the authenticated socket (the module's earlier bad-token sockets count as auth_failed)."""
    return status["rejected_total"] - status["rejected"].get("auth_failed", 0)


def test_fuzz_10000_messages_stays_up_publishes_only_valid(console):
    lst = console["listener"]
    msgs = list(fuzz_messages(10_000, random.Random(7)))
    n_valid = sum(1 for k, _ in msgs if k == "valid")

    async def body():
        async with aiohttp.ClientSession() as s:
            ws = await ws_connect(s, console["port"])
            await ws.receive(timeout=10)                 # welcome
            for i, (_, payload) in enumerate(msgs):
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
                if i % 500 == 0:
                    await asyncio.sleep(0.01)            # let status and DDS breathe
            await ws.send_str(json.dumps(xr_msg(t=424242.0)))
            status = None
            end = time.monotonic() + 60
            while time.monotonic() < end:
                m = await ws.receive(timeout=10)
                if m.type == aiohttp.WSMsgType.TEXT:
                    obj = json.loads(m.data)
                    if obj["type"] == "status" and obj["accepted"] + fuzz_rejections(obj) >= len(msgs) + 1:
                        status = obj
                        break
            await ws.close()
            return status
    status = asyncio.run(body())
    assert status is not None, "the console never accounted for every message"
    assert console["proc"].poll() is None
    print(f"\nnode fuzz: accepted {status['accepted']}, rejected {status['rejected_total']}: {status['rejected']}")
    assert status["accepted"] + fuzz_rejections(status) == len(msgs) + 1
    assert status["accepted"] >= n_valid + 1
    time.sleep(1.0)
    with lst.lock:
        poses, joys = list(lst.poses), list(lst.joys)
    assert poses and joys                                 # what was accepted did reach ROS
    for _, m in poses:
        assert m.header.frame_id == contract.WORLD_FRAME
        T = geometry.pose_msg_to_matrix(m)                # raises on NaN/inf or a non-unit quaternion
        assert np.all(np.isfinite(T)) and np.linalg.norm(T[:3, 3]) <= P.MAX_POSITION_M
    for j in joys:
        assert len(j.buttons) == P.N_BUTTONS and len(j.axes) == P.N_AXES
        assert all(b in (0, 1) for b in j.buttons) and all(np.isfinite(a) and -1 <= a <= 1 for a in j.axes)


def test_status_shows_the_streamed_fulcrum_error_and_the_latched_safety_state(console):
    """The two status topics that stream (the holder's 100 Hz fulcrum error, the supervisor's 50 Hz
    state, transient-local) are polled at the console's 10 Hz status tick, not taken by callback:
    the page still sees the newest of each, and the latched state of a supervisor that published
    before the console's reader matched."""
    from std_msgs.msg import Float64, String

    from surgbot.rosutil import latched_qos
    node = console["listener"].node
    pub_state = node.create_publisher(String, contract.SAFETY_STATE, latched_qos())
    pub_state.publish(String(data=json.dumps({"state": "ESTOP", "reasons": ["test"]})))
    pub_err = node.create_publisher(Float64, contract.ENDOSCOPE_FULCRUM_ERROR, 10)
    stop = threading.Event()

    def stream():
        k = 0
        while not stop.wait(0.01):
            k += 1
            pub_err.publish(Float64(data=0.00123 if k > 20 else 0.009))
    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()

    async def body():
        async with aiohttp.ClientSession() as s:
            ws = await ws_connect(s, console["port"])
            await ws.receive(timeout=10)                 # welcome
            end = time.monotonic() + 30
            last = None
            while time.monotonic() < end:
                m = await ws.receive(timeout=10)
                if m.type == aiohttp.WSMsgType.TEXT and (obj := json.loads(m.data))["type"] == "status":
                    last = obj
                    if obj.get("safety") == "ESTOP" and obj.get("fulcrum_error_mm") == 1.23:
                        break
            await ws.close()
            return last
    try:
        status = asyncio.run(body())
    finally:
        stop.set()
        feeder.join(5.0)
        node.destroy_publisher(pub_err)
        node.destroy_publisher(pub_state)
    assert status is not None and status.get("safety") == "ESTOP", status
    assert status.get("fulcrum_error_mm") == 1.23, status


def test_the_video_is_subscribed_only_while_a_page_is_connected(console):
    """With no page connected the console does not take the endoscope video (15-30 frames a second
    woke it for nothing, and the twin's camera JPEG-encodes only for a subscriber); a page that
    connects gets frames, and the subscription goes when it leaves."""
    import cv2
    from sensor_msgs.msg import CompressedImage
    procs, node = console["procs"], console["listener"].node
    video_console = procs.start([PYTHON, "-m", "surgbot.nodes.teleop_console", "--ros-args", "--params-file",
                                 str(REPO / "config" / "teleop_console.yaml"), "-p", "port:=0",
                                 "-p", "video_source:=compressed"],
                                name="video_console", env={"SURGBOT_CONSOLE_TOKEN": TOKEN,
                                                           "XDG_CONFIG_HOME": str(procs.tmp)})
    pub = node.create_publisher(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED, 2)
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))
    frame = CompressedImage(format="jpeg", data=jpeg.tobytes())

    def readers_within(count: int, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if pub.get_subscription_count() == count:
                return True
            time.sleep(0.05)
        return pub.get_subscription_count() == count

    async def a_page_gets_frames(port: int) -> tuple[bool, bool]:
        async with aiohttp.ClientSession() as s:
            ws = await ws_connect(s, port)
            subscribed = await asyncio.to_thread(readers_within, 1, DISCOVERY_TIMEOUT_S)
            got_frame = False
            end = time.monotonic() + 20
            while subscribed and not got_frame and time.monotonic() < end:
                frame.header.stamp = node.get_clock().now().to_msg()
                pub.publish(frame)
                try:
                    m = await ws.receive(timeout=0.1)
                except TimeoutError:
                    continue
                got_frame = m.type == aiohttp.WSMsgType.BINARY
            await ws.close()
            return subscribed, got_frame
    try:
        assert ok
        port = wait_for_console_port(procs, video_console)
        time.sleep(2.0)                 # up, discovered, several status ticks: still no reader of the video
        assert pub.get_subscription_count() == 0
        subscribed, got_frame = asyncio.run(a_page_gets_frames(port))
        assert subscribed and got_frame, (subscribed, got_frame)
        assert readers_within(0, 10.0), "the video subscription stayed after the page left"
    finally:
        node.destroy_publisher(pub)
        procs.stop(video_console)


@pytest.mark.parametrize("args, text", [(["--port", "70000"], "--port"), (["--cert", "/nonexistent"], "--key"),
                                        (["--jpeg-quality", "5"], "--jpeg-quality")])
def test_cli_bad_input_exits_2_with_one_line(args, text):
    r = subprocess.run([PYTHON, "-m", "surgbot.cli", "console", *args], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ------------------------------------------------------------------ Record
FEED_HZ = 30.0
Z0_M, VZ_M_S = -0.1, 0.01          # the fed PSM pose rises 1 cm/s: a frame's z tells when it was published
IMAGE_HW = (60, 80)


class Feeder:
    """Publishes what the recorder samples: /endoscope/image_raw (a fixed gradient) and /PSM1/measured_cp."""

    def __init__(self, node):
        h, w = IMAGE_HW
        yy, xx = np.mgrid[0:h, 0:w]
        self.rgb = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 128)], -1).astype(np.uint8)
        self.pub_img = node.create_publisher(Image, contract.ENDOSCOPE_IMAGE, 2)
        self.pub_pose = node.create_publisher(PoseStamped, contract.psm_topic("measured_cp"), 10)
        self.pub_jaw = node.create_publisher(JointState, contract.psm_topic("jaw/measured_js"), 10)
        self.t0 = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def published_at(self, z: float) -> float:
        return self.t0 + (z - Z0_M) / VZ_M_S

    def _run(self):
        img = Image(height=IMAGE_HW[0], width=IMAGE_HW[1], encoding="rgb8", step=IMAGE_HW[1] * 3,
                    data=self.rgb.tobytes())
        while not self.stop.wait(1.0 / FEED_HZ):
            T = np.eye(4)
            T[:3, 3] = (0.01, 0.02, Z0_M + VZ_M_S * (time.monotonic() - self.t0))
            pose = PoseStamped()
            pose.header.frame_id = "PSM1_base"
            self.pub_pose.publish(geometry.matrix_to_pose_msg(T, pose))
            self.pub_jaw.publish(JointState(position=[0.3]))
            self.pub_img.publish(img)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


async def record(ws, action: str, last_n: int, timeout: float = 60.0) -> tuple[dict, float, float]:
    """Send `record` `action`; (the status' record entry with its outcome, time sent, time the outcome was seen)."""
    t_sent = time.monotonic()
    await ws.send_str(json.dumps({"type": "record", "action": action}))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = await ws.receive(timeout=timeout)
        if m.type == aiohttp.WSMsgType.TEXT:
            rec = json.loads(m.data).get("record")
            if rec and rec["last"] and rec["last"]["n"] > last_n and rec["pending"] is None:
                assert rec["last"]["action"] == action, rec
                return rec, t_sent, time.monotonic()
    raise AssertionError(f"no outcome for record {action} in {timeout} s")


def test_record_messages_cut_lerobot_episodes_of_the_real_recorder(console, tmp_path):
    procs = console["procs"]
    out = tmp_path / "teleop_demo"
    feeder = Feeder(console["listener"].node)
    rec_proc = None
    times: dict[str, tuple[float, float]] = {}

    async def body():
        nonlocal rec_proc
        async with aiohttp.ClientSession() as s:
            ws = await ws_connect(s, console["port"])
            await ws.receive(timeout=10)                   # welcome
            r, _, _ = await record(ws, "start", 0)          # nobody serves the episode services yet
            assert not r["last"]["ok"] and r["last"]["message"] == NOT_RUNNING and not r["recording"]
            rec_proc = procs.start([PYTHON, "-m", "surgbot.cli", "data", "record", "--source", "ros", "--task",
                                    "reach", "--episodes", "1", "--out", str(out), "--image-size",
                                    f"{IMAGE_HW[0]}x{IMAGE_HW[1]}", "--timeout", "300"],
                                   name="recorder", env={"HF_HUB_OFFLINE": "1"})
            end = time.monotonic() + 180                   # LeRobot's import, then the services answer
            while True:
                r, t_sent, t_seen = await record(ws, "start", r["last"]["n"])
                if r["last"]["ok"] or time.monotonic() > end or rec_proc.poll() is not None:
                    break
                await asyncio.sleep(0.5)
            assert r["last"]["ok"] and r["recording"], (r, procs.log(rec_proc))
            await asyncio.sleep(1.0)
            r, *times["discard"] = await record(ws, "discard", r["last"]["n"])
            assert r["last"]["ok"] and "discarded" in r["last"]["message"] and not r["recording"], r
            assert (r["episodes"], r["discarded"]) == (0, 1)
            await asyncio.sleep(STALE_S + 0.5)             # no pose from the discarded episode can be the next one's
            r, *times["start"] = await record(ws, "start", r["last"]["n"])
            assert r["last"]["ok"] and r["recording"], r
            await asyncio.sleep(1.5)
            r, *times["stop"] = await record(ws, "stop", r["last"]["n"])
            assert r["last"]["ok"] and "kept" in r["last"]["message"] and not r["recording"], r
            assert (r["episodes"], r["discarded"]) == (1, 1)
            end = time.monotonic() + 120                   # the recorder writes the episode and exits (1 of 1)
            while rec_proc.poll() is None and time.monotonic() < end:
                await asyncio.sleep(0.2)
            assert rec_proc.returncode == 0, procs.log(rec_proc)
            end = time.monotonic() + 20                    # its services leave the graph
            while True:
                r, _, _ = await record(ws, "start", r["last"]["n"])
                if r["last"]["message"] == NOT_RUNNING or time.monotonic() > end:
                    break
                await asyncio.sleep(0.5)
            assert r["last"]["message"] == NOT_RUNNING and (r["episodes"], r["discarded"]) == (1, 1)
            await ws.close()
    try:
        asyncio.run(body())
    finally:
        feeder.close()
    assert console["proc"].poll() is None
    ds = LeRobotDataset("local/" + out.name, root=out)
    assert ds.num_episodes == 1 and ds.fps == 15
    n = len(ds)
    (t_start_sent, t_start_seen), (t_stop_sent, t_stop_seen) = times["start"], times["stop"]
    print(f"\nrecord over the console: kept {n} frames for {t_stop_sent - t_start_seen:.2f}-"
          f"{t_stop_seen - t_start_sent:.2f} s between the start and stop outcomes; discard left none")
    # one frame per 1/15 s between the recorder's start and stop (each inside its sent..seen window)
    assert 15 * (t_stop_sent - t_start_seen) - 1 <= n <= 15 * (t_stop_seen - t_start_sent) + 1
    states = np.stack(ds.hf_dataset[STATE_KEY])                  # the table column: no video decoding
    published = [feeder.published_at(matrix_from_pose10(x)[0][2, 3]) for x in states]
    assert all(b >= a - 1e-6 for a, b in zip(published, published[1:], strict=False))      # time runs forward
    # every frame comes from the kept episode: published after the discard was answered (a pose is at
    # most STALE_S old when sampled) and no later than the stop's outcome
    assert published[0] > times["discard"][1]
    assert t_start_sent - STALE_S <= published[0] <= t_start_seen + STALE_S
    assert t_stop_sent - STALE_S - 1 / 15 <= published[-1] <= t_stop_seen
    img = ds[0][IMAGE_KEY].numpy().transpose(1, 2, 0)                         # CHW float in [0, 1]
    assert np.abs(img - feeder.rgb / 255.0).mean() < 0.03                     # the fed picture
    side = json.loads((out / SIDECAR).read_text())
    assert side["source"] == "teleop" and len(side["episodes"]) == 1
    assert [f["reason"] for f in side["failed_episodes"]] == ["discarded"]
