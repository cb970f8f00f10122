"""The `teleop_console` node as a process (issue 12 security acceptance), judged on the ROS side.

A test-side rclpy listener records everything on `/teleop/*` while real
clients misbehave over TLS: a wrong or missing token (4401, nothing
published), a 10,000-message fuzz run (the process stays up, every message
on ROS is a finite rigid pose / a well-formed Joy, the console's own status
counts every rejection), plain HTTP (no answer), and the listening socket is
on loopback only.  `surgbot console` bad input exits 2 with one line.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
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
from sensor_msgs.msg import Joy

from surgbot import contract, geometry
from surgbot.rosutil import BackgroundSpinner
from surgbot.teleop import protocol as P
from tests.conftest import PYTHON, REPO
from tests.test_console_server import fuzz_messages, xr_msg

pytestmark = pytest.mark.sim

TOKEN = "node-test-token"


class Listener:
    def __init__(self):
        rclpy.init()
        self.node = n = rclpy.create_node("test_console_node")
        self.lock = threading.Lock()
        self.poses: list[tuple[str, PoseStamped]] = []
        self.joys: list[Joy] = []
        for topic in (contract.TELEOP_HEAD, contract.TELEOP_LEFT, contract.TELEOP_RIGHT):
            n.create_subscription(PoseStamped, topic, lambda m, t=topic: self._add(self.poses, (t, m)), 1000)
        n.create_subscription(Joy, contract.TELEOP_BUTTONS, lambda m: self._add(self.joys, m), 1000)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)

    def _add(self, lst, v):
        with self.lock:
            lst.append(v)

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
    port = None
    end = time.monotonic() + 90
    while port is None and time.monotonic() < end:
        m = re.search(r"https://127\.0\.0\.1:(\d+)/", procs.log(proc))
        port = int(m.group(1)) if m else None
        assert proc.poll() is None, procs.log(proc)
        time.sleep(0.2)
    assert port, procs.log(proc)
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


@pytest.mark.parametrize("args, text", [(["--port", "70000"], "--port"), (["--cert", "/nonexistent"], "--key"),
                                        (["--jpeg-quality", "5"], "--jpeg-quality")])
def test_cli_bad_input_exits_2_with_one_line(args, text):
    r = subprocess.run([PYTHON, "-m", "surgbot.cli", "console", *args], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
