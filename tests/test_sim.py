"""Sim runner, endoscope camera and ground truth: rendering, CLI, ROS topics."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time

import mujoco
import numpy as np
import pytest

from surgbot import contract
from surgbot.processes import autogroup_nice
from surgbot.sim.camera import EndoscopeCamera
from surgbot.sim.camera_model import intrinsics
from surgbot.sim.camera_process import RENDER_NICE
from surgbot.sim.scene import build_model, reset_to_stand
from surgbot.sim.scene_layouts import SPHENOID_TARGET_RGBA, TARGET_COLOURS
from surgbot.sim.world import SimWorld
from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.sim

SIM_CMD = [PYTHON, "-m", "surgbot.cli", "sim"]


def _camera_frame(scene: str, seed: int = 0):
    model = build_model(scene, seed)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    world = SimWorld(model=model, data=data, scene=scene, seed=seed)
    cam = world.add(EndoscopeCamera(320, 240, hz=30))
    try:
        deadline = time.monotonic() + 20
        while cam.latest() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        frame = cam.latest()
    finally:
        world.close()
    assert frame is not None, cam.error
    return model, data, cam, frame[0]


def _colour_mask(image: np.ndarray, rgba) -> np.ndarray:
    """Pixels whose strong channels (those > 0.5 in `rgba`) dominate the weak ones.
    Lighting changes brightness and saturates channels, but keeps that pattern."""
    high = np.asarray(rgba[:3]) > 0.5
    img = image.astype(float)
    hi, lo = img[..., high], img[..., ~high]
    return (hi.min(axis=2) > 80) & (hi.min(axis=2) > 1.8 * lo.max(axis=2))


def _project(data, point, K):
    """Pixel (u, v) of a world point in the endoscope optical frame (z fwd, x right, y down)."""
    p = data.site("endoscope_tip").xpos
    R = data.site("endoscope_tip").xmat.reshape(3, 3)
    x, y, z = R.T @ (np.asarray(point) - p)
    assert z > 0
    return K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]


def test_intrinsics_from_fovy():
    K = intrinsics(90.0, 320, 240)
    assert K[1, 1] == pytest.approx(120.0)        # half height / tan(45 deg)
    assert K[0, 0] == K[1, 1] and K[0, 2] == 160 and K[1, 2] == 120


def test_box_trainer_endoscope_sees_targets_where_geometry_says():
    model, data, cam, image = _camera_frame("box_trainer")
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert image.std() > 20                         # not empty, not uniform
    for colour, rgba in TARGET_COLOURS.items():
        mask = _colour_mask(image, rgba)
        assert mask.sum() > 15, colour
        # the blob sits where the pinhole model of the tip frame puts the target
        vs, us = np.nonzero(mask)
        u, v = _project(data, data.xpos[model.body(f"target_{colour}").id], cam.K)
        assert math.hypot(us.mean() - u, vs.mean() - v) < 8.0, (colour, (us.mean(), vs.mean()), (u, v))
    assert cam.frames >= 1


def test_endonasal_endoscope_sees_sphenoid_target():
    model, data, cam, image = _camera_frame("endonasal", seed=3)
    assert image.std() > 10
    mask = _colour_mask(image, SPHENOID_TARGET_RGBA)
    assert mask.sum() > 100
    vs, us = np.nonzero(mask)
    u, v = _project(data, data.xpos[model.body("sphenoid_target").id], cam.K)
    assert math.hypot(us.mean() - u, vs.mean() - v) < 8.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_camera_renders_parent_state_in_another_process():
    """Frames come from a child process, carry the stamp of the physics state they show, and
    close() ends that process."""
    model = build_model("box_trainer", 0)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    world = SimWorld(model=model, data=data, use_sim_time=True)   # stamps = physics time
    cam = world.add(EndoscopeCamera(160, 120, hz=60))
    pid = cam.pid
    try:
        assert pid is not None and pid != os.getpid() and _alive(pid)
        first = cam.latest()
        assert first is not None and first[1] == 0                 # state at bind, t = 0
        deadline = time.monotonic() + 20
        while cam.frames < 4 and time.monotonic() < deadline:
            world.step()
            time.sleep(0.002)
        image, stamp_ns = cam.latest()
        assert cam.frames >= 4, cam.error
        assert image.shape == (120, 160, 3) and not image.flags.writeable
        # the stamp is one physics step's time: a whole number of 2 ms steps, not after now
        steps = stamp_ns / (world.dt * 1e9)
        assert steps == pytest.approx(round(steps), abs=1e-6) and 0 < stamp_ns <= round(world.time * 1e9)
        assert len(cam.render_ms) == cam.frames and all(ms > 0 for ms in cam.render_ms)
        # below the sim and the other nodes: a session of its own, niced with its scheduling group
        assert os.getsid(pid) == pid and os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.nice(0) + RENDER_NICE)
        assert autogroup_nice(pid) in (None, RENDER_NICE)       # None: no autogroup
    finally:
        world.close()
    assert not _alive(pid) and cam.pid is None
    assert cam.frames >= 4 and cam.latest()[1] >= stamp_ns      # results survive close()


def test_camera_process_dies_with_the_sim(processes):
    """SIGKILL of the sim (no close() runs) still ends its renderer process."""
    sim = processes.start(SIM_CMD + ["--headless", "--no-ros", "--duration", "600"], name="sim")
    children: list[int] = []

    def renderer_up():
        children[:] = [int(p) for p in os.listdir("/proc") if p.isdigit()
                       and _ppid(int(p)) == sim.pid and "camera_process" in _cmdline(int(p))]
        return bool(children) and sim.poll() is None
    assert _wait_for(renderer_up, 45), processes.log(sim)
    time.sleep(1.0)
    os.kill(sim.pid, signal.SIGKILL)
    sim.wait(10)
    assert _wait_for(lambda: not _alive(children[0]), 10), "renderer outlived the sim"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def test_camera_rejects_bad_settings():
    with pytest.raises(ValueError):
        EndoscopeCamera(0, 240)
    with pytest.raises(ValueError):
        EndoscopeCamera(320, 240, hz=float("nan"))


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Exit 2 and exactly one error line, the last one (argparse prints its usage above it)."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert [ln for ln in lines if "error:" in ln] == lines[-1:], proc.stderr
    if not lines[0].startswith("usage:"):
        assert len(lines) == 1, proc.stderr
    return lines[-1]


@pytest.mark.parametrize("args, needle", [
    (["--scene", "operating_theatre"], "invalid choice"),
    (["--model", "/nonexistent/scene.xml"], "no such file"),
    (["--model", "setup.py"], "MJCF"),
    (["--duration", "-1"], "duration"),
    (["--duration", "nan"], "duration"),
    (["--camera-hz", "0"], "camera-hz"),
])
def test_bad_input_exits_2_with_one_line(args, needle):
    proc = subprocess.run(SIM_CMD + args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert needle in _one_line_error(proc)


def test_malformed_model_file_exits_2(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body><geom type='nope'/></body></worldbody></mujoco>")
    proc = subprocess.run(SIM_CMD + ["--model", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "does not load" in _one_line_error(proc)


def test_headless_run_for_duration_reports_rtf(processes):
    t0 = time.monotonic()
    proc = processes.start(SIM_CMD + ["--headless", "--duration", "5", "--scene", "box_trainer"], name="sim")
    rc = proc.wait(90)
    out = processes.log(proc)
    assert rc == 0, out
    rtf = float(out.split("real-time factor:")[1].split()[0])
    cam = float(out.split("camera rate:")[1].split()[0])
    # real-time pacing: 5 simulated seconds take at least ~5 s of wall time
    assert time.monotonic() - t0 >= 4.9
    assert 0.3 < rtf <= 1.05
    assert cam > 0


def test_sigterm_stops_cleanly(processes):
    proc = processes.start(SIM_CMD + ["--headless", "--scene", "endonasal", "--no-camera"], name="sim")
    time.sleep(4.0)
    assert proc.poll() is None, processes.log(proc)
    rc = processes.stop(proc, signal.SIGTERM, timeout=20)
    out = processes.log(proc)
    assert rc == 0, out
    assert "real-time factor:" in out and "camera rate: off" in out


def _wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.001)
    return False


@contextlib.contextmanager
def listener_node(name: str):
    """A private rclpy context, a node in it and a SingleThreadedExecutor; all torn down after."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(name, context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        yield node, ex
    finally:
        ex.shutdown()
        node.destroy_node()
        ctx.try_shutdown()


