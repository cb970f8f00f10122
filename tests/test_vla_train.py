"""Training: LeRobot's own `lerobot-train --policy.type=surgvla` and `surgbot policy train` (mixing, resume).

Subprocesses (the real command lines), a few steps each on tiny datasets: CI has 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surgbot.policies.vla.runtime import PolicyRuntime
from surgbot.policies.vla.train import mixing_weights
from tests import vla_fixtures as fx
from tests.conftest import REPO

pytestmark = pytest.mark.sim   # multi-process (real command lines), no DDS

BIN = Path(sys.executable).parent
# One OpenMP thread per training process: CI's 2 cores are shared with the test process.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vla_train")
    return (fx.make_dataset(root / "expert", episodes=2, frames=20, seed=0),
            fx.make_dataset(root / "pseudo", episodes=2, frames=20, seed=1))


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def _probe(rt: PolicyRuntime) -> np.ndarray:
    img = fx.render(fx.layout(np.random.default_rng(3)), fx.px_to_xyz(24, 32))
    state = np.concatenate([fx.px_to_xyz(24, 32), fx.ROT6D, [0.0]]).astype(np.float32)
    actions, _ = rt.infer(img, state, fx.INSTRUCTIONS["red"])
    return actions


def test_plugin_distribution_registers_the_policy_type_for_lerobot():
    """LeRobot's own discovery (imports distributions named lerobot_policy_*) finds `surgvla`."""
    code = (
        "from lerobot.configs.policies import PreTrainedConfig\n"
        "assert 'surgvla' not in PreTrainedConfig.get_known_choices()\n"
        "from lerobot.utils.import_utils import register_third_party_plugins\n"
        "register_third_party_plugins()\n"
        "from lerobot.policies.factory import get_policy_class, make_policy_config\n"
        "print(get_policy_class('surgvla').__name__, type(make_policy_config('surgvla', device='cpu')).__name__)\n"
    )
    out = _run([sys.executable, "-c", code], timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["SurgVLAPolicy", "SurgVLAConfig"]


def test_lerobot_train_trains_surgvla_offline_and_the_checkpoint_serves(datasets, tmp_path):
    expert, _ = datasets
    out = tmp_path / "lerobot_out"
    res = _run([str(BIN / "lerobot-train"), "--dataset.repo_id=local/expert", f"--dataset.root={expert}",
                "--policy.type=surgvla", "--policy.device=cpu", "--policy.push_to_hub=false",
                f"--output_dir={out}", "--steps=3", "--batch_size=4", "--num_workers=0", "--eval_freq=0",
                "--wandb.enable=false", "--log_freq=1"])
    assert res.returncode == 0, res.stderr[-3000:]
    model = out / "checkpoints" / "last" / "pretrained_model"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json",
                 "train_config.json"):
        assert (model / name).is_file(), name
    assert json.loads((out / "checkpoints" / "last" / "training_state" / "training_step.json").read_text())[
        "step"] == 3
    rt = PolicyRuntime(out)   # the training output folder resolves to checkpoints/last/pretrained_model
    assert _probe(rt).shape == (16, 10)
    assert sorted(rt.metadata()["instructions"]) == sorted(fx.INSTRUCTIONS.values())


