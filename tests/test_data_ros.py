"""`surgbot sim --task` publishes the task on /sim/task, and `surgbot data record
--source ros` records an episode from the running twin while this test drives
the PSM over CRTK with `PSMClient`, cutting the episode with the recorder
services (contract sections 5, 9, 10)."""

from __future__ import annotations

import json
import sys
import time

import mujoco
import numpy as np
import pytest
import rclpy
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from std_msgs.msg import String
from std_srvs.srv import Trigger

from surgbot import contract
from surgbot.geometry import matrix_from_pose10, pose10_from_matrix
from surgbot.hw.crtk import PSMClient, spin_in_background
from surgbot.policies.data.dataset import ACTION_KEY, IMAGE_KEY, SIDECAR, STATE_KEY
from surgbot.policies.data.ros_source import EPISODE_START, EPISODE_STOP
from surgbot.sim.scene import build_model, reset_to_stand
from surgbot.sim.tasks import BoxGeometry, get_task

pytestmark = pytest.mark.sim
PY = sys.executable
SEED = 4


def _wait(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def _call(node, name: str, timeout: float = 90.0):
    cli = node.create_client(Trigger, name)
    assert cli.wait_for_service(timeout_sec=timeout), f"{name} not served"
    fut = cli.call_async(Trigger.Request())
    assert _wait(fut.done, timeout), f"{name} did not answer"
    return fut.result()


def test_sim_task_and_ros_recording(processes, tmp_path):
    out = tmp_path / "live"
    sim = processes.start([PY, "-m", "surgbot.cli", "sim", "--task", "reach", "--seed", str(SEED), "--headless",
                           "--camera-width", "160", "--camera-height", "120", "--camera-hz", "20"], name="sim")
    rec = processes.start([PY, "-m", "surgbot.cli", "data", "record", "--source", "ros", "--task", "reach",
                           "--episodes", "1", "--out", str(out), "--image-size", "60x80", "--timeout", "400"],
                          name="rec", env={"HF_HUB_OFFLINE": "1"})
    rclpy.init()                 # the default context: PSMClient's spin_in_background uses it
    node = rclpy.create_node("test_data_ros")
    tasks: list[dict] = []
    node.create_subscription(String, contract.SIM_TASK, lambda m: tasks.append(json.loads(m.data)), 10)
    spinner = spin_in_background(node)
    try:
        client = PSMClient(node)
        # /sim/task: the task the twin laid out from the seed, judged by physics
        assert _wait(lambda: tasks, 90), processes.log(sim)
        task = tasks[-1]
        model = build_model("box_trainer", SEED)
        layout = get_task("reach").layout(SEED, BoxGeometry(model).centre)
        assert task["task"] == "reach" and task["seed"] == SEED and task["instruction"] == layout.instruction
        assert task["success"] is False and task["elapsed_s"] >= 0.0
        x, y, _ = layout.objects[f"target_{layout.target}"]
        assert np.allclose(task["objects"][f"target_{layout.target}"]["pos"][:2], [x, y], atol=1e-9)
        # the needle is a distractor of reach, in its slot, not where the scene alone puts it
        data_ref = mujoco.MjData(model)
        reset_to_stand(model, data_ref)
        assert np.allclose(task["objects"]["needle"]["pos"][:2], layout.objects["needle"][:2], atol=1e-4)
        assert not np.allclose(data_ref.body("needle").xpos[:2], layout.objects["needle"][:2], atol=1e-3)

        client.enable(30.0)
        client.home(60.0)
        T0, _ = client.measured_cp()
        deadline = time.monotonic() + 60
        while True:                  # the recorder refuses (with a reason) until it has an image and a pose
            t_before_start = time.monotonic()
            ok = _call(node, EPISODE_START)
            if ok.success or time.monotonic() > deadline:
                break
            assert "no image" in ok.message
            time.sleep(0.5)
        t_started = time.monotonic()
        assert ok.success, ok.message
        # stream servo_cp (as teleop does) 12 mm down over 2 s, closing the jaw a little
        sent = []
        for k in range(61):
            T = T0.copy()
            T[2, 3] -= 0.012 * min(k / 60, 1.0)
            client.servo_cp(T)
            client.jaw.servo_jp(0.2 * k / 60)
            sent.append(pose10_from_matrix(T, 0.2 * k / 60))
            time.sleep(1 / 30)
        time.sleep(0.5)
        t_stop_sent = time.monotonic()
        res = _call(node, EPISODE_STOP)
        t_stopped = time.monotonic()
        assert res.success, res.message
        assert _wait(lambda: rec.poll() is not None, 240), processes.log(rec)
        assert rec.returncode == 0, processes.log(rec)
    finally:
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    ds = LeRobotDataset("local/" + out.name, root=out)
    assert ds.num_episodes == 1 and ds.fps == 15
    n = len(ds)
    # one frame per 1/15 s between the start and stop calls (sample-and-hold)
    assert 15 * (t_stop_sent - t_started) - 1 <= n <= 15 * (t_stopped - t_before_start) + 1
    side = json.loads((out / SIDECAR).read_text())
    assert side["source"] == "teleop" and side["episodes"][0]["instruction"] == layout.instruction
    first, last = ds[0], ds[n - 1]
    assert first["task"] == layout.instruction
    assert tuple(first[IMAGE_KEY].shape) == (3, 60, 80) and float(first[IMAGE_KEY].std()) > 0.02
    # actions are commands that were sent; the state followed them down
    sent = np.array(sent)
    for item in (ds[n // 2], last):
        a = item[ACTION_KEY].numpy()
        # pose and jaw are two topics: each part is one that was sent (not necessarily the same k)
        assert np.min(np.linalg.norm(sent[:, :9] - a[:9], axis=1)) < 1e-6
        assert np.min(np.abs(sent[:, 9] - a[9])) < 1e-6
    T_last, jaw_last = matrix_from_pose10(last[STATE_KEY].numpy())
    assert abs(T_last[2, 3] - (T0[2, 3] - 0.012)) < 1e-3 and abs(jaw_last - 0.2) < 0.05
    T_first, _ = matrix_from_pose10(first[STATE_KEY].numpy())
    assert abs(T_first[2, 3] - T0[2, 3]) < 2e-3