def test_ros_topics_reach_another_node(processes):
    """Camera and ground truth topics, received by a separate rclpy node, agree with the model."""
    from geometry_msgs.msg import PointStamped, PoseStamped
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import String

    seed = 5
    sim = processes.start(SIM_CMD + ["--headless", "--duration", "60", "--seed", str(seed)], name="sim")
    model = build_model("box_trainer", seed)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    got: dict[str, list] = {k: [] for k in ("image", "jpeg", "info", "fulcrum", "tip", "task", "psm")}
    with listener_node("test_sim_listener") as (node, ex):
        node.create_subscription(Image, contract.ENDOSCOPE_IMAGE, lambda m: got["image"].append(m), 5)
        node.create_subscription(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED,
                                 lambda m: got["jpeg"].append(m), 5)
        node.create_subscription(CameraInfo, contract.ENDOSCOPE_CAMERA_INFO, lambda m: got["info"].append(m), 5)
        node.create_subscription(PointStamped, contract.GT_FULCRUM, lambda m: got["fulcrum"].append(m), 10)
        node.create_subscription(PoseStamped, contract.GT_ENDOSCOPE_TIP, lambda m: got["tip"].append(m), 10)
        node.create_subscription(PoseStamped, contract.GT_PSM_TIP, lambda m: got["psm"].append(m), 10)
        node.create_subscription(String, contract.SIM_TASK, lambda m: got["task"].append(m), 10)

        def all_in():
            ex.spin_once(timeout_sec=0.05)
            return all(len(v) >= 3 for v in got.values()) and sim.poll() is None
        assert _wait_for(all_in, 45), ({k: len(v) for k, v in got.items()}, processes.log(sim))
    img = got["image"][-1]
    assert (img.width, img.height, img.encoding, img.step) == (320, 240, "rgb8", 960)
    pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(240, 320, 3)
    assert pixels.std() > 20
    assert img.header.frame_id == contract.ENDOSCOPE_TIP_FRAME
    assert bytes(got["jpeg"][-1].data[:2]) == b"\xff\xd8" and got["jpeg"][-1].format == "jpeg"
    K = np.array(got["info"][-1].k).reshape(3, 3)
    assert np.allclose(K, intrinsics(float(model.cam_fovy[model.camera("endoscope_camera").id]), 320, 240))
    # ground truth agrees with the model: fulcrum = scope_port, tip near its keyframe pose
    f = got["fulcrum"][-1]
    assert f.header.frame_id == contract.WORLD_FRAME
    assert np.allclose([f.point.x, f.point.y, f.point.z], data.site("scope_port").xpos, atol=1e-9)
    tip = got["tip"][-1].pose
    tip_pos = np.array([tip.position.x, tip.position.y, tip.position.z])
    assert np.linalg.norm(tip_pos - data.site("endoscope_tip").xpos) < 0.02
    task = json.loads(got["task"][-1].data)
    assert task["seed"] == seed and task["scene"] == "box_trainer" and task["success"] is False
    red = model.body("target_red").id
    assert np.allclose(task["objects"]["target_red"]["pos"], data.xpos[red], atol=1e-9)
    psm = got["psm"][-1].pose.position
    assert np.linalg.norm(np.array([psm.x, psm.y, psm.z]) - data.site("psm_port").xpos) < 0.3


def test_fast_mode_publishes_clock(processes):
    from rosgraph_msgs.msg import Clock

    sim = processes.start(SIM_CMD + ["--headless", "--fast", "--no-camera", "--duration", "600"], name="sim")
    clocks = []
    with listener_node("test_clock_listener") as (node, ex):
        node.create_subscription(Clock, contract.CLOCK, lambda m: clocks.append(m.clock), 100)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or len(clocks) > 200, 45), processes.log(sim)
    t = [c.sec + c.nanosec * 1e-9 for c in clocks]
    assert all(b >= a for a, b in zip(t, t[1:], strict=False))
    assert t[-1] - t[0] > 0.1
    assert processes.stop(sim, signal.SIGINT, timeout=20) == 0
