"""The scene summary (`surgbot.sim.envs.scene_state`) of every episode of a recorded dataset.

Layouts are seeded, so resetting the episode's environment with its layout
seed and named colour (both in the sidecar, `meta/surgbot.json`) gives the
scene the episode started from.  Datasets recorded before the sidecar had
`target` name their colour in the instruction only.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from surgbot.policies.data.dataset import SIDECAR
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.scene_state import SCENE_DIM, scene_vector, world_axes_in_base
from surgbot.sim.tasks.base import COLOURS


def _colour(entry: dict) -> str | None:
    """The colour an episode named: recorded as `target`, else the colour word of its instruction."""
    if entry.get("target"):
        return str(entry["target"])
    words = str(entry.get("instruction", "")).replace(".", " ").split()
    named = [c for c in COLOURS if c in words]
    return named[0] if len(named) == 1 else None


def episode_scene_vectors(root: str | Path) -> np.ndarray:
    """[episodes, 8] scene summaries of a recorded dataset (row = episode_index), rebuilt by resetting
    its task's environment with each episode's layout seed and colour (from `meta/surgbot.json`)."""
    root = Path(root)
    try:
        meta = json.loads((root / SIDECAR).read_text())
        entries = sorted(meta["episodes"], key=lambda e: int(e["episode_index"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{root}: no readable {SIDECAR} with the episodes' seeds ({exc})") from None
    if [int(e["episode_index"]) for e in entries] != list(range(len(entries))):
        raise ValueError(f"{root}: {SIDECAR} does not list episodes 0..{len(entries) - 1} once each")
    out = np.zeros((len(entries), SCENE_DIM), np.float32)
    envs: dict[str, gym.Env] = {}
    try:
        for i, e in enumerate(entries):
            task = str(e.get("task") or meta.get("task"))
            if task not in ENV_IDS:
                raise ValueError(f"{root}: episode {i} has unknown task {task!r}")
            if task not in envs:
                envs[task] = gym.make(ENV_IDS[task], images=False)
            colour = _colour(e)
            if task != "needle_pick" and colour is None:
                raise ValueError(f"{root}: episode {i} ({task}) names no colour the scene can be rebuilt with")
            envs[task].reset(seed=int(e["seed"]), options=None if colour is None else {"target": colour})
            out[i] = scene_vector(envs[task])
    finally:
        for env in envs.values():
            env.close()
    return out


def dataset_world_axes(root: str | Path) -> np.ndarray:
    """`scene_state.world_axes_in_base` of the twin a recorded dataset's task runs on (its sidecar's first
    episode's task)."""
    root = Path(root)
    try:
        meta = json.loads((root / SIDECAR).read_text())
        task = str(meta.get("task") or meta["episodes"][0]["task"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"{root}: no readable {SIDECAR} with the task ({exc})") from None
    if task not in ENV_IDS:
        raise ValueError(f"{root}: unknown task {task!r}")
    env = gym.make(ENV_IDS[task], images=False)
    try:
        env.reset(seed=0)
        return world_axes_in_base(env)
    finally:
        env.close()
