"""Recorded LeRobotDatasets -> episodes in memory, and the IDM's training windows.

The IDM trains on a few dozen episodes, so every frame is decoded once
(PyAV, straight from the dataset's video files, at `config.load_size`) and
kept as uint8; windows are then drawn without touching the disk.

Targets (the trajectory `x` that `idm label` reconstructs): x_0 = the first
measured state, x_t = the action commanded at t-1 (the pose the arm was sent
to, which the frame at t shows it reaching).  A window at t holds frames t
and t+k; its offsets are actions[t .. t+k-1] - x_t; the pose head learns x
at both frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd

from surgbot.policies.data.dataset import ACTION_KEY, FPS, IMAGE_KEY, STATE_KEY
from surgbot.policies.idm.processor_idm import resize_frames


class DatasetError(ValueError):
    """A dataset the IDM cannot train on (one line)."""


@dataclass
class Episode:
    frames: np.ndarray        # uint8 [T, h, w, 3] at load size
    states: np.ndarray        # float32 [T, D] measured
    actions: np.ndarray       # float32 [T, D] commanded
    task: str
    source: str               # dataset folder name + episode index

    @property
    def trajectory(self) -> np.ndarray:
        """x_t (module doc): first state, then the previous commanded action."""
        return np.concatenate([self.states[:1], self.actions[:-1]]).astype(np.float32)


def _decode(path: Path, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """frame number (round(time * fps)) -> resized uint8 frame, for one video file."""
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            for f in c.decode(stream):
                n = int(round(float(f.time) * FPS))
                out[n] = resize_frames(f.to_ndarray(format="rgb24")[None], size)[0]
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path}: video does not decode ({type(exc).__name__})") from None
    return out


def load_dataset(root: Path, size: tuple[int, int], pose_dim: int) -> list[Episode]:
    """Every episode of one recorded dataset (contract section 9 features)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"{root}: not a LeRobotDataset v3 folder (no meta/info.json)")
    try:
        meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{root}: unreadable dataset metadata ({type(exc).__name__})") from None
    feats = meta.features
    for key in (IMAGE_KEY, STATE_KEY, ACTION_KEY):
        if key not in feats:
            raise DatasetError(f"{root}: lacks the feature {key} (contract section 9)")
    for key in (STATE_KEY, ACTION_KEY):
        if tuple(feats[key]["shape"]) != (pose_dim,):
            raise DatasetError(f"{root}: {key} has shape {tuple(feats[key]['shape'])}, the IDM uses ({pose_dim},)")
    if int(meta.fps) != FPS:
        raise DatasetError(f"{root}: fps {meta.fps}, the contract uses {FPS}")
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise DatasetError(f"{root}: no data files")
    table = pd.concat([pd.read_parquet(f, columns=[STATE_KEY, ACTION_KEY, "episode_index", "frame_index",
                                                   "task_index"]) for f in files])
    tasks = {int(i): str(t) for t, i in zip(meta.tasks.index, meta.tasks["task_index"], strict=True)}
    decoded: dict[Path, dict[int, np.ndarray]] = {}
    episodes = []
    for ep_index in sorted(table["episode_index"].unique()):
        rows = table[table["episode_index"] == ep_index].sort_values("frame_index")
        ep = meta.episodes[int(ep_index)]
        path = root / meta.get_video_file_path(int(ep_index), IMAGE_KEY)
        if path not in decoded:
            decoded[path] = _decode(path, size)
        start = int(round(float(ep[f"videos/{IMAGE_KEY}/from_timestamp"]) * FPS))
        try:
            frames = np.stack([decoded[path][start + int(i)] for i in rows["frame_index"]])
        except KeyError:
            raise DatasetError(f"{root}: episode {ep_index} has frames missing from its video") from None
        episodes.append(Episode(frames=frames, states=np.stack(rows[STATE_KEY].to_numpy()).astype(np.float32),
                                actions=np.stack(rows[ACTION_KEY].to_numpy()).astype(np.float32),
                                task=tasks.get(int(rows["task_index"].iloc[0]), ""),
                                source=f"{root.name}#{int(ep_index)}"))
    return episodes


class WindowSampler:
    """Random training windows (t, t+k) over a list of episodes, weighted by their window counts."""

    def __init__(self, episodes: list[Episode], k: int, seed: int):
        self.eps = [e for e in episodes if len(e.frames) > k]
        if not self.eps:
            raise DatasetError(f"no episode longer than k = {k} frames")
        self.k = k
        self.traj = [e.trajectory for e in self.eps]
        counts = np.array([len(e.frames) - k for e in self.eps], float)
        self.p = counts / counts.sum()
        self.rng = np.random.default_rng(seed)

    @property
    def windows(self) -> int:
        return int(sum(len(e.frames) - self.k for e in self.eps))

    def window(self, e: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ep, x, k = self.eps[e], self.traj[e], self.k
        pair = np.stack([ep.frames[t], ep.frames[t + k]])
        deltas = ep.actions[t:t + k] - x[t]
        return pair, x[t], x[t + k], deltas

    def batch(self, n: int) -> tuple[np.ndarray, ...]:
        es = self.rng.choice(len(self.eps), size=n, p=self.p)
        items = [self.window(e, int(self.rng.integers(len(self.eps[e].frames) - self.k))) for e in es]
        return tuple(np.stack(z) for z in zip(*items, strict=True))

    def all_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every window's (x_t, offsets): the stats."""
        xs, ds = [], []
        for e, ep in enumerate(self.eps):
            for t in range(len(ep.frames) - self.k):
                xs.append(self.traj[e][t])
                ds.append(ep.actions[t:t + self.k] - self.traj[e][t])
        return np.stack(xs), np.stack(ds)
