"""Sim in the loop: policy_node drives the PSM twin through CRTK from a policy server, and holds when it dies.

Processes: the PSM twin (subprocess), `policy_node` (subprocess, real rclpy
node with the shipped params file), a policy server in this process (the
real pyzmq `PolicyServer`) whose runtime plays a known motion: every chunk
moves the tool tip +STEP_M along x per tick from the observed state.  That
scripted runtime stands in for the learned model so the expected motion is
known; the robot, the node, the protocol and the gate are the real ones.
Ground truth is the twin's `measured_cp` (MuJoCo tool-tip site).
"""

from __future__ import annotations

import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool

from surgbot.hw.crtk import PSMClient, spin_in_background
from surgbot.kinematics import psm
from surgbot.policies.serving.server import PolicyServer
from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.sim

H = 16
STEP_M = 0.002          # per tick at 15 Hz = 30 mm/s, below the gate's 6 mm/tick
IMAGE_HW = (24, 32)


class LineRuntime:
    """A policy runtime with a known answer: x advances STEP_M per tick from the observed state."""

    def __init__(self):
        self.calls = 0
        self.log: list[str] = []           # "reset" / "infer", in the order the server got them

    def metadata(self) -> dict:
        return {"model": "line", "checkpoint_id": "test", "action_horizon": H, "state_dim": 10,
                "action_dim": 10, "image_size": list(IMAGE_HW), "fps": 15, "instructions": ["move right"]}

    def reset(self) -> None:
        self.log.append("reset")

    def infer(self, image, state, instruction):
        if image.shape != (*IMAGE_HW, 3):
            raise ValueError(f"image must be {IMAGE_HW}")
        self.calls += 1
        self.log.append("infer")
        chunk = np.repeat(np.asarray(state, np.float32)[None], H, axis=0)
        chunk[:, 0] += STEP_M * np.arange(H, dtype=np.float32)
        return chunk, 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rig(processes):
    port = _free_port()
    runtime = LineRuntime()
    server = PolicyServer(runtime, port=port)
    ready = threading.Event()
    server_thread = threading.Thread(target=server.serve, args=(ready,), daemon=True)
    server_thread.start()
    assert ready.wait(10)
    twin = processes.start([PYTHON, "-m", "surgbot.sim.psm_twin", "--duration", "300", "--start-home"],
                           name="psm_twin")
    node_proc = processes.start([PYTHON, "-m", "surgbot.nodes.policy_node", "--ros-args", "--params-file",
                                 str(REPO / "config" / "policy_node.yaml"), "-p", f"server_port:={port}",
                                 "-p", "instruction:=move right"], name="policy_node")
    rclpy.init()
    node = rclpy.create_node("test_policy_node")
    states: list[dict] = []
    node.create_subscription(String, "/policy/state", lambda m: states.append(json.loads(m.data)), 50)
    img_pub = node.create_publisher(Image, "/endoscope/image_raw", 2)

    def publish_image():
        msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
        msg.data = bytes(np.full((48, 64, 3), 90, np.uint8).tobytes())
        img_pub.publish(msg)
    node.create_timer(1.0 / 15.0, publish_image)
    enable = node.create_client(SetBool, "/policy/enable")
    spinner = spin_in_background(node)
    arm = PSMClient(node)
    try:
        arm.wait_for_state(30.0)
        st = arm.operating_state()
        if not (st["state"] == "ENABLED" and st["is_homed"]):
            arm.home(20.0)
        arm.move_jp(psm.HOME).wait(10.0)
        assert enable.wait_for_service(timeout_sec=60.0), processes.log(node_proc)
    except Exception:
        pytest.fail("rig did not come up:\n" + processes.log(twin)[-2000:] + processes.log(node_proc)[-2000:])
    yield arm, enable, states, server, runtime, node_proc, processes
    server.stop()
    server_thread.join(5)
    arm.close()
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown()


def _call(client, on: bool) -> SetBool.Response:
    fut = client.call_async(SetBool.Request(data=on))
    t0 = time.monotonic()
    while not fut.done():
        assert time.monotonic() - t0 < 10.0, "no answer from /policy/enable"
        time.sleep(0.02)
    return fut.result()


def _x(arm) -> float:
    return float(arm.measured_cp(age=1.0)[0][0, 3])


