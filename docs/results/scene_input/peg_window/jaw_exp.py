"""peg_transfer expert episodes with the hold's jaw command (JAW_SQUEEZE) replaced: does a looser grip lose the block?

    MUJOCO_GL=osmesa .venv/bin/python jaw_exp.py 0.05,0.25,0.55 FIRST_SEED N
"""

import sys

import gymnasium as gym
import numpy as np

import surgbot.sim.envs.experts as ex
from surgbot.policies.evaluation.harness import ENV_IDS


def main(squeezes: list[float], seeds: range) -> None:
    env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(64, 64))
    for squeeze in squeezes:
        ex.JAW_SQUEEZE = squeeze          # read when the expert plans its waypoints
        wins, jaws = 0, []

        def on_step(obs, action, info, squeeze=squeeze, jaws=jaws):
            if action[9] <= squeeze + 1e-6:           # the hold: the measured jaw angle
                jaws.append(float(obs["state"][9]))
        for seed in seeds:
            wins += ex.run_episode(env, seed, on_step=on_step)["success"]
        print(f"squeeze {squeeze:+.2f}: {wins}/{len(seeds)} measured jaw while squeezing median "
              f"{np.median(jaws):.3f}", flush=True)
    env.close()


if __name__ == "__main__":
    main([float(v) for v in sys.argv[1].split(",")], range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])))
