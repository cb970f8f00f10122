"""Inverse dynamics model: the fusion on exact synthetic data, a tiny IDM trained on a tiny
recording (loss falls), `surgbot idm label` writing a LeRobotDataset that loads (features, frame
count, source pseudo, state/action consistency), the truth file never read, low-confidence frames
dropped, resume, bad input, and the result mixing with an expert dataset in `surgbot policy train`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from surgbot.policies.data.dataset import ACTION_KEY, IMAGE_KEY, SIDECAR, STATE_KEY, features
from surgbot.policies.data.record import record_expert
from surgbot.policies.idm.configuration_idm import IDMConfig
from surgbot.policies.idm.fuse import fuse, segments
from surgbot.policies.idm.label import label, label_clip
from surgbot.policies.idm.modeling_idm import IDMModel, load_idm
from surgbot.policies.idm.processor_idm import IDMStats
from surgbot.policies.idm.train import train
from surgbot.policies.video.clips import TRUTH_DIR, write_mp4
from surgbot.policies.video.generate import generate_sim

pytestmark = pytest.mark.unit
SIZE = (64, 64)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "osmesa", "OMP_NUM_THREADS": "1", "SVT_LOG": "1"}
CLI = [sys.executable, "-m", "surgbot.cli", "idm"]
# tiny and fast: the real IDM is IDMConfig() (96x96, 0.6 M parameters)
TINY = dict(image_size=(48, 48), channels=(16, 16, 32, 32), num_keypoints=16, hidden_dim=128, batch_size=16,
            val_share=0.0, lr=2e-3)
TINY_STEPS = 300
LOSS_FACTOR = 2.0          # the tiny IDM's loss falls at least this much in TINY_STEPS (measured: ~4x)


# ------------------------------------------------------------------ fusion on exact data
def _trajectory(T: int, rng) -> np.ndarray:
    x = np.cumsum(rng.normal(0, 1e-3, (T, 10)), axis=0)
    return x + np.array([0.01, 0.02, -0.15, 1, 0, 0, 0, 1, 0, 0.3])


def test_fusion_recovers_an_exact_trajectory_and_flags_a_bad_window():
    rng = np.random.default_rng(0)
    T, k = 60, 16
    x = _trajectory(T, rng)
    off = np.stack([x[t + 1:t + 1 + k] - x[t] for t in range(T - k)])
    bias = np.array([0.004, -0.003, 0.002] + [0.0] * 7)            # the pose head's view bias
    sig_d, sig_s = np.full((k, 10), 5e-4), np.full(10, 2e-3)
    fused = fuse(x + bias, off, sig_s, sig_d, first_state=x[0])
    # the anchor removes the bias: exact at the anchor; farther on the (soft) chain of offsets lets
    # a few % of it leak in, as the weights say (offsets 5e-4 vs poses 4 x 2e-3)
    assert np.abs(fused.poses[0] - x[0]).max() < 1e-5
    assert np.abs(fused.poses - x).max() < 0.05 * np.abs(bias).max()
    assert np.all(fused.confidence > 0.999)
    no_anchor = fuse(x + bias, off, sig_s, sig_d, first_state=None)
    assert np.allclose(no_anchor.poses - x, bias, atol=1e-6)        # only the absolute pose is unknown
    bad = off.copy()
    bad[30] += 0.01                                                 # one window 10 mm off (20 sigma)
    flagged = fuse(x + bias, bad, sig_s, sig_d, first_state=x[0])
    low = np.nonzero(flagged.confidence < 0.5)[0]
    assert len(low) > 0 and low.min() >= 30 - k and low.max() <= 30 + k   # only near that window
    assert np.all(flagged.confidence[:10] > 0.9)
    assert segments(np.array([1, 1, 0, 1, 1, 1, 0, 1], bool), 2) == [(0, 2), (3, 6)]


# ------------------------------------------------------------------ recorded data, tiny IDM
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("idm")
    # success_tail_s 0: the fixture and its thresholds were made on demonstrations cut at the success
    record_expert("reach", 2, root / "expert", seed=0, image_size=SIZE, progress=False, success_tail_s=0.0)
    cfg = IDMConfig(steps=TINY_STEPS, **TINY)
    summary = train([root / "expert"], root / "ckpt", cfg, save_freq=150, progress=False)
    generate_sim("reach", 2, root / "clips", seed=100000, image_size=SIZE, shift="none", progress=False)
    return root, summary


def test_tiny_idm_loss_falls_and_checkpoint_loads(tiny):
    root, summary = tiny
    assert summary["steps"] == TINY_STEPS
    assert summary["loss_last"] < summary["loss_first"] / LOSS_FACTOR, summary
    ckpt = root / "ckpt"
    for name in ("model.safetensors", "config.json", "stats.safetensors", "metrics.json", "loss.png",
                 "train_log.jsonl", "training_state.pt"):
        assert (ckpt / name).is_file(), name
    model = load_idm(ckpt)
    assert model.cfg.k == 16 and model.cfg.image_size == (48, 48)
    assert np.all(model.stats.sigma_delta > 0) and model.stats.sigma_delta.shape == (16, 10)


def test_resume_continues_from_the_saved_step(tiny, tmp_path):
    root, _ = tiny
    out = tmp_path / "ckpt"
    train([root / "expert"], out, IDMConfig(steps=40, **TINY), save_freq=20, log_freq=10, progress=False)
    summary = train([root / "expert"], out, IDMConfig(steps=60, **TINY), resume=True, save_freq=20, log_freq=10,
                    progress=False)
    steps = [json.loads(s)["step"] for s in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40, 50, 60] and summary["steps"] == 60


def _load(out: Path) -> LeRobotDataset:
    return LeRobotDataset("local/" + out.name, root=out)


def test_label_writes_a_pseudo_dataset_lerobot_loads(tiny, tmp_path):
    root, _ = tiny
    out = tmp_path / "pseudo"
    res = label(root / "clips", root / "ckpt", out, min_confidence=0.0, progress=False)
    ds = _load(out)
    clip_frames = sum(len(np.load(p)["actions"]) for p in (root / "clips" / TRUTH_DIR).glob("*.npz"))
    assert res.frames_dropped == 0 and len(ds) == res.frames == clip_frames - 2   # last frame of each clip
    assert ds.fps == 15 and ds.num_episodes == 2
    for key, spec in features(*SIZE).items():
        assert ds.features[key]["dtype"] == spec["dtype"] and tuple(ds.features[key]["shape"]) == spec["shape"]
    side = json.loads((out / SIDECAR).read_text())
    assert side["source"] == "pseudo" and len(side["idm_checkpoint"]["id"]) == 12
    assert all(len(e["confidence"]) == e["length"] for e in side["episodes"])
    # state_t = pose at t, action_t = pose at t+1: consistent inside every episode
    table = pd.concat(pd.read_parquet(p) for p in sorted((out / "data").rglob("*.parquet")))
    for _, ep in table.groupby("episode_index"):
        s, a = np.stack(ep[STATE_KEY].to_numpy()), np.stack(ep[ACTION_KEY].to_numpy())
        assert np.allclose(a[:-1], s[1:], atol=1e-6)
    item = ds[0]
    assert item[IMAGE_KEY].shape == (3, *SIZE) and item["task"]


def test_label_never_reads_the_truth(tiny, tmp_path):
    root, _ = tiny
    clips = tmp_path / "clips"
    shutil.copytree(root / "clips", clips)
    a = label(clips, root / "ckpt", tmp_path / "a", min_confidence=0.0, progress=False)
    shutil.rmtree(clips / TRUTH_DIR)
    b = label(clips, root / "ckpt", tmp_path / "b", min_confidence=0.0, progress=False)
    assert a.frames == b.frames
    ta = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "a" / "data").rglob("*.parquet")))
    tb = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "b" / "data").rglob("*.parquet")))
    assert np.array_equal(np.stack(ta[ACTION_KEY].to_numpy()), np.stack(tb[ACTION_KEY].to_numpy()))


def test_low_confidence_frames_are_dropped(tiny, tmp_path):
    """A clip spliced from two episodes: the windows across the cut see a jump no motion explains,
    disagree with their neighbours, and those frames go; frames far from the cut stay."""
    root, _ = tiny
    from surgbot.policies.video.clips import read_clip
    from surgbot.sim.tasks import TASK_NAMES
    mp4s = sorted((root / "clips").glob("*.mp4"))
    a, b = (read_clip(p, TASK_NAMES, SIZE, 17) for p in mp4s)
    cut = min(len(a.frames), len(b.frames)) // 2
    frames = np.concatenate([a.frames[:cut], b.frames[cut:]])
    src = tmp_path / "spliced"
    src.mkdir()
    write_mp4(src / "s.mp4", frames)
    (src / "s.json").write_text(json.dumps({"prompt": a.meta.prompt, "fps": 15, "task": "reach",
                                            "first_state": a.meta.first_state}))
    model = load_idm(root / "ckpt")
    # `label` sees the clip as decoded from the mp4 (a lossy encode of `frames`): so does the expectation
    decoded = read_clip(src / "s.mp4", TASK_NAMES, SIZE, 17)
    conf = label_clip(model, decoded.frames, a.first_state).confidence
    res = label(src, root / "ckpt", tmp_path / "out", min_confidence=0.5, progress=False)
    k = model.cfg.k
    kept = sum(e - s for s, e in segments(conf >= 0.5, k))          # runs shorter than k go too
    dropped = np.nonzero(conf < 0.5)[0]
    assert len(dropped) > 0
    assert res.frames_dropped == len(decoded.frames) - 1 - kept
    assert np.all(np.abs(dropped - cut) <= 2 * k), (dropped, cut)
    side = json.loads((tmp_path / "out" / SIDECAR).read_text())
    assert side["frames_dropped"] == res.frames_dropped
    assert all(min(e["confidence"]) >= 0.5 for e in side["episodes"])


def test_pseudo_and_expert_datasets_train_together(tiny, tmp_path):
    root, _ = tiny
    label(root / "clips", root / "ckpt", tmp_path / "pseudo", min_confidence=0.0, progress=False)
    proc = subprocess.run([sys.executable, "-m", "surgbot.cli", "policy", "train", "--dataset", str(root / "expert"),
                           "--dataset", str(tmp_path / "pseudo"), "--out", str(tmp_path / "vla"), "--steps", "2",
                           "--batch-size", "4", "--threads", "1", "--save-freq", "2"],
                          capture_output=True, text=True, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and len(summary["frames"]) == 2


# ------------------------------------------------------------------ bad input
def one_line_error(proc) -> str:
    lines = [s for s in proc.stderr.strip().splitlines() if s.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_input_is_one_line_and_leaves_nothing(tiny, tmp_path):
    root, _ = tiny
    ckpt = root / "ckpt"

    def label_cli(videos, idm=ckpt):
        out = tmp_path / "out"
        msg = one_line_error(subprocess.run(CLI + ["label", "--videos", str(videos), "--idm", str(idm), "--out",
                                                   str(out)], capture_output=True, text=True, env=ENV, timeout=600))
        assert not out.exists() and not any(p.name.startswith(".out.") for p in tmp_path.iterdir())
        return msg

    good = json.loads(next((root / "clips").glob("*.json")).read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no NAME.mp4" in label_cli(empty)
    short = tmp_path / "short"
    short.mkdir()
    write_mp4(short / "c.mp4", np.zeros((10, *SIZE, 3), np.uint8))
    (short / "c.json").write_text(json.dumps(good))
    assert "shorter" in label_cli(short)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(root / "clips", corrupt)
    victim = sorted(corrupt.glob("*.mp4"))[1]
    victim.write_bytes(os.urandom(3000))
    assert victim.stem in label_cli(corrupt)
    truncated = tmp_path / "truncated"
    shutil.copytree(root / "clips", truncated)
    victim = sorted(truncated.glob("*.mp4"))[0]
    victim.write_bytes(victim.read_bytes()[:1500])
    assert victim.stem in label_cli(truncated)
    # an IDM for a 7-d action (another robot) is refused before anything is read
    cfg = IDMConfig(pose_dim=7, **TINY)
    zeros = np.zeros
    stats = IDMStats(zeros(7, np.float32), np.ones(7, np.float32), zeros((16, 7), np.float32),
                     np.ones((16, 7), np.float32), np.ones((16, 7), np.float32), np.ones(7, np.float32))
    torch.manual_seed(0)
    IDMModel(cfg, stats).save(tmp_path / "idm7")
    assert "7-d actions" in label_cli(root / "clips", tmp_path / "idm7")
    assert "not an IDM checkpoint" in label_cli(root / "clips", tmp_path / "empty")
    # training: a folder that is not a dataset
    msg = one_line_error(subprocess.run(CLI + ["train", "--dataset", str(empty), "--out", str(tmp_path / "t")],
                                        capture_output=True, text=True, env=ENV, timeout=600))
    assert "not a LeRobotDataset" in msg and not (tmp_path / "t").exists()
