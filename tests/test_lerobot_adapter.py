"""LeRobotChunkPolicy: tiny ACT and Diffusion checkpoints trained a few steps by LeRobot's own
`lerobot-train` on a synthetic contract-9 dataset, loaded by the adapter, compared with LeRobot's own
inference path (`select_action` + its processors), and checked against the dataset's ground truth:
the fixture's z and rotation are constant, so an unnormalised action must give them back whatever the
barely-trained network outputs (a normalised output would not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

from surgbot.policies.evaluation.lerobot_adapter import IMAGE_KEY, STATE_KEY, AdapterError, LeRobotChunkPolicy
from tests import vla_fixtures as fx

pytestmark = pytest.mark.sim      # runs lerobot-train twice (~1 min on 2 cores)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
TINY = {
    "act": ["--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.dim_model=32",
            "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1",
            "--policy.n_heads=2", "--policy.chunk_size=6", "--policy.n_action_steps=3"],
    "diffusion": ["--policy.type=diffusion", "--policy.down_dims=[16,32]", "--policy.n_obs_steps=2",
                  "--policy.horizon=8", "--policy.n_action_steps=4", "--policy.drop_n_last_frames=3",
                  "--policy.noise_scheduler_type=DDIM", "--policy.num_inference_steps=3",
                  "--policy.diffusion_step_embed_dim=16", "--policy.spatial_softmax_num_keypoints=8"],
}
ROT6D_AND_Z = [2, 3, 4, 5, 6, 7, 8]     # z, then the 6D rotation: constant in the fixture dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return fx.make_dataset(tmp_path_factory.mktemp("adapter") / "synthetic", episodes=2, frames=20)


def lerobot_train(dataset: Path, out: Path, kind: str) -> Path:
    cmd = [str(Path(sys.executable).with_name("lerobot-train")), f"--dataset.repo_id=local/{dataset.name}",
           f"--dataset.root={dataset}", *TINY[kind], "--policy.device=cpu", "--policy.push_to_hub=false",
           f"--output_dir={out}", "--steps=3", "--batch_size=4", "--num_workers=0", "--eval_freq=0",
           "--save_freq=3", "--log_freq=1", "--wandb.enable=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "checkpoints" / "last" / "pretrained_model"


@pytest.fixture(scope="module")
def act_ckpt(dataset, tmp_path_factory) -> Path:
    return lerobot_train(dataset, tmp_path_factory.mktemp("act") / "run", "act")


@pytest.fixture(scope="module")
def diffusion_ckpt(dataset, tmp_path_factory) -> Path:
    return lerobot_train(dataset, tmp_path_factory.mktemp("diffusion") / "run", "diffusion")


def observation(seed: int = 0):
    rng = np.random.default_rng(seed)
    targets = fx.layout(rng)
    tip = fx.px_to_xyz(fx.H / 2, fx.W / 2)
    state = np.concatenate([tip, fx.ROT6D, [0.0]]).astype(np.float32)
    return fx.render(targets, tip), state, fx.INSTRUCTIONS["red"]


def lerobot_first_action(ckpt: Path, image: np.ndarray, state: np.ndarray, seed: int) -> np.ndarray:
    """LeRobot's own path, written here independently of the adapter: select_action between its processors."""
    cfg = PreTrainedConfig.from_pretrained(ckpt)
    policy = get_policy_class(cfg.type).from_pretrained(ckpt, config=cfg)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(ckpt))
    policy.eval()
    policy.reset()
    obs = {IMAGE_KEY: torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0,
           STATE_KEY: torch.from_numpy(state)[None], "task": "x"}
    torch.manual_seed(seed)
    with torch.inference_mode():
        return post(policy.select_action(pre(obs)))[0].numpy()


def test_act_round_trip_matches_lerobot_and_gives_absolute_actions(act_ckpt):
    policy = LeRobotChunkPolicy(act_ckpt.parents[2])     # the training output folder works too
    md = policy.metadata
    assert md["model"] == "act" and md["action_horizon"] == 6 and md["n_action_steps"] == 3
    assert md["image_size"] == [fx.H, fx.W] and md["state_dim"] == md["action_dim"] == 10
    image, state, text = observation()
    policy.reset()
    chunk = policy.infer(image, state, text)
    assert chunk.dtype == np.float32 and chunk.shape == (6, 10) and np.all(np.isfinite(chunk))
    expected = np.concatenate([[fx.Z_M], fx.ROT6D])
    np.testing.assert_allclose(chunk[:, ROT6D_AND_Z], np.tile(expected, (6, 1)), atol=1e-4)
    np.testing.assert_allclose(chunk[0], lerobot_first_action(act_ckpt, image, state, 0), atol=1e-5)
    # a camera of another size is resized to the training size, not refused
    big = np.ascontiguousarray(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))
    assert policy.infer(big, state, text).shape == (6, 10)


def test_diffusion_round_trip_matches_lerobot_and_keeps_history(diffusion_ckpt):
    policy = LeRobotChunkPolicy(diffusion_ckpt)
    md = policy.metadata
    # the whole chunk from the current observation: horizon 8 - 2 observations + 1
    assert md["model"] == "diffusion" and md["action_horizon"] == 7 and md["n_action_steps"] == 4
    assert md["n_obs_steps"] == 2
    image, state, text = observation(1)
    policy.reset()
    torch.manual_seed(7)
    chunk = policy.infer(image, state, text)
    assert chunk.shape == (7, 10) and chunk.dtype == np.float32
    # MIN_MAX unnormalisation of a constant feature returns the constant exactly
    np.testing.assert_allclose(chunk[:, ROT6D_AND_Z], np.tile(np.concatenate([[fx.Z_M], fx.ROT6D]), (7, 1)),
                               atol=1e-5)
    np.testing.assert_allclose(chunk[0], lerobot_first_action(diffusion_ckpt, image, state, 7), atol=1e-5)
    assert len(policy._history) == 2           # the first observation fills the history, as LeRobot does
    policy.infer(image, state, text)
    policy.reset()
    assert len(policy._history) == 0


def test_bad_input_is_refused_and_changes_nothing(act_ckpt, tmp_path):
    policy = LeRobotChunkPolicy(act_ckpt)
    image, state, text = observation()
    bad = [(image.astype(np.float32), state, text), (image[..., :2], state, text),
           (image, state[:9], text), (image, np.full(10, np.nan, np.float32), text), (image, state, 3)]
    for args in bad:
        with pytest.raises(ValueError):
            policy.infer(*args)
    with pytest.raises(AdapterError, match="not found"):
        LeRobotChunkPolicy(tmp_path / "missing")
    other = tmp_path / "surgvla"
    fx.save_checkpoint(fx.make_dataset(tmp_path / "ds", episodes=1, frames=5), other)
    with pytest.raises(AdapterError, match="'surgvla' policy"):
        LeRobotChunkPolicy(other)
