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
from close_pose import BLOCK, CLOSING_JAW_RAD, FACES_DEG, JAW, yaw_deg  # noqa: E402
from scene_error import Perturbed  # noqa: E402

from surgbot.policies.evaluation import harness  # noqa: E402


def main(checkpoint: str, seeds: range, deg: float) -> None:
    base = harness.SurgVLAChunkPolicy(checkpoint)
    policy = Perturbed(base, "peg_transfer", 0.0, deg, np.random.default_rng(seeds.start))
    env = harness.make_env("peg_transfer", base)
    u = env.unwrapped
    step = env.step
    for seed in seeds:
        log = []

        def traced(action, log=log):
            out = step(action)
            d = u.data
            b, R = d.body(BLOCK).xpos.copy(), d.body(BLOCK).xmat.reshape(3, 3)
            off = R.T @ (u.geo.jaw_tip(d) - b) * 1e3
            turned = (yaw_deg(d.body(JAW).xmat.reshape(3, 3)) - yaw_deg(R) + FACES_DEG / 2) % FACES_DEG - FACES_DEG / 2
            tilt = math.degrees(math.acos(float(np.clip(R[2, 2], -1.0, 1.0))))
            log.append((float(action[9]), off, turned, tilt, (b[2] - u.geo.pad_top) * 1e3))
            return out

        env.step = traced
        res = harness.run_episode(env, policy, seed)
        env.step = step
        told = math.degrees(policy.turn)
        k = next((i for i in range(1, len(log)) if log[i][0] < CLOSING_JAW_RAD <= log[i - 1][0]), None)
        if k is None:
            print(seed, int(res.success), f"told {told:+.1f}", "no close", flush=True)
            continue
        _, off, turned, tilt, _ = log[k]
        print(f"{seed} {int(res.success)} told {told:+.1f} off {off[0]:5.1f} {off[1]:5.1f} {off[2]:5.1f} "
              f"turned {turned:6.1f} tilt {tilt:5.1f} lift {max(r[4] for r in log):5.1f}", flush=True)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])), float(sys.argv[4]))
