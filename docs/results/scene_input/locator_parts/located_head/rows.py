"""Per recorded episode, the mean of located checkpoints' first-frame estimates (240x320; scene_mix.located_summary,
locator_ensemble.members_mean) -> OUT.npy, the rows `policy train --scene-input` reads.

    MUJOCO_GL=osmesa python rows.py DATASET OUT.npy LOCATED [LOCATED ...]
"""
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from locator_ensemble import members_mean  # noqa: E402
from scene_mix import located_summary  # noqa: E402

from surgbot.policies.data.scene_rows import _colour, episode_scene_vectors  # noqa: E402
from surgbot.policies.evaluation import harness  # noqa: E402
from surgbot.sim.envs import ENV_IDS  # noqa: E402

root, out = Path(sys.argv[1]), sys.argv[2]
located = [harness.SurgVLAChunkPolicy(p) for p in sys.argv[3:]]
meta = json.loads((root / "meta" / "surgbot.json").read_text())
entries = sorted(meta["episodes"], key=lambda e: int(e["episode_index"]))
env = gym.make(ENV_IDS[entries[0]["task"]], render_mode="rgb_array", image_size=(240, 320))
rows = []
for e in entries:
    colour = _colour(e)
    obs, _ = env.reset(seed=int(e["seed"]), options=None if colour is None else {"target": colour})
    ests = np.stack([located_summary(loc, obs["image"], obs["state"], e["instruction"]) for loc in located])
    rows.append(members_mean(ests))
env.close()
rows = np.array(rows, np.float32)
err = np.linalg.norm(rows[:, :3] - episode_scene_vectors(root)[:, :3], axis=1) * 1e3
print(f"{root.name}: {len(rows)} episodes, grasp point {np.median(err):.2f} mm from the simulator's (median)")
np.save(out, rows)
