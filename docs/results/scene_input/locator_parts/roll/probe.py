"""Each layout's first frame through a located checkpoint's locator (member 0): its head inputs (keypoint
positions, pooled features), its estimate, the view (sim/tasks/base.py) and the true summary.

    MUJOCO_GL=osmesa python probe.py LOCATED OUT.json FIRST:END [FIRST:END ...]
"""
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_inputs import head_inputs  # noqa: E402

from surgbot.policies.evaluation import harness  # noqa: E402
from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY  # noqa: E402
from surgbot.sim.envs import ENV_IDS  # noqa: E402
from surgbot.sim.envs.scene_state import scene_vector  # noqa: E402
from surgbot.sim.tasks import get_task  # noqa: E402

ckpt, out = sys.argv[1], sys.argv[2]
ranges = [tuple(int(x) for x in r.split(":")) for r in sys.argv[3:]]
located = harness.SurgVLAChunkPolicy(ckpt)
rt = located.runtime
policy = rt.policy
policy.eval()
loc = policy.model.scene_locator
h, w = located.metadata["image_size"]
task = get_task("peg_transfer")
env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(h, w))
rows = []
with torch.no_grad():
    for first, end in ranges:
        for seed in range(first, end):
            obs, info = env.reset(seed=seed)
            batch = rt.pre(rt.observation(obs["image"], obs["state"], info["instruction"]))
            kp, pool = head_inputs(policy, batch)
            est = loc.locate(policy.prepare_image(batch[IMAGE_KEY]), batch[LANGUAGE_KEY],
                             glimpse_image=policy.prepare_glimpse_image(batch[IMAGE_KEY])).out
            rows.append({"seed": seed, "kp": kp[0].tolist(), "pool": pool[0].tolist(),
                         "est": est[0].tolist(), "view": list(task.layout(seed, np.zeros(2)).view),
                         "truth": scene_vector(env).tolist()})
env.close()
json.dump(rows, open(out, "w"))
