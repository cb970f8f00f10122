"""`surgbot data videos`: the `sim` world-model stand-in (clips without kinematics, truth apart,
appearance beyond the demos, conditioning export checked against the physics) and the `folder`
backend's validation (wrong fps / size / prompt, corrupt and truncated files -> one line, nothing
written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from surgbot.policies.video.clips import TRUTH_DIR, read_clip, read_truth, write_mp4
from surgbot.policies.video.generate import MIN_FRAMES, generate_sim
from surgbot.sim.tasks import TASK_NAMES
from tests.conftest import dead_pid

pytestmark = pytest.mark.unit
SIZE = (64, 64)
CLI = [sys.executable, "-m", "surgbot.cli", "data", "videos"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "osmesa", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    res = generate_sim("reach", 2, root / "sim", seed=20000, image_size=SIZE, shift="strong",
                       conditioning=root / "cond", progress=False)
    plain = generate_sim("reach", 1, root / "plain", seed=20000, image_size=SIZE, shift="none", progress=False)
    return root, res, plain


def run_cli(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=ENV, timeout=600)


def one_line_error(proc) -> str:
    lines = [s for s in proc.stderr.strip().splitlines() if s.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_sim_clips_carry_no_kinematics_and_keep_the_truth_apart(clips):
    root, res, _ = clips
    out = root / "sim"
    assert res.clips == 2
    names = sorted(p.stem for p in out.glob("*.mp4"))
    assert names == sorted(p.stem for p in out.glob("*.json")) and len(names) == 2
    for name in names:
        meta = json.loads((out / f"{name}.json").read_text())
        assert meta["fps"] == 15 and meta["task"] == "reach" and meta["prompt"]
        assert not {"actions", "states", "action", "state"} & set(meta)
        clip = read_clip(out / f"{name}.mp4", TASK_NAMES, SIZE, MIN_FRAMES)
        truth = read_truth(out, name)
        assert len(truth["actions"]) == len(clip.frames) == len(truth["states"])
        # the first state in NAME.json is the robot's measured state at the clip's first frame
        assert np.allclose(clip.first_state, truth["states"][0], atol=1e-6)
    assert (out / TRUTH_DIR).is_dir() and not any(p.suffix == ".npz" for p in out.iterdir())


def test_sim_appearance_and_style_go_beyond_the_demos(clips):
    root, _, _ = clips
    strong = read_clip(next((root / "sim").glob("*20000.mp4")), TASK_NAMES, SIZE, MIN_FRAMES)
    plain = read_clip(next((root / "plain").glob("*20000.mp4")), TASK_NAMES, SIZE, MIN_FRAMES)
    # same seed, same layout: the look differs well beyond video coding noise (~1-2 grey levels)
    diff = np.abs(strong.frames[0].astype(float) - plain.frames[0].astype(float)).mean()
    assert diff > 8.0, diff
    ts, tp = read_truth(root / "sim", strong.name), read_truth(root / "plain", plain.name)
    style = json.loads(str(ts["style"]))
    demo_range = (0.014, 0.024)                       # sim/tasks/base.py: the demos' expert speeds
    assert not demo_range[0] <= style["speed_mps"] <= demo_range[1]
    assert demo_range[0] <= json.loads(str(tp["style"]))["speed_mps"] <= demo_range[1]


def test_conditioning_trajectory_ends_on_the_touched_target(clips):
    """The 2D tool-tip path (projected by the source) must end inside the affordance mask (the named
    target disc, from a segmentation render): the expert succeeded, so its tip is within 3 mm of the
    disc; a wrong projection would land elsewhere."""
    root, _, _ = clips
    folders = sorted((root / "cond").iterdir())
    assert len(folders) == 2
    for f in folders:
        traj = json.loads((f / "trajectory.json").read_text())
        mask = cv2.imread(str(f / "affordance_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
        first = cv2.imread(str(f / "first_frame.png"))
        assert first.shape[:2] == SIZE and mask.shape == SIZE and mask.sum() > 3
        assert (f / "prompt.txt").read_text().strip() == traj["prompt"]
        assert len(traj["first_state"]) == 10 and traj["frames"] == len(traj["tip_px"])
        u, v = traj["tip_px"][-1]
        ys, xs = np.nonzero(cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)))
        assert np.min(np.hypot(xs - u, ys - v)) <= 1.5, (u, v, xs.mean(), ys.mean())
        u0, v0 = traj["tip_px"][0]
        assert np.hypot(u - u0, v - v0) > 3.0          # the tip moved across the image


def _clip(folder: Path, name: str, n: int = 20, fps: int = 15, size=SIZE, meta: dict | None = None) -> None:
    rng = np.random.default_rng(len(name))
    frames = rng.integers(0, 255, (n, *size, 3), dtype=np.uint8)
    write_mp4(folder / f"{name}.mp4", frames, fps)
    if meta is not None:
        (folder / f"{name}.json").write_text(json.dumps(meta))


def test_a_killed_sim_run_is_resumed_from_its_finished_clips(tmp_path):
    """A run killed after its first clips (its staging folder left behind): the next run with the same
    arguments keeps the finished clips, writes again the one cut short, and ends with the same set a
    fresh run makes; a run with other arguments starts afresh."""
    from surgbot.staging import RESUME_FILE
    fresh = tmp_path / "fresh"
    generate_sim("reach", 3, fresh, seed=20000, image_size=SIZE, progress=False)
    names = sorted(p.stem for p in fresh.glob("*.mp4"))
    out = tmp_path / "clips"
    dead = tmp_path / f".clips.partial-{dead_pid()}"
    dead.mkdir()
    for n in names[:2]:                                     # two clips written, the second cut short
        for src in (fresh / f"{n}.mp4", fresh / f"{n}.json"):
            (dead / src.name).write_bytes(src.read_bytes())
    (dead / TRUTH_DIR).mkdir()
    (dead / TRUTH_DIR / f"{names[0]}.npz").write_bytes((fresh / TRUTH_DIR / f"{names[0]}.npz").read_bytes())
    key = {"task": "reach", "seed": 20000, "image_size": list(SIZE), "shift": "strong", "first_state": True}
    (dead / RESUME_FILE).write_text(json.dumps(key))
    kept_mtime = (dead / f"{names[0]}.mp4").stat().st_mtime_ns
    res = generate_sim("reach", 3, out, seed=20000, image_size=SIZE, progress=False)
    assert res.clips == 3 and not dead.exists()
    assert sorted(p.stem for p in out.glob("*.mp4")) == names and not (out / RESUME_FILE).exists()
    assert (out / f"{names[0]}.mp4").stat().st_mtime_ns == kept_mtime          # kept, not made again
    assert (out / f"{names[1]}.mp4").stat().st_mtime_ns != kept_mtime
    for n in names:
        np.testing.assert_array_equal(read_truth(out, n)["actions"], read_truth(fresh, n)["actions"])
    other = tmp_path / f".other.partial-{dead_pid()}"       # other arguments: not adopted, removed
    other.mkdir()
    (other / RESUME_FILE).write_text(json.dumps({**key, "image_size": [32, 32]}))
    (other / f"{names[0]}.mp4").write_bytes(b"x")
    res = generate_sim("reach", 1, tmp_path / "other", seed=20000, image_size=SIZE, progress=False)
    assert res.clips == 1 and not other.exists()
    assert read_clip(tmp_path / "other" / f"{names[0]}.mp4", TASK_NAMES, SIZE, MIN_FRAMES).frames.shape[1:3] == SIZE


def test_folder_backend_validates_and_imports(tmp_path):
    good = {"prompt": "touch the red target", "fps": 15, "task": "reach"}
    src = tmp_path / "src"
    src.mkdir()
    _clip(src, "a", meta=good)
    _clip(src, "b", meta={**good, "first_state": [0.0] * 3 + [1, 0, 0, 0, 1, 0] + [0.2]})
    out = tmp_path / "ok"
    proc = run_cli("--backend", "folder", "--source", str(src), "--out", str(out), "--image-size", "64x64")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.mp4", "b.json", "b.mp4"]

    cases = {
        "fps": lambda d: _clip(d, "c", fps=10, meta=good),
        "expected 64x64": lambda d: _clip(d, "c", size=(48, 64), meta=good),
        "prompt": lambda d: _clip(d, "c", meta={"fps": 15, "task": "reach"}),
        "NAME.json": lambda d: _clip(d, "c"),
        "shorter": lambda d: _clip(d, "c", n=MIN_FRAMES - 1, meta=good),
        "'task'": lambda d: _clip(d, "c", meta={**good, "task": "suture"}),
        "not a readable video": lambda d: ((d / "c.mp4").write_bytes(os.urandom(4000)),
                                           (d / "c.json").write_text(json.dumps(good))),
        "first_state": lambda d: _clip(d, "c", meta={**good, "first_state": [0.0, float("nan")]}),
    }
    for i, (needle, make) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}"
        bad.mkdir()
        _clip(bad, "a", meta=good)
        make(bad)
        dest = tmp_path / f"out{i}"
        msg = one_line_error(run_cli("--backend", "folder", "--source", str(bad), "--out", str(dest),
                                     "--image-size", "64x64"))
        assert needle in msg, (needle, msg)
        assert not dest.exists()
        assert not any(p.name.startswith(f".out{i}") for p in tmp_path.iterdir())


def test_truncated_mp4_and_empty_folder_are_refused(tmp_path):
    good = {"prompt": "pick up the needle", "fps": 15, "task": "needle_pick"}
    src = tmp_path / "src"
    src.mkdir()
    _clip(src, "a", n=40, meta=good)
    data = (src / "a.mp4").read_bytes()
    (src / "a.mp4").write_bytes(data[: len(data) // 2])
    msg = one_line_error(run_cli("--backend", "folder", "--source", str(src), "--out", str(tmp_path / "o"),
                                 "--image-size", "64x64"))
    assert "a:" in msg and ("readable" in msg or "frames" in msg), msg
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no NAME.mp4" in one_line_error(run_cli("--backend", "folder", "--source", str(empty), "--out",
                                                   str(tmp_path / "o2")))
    assert "needs --task" in one_line_error(run_cli("--out", str(tmp_path / "o3")))
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
