"""Tiny contract-9 LeRobotDatasets for the VLA tests, written with LeRobot's own API.

The scene is synthetic and its ground truth is known: a red and a blue square
at per-episode random pixels, a white dot where the tool tip is.  The expert
moves the tip a fixed fraction of the way to the square the instruction
names, so what a policy should output is computed here independently of it
(`target_xyz`).  Pixel (row, col) <-> tool position: x = (col - W/2) * M_PER_PX,
y = (row - H/2) * M_PER_PX, z = Z_M.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

CHECKPOINT_LIMIT_BYTES = 20 * 1024 * 1024   # issue 15: a policy checkpoint < 20 MB
H, W = 48, 64
FPS = 15
M_PER_PX = 0.001
Z_M = -0.10
GAIN = 0.25               # fraction of the remaining distance the expert moves per step
SQUARE = 5                # side of a target square, px
ROT6D = np.array([1, 0, 0, 0, 1, 0], dtype=np.float32)   # identity rotation, first two columns
RED, BLUE = (220, 30, 30), (30, 60, 220)
INSTRUCTIONS = {"red": "touch the red target", "blue": "touch the blue target"}
FEATURES = {
    "observation.images.endoscope": {"dtype": "video", "shape": (H, W, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (10,), "names": None},
    "action": {"dtype": "float32", "shape": (10,), "names": None},
}


def px_to_xyz(row: float, col: float) -> np.ndarray:
    return np.array([(col - W / 2) * M_PER_PX, (row - H / 2) * M_PER_PX, Z_M], dtype=np.float32)


def xyz_to_px(xyz: np.ndarray) -> tuple[int, int]:
    return int(round(xyz[1] / M_PER_PX + H / 2)), int(round(xyz[0] / M_PER_PX + W / 2))


def render(targets: dict[str, tuple[int, int]], tip_xyz: np.ndarray) -> np.ndarray:
    img = np.full((H, W, 3), 60, dtype=np.uint8)
    for name, (r, c) in targets.items():
        img[r:r + SQUARE, c:c + SQUARE] = RED if name == "red" else BLUE
    tr, tc = xyz_to_px(tip_xyz)
    img[max(0, tr - 1):tr + 2, max(0, tc - 1):tc + 2] = 255
    return img


def target_xyz(targets: dict[str, tuple[int, int]], name: str) -> np.ndarray:
    r, c = targets[name]
    return px_to_xyz(r + SQUARE / 2, c + SQUARE / 2)


def layout(rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """Red in the left half, blue in the right half (never overlapping)."""
    return {"red": (int(rng.integers(4, H - 10)), int(rng.integers(4, W // 2 - 8))),
            "blue": (int(rng.integers(4, H - 10)), int(rng.integers(W // 2 + 2, W - 10)))}


def episode(rng: np.random.Generator, colour: str, frames: int):
    """(targets, list of (image, state, action)) of one expert episode toward `colour`."""
    targets = layout(rng)
    goal = target_xyz(targets, colour)
    pos = px_to_xyz(rng.uniform(10, H - 10), rng.uniform(W / 2 - 6, W / 2 + 6))
    out = []
    for _ in range(frames):
        nxt = pos + GAIN * (goal - pos)
        state = np.concatenate([pos, ROT6D, [0.0]]).astype(np.float32)
        action = np.concatenate([nxt, ROT6D, [0.0]]).astype(np.float32)
        out.append((render(targets, pos), state, action))
        pos = nxt
    return targets, out


def make_dataset(root: Path, episodes: int = 4, frames: int = 20, seed: int = 0,
                 features: dict | None = None) -> Path:
    """Write a LeRobotDataset v3 (h264 video: the default AV1 encoder is slow on 2 cores)."""
    rng = np.random.default_rng(seed)
    feats = features or FEATURES
    ds = LeRobotDataset.create(f"local/{root.name}", fps=FPS, features=feats, root=root, use_videos=True,
                               vcodec="h264")
    for ep in range(episodes):
        colour = "red" if ep % 2 == 0 else "blue"
        _, steps = episode(rng, colour, frames)
        for img, state, action in steps:
            frame = {"task": INSTRUCTIONS[colour]}
            for key, value in (("observation.images.endoscope", img), ("observation.state", state),
                               ("action", action)):
                if key in feats:
                    frame[key] = value
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root


def save_checkpoint(dataset: Path, out: Path) -> Path:
    """An untrained surgvla built by LeRobot's make_policy from `dataset`, saved LeRobot's way."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig

    torch.manual_seed(0)
    meta = LeRobotDatasetMetadata(f"local/{dataset.name}", root=dataset)
    cfg = SurgVLAConfig(device="cpu", push_to_hub=False)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out
