"""Expert peg_transfer grasps moved off the block's centre (block frame, mm; z up): the window a grasp must hit.

    MUJOCO_GL=osmesa .venv/bin/python peg_offset.py "0,0,0;1,0,0;2,0,0" FIRST_SEED N
"""
import sys

import gymnasium as gym
import numpy as np

import surgbot.sim.envs.experts as ex
from surgbot.policies.evaluation.harness import ENV_IDS

env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(64, 64))
u = env.unwrapped
orig = ex.PegTransferExpert.plan
OFF = np.zeros(3)
def plan(self):
    wps = orig(self)
    R = self.env.data.body("block_transfer").xmat.reshape(3, 3)
    w = R @ OFF
    for k in (1, 2, 3):
        wps[k].pos = wps[k].pos + w
    return wps
ex.PegTransferExpert.plan = plan
seeds = range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3]))
for spec in sys.argv[1].split(";"):
    OFF[:] = [float(v) * 1e-3 for v in spec.split(",")]
    wins = sum(ex.run_episode(env, s)["success"] for s in seeds)
    print(f"offset {spec} mm: {wins}/{len(seeds)}", flush=True)
