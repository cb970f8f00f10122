"""`surgbot data record`: LeRobotDataset v3 from the experts, read back with
LeRobot's own loader and compared with what the environment produces; bad
input; Ctrl-C; LeRobot's own `lerobot-train` on the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

import surgbot.sim.envs  # noqa: F401 - registers the environments
from surgbot import processes as child_processes
from surgbot.policies.data.dataset import ACTION_KEY, IMAGE_KEY, SIDECAR, STATE_KEY
from surgbot.policies.data.record import DEFAULT_SUCCESS_TAIL_S, record_expert
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import run_episode
from tests.conftest import dead_pid

pytestmark = pytest.mark.unit
SIZE = (64, 80)
CLI = [sys.executable, "-m", "surgbot.cli", "data", "record"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "MUJOCO_GL": "osmesa"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "reach_ds"
    res = record_expert("reach", 2, out, seed=20, image_size=SIZE, progress=False)
    return out, res


def load(out: Path) -> LeRobotDataset:
    return LeRobotDataset("local/" + out.name, root=out)


def test_recorded_dataset_loads_and_matches_the_environment(recorded):
    out, res = recorded
    assert res.kept == 2 and res.failed == 0
    ds = load(out)
    assert ds.num_episodes == 2 and ds.fps == 15 and len(ds) == res.frames
    assert set(ds.features) >= {IMAGE_KEY, STATE_KEY, ACTION_KEY}
    side = json.loads((out / SIDECAR).read_text())
    assert side["source"] == "expert" and [e["seed"] for e in side["episodes"]] == [20, 21]
    assert all(e["success_tail_s"] == DEFAULT_SUCCESS_TAIL_S for e in side["episodes"])
    assert all(e["perturb_mm"] == 0.0 and e["perturb_bumps"] == 0 for e in side["episodes"])
    env = gym.make(ENV_IDS["reach"], image_size=SIZE)
    index = 0
    for ep in side["episodes"]:
        frames: list = []

        def keep(o, a, i, frames=frames):
            frames.append((o["image"], o["state"], a, i["instruction"]))

        run_episode(env, ep["seed"], on_step=keep, success_tail_s=ep["success_tail_s"], perturb_mm=ep["perturb_mm"])
        assert len(frames) == ep["length"] and ep["target"] == env.unwrapped.layout.target != ""
        for k in (0, len(frames) // 2, len(frames) - 1):
            item = ds[index + k]
            image, state, action, text = frames[k]
            assert int(item["episode_index"]) == ep["episode_index"] and int(item["frame_index"]) == k
            assert np.array_equal(item[STATE_KEY].numpy(), state)
            assert np.array_equal(item[ACTION_KEY].numpy(), action)
            assert item["task"] == text == ep["instruction"]
            # video is lossy: close to this frame, farther from a frame of another moment
            got = item[IMAGE_KEY].numpy().transpose(1, 2, 0) * 255.0
            err = np.abs(got - image).mean()
            other = frames[(k + len(frames) // 2) % len(frames)][0]
            assert err < 6.0 and err < np.abs(got - other).mean()
        index += ep["length"]
    env.close()


def run_cli(*args, timeout=600):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=ENV, timeout=timeout)


def one_line_error(proc) -> str:
    lines = [s for s in proc.stderr.strip().splitlines() if s.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 or "error:" in lines[-1], proc.stderr
    return lines[-1]


def test_two_worker_processes_record_the_same_dataset(recorded, tmp_path):
    out, res = recorded
    two = tmp_path / "two"
    res2 = record_expert("reach", 2, two, seed=20, image_size=SIZE, progress=False, workers=2)
    assert (res2.kept, res2.failed, res2.frames) == (res.kept, res.failed, res.frames)
    a, b = load(out), load(two)
    for key in (STATE_KEY, ACTION_KEY):
        assert np.array_equal(np.stack(a.hf_dataset[key]), np.stack(b.hf_dataset[key]))
    side_a, side_b = (json.loads((p / SIDECAR).read_text())["episodes"] for p in (out, two))
    assert [(e["seed"], e["length"]) for e in side_a] == [(e["seed"], e["length"]) for e in side_b]


def test_bad_input_exits_2_and_changes_nothing(recorded, tmp_path):
    out, _ = recorded
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    new = str(tmp_path / "a")
    assert "unknown task" in one_line_error(run_cli("--task", "suture", "--episodes", "1", "--out", new))
    assert "positive" in one_line_error(run_cli("--task", "reach", "--episodes", "0", "--out", new))
    assert "HxW" in one_line_error(run_cli("--task", "reach", "--episodes", "1", "--out", new, "--image-size", "big"))
    assert "not empty" in one_line_error(run_cli("--task", "reach", "--episodes", "1", "--out", str(out)))
    msg = one_line_error(run_cli("--task", "reach", "--episodes", "1", "--out", str(out), "--append",
                                 "--image-size", "96x96"))
    assert "features differ" in msg
    for bad in ("nan", "-1", "60"):
        assert "--success-tail-s must be in" in one_line_error(
            run_cli("--task", "reach", "--episodes", "1", "--out", new, "--success-tail-s", bad))
    assert "for the sim source" in one_line_error(
        run_cli("--task", "reach", "--episodes", "1", "--out", new, "--source", "ros", "--success-tail-s", "1"))
    for bad in ("nan", "-0.5", "11"):
        assert "--perturb-mm: perturb_mm must be in" in one_line_error(
            run_cli("--task", "reach", "--episodes", "1", "--out", new, "--perturb-mm", bad))
    assert "for the sim source" in one_line_error(
        run_cli("--task", "reach", "--episodes", "1", "--out", new, "--source", "ros", "--perturb-mm", "3"))
    assert not (tmp_path / "a").exists()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_append_grows_the_dataset(recorded, tmp_path):
    import shutil
    out = tmp_path / "grow"
    shutil.copytree(recorded[0], out)
    res = record_expert("reach", 1, out, seed=40, image_size=SIZE, append=True, progress=False)
    assert res.kept == 1
    ds = load(out)
    assert ds.num_episodes == 3
    side = json.loads((out / SIDECAR).read_text())
    assert [e["seed"] for e in side["episodes"]] == [20, 21, 40]
    assert not any(p.name.startswith(".grow.") for p in tmp_path.iterdir())


def test_ctrl_c_leaves_nothing_loadable(tmp_path):
    out = tmp_path / "interrupted"
    # child_processes.start: SIGINT as in a terminal even when this run was started in the background
    proc = child_processes.start(CLI + ["--task", "reach", "--episodes", "40", "--out", str(out),
                                        "--image-size", "32x32"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    partial = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and partial is None:
        found = [p for p in tmp_path.iterdir() if p.name.startswith(".interrupted.partial")]
        if found and any(found[0].rglob("*.parquet")):     # at least one episode saved
            partial = found[0]
        time.sleep(0.2)
    assert partial is not None, proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [s for s in err.strip().splitlines() if s.strip()]
    assert proc.returncode == 2 and "interrupted" in lines[-1], err
    assert not out.exists() and not partial.exists()


def test_a_killed_runs_staging_folder_is_removed_by_the_next_writer(tmp_path):
    """A run killed hard leaves `.NAME.partial-PID`; the next dataset or clip writer of NAME removes it,
    and leaves the staging folder of a process still running (and other outputs' folders) alone."""
    from surgbot.policies.video.clips import StagedFolder
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, live = dead_pid(), sleeper.pid
        for name in ("data", "clips", "other"):
            for pid in (dead, live):
                (tmp_path / f".{name}.partial-{pid}").mkdir()
                (tmp_path / f".{name}.partial-{pid}" / "episode.mp4").write_bytes(b"half")
        res = record_expert("reach", 1, tmp_path / "data", seed=20, image_size=(32, 32), progress=False)
        assert res.kept == 1 and load(tmp_path / "data").num_episodes == 1
        with StagedFolder(tmp_path / "clips") as work:
            (work / "clip.json").write_text("{}")
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
        assert left == sorted([f".data.partial-{live}", f".clips.partial-{live}",
                               f".other.partial-{dead}", f".other.partial-{live}"])
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.sim
def test_lerobot_train_runs_act_on_a_recorded_dataset(recorded, tmp_path):
    out, _ = recorded
    train = Path(sys.executable).with_name("lerobot-train")
    cmd = [str(train), "--dataset.repo_id=local/" + out.name, f"--dataset.root={out}", "--policy.type=act",
           "--policy.device=cpu", "--policy.push_to_hub=false", "--policy.pretrained_backbone_weights=null",
           "--policy.dim_model=256", "--policy.dim_feedforward=1024", "--policy.n_encoder_layers=2",
           "--policy.chunk_size=10", "--policy.n_action_steps=10",
           f"--output_dir={tmp_path / 'train'}", "--steps=20", "--batch_size=4", "--num_workers=0",
           "--eval_freq=0", "--save_freq=20", "--wandb.enable=false", "--log_freq=5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "train" / "checkpoints" / "last" / "pretrained_model"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["type"] == "act" and cfg["dim_model"] == 256


# ------------------------------------------------------- live-topic sampler (ROS-free core)
def test_live_sampler_holds_15_hz_and_cuts_episodes():
    from surgbot.policies.data.ros_source import LiveSampler

    s = LiveSampler("reach", 8, 8)
    assert not s.start(0.0)                                 # nothing received yet: refused with a reason
    T = np.eye(4)
    T[:3, 3] = [0.01, 0.02, -0.15]
    s.on_image(0.0, np.full((16, 16, 3), 7, np.uint8))      # resized to the dataset's 8x8
    s.on_pose(0.0, T)
    s.on_jaw(0.0, 0.3)
    assert s.start(0.0) and not s.start(0.0)
    assert len(s.frames) == 1 and s.sample(0.0) == 0        # frame 0 is the state at the start
    cmd = T.copy()
    cmd[2, 3] -= 0.001
    s.on_command_pose(cmd)
    s.on_command_jaw(0.1)
    s.on_pose(0.2, T)
    s.on_image(0.2, np.full((8, 8, 3), 9, np.uint8))
    assert s.sample(0.2) == 3                               # slots at 1/15, 2/15, 3/15 s: two held
    assert s.sample(0.9) == 0 and s.skipped == 1            # inputs 0.7 s old: stale, nothing added
    s.on_instruction("touch the red target")
    assert s.stop(keep=True, now=0.9)                       # still stale: stopping adds nothing
    kind, frames = s.finished.pop()
    assert kind == "keep" and len(frames) == 4 and s.held == 2
    assert all(f["task"] == "touch the red target" for f in frames)
    assert frames[0]["image"].shape == (8, 8, 3) and frames[0]["image"][0, 0, 0] == 7
    assert np.array_equal(frames[0]["action"], frames[0]["state"])   # nothing commanded yet: hold
    assert frames[-1]["action"][2] == np.float32(-0.151) and frames[-1]["action"][9] == np.float32(0.1)
    assert not s.stop(keep=True, now=1.0)
    s.on_image(1.0, np.full((8, 8, 3), 9, np.uint8))
    s.on_pose(1.0, T)
    assert s.start(1.0) and s.sample(1.1) == 1              # slot at 1/15 s since the start
    assert s.stop(keep=False, now=1.15)                     # the slot at 2/15 s is filled before the cut
    kind, frames = s.finished.pop()
    assert kind == "discard" and len(frames) == 3