def test_surgbot_policy_train_mixes_datasets_plots_and_resumes(datasets, tmp_path):
    expert, pseudo = datasets
    out = tmp_path / "run"
    cmd = [str(BIN / "surgbot"), "policy", "train", "--dataset", str(expert), "--dataset", str(pseudo),
           "--weight", "3", "--weight", "1", "--out", str(out), "--batch-size", "4", "--save-freq", "2",
           "--log-freq", "1", "--threads", "1", "--goal-memory-max-jaw-rad", "0.3"]
    first = _run(cmd + ["--steps", "2"])
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["weights"] == [3.0, 1.0] and summary["frames"] == [40, 40]
    # the checkpoint it names is the step folder, relative to the run (no machine's absolute path)
    assert summary["checkpoint"] == "checkpoints/000002/pretrained_model"
    assert (out / summary["checkpoint"] / "config.json").is_file()
    assert (out / "loss.png").stat().st_size > 1000
    # the same folder again without --resume is refused (nothing overwritten)
    again = _run(cmd + ["--steps", "2"])
    assert again.returncode == 2 and "--resume" in again.stderr.strip().splitlines()[-1]
    resumed = _run(cmd + ["--steps", "4", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert json.loads((out / "checkpoints" / "last" / "training_state" / "training_step.json").read_text())[
        "step"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002", "000004", "last"]
    assert _probe(PolicyRuntime(out)).shape == (16, 10)
    config = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert config["goal_memory_max_jaw_rad"] == 0.3           # an inference option saved with the checkpoint


def test_dataset_without_the_required_features_is_a_one_line_error(tmp_path):
    feats = {k: v for k, v in fx.FEATURES.items() if k != "observation.state"}
    bad = fx.make_dataset(tmp_path / "nostate", episodes=1, frames=4, features=feats)
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(bad), "--out", str(tmp_path / "o"),
                "--steps", "1"])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("surgbot policy: error:") and "observation.state" in lines[-1]
    assert not (tmp_path / "o").exists()
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(tmp_path / "none"), "--out",
                str(tmp_path / "o"), "--steps", "1"])
    assert res.returncode == 2 and "not a LeRobotDataset" in res.stderr.strip().splitlines()[-1]
    good = fx.make_dataset(tmp_path / "good", episodes=1, frames=4)
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(good), "--out", str(tmp_path / "o"),
                "--steps", "1", "--keypoint-stride", "3"])
    assert res.returncode == 2 and "--keypoint-stride" in res.stderr.strip().splitlines()[-1]
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(good), "--out", str(tmp_path / "o"),
                "--steps", "1", "--goal-memory-max-jaw-rad", "nan"])
    assert res.returncode == 2 and "--goal-memory-max-jaw-rad" in res.stderr.strip().splitlines()[-1]
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(good), "--out", str(tmp_path / "o"),
                "--steps", "1", "--goal-from-image"])               # without a goal head
    assert res.returncode == 2 and "--goal-from-image" in res.stderr.strip().splitlines()[-1]
    for bad in (["--goal-target", "grasp", "--goal-loss-weight", "1", "--in-memory"],
                ["--goal-target", "first_grasp"], ["--goal-encoder"]):   # unknown; without a goal head
        res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(good), "--out", str(tmp_path / "o"),
                    "--steps", "1", *bad])
        assert res.returncode == 2 and bad[0] in res.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_goal_head_options_train_and_are_saved_with_the_checkpoint(tmp_path):
    """--in-memory --goal-loss-weight --goal-encoder --goal-target first_grasp: the goal loss is logged
    and the options travel in config.json (the goal memory reads goal_target at inference)."""
    data = fx.make_dataset(tmp_path / "d", episodes=2, frames=12)
    out = tmp_path / "run"
    res = _run([str(BIN / "surgbot"), "policy", "train", "--dataset", str(data), "--out", str(out), "--steps", "2",
                "--batch-size", "4", "--log-freq", "1", "--threads", "1", "--in-memory", "--goal-loss-weight", "1",
                "--goal-encoder", "--goal-target", "first_grasp"])
    assert res.returncode == 0, res.stderr[-3000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["goal_l1_loss"]) for r in log)
    config = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert config["goal_target"] == "first_grasp" and config["goal_encoder"] is True
    assert config["goal_loss_weight"] == 1.0
    assert _probe(PolicyRuntime(out)).shape == (16, 10)


