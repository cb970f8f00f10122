"""A loaded SurgVLA checkpoint behind one call: (image, state, instruction) -> [H, 10] actions.

Used by the policy server, the benchmark and evaluation.  Loading goes through
LeRobot's own `from_pretrained` and `make_pre_post_processors`, so any
checkpoint `lerobot-train --policy.type=surgvla` writes is served as is.
Every input is checked before it reaches the model: a wrong shape, dtype, a
non-finite state or a non-string instruction raises `ValueError` and changes
nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import make_pre_post_processors

import surgbot
from surgbot.policies.vla.configuration_surgvla import (
    ACTION_KEY,
    IMAGE_KEY,
    POLICY_TYPE,
    POSE_DIM,
    SCENE_KEY,
    STATE_KEY,
    SurgVLAConfig,
)
from surgbot.policies.vla.language import InstructionEncoder
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy

DEFAULT_CHECKPOINT = "default"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MAX_INSTRUCTION_CHARS = 512


class CheckpointError(ValueError):
    """A checkpoint that cannot be served (missing, another policy, another action size)."""


def bundled_checkpoint_dir() -> Path:
    return surgbot.area_path("policies") / "vla" / "checkpoints" / DEFAULT_CHECKPOINT


def resolve_checkpoint(spec: str | Path) -> Path:
    """`default`, a `pretrained_model` folder, or a training output folder -> the pretrained_model folder."""
    path = bundled_checkpoint_dir() if str(spec) == DEFAULT_CHECKPOINT else Path(spec).expanduser()
    candidates = [path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"]
    for c in candidates:
        if (c / CONFIG_FILE).is_file() and (c / WEIGHTS_FILE).is_file():
            return c
    if not path.exists():
        raise CheckpointError(f"checkpoint {spec} not found" + (
            " (the bundled checkpoint is not built yet)" if str(spec) == DEFAULT_CHECKPOINT else ""))
    raise CheckpointError(f"{path} holds no {CONFIG_FILE} + {WEIGHTS_FILE} (nor checkpoints/last/pretrained_model)")


def load_config(path: Path) -> SurgVLAConfig:
    """The checkpoint's config, checked to be a surgvla policy on contract-7 vectors."""
    import surgbot.policies.vla.processor_surgvla  # noqa: F401 - its step class must be importable to load

    try:
        with contextlib.redirect_stdout(sys.stderr):
            cfg = PreTrainedConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - draccus/json errors, reported as one line
        raise CheckpointError(f"{path / CONFIG_FILE}: unreadable policy config ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(cfg, SurgVLAConfig):
        raise CheckpointError(f"{path} is a '{cfg.type}' policy, not '{POLICY_TYPE}'")
    action = (cfg.output_features or {}).get(ACTION_KEY)
    state = (cfg.input_features or {}).get(STATE_KEY)
    for name, ft in (("action", action), ("state", state)):
        if ft is None or tuple(ft.shape) != (POSE_DIM,):
            got = None if ft is None else tuple(ft.shape)
            raise CheckpointError(f"{path}: {name} size {got}, this stack uses {POSE_DIM} "
                                  "(contract section 7)")
    if IMAGE_KEY not in (cfg.input_features or {}):
        raise CheckpointError(f"{path}: no {IMAGE_KEY} input")
    return cfg


class PolicyRuntime:
    """One checkpoint, ready to infer on CPU (or `device`)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.path = resolve_checkpoint(checkpoint)
        cfg = load_config(self.path)
        cfg.device = device
        with contextlib.redirect_stdout(sys.stderr):   # from_pretrained prints to stdout
            self.policy = SurgVLAPolicy.from_pretrained(self.path, config=cfg)
            self.pre, self.post = make_pre_post_processors(cfg, pretrained_path=str(self.path))
        self.config: SurgVLAConfig = self.policy.config
        _, h, w = self.config.input_features[IMAGE_KEY].shape
        h, w = self.config.frame_size or (h, w)       # the frame it asks for (SurgVLAConfig.frame_size)
        self.image_shape = (int(h), int(w), 3)
        with open(self.path / WEIGHTS_FILE, "rb") as f:
            self.checkpoint_id = hashlib.sha256(f.read()).hexdigest()[:12]
        if self.config.known_instructions:   # embed them now, not on the first control tick
            InstructionEncoder.shared().encode(list(self.config.known_instructions))

    @property
    def environment_state_dim(self) -> int:
        """Length of the environment_state infer() needs: the scene input, unless the model locates it."""
        return 0 if self.config.scene_locator else int(self.config.scene_dim)

    def metadata(self) -> dict:
        return {
            "model": POLICY_TYPE,
            "checkpoint": str(self.path),
            "checkpoint_id": self.checkpoint_id,
            "action_horizon": int(self.config.chunk_size),
            "state_dim": POSE_DIM,
            "action_dim": POSE_DIM,
            "image_size": [self.image_shape[0], self.image_shape[1]],
            "fps": 15,
            "instructions": list(self.config.known_instructions),
            # > 0: infer() needs the scene summary (SurgVLAConfig.scene_dim; the simulator's values)
            "environment_state_dim": self.environment_state_dim,
        }

    def reset(self) -> None:
        self.policy.reset()

    def check(self, image: np.ndarray, state: np.ndarray, instruction: str) -> None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != self.image_shape:
            got = (getattr(image, "dtype", type(image).__name__), getattr(image, "shape", None))
            raise ValueError(f"image must be uint8 {list(self.image_shape)}, got {got[0]} {got[1]}")
        if not isinstance(state, np.ndarray) or state.shape != (POSE_DIM,) or state.dtype.kind != "f":
            got = (getattr(state, "dtype", type(state).__name__), getattr(state, "shape", None))
            raise ValueError(f"state must be float [{POSE_DIM}], got {got[0]} {got[1]}")
        if not np.all(np.isfinite(state)):
            raise ValueError("state has NaN/Inf")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise ValueError(f"instruction longer than {MAX_INSTRUCTION_CHARS} characters")

    def check_scene(self, environment_state) -> np.ndarray | None:
        """The scene summary a scene_dim checkpoint needs (float [scene_dim], finite); None otherwise."""
        dim = self.environment_state_dim
        if not dim:
            if environment_state is not None:
                raise ValueError("this checkpoint takes no environment_state (trained without --scene-input)")
            return None
        if environment_state is None:
            raise ValueError(f"this checkpoint needs environment_state [{dim}] (the simulator's scene summary, "
                             "surgbot.sim.envs.scene_state)")
        scene = np.asarray(environment_state)
        if scene.shape != (dim,) or scene.dtype.kind != "f" or not np.all(np.isfinite(scene)):
            raise ValueError(f"environment_state must be finite float [{dim}], got {scene.dtype} {list(scene.shape)}")
        return scene.astype(np.float32)

    @staticmethod
    def observation(image: np.ndarray, state: np.ndarray, instruction: str) -> dict:
        """One frame as the preprocessor takes it (batch of 1; image HWC uint8 -> CHW float in [0, 1]).
        Unchecked: `infer` checks first."""
        return {
            IMAGE_KEY: torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255.0)[None],
            STATE_KEY: torch.from_numpy(state.astype(np.float32))[None],
            "task": instruction,
        }

    @torch.inference_mode()
    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str,
              environment_state: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """(actions float32 [H, 10], inference milliseconds); ValueError on bad input.  `environment_state`:
        only for a checkpoint trained with the scene input (metadata `environment_state_dim`)."""
        self.check(image, state, instruction)
        scene = self.check_scene(environment_state)
        t0 = time.perf_counter()
        obs = self.observation(image, state, instruction)
        if scene is not None:
            obs[SCENE_KEY] = torch.from_numpy(scene)[None]
        chunk = self.post(self.policy.predict_action_chunk(self.pre(obs)))
        actions = chunk[0].numpy().astype(np.float32)
        ms = (time.perf_counter() - t0) * 1e3
        if not np.all(np.isfinite(actions)):
            raise ValueError("model produced non-finite actions")
        return actions, ms
