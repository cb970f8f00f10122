"""LeRobot's ACT and Diffusion Policy behind the evaluation harness's `ChunkPolicy` protocol.

`LeRobotChunkPolicy(path)` loads a `pretrained_model` folder that
`lerobot-train --policy.type={act,diffusion}` wrote (or a training output
folder: `checkpoints/last/pretrained_model` is found), offline, with
LeRobot's own `from_pretrained` and `make_pre_post_processors`, and answers

    metadata: dict
    reset() -> None
    infer(image uint8 HxWx3, state float32[10], instruction str) -> float32 [H, 10]

with the policy's whole action chunk as absolute 10-d actions (contract
section 7), unnormalised by the checkpoint's own postprocessor.  The image
goes in as float CHW in [0, 1] (LeRobot's camera convention), resized to the
size the policy was trained on when the camera differs.  Both baselines are
single-task and language-free: the instruction is checked and ignored.

Diffusion Policy conditions on the last `n_obs_steps` observations: the
adapter keeps them itself (the first one repeated at an episode start, as
LeRobot's `populate_queues` does), so with `n_obs_steps > 1` it expects an
`infer` call on every control tick.  The chunk it returns starts at the
current observation and runs to the end of the denoised horizon
(`horizon - n_obs_steps + 1` actions); `metadata["n_action_steps"]` is how
many of them the policy was trained to play before asking again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

IMAGE_KEY = "observation.images.endoscope"     # contract section 9
STATE_KEY = "observation.state"
ACTION_KEY = "action"
OBS_IMAGES = "observation.images"             # Diffusion's stacked-camera key
POSE_DIM = 10                                 # xyz + 6D rotation + jaw (contract section 7)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SUPPORTED_TYPES = ("act", "diffusion")
CONTROL_FPS = 15
MAX_INSTRUCTION_CHARS = 512


class AdapterError(ValueError):
    """A folder that is not a usable ACT/Diffusion checkpoint for this stack."""


def resolve_pretrained(path: str | Path) -> Path:
    """A `pretrained_model` folder, or a training output folder -> its `checkpoints/last/pretrained_model`."""
    p = Path(path).expanduser()
    for c in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        if (c / CONFIG_FILE).is_file() and (c / WEIGHTS_FILE).is_file():
            return c
    if not p.exists():
        raise AdapterError(f"checkpoint {p} not found")
    raise AdapterError(f"{p} holds no {CONFIG_FILE} + {WEIGHTS_FILE} (nor checkpoints/last/pretrained_model)")


def checkpoint_type(path: Path) -> str:
    try:
        return str(json.loads((path / CONFIG_FILE).read_text())["type"])
    except (OSError, ValueError, KeyError) as exc:
        raise AdapterError(f"{path / CONFIG_FILE}: unreadable policy config ({exc})") from None


def check_inputs(image: np.ndarray, state: np.ndarray, instruction: str) -> None:
    """ValueError (nothing changed) unless image is uint8 HxWx3, state finite float [10], instruction a string."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None))
        raise ValueError(f"image must be uint8 HxWx3, got {got[0]} {got[1]}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"image {image.shape[:2]} is too small")
    if not isinstance(state, np.ndarray) or state.shape != (POSE_DIM,) or state.dtype.kind != "f":
        got = (getattr(state, "dtype", type(state).__name__), getattr(state, "shape", None))
        raise ValueError(f"state must be float [{POSE_DIM}], got {got[0]} {got[1]}")
    if not np.all(np.isfinite(state)):
        raise ValueError("state has NaN/Inf")
    if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ValueError(f"instruction must be a string of at most {MAX_INSTRUCTION_CHARS} characters")


class LeRobotChunkPolicy:
    """One ACT or Diffusion checkpoint as a `ChunkPolicy` (see module doc)."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = resolve_pretrained(path)
        kind = checkpoint_type(self.path)
        if kind not in SUPPORTED_TYPES:
            raise AdapterError(f"{self.path} is a '{kind}' policy; this adapter loads {', '.join(SUPPORTED_TYPES)}")
        with contextlib.redirect_stdout(sys.stderr):   # LeRobot prints while loading
            cfg = PreTrainedConfig.from_pretrained(self.path)
            cfg.device = device
            self._check_features(cfg)
            self.policy = get_policy_class(kind).from_pretrained(self.path, config=cfg)
            self.pre, self.post = make_pre_post_processors(cfg, pretrained_path=str(self.path))
        self.policy.eval()
        self.kind = kind
        self.config = self.policy.config
        _, h, w = (int(v) for v in self.config.input_features[IMAGE_KEY].shape)
        self.image_hw = (h, w)
        self.device = torch.device(device)
        if kind == "diffusion":
            self.n_obs_steps = int(self.config.n_obs_steps)
            self.n_action_steps = int(self.config.n_action_steps)
            self.horizon = int(self.config.horizon) - self.n_obs_steps + 1
        else:
            self.n_obs_steps = 1
            self.n_action_steps = int(self.config.n_action_steps)
            self.horizon = int(self.config.chunk_size)
        self._history: collections.deque = collections.deque(maxlen=self.n_obs_steps)
        with open(self.path / WEIGHTS_FILE, "rb") as f:
            self.checkpoint_id = hashlib.sha256(f.read()).hexdigest()[:12]
        self.metadata = {
            "model": kind,
            "checkpoint": str(self.path),
            "checkpoint_id": self.checkpoint_id,
            "action_horizon": self.horizon,
            "n_action_steps": self.n_action_steps,
            "n_obs_steps": self.n_obs_steps,
            "state_dim": POSE_DIM,
            "action_dim": POSE_DIM,
            "image_size": [h, w],
            "fps": CONTROL_FPS,
            "instructions": [],
            "uses_instruction": False,
            "parameters": int(sum(p.numel() for p in self.policy.parameters())),
        }

    @staticmethod
    def _check_features(cfg: PreTrainedConfig) -> None:
        ins, outs = cfg.input_features or {}, cfg.output_features or {}
        for name, ft in (("action", outs.get(ACTION_KEY)), ("state", ins.get(STATE_KEY))):
            if ft is None or tuple(ft.shape) != (POSE_DIM,):
                got = None if ft is None else tuple(ft.shape)
                raise AdapterError(f"{name} size {got}, this stack uses {POSE_DIM} (contract section 7)")
        if IMAGE_KEY not in ins:
            raise AdapterError(f"no {IMAGE_KEY} input (contract section 9)")

    def reset(self) -> None:
        self.policy.reset()
        self._history.clear()

    def _image_tensor(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)[None]
        if tuple(x.shape[-2:]) != self.image_hw:
            x = F.interpolate(x, size=self.image_hw, mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
        return x

    @torch.inference_mode()
    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str) -> np.ndarray:
        """float32 [H, 10] absolute actions from this observation on; ValueError on bad input."""
        check_inputs(image, state, instruction)
        obs = {IMAGE_KEY: self._image_tensor(image),
               STATE_KEY: torch.from_numpy(state.astype(np.float32))[None],
               "task": instruction}
        batch = self.pre(obs)
        if self.kind == "diffusion":
            chunk = self._diffusion_chunk(batch)
        else:
            chunk = self.policy.predict_action_chunk(batch)
        actions = self.post(chunk)[0].detach().cpu().numpy().astype(np.float32)
        if not np.all(np.isfinite(actions)):
            raise ValueError("model produced non-finite actions")
        return actions

    def _diffusion_chunk(self, batch: dict) -> torch.Tensor:
        """Denoise from the last n_obs_steps observations; every action from the current one on."""
        frame = {STATE_KEY: batch[STATE_KEY], OBS_IMAGES: batch[IMAGE_KEY][:, None]}   # (B, n_cam=1, C, H, W)
        if not self._history:
            self._history.extend([frame] * self.n_obs_steps)
        else:
            self._history.append(frame)
        stacked = {k: torch.stack([f[k] for f in self._history], dim=1) for k in frame}
        model = self.policy.diffusion
        cfg = self.config
        global_cond = model._prepare_global_conditioning(stacked)
        actions = model.conditional_sample(stacked[STATE_KEY].shape[0], global_cond=global_cond)
        return actions[:, cfg.n_obs_steps - 1:]
