"""The peg_transfer expert's success with its grasp moved: for each HEIGHT:YAW pair, the jaw tip closes HEIGHT mm
above the pad (experts.BLOCK_GRASP_HEIGHT_M) with the jaws turned YAW deg off the block's faces (added to the
yaw the expert picks), on N layouts from FIRST_SEED.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_window/grasp_window.py 0.8:0,1.5:30 50000 12
"""

import math
import sys

import gymnasium as gym

import surgbot.sim.envs.experts as ex
from surgbot.sim.envs import ENV_IDS


def main(pairs: list[tuple[float, float]], seeds: range) -> None:
    env = gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(64, 64))
    pick_yaw = ex.ScriptedExpert.pick_yaw
    for height_mm, yaw_deg in pairs:
        ex.BLOCK_GRASP_HEIGHT_M = height_mm * 1e-3
        ex.PegTransferExpert.pick_yaw = lambda self, c, p, d=yaw_deg: pick_yaw(self, c, p) + math.radians(d)
        wins = sum(ex.run_episode(env, seed)["success"] for seed in seeds)
        print(f"height {height_mm:+.1f} mm, jaws {yaw_deg:+.0f} deg off the faces: {wins}/{len(seeds)}", flush=True)
    env.close()


if __name__ == "__main__":
    main([tuple(float(v) for v in p.split(":")) for p in sys.argv[1].split(",")],
         range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])))
