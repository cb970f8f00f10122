"""close_pose.py (grasp_window/) for a bound checkpoint fed the simulator's summary with its yaw turned by DEG
(randomly signed per episode, seeded as scene_error.py turns it): where the jaws close on the block and
how they are turned, the block's tilt and lift, success.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/locator_parts/close_pose_turned.py BOUND FIRST_SEED N DEG
"""

import math
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "grasp_window")]
from close_pose import describe, trace  # noqa: E402
from scene_error import Perturbed  # noqa: E402

from surgbot.policies.evaluation import harness  # noqa: E402


def main(checkpoint: str, seeds: range, deg: float) -> None:
    base = harness.SurgVLAChunkPolicy(checkpoint)
    policy = Perturbed(base, "peg_transfer", 0.0, deg, np.random.default_rng(seeds.start))
    env = harness.make_env("peg_transfer", base)
    for seed in seeds:
        ok, log = trace(env, lambda s=seed: harness.run_episode(env, policy, s))
        print(seed, int(ok), f"told {math.degrees(policy.turn):+.1f}", describe(log), flush=True)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])), float(sys.argv[4]))