def test_mixing_weights_draw_each_dataset_with_its_share():
    """WeightedRandomSampler over the per-sample weights: dataset shares follow W_i / sum(W), whatever the sizes."""
    lengths, weights = [1000, 50, 200], [0.5, 0.3, 0.2]
    w = mixing_weights(lengths, weights)
    assert w.shape == (sum(lengths),) and abs(float(w.sum()) - 1.0) < 1e-9
    draws = torch.multinomial(w, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    edges = np.cumsum([0] + lengths)
    shares = [float(((draws >= a) & (draws < b)).float().mean()) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    # binomial std at n=2e5 is <= 0.0012: 0.01 is > 8 sigma
    np.testing.assert_allclose(shares, weights, atol=0.01)


SCENE_ARGS = ["policy", "train", "--steps", "2", "--batch-size", "4", "--threads", "1", "--in-memory",
              "--scene-input", "--scene-noise-mm", "1"]


def _with_layout_seeds(data: Path) -> Path:
    (data / "meta" / "surgbot.json").write_text(json.dumps({"task": "reach", "episodes": [
        {"episode_index": i, "seed": 10 + i, "task": "reach", "target": c} for i, c in enumerate(("red", "blue"))]}))
    return data


@pytest.fixture(scope="module")
def scene_bound(tmp_path_factory) -> tuple[list[str], Path]:
    """A --scene-input checkpoint trained from the real reach environment's layouts: (its command, run)."""
    root = tmp_path_factory.mktemp("scene_bound")
    data = _with_layout_seeds(fx.make_dataset(root / "d", episodes=2, frames=12))
    args = [str(BIN / "surgbot"), *SCENE_ARGS, "--dataset", str(data)]
    res = _run(args + ["--out", str(root / "run")])
    assert res.returncode == 0, res.stderr[-3000:]
    return args, root / "run"


def test_scene_input_trains_from_layout_seeds_and_the_runtime_requires_it(scene_bound, tmp_path):
    """--scene-input: each episode's scene summary is rebuilt from the sidecar's layout seed (the real reach
    environment), the checkpoint says so in config.json and metadata, and its runtime refuses to act
    without a finite summary of the right length; a dataset without seeds is a one-line error."""
    args, out = scene_bound
    no_seeds = fx.make_dataset(tmp_path / "no_seeds", episodes=2, frames=12)
    res = _run([str(BIN / "surgbot"), *SCENE_ARGS, "--dataset", str(no_seeds), "--out", str(tmp_path / "x")])
    assert res.returncode != 0 and "--scene-input" in res.stderr and "surgbot.json" in res.stderr
    config = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert config["scene_dim"] == 8 and config["scene_noise_m"] == pytest.approx(0.001)
    rt = PolicyRuntime(out)
    assert rt.metadata()["environment_state_dim"] == 8
    with pytest.raises(ValueError, match="environment_state"):
        _probe(rt)
    img = fx.render(fx.layout(np.random.default_rng(3)), fx.px_to_xyz(24, 32))
    state = np.concatenate([fx.px_to_xyz(24, 32), fx.ROT6D, [0.0]]).astype(np.float32)
    for bad in (np.zeros(5, np.float32), np.full(8, np.nan, np.float32)):
        with pytest.raises(ValueError, match="environment_state"):
            rt.infer(img, state, fx.INSTRUCTIONS["red"], bad)
    actions, _ = rt.infer(img, state, fx.INSTRUCTIONS["red"], np.zeros(8, np.float32))
    assert actions.shape == (16, 10) and np.all(np.isfinite(actions))
    no_input = [str(BIN / "surgbot"), *SCENE_ARGS[:-3], *args[-2:]]        # without --scene-input
    res = _run(no_input + ["--scene-locator", "--out", str(tmp_path / "no_input")])
    assert res.returncode != 0 and "need --scene-input" in res.stderr
    res = _run(args + ["--scene-locator", "--scene-relative", "--scene-anchored", "--scene-anchored-yaw",
                       "--jaw-absolute", "--log-freq", "1", "--out", str(tmp_path / "locator")])
    assert res.returncode == 0, res.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "locator" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["scene_l1_loss"]) for r in log)
    rt = PolicyRuntime(tmp_path / "locator")               # locates the scene itself: nothing from the simulator
    assert rt.metadata()["environment_state_dim"] == 0 and _probe(rt).shape == (16, 10)
    assert rt.config.scene_anchored and rt.config.scene_relative and rt.config.scene_anchored_yaw
    assert rt.config.jaw_absolute
    assert len(rt.config.scene_world_axes) == 6                 # the twin's, saved with the checkpoint
    res = _run(no_input + ["--scene-anchored", "--out", str(tmp_path / "no_input")])
    assert res.returncode != 0 and "need --scene-input" in res.stderr
    res = _run(args + ["--scene-anchored-yaw", "--out", str(tmp_path / "no_anchored")])
    assert res.returncode != 0 and "needs --scene-anchored" in res.stderr.strip().splitlines()[-1]


