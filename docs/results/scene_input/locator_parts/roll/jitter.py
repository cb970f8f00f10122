"""Glimpse-centre jitter averaging, offline: each located checkpoint's first-frame estimate on validation layouts
60000-60119 as it is and averaged over the glimpse centre moved by -1..1 (and -2..2 in steps of 2) px.

    MUJOCO_GL=osmesa python jitter.py OUT.json LOCATED [LOCATED ...]
"""
import json
import sys

import gymnasium as gym
import torch

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.scene_state import scene_vector

out, located = sys.argv[1], [harness.SurgVLAChunkPolicy(c) for c in sys.argv[2:]]
h, w = located[0].metadata["image_size"]
env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(h, w))
MOVES = (-1.0, 0.0, 1.0)
rows = []
with torch.no_grad():
    for seed in range(60000, 60120):
        obs, info = env.reset(seed=seed)
        row = {"seed": seed, "truth": scene_vector(env).tolist(), "plain": [], "jit": [], "jit2": []}
        for member in located:
            rt = member.runtime
            policy = rt.policy
            loc = policy.model.scene_locator
            batch = rt.pre(rt.observation(obs["image"], obs["state"], info["instruction"]))
            image, fine = policy.prepare_image(batch[IMAGE_KEY]), policy.prepare_glimpse_image(batch[IMAGE_KEY])
            plain = loc.locate(image, batch[LANGUAGE_KEY], glimpse_image=fine)
            row["plain"].append(plain.out[0].tolist())
            centre = plain.anchors[:, 0]
            fh, fw = fine.shape[-2:]
            for key, px in (("jit", 1.0), ("jit2", 2.0)):
                outs = [loc.locate(image, batch[LANGUAGE_KEY], glimpse_image=fine,
                                   glimpse_at=centre + torch.tensor([[dx * px * 2 / fw, dy * px * 2 / fh]])).out[0]
                        for dx in MOVES for dy in MOVES]
                row[key].append(torch.stack(outs).mean(0).tolist())
        rows.append(row)
env.close()
json.dump(rows, open(out, "w"))
