"""Does the peg_transfer expert's grasp need its squeeze: expert episodes with JAW_SQUEEZE (0.05 rad, "just
past the contact angle") replaced by each given value, and the measured jaw while squeezing.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_height/expert_squeeze.py 0.05,0.19,0.4 FIRST_SEED N
"""

import sys

import gymnasium as gym
import numpy as np

import surgbot.sim.envs.experts as ex
from surgbot.sim.envs import ENV_IDS


def main(squeezes: list[float], seeds: range) -> None:
    env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(64, 64))
    for squeeze in squeezes:
        ex.JAW_SQUEEZE = squeeze
        wins, jaws = 0, []
        for seed in seeds:
            def on_step(obs, action, info, squeeze=squeeze, jaws=jaws):
                if action[9] <= squeeze + 1e-6:
                    jaws.append(float(obs["state"][9]))
            wins += ex.run_episode(env, seed, on_step=on_step)["success"]
        print(f"squeeze {squeeze:+.2f}: {wins}/{len(seeds)} measured jaw while squeezing median "
              f"{np.median(jaws):.3f}", flush=True)


if __name__ == "__main__":
    main([float(v) for v in sys.argv[1].split(",")], range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])))