LOCATOR_CMD = [str(BIN / "surgbot"), "policy", "train-locator", "--steps", "4", "--needle-layouts", "1",
               "--other-layouts", "1", "--peg-layouts", "2", "--val-layouts", "1", "--eval-every", "2",
               "--batch-size", "4", "--orientation-weight", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def located(scene_bound, tmp_path_factory) -> Path:
    """`train-locator` run on the scene bound: its output folder."""
    out = tmp_path_factory.mktemp("located") / "loc"
    res = _run(LOCATOR_CMD + ["--bound", str(scene_bound[1]), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_train_locator_joins_a_locator_to_the_bound_action_head(scene_bound, located, tmp_path):
    """`surgbot policy train-locator`: a locator trained on first frames rendered from the real environments
    (needle_pick, reach, peg_transfer) joins the bound; the joined checkpoint keeps the bound's action head
    weight for weight, needs nothing from the simulator, and logs the validation error; a checkpoint
    without the scene input, one that has a locator already, a finished --out and bad counts are one-line
    errors."""
    _, bound = scene_bound
    out, cmd = located, LOCATOR_CMD
    summary = json.loads((out / "train_summary.json").read_text())
    assert [r["step"] for r in summary["log"]] == [2, 4]
    # 1 needle layout + 3 reach colours + the 2 peg layouts' colours, one first frame each
    assert summary["training_frames"] >= 6
    assert all(np.isfinite(r["needle_pick_grasp_mm_median"]) and np.isfinite(r["reach_grasp_mm_median"])
               and 0 <= r["needle_pick_orientation_deg_median"] <= 90 for r in summary["log"])
    # peg_transfer is validated too: the block, its yaw and the target (a point of its own)
    assert all(np.isfinite(r["peg_transfer_grasp_mm_median"]) and np.isfinite(r["peg_transfer_place_mm_median"])
               and 0 <= r["peg_transfer_orientation_deg_median"] <= 45 for r in summary["log"])
    assert not any("needle_pick_place" in k or "reach_place" in k for k in summary["log"][0])
    assert summary["config"]["orientation_loss_weight"] == 2.0 and summary["config"]["seed"] == 3
    assert (summary["config"]["other_layouts"], summary["config"]["peg_layouts"]) == (1, 2)
    # anchors and glimpse by default: anchor 0's distance from the needle's arc middle in the image is logged
    assert all(np.isfinite(r["needle_pick_anchor_px_median"]) for r in summary["log"])
    joined, original = PolicyRuntime(out), PolicyRuntime(bound)
    assert joined.config.scene_locator and joined.metadata()["environment_state_dim"] == 0
    assert joined.config.scene_locator_glimpse_px == summary["config"]["glimpse_px"] == 24
    theirs = original.policy.state_dict()
    mine = joined.policy.state_dict()
    assert {k for k in mine if not k.startswith("model.scene_locator.")} == set(theirs)
    assert all(torch.equal(mine[k], v) for k, v in theirs.items())
    assert _probe(joined).shape == (16, 10)
    plain = fx.save_checkpoint(fx.make_dataset(tmp_path / "d", episodes=2, frames=12), tmp_path / "plain")
    for args, error in ((["--bound", str(out), "--out", str(tmp_path / "a")], "already has a scene locator"),
                        (["--bound", str(plain), "--out", str(tmp_path / "p")], "not trained with --scene-input"),
                        (["--bound", str(bound), "--out", str(out)], "exists"),
                        (["--bound", str(tmp_path / "missing"), "--out", str(tmp_path / "b")], "not found"),
                        (["--bound", str(bound), "--out", str(tmp_path / "c"), "--steps", "0"], "steps"),
                        (["--bound", str(bound), "--out", str(tmp_path / "g"), "--glimpse-px", "-1"], "glimpse_px"),
                        (["--bound", str(bound), "--out", str(tmp_path / "h"), "--glimpse-px", "500"], "larger than")):
        res = _run(cmd + args)                              # (a later --steps overrides cmd's)
        assert res.returncode != 0 and error in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]


def test_a_locator_trained_on_finer_frames_asks_for_them(scene_bound, tmp_path):
    """`train-locator --frame-size`: first frames rendered at twice the encoder's size, the glimpse reading
    them at that resolution; the joined checkpoint asks for such frames (metadata image_size), acts on
    them and refuses the recorded size; a frame whose crop is not the encoder's image scaled, and a
    malformed size, are one-line errors."""
    _, bound = scene_bound
    h, w = PolicyRuntime(bound).config.image_size
    out = tmp_path / "fine"
    res = _run(LOCATOR_CMD + ["--bound", str(bound), "--out", str(out), "--frame-size", f"{2 * h}x{2 * w}",
                              "--shift-px", "0", "--glimpse-px", "8"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["config"]["frame_size"] == [2 * h, 2 * w] and summary["config"]["shift_px"] == 0
    assert all(np.isfinite(r["peg_transfer_grasp_mm_median"]) for r in summary["log"])
    joined = PolicyRuntime(out)
    assert joined.config.scene_locator_glimpse_scale == 2.0 and joined.config.scene_locator_glimpse_px == 8
    assert joined.metadata()["image_size"] == [2 * h, 2 * w]
    state = np.concatenate([fx.px_to_xyz(24, 32), fx.ROT6D, [0.0]]).astype(np.float32)
    actions, _ = joined.infer(np.full((2 * h, 2 * w, 3), 90, np.uint8), state, fx.INSTRUCTIONS["red"])
    assert actions.shape == (16, 10) and np.all(np.isfinite(actions))
    with pytest.raises(ValueError, match="image must be uint8"):
        joined.infer(np.full((h, w, 3), 90, np.uint8), state, fx.INSTRUCTIONS["red"])
    for size, error in ((f"{2 * h}x{3 * w}", "not the encoder's image"), (f"{h}x", "expected HxW")):
        res = _run(LOCATOR_CMD + ["--bound", str(bound), "--out", str(tmp_path / size), "--frame-size", size])
        assert res.returncode != 0 and error in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]


def test_join_locator_puts_a_trained_locator_onto_a_bound_with_the_same_normalisation(scene_bound, located,
                                                                                     tmp_path):
    """`surgbot policy join-locator`: the locator of a joined checkpoint put onto a bound with the same
    normalisation (an action head retrained on the same data) needs no locator training: onto its own
    bound it gives the joined checkpoint weight for weight, and the summary says where the locator came
    from and how it was trained.  A bound whose normalisation stats differ, a source without a locator, a
    bound that already has one and a finished --out are one-line errors that write nothing."""
    from safetensors.torch import load_file, save_file

    _, bound = scene_bound
    cmd = [str(BIN / "surgbot"), "policy", "join-locator"]
    out = tmp_path / "j"
    res = _run(cmd + ["--bound", str(bound), "--locator-from", str(located), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["locator_from"].endswith("pretrained_model") and summary["locator_training"]["log"]
    mine, theirs = PolicyRuntime(out), PolicyRuntime(located)
    assert mine.config.scene_locator and mine.config.scene_locator_glimpse_px == 24
    a, b = mine.policy.state_dict(), theirs.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = tmp_path / "other"                      # the same bound, one image stat changed
    shutil.copytree(PolicyRuntime(bound).path, other)
    norm = next(other.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))
    stats = load_file(norm)
    key = next(k for k in stats if "image" in k and k.endswith("mean"))
    stats[key] = stats[key] + 0.1
    save_file(stats, norm)
    for args, error in ((["--bound", str(other), "--locator-from", str(located)], "stats differ"),
                        (["--bound", str(bound), "--locator-from", str(bound)], "has no scene locator"),
                        (["--bound", str(located), "--locator-from", str(located)], "already has a scene locator"),
                        (["--bound", str(tmp_path / "missing"), "--locator-from", str(located)], "not found")):
        dest = tmp_path / f"e{len(list(tmp_path.iterdir()))}"
        res = _run(cmd + args + ["--out", str(dest)])
        assert res.returncode != 0 and error in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
        assert not dest.exists()
    res = _run(cmd + ["--bound", str(bound), "--locator-from", str(located), "--out", str(out)])
    assert res.returncode != 0 and "exists" in res.stderr.strip().splitlines()[-1]


def test_join_locator_averages_several_locators_and_strip_removes_them_all(scene_bound, located, tmp_path):
    """`join-locator --locator-from A --locator-from B`: both locators on the bound (scene_locator_extra 1),
    weight for weight; the scene estimate is their mean (the yaw pair rescaled to their mean length);
    strip-locator gives back the bound without either.  Locators that read frames differently, and more
    than four, are one-line errors that write nothing."""
    from safetensors.torch import load_file, save_file

    from surgbot.policies.vla.configuration_surgvla import SCENE_ORIENTATION, SCENE_POSITIONS

    _, bound = scene_bound
    src = PolicyRuntime(located).path
    other = tmp_path / "other_locator"                  # a second locator: the first's weights moved
    shutil.copytree(src, other)
    weights = load_file(other / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    for k, v in weights.items():
        if k.startswith("model.scene_locator.") and v.is_floating_point():
            weights[k] = v + 0.05 * torch.randn(v.shape, generator=gen)
    save_file(weights, other / "model.safetensors")
    cmd = [str(BIN / "surgbot"), "policy", "join-locator", "--bound", str(bound)]
    out = tmp_path / "two"
    res = _run(cmd + ["--locator-from", str(located), "--locator-from", str(other), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["locators"] == 2 and len(summary["locators_from"]) == 2
    joined, first, second = PolicyRuntime(out), PolicyRuntime(located), PolicyRuntime(other)
    assert joined.config.scene_locator_extra == 1
    mine = joined.policy.state_dict()
    for name, rt in (("model.scene_locator.", first), ("model.scene_locator_extra.0.", second)):
        theirs = {k[len("model.scene_locator."):]: v for k, v in rt.policy.state_dict().items()
                  if k.startswith("model.scene_locator.")}
        assert all(torch.equal(mine[name + k], v) for k, v in theirs.items())

    def scene(rt):
        _probe(rt)
        return rt.policy._scene_memory[0].clone()
    a, b, j = scene(first), scene(second), scene(joined)
    assert not torch.allclose(a, b)
    pos = [i for lo, hi in SCENE_POSITIONS for i in range(lo, hi)]
    mean = (a + b) / 2
    assert torch.allclose(j[pos], mean[pos], atol=1e-5)
    o = SCENE_ORIENTATION
    assert torch.allclose(j[o].norm(), (a[o].norm() + b[o].norm()) / 2, atol=1e-5)
    assert torch.allclose(j[o] / j[o].norm(), mean[o] / mean[o].norm(), atol=1e-5)
    stripped = tmp_path / "stripped"
    res = _run([str(BIN / "surgbot"), "policy", "strip-locator", "--checkpoint", str(out), "--out", str(stripped)])
    assert res.returncode == 0, res.stderr[-3000:]
    rt = PolicyRuntime(stripped)
    assert not rt.config.scene_locator and rt.config.scene_locator_extra == 0
    assert rt.policy.state_dict().keys() == PolicyRuntime(bound).policy.state_dict().keys()
    finer = tmp_path / "finer"                          # one that says it reads larger frames
    shutil.copytree(src, finer)
    config = json.loads((finer / "config.json").read_text())
    config["frame_size"] = [2 * v for v in config["image_size"]]
    (finer / "config.json").write_text(json.dumps(config))
    for extra, error in ((["--locator-from", str(located), "--locator-from", str(finer)], "reads frames unlike"),
                         (["--locator-from", str(located)] * 5, "at most 4")):
        dest = tmp_path / f"e{len(list(tmp_path.iterdir()))}"
        res = _run(cmd + extra + ["--out", str(dest)])
        assert res.returncode != 0 and error in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
        assert not dest.exists()


def test_strip_locator_gives_back_the_bound_inside_a_joined_checkpoint(scene_bound, located, tmp_path):
    """`surgbot policy strip-locator`: the joined checkpoint's action head as a bound again (the head that
    takes the simulator's summary), weight for weight the bound the locator was joined to, with its
    processors; a checkpoint without a locator and a finished --out are one-line errors that write nothing."""
    _, bound = scene_bound
    cmd = [str(BIN / "surgbot"), "policy", "strip-locator"]
    out = tmp_path / "s"
    res = _run(cmd + ["--checkpoint", str(located), "--out", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["stripped_from"].endswith("pretrained_model")
    mine, theirs = PolicyRuntime(out), PolicyRuntime(bound)
    assert not mine.config.scene_locator and mine.config.scene_locator_glimpse_px == 0
    assert mine.config.frame_size is None and mine.config.scene_dim == theirs.config.scene_dim
    a, b = mine.policy.state_dict(), theirs.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(f.name for f in Path(mine.path).glob("policy_*")) == sorted(
        f.name for f in Path(theirs.path).glob("policy_*"))
    for args, error in ((["--checkpoint", str(bound)], "has no scene locator"),
                        (["--checkpoint", str(tmp_path / "missing")], "not found")):
        dest = tmp_path / f"e{len(list(tmp_path.iterdir()))}"
        res = _run(cmd + args + ["--out", str(dest)])
        assert res.returncode != 0 and error in res.stderr.strip().splitlines()[-1], res.stderr[-2000:]
        assert not dest.exists()
    res = _run(cmd + ["--checkpoint", str(located), "--out", str(out)])
    assert res.returncode != 0 and "exists" in res.stderr.strip().splitlines()[-1]