def test_node_executes_chunks_on_the_twin_and_holds_when_the_server_dies(rig):
    arm, enable, states, server, runtime, node_proc, processes = rig
    x0 = _x(arm)
    assert _call(enable, True).success
    time.sleep(3.0)
    x1 = _x(arm)
    log = processes.log(node_proc)[-2000:]
    # 3 s at 30 mm/s would be 90 mm; the workspace box stops x at 0.10 m. At least 2 cm of motion, in +x.
    assert x1 - x0 > 0.02, f"tip moved {1e3 * (x1 - x0):.1f} mm; states {states[-3:]}\n{log}"
    assert runtime.calls >= 3
    assert any(s["state"] == "RUNNING" for s in states)
    # an enable is a new episode: the server's per-episode state (the VLA's goal memory) was reset first
    assert runtime.log[0] == "reset" and runtime.log.count("reset") == 1, runtime.log[:5]
    server.stop()                                   # the policy server dies
    time.sleep(1.5)                                 # > server_timeout_s (0.5 s) + one chunk of slack
    xa = _x(arm)
    time.sleep(1.0)
    xb = _x(arm)
    assert abs(xb - xa) < 0.001, f"tip kept moving {1e3 * (xb - xa):.2f} mm after the server died"
    last = states[-1]
    # between retries the node waits for a chunk; the server's failure stays reported until one arrives
    assert last["state"] == "HOLD", last
    assert last["hold_reason"] == "waiting for a chunk" or last["hold_reason"].startswith("server"), last
    assert any(s["hold_reason"].startswith("server") for s in states[-10:]), states[-10:]
    # the connection watch reports the loss at once; a request in flight then times out
    err = last["last_server_error"].lower()
    assert "timeout" in err or err == "connection to the server lost", last
    assert any(s.get("server_lost") for s in states), "the connection watch never reported the loss"
    assert last["gate_rejections"].get("server error", 0) >= 1
    assert node_proc.poll() is None
    assert _call(enable, False).success


def test_camera_frames_are_cropped_to_the_training_aspect_not_squashed():
    """A 320x240 frame of the endoscope, fitted to 128x128, is the environment's own 128x128 render."""
    import gymnasium as gym
    import mujoco

    import surgbot.sim.envs  # noqa: F401 - registers the environments
    from surgbot.nodes.policy_node import fit_image
    from surgbot.sim.envs import ENV_IDS
    from surgbot.sim.scene import ENDOSCOPE_CAMERA

    env = gym.make(ENV_IDS["reach"], image_size=(128, 128)).unwrapped
    try:
        small = env.reset(seed=3)[0]["image"].astype(np.int16)
        renderer = mujoco.Renderer(env.model, 240, 320)
        renderer.update_scene(env.data, camera=ENDOSCOPE_CAMERA, scene_option=env._scene_option)
        big = renderer.render().copy()
        renderer.close()
    finally:
        env.close()
    fitted = np.abs(fit_image(big, (128, 128)).astype(np.int16) - small).mean()
    squashed = np.abs(cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA).astype(np.int16) - small).mean()
    assert fitted < 6 and squashed > 2 * fitted, (fitted, squashed)
    tall = np.zeros((200, 100, 3), np.uint8)
    tall[50:150] = 255
    assert np.all(fit_image(tall, (64, 64)) == 255)        # crops top and bottom of a tall frame


def test_malformed_frames_decode_to_nothing():
    """The node decodes a frame only when it takes an observation; a malformed one gives None
    (counted as "bad image" and no request), a good one its pixels."""
    from sensor_msgs.msg import CompressedImage, Image

    from surgbot.nodes.policy_node import _decode_jpeg, _decode_rgb8

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    good = Image(height=4, width=6, encoding="rgb8", step=18, data=pixels.tobytes())
    np.testing.assert_array_equal(_decode_rgb8(good), pixels)
    for bad in (Image(height=4, width=6, encoding="bgr8", step=18, data=pixels.tobytes()),
                Image(height=4, width=6, encoding="rgb8", step=17, data=pixels.tobytes()),
                Image(height=5, width=6, encoding="rgb8", step=18, data=pixels.tobytes())):
        assert _decode_rgb8(bad) is None
    assert _decode_jpeg(CompressedImage(format="jpeg", data=b"not a jpeg")) is None
    ok, jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), (0, 0, 255), np.uint8))      # BGR red
    assert ok and _decode_jpeg(CompressedImage(format="jpeg", data=jpeg.tobytes()))[0, 0, 0] > 200   # RGB red
