"""One endoscope frame per task for docs/data.md: `python -m surgbot.sim.envs.snapshots --out docs`.

Each frame is taken where the expert has done most of its work (the jaws on
the target, the needle lifted, the block on its way), at 320x240.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
from PIL import Image

import surgbot.sim.envs  # noqa: F401 - registers the environments
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import make_expert

SEEDS = {"reach": 3, "needle_pick": 2, "peg_transfer": 1}
AT_FRACTION = {"reach": 0.95, "needle_pick": 0.85, "peg_transfer": 0.55}


def snapshot(task: str, out: Path, size=(240, 320)) -> Path:
    env = gym.make(ENV_IDS[task], image_size=size)
    obs, info = env.reset(seed=SEEDS[task])
    expert = make_expert(env)
    expert.reset()
    frames = [obs["image"]]
    while True:
        obs, _, term, trunc, info = env.step(expert.act())
        frames.append(obs["image"])
        if term or trunc:
            break
    env.close()
    path = out / f"data_{task}.png"
    Image.fromarray(frames[int(AT_FRACTION[task] * (len(frames) - 1))]).save(path)
    print(f"{path}: seed {SEEDS[task]}, \"{info['instruction']}\", success {info['success']}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    for task in ENV_IDS:
        snapshot(task, Path(args.out))


if __name__ == "__main__":
    main()
