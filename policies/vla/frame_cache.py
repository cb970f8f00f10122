"""A LeRobotDataset decoded once into memory, giving the same items LeRobotDataset gives.

LeRobotDataset decodes the video frame of every sample it returns (seek +
decode per item).  On 2 CPU cores that per-sample decoding costs as much as
the training step of this small model, and an epoch decodes every frame
again.  `InMemoryDataset` decodes each episode's video once, in one batched
call per episode (LeRobot's own `decode_video_frames` through the dataset),
keeps the frames as uint8 and serves items with LeRobot's chunk semantics:
`action` [H, 10] from the current frame on, indices past the episode end
clamped to its last frame and flagged in `action_is_pad` (as
`LeRobotDataset._get_query_indices` does), the image float CHW in [0, 1],
`task` the instruction text, `observation.episode_goal` the training-only
target of the optional goal head: the episode's last action, or with
goal_target "first_grasp" the action where the jaws first close
(`SurgVLAConfig.goal_target`); with `scene` (per episode, SurgVLAConfig.scene_dim)
also `observation.environment_state`, the episode's row, and `observation.scene_as_reset` (1 on
the episode's first `scene_frames` frames: the scene locator's training frames).  A 96x128
frame is 37 kB: 40 000 frames are 1.5 GB.

`first_frames_weight(k, w)`: per-sample weights that draw the first k frames
of every episode w times as often (the frames where the policy must decide,
from the instruction alone, where to go).
"""

from __future__ import annotations

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from tqdm import tqdm

from surgbot.policies.vla.configuration_surgvla import (
    ACTION_KEY,
    GOAL_KEY,
    GOAL_TARGETS,
    IMAGE_KEY,
    JAW_INDEX,
    SCENE_KEY,
    SCENE_SEEN_KEY,
    STATE_KEY,
    SurgVLAConfig,
)

PAD_KEY = f"{ACTION_KEY}_is_pad"


def first_grasp_rows(jaw: np.ndarray, ep_start: np.ndarray, ep_end: np.ndarray, closed_rad: float) -> np.ndarray:
    """Per row, the row of its episode where the commanded jaw first falls below `closed_rad` after
    being at or above it (the first grasp); an episode without one gives its last row."""
    goal = ep_end - 1
    for lo in np.unique(ep_start):
        hi = int(ep_end[lo])
        j = jaw[lo:hi]
        close = np.flatnonzero((j[:-1] >= closed_rad) & (j[1:] < closed_rad))
        if close.size:
            goal[lo:hi] = lo + 1 + close[0]
    return goal


class InMemoryDataset(torch.utils.data.Dataset):
    """Frames, states, action chunks and instructions of one LeRobotDataset, in RAM (see module doc)."""

    def __init__(self, dataset: LeRobotDataset, chunk_size: int, progress: bool = True,
                 goal_target: str = SurgVLAConfig.goal_target, grasp_jaw_rad: float = SurgVLAConfig.grasp_jaw_rad,
                 scene: np.ndarray | None = None, scene_frames: int = SurgVLAConfig.scene_locator_frames):
        if goal_target not in GOAL_TARGETS:
            raise ValueError(f"goal_target must be one of {GOAL_TARGETS}, got {goal_target!r}")
        dataset._ensure_hf_dataset_loaded()
        cols = dataset.hf_dataset.with_format("numpy")[:]     # every column at once (videos are not in it)
        self.chunk_size = int(chunk_size)
        self.state = torch.from_numpy(np.stack(cols[STATE_KEY]).astype(np.float32))
        self.action = torch.from_numpy(np.stack(cols[ACTION_KEY]).astype(np.float32))
        self.episode = torch.from_numpy(np.asarray(cols["episode_index"], dtype=np.int64).reshape(-1))
        self.task_index = np.asarray(cols["task_index"], dtype=np.int64).reshape(-1)
        timestamps = np.asarray(cols["timestamp"], dtype=np.float64).reshape(-1)
        self.tasks = [str(t) for t in dataset.meta.tasks.index]
        n = len(self.state)
        h, w, _ = dataset.meta.features[IMAGE_KEY]["shape"]
        self.images = torch.empty((n, 3, int(h), int(w)), dtype=torch.uint8)
        self.ep_start = torch.empty(n, dtype=torch.long)
        self.ep_end = torch.empty(n, dtype=torch.long)
        episodes = sorted(set(self.episode.tolist()))
        for ep in tqdm(episodes, desc=f"decode {dataset.root.name}", unit="ep", disable=not progress):
            rows = np.flatnonzero(self.episode.numpy() == ep)
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            frames = dataset._query_videos({IMAGE_KEY: timestamps[lo:hi].tolist()}, ep)[IMAGE_KEY]
            if frames.ndim == 3:          # a one-frame episode
                frames = frames[None]
            self.images[lo:hi] = (frames * 255.0).round().clamp(0, 255).to(torch.uint8)
            self.ep_start[lo:hi] = lo
            self.ep_end[lo:hi] = hi
        if goal_target == "first_grasp":
            self.goal_row = torch.from_numpy(first_grasp_rows(
                self.action[:, JAW_INDEX].numpy(), self.ep_start.numpy(), self.ep_end.numpy(), grasp_jaw_rad))
        else:
            self.goal_row = self.ep_end - 1
        self.scene = None
        if scene is not None:
            scene = torch.as_tensor(np.asarray(scene, np.float32))
            last = int(self.episode.max()) if n else -1
            if scene.ndim != 2 or len(scene) <= last or not bool(torch.isfinite(scene).all()):
                raise ValueError(f"{dataset.root}: scene must be finite [episodes >= {last + 1}, dim], "
                                 f"got {tuple(scene.shape)}")
            self.scene = scene
        self.scene_frames = int(scene_frames)

    def __len__(self) -> int:
        return len(self.state)

    def __getitem__(self, idx: int) -> dict:
        end = int(self.ep_end[idx])
        wanted = idx + torch.arange(self.chunk_size)
        return {
            IMAGE_KEY: self.images[idx].float().div_(255.0),
            STATE_KEY: self.state[idx],
            ACTION_KEY: self.action[wanted.clamp(max=end - 1)],
            PAD_KEY: wanted >= end,
            "episode_index": self.episode[idx],
            "index": torch.tensor(idx),
            "task": self.tasks[int(self.task_index[idx])],
            GOAL_KEY: self.action[int(self.goal_row[idx])],     # the goal head's target
            **({} if self.scene is None else {
                SCENE_KEY: self.scene[int(self.episode[idx])],
                SCENE_SEEN_KEY: torch.tensor(float(idx - int(self.ep_start[idx]) < self.scene_frames))}),
        }

    def first_frames_weight(self, frames: int, weight: float) -> torch.Tensor:
        """Per-sample weights (mean 1 over the dataset): the first `frames` of each episode `weight`x."""
        early = (torch.arange(len(self)) - self.ep_start) < frames
        w = torch.where(early, torch.tensor(float(weight)), torch.tensor(1.0)).double()
        return w / w.mean()
