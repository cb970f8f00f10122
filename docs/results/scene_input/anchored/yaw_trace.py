"""peg_transfer: how far the commanded jaw yaw is from the block's faces when the jaws first hold it
(degrees, the block's 90 degree symmetry taken out), the jaw tip's height then, and that error over the
next 3 s (every 1/3 s).  The expert's own: ~0.2 deg.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/anchored/yaw_trace.py CHECKPOINT FIRST_SEED N
"""

import math
import sys

import numpy as np

from surgbot.geometry import matrix_from_pose10
from surgbot.policies.evaluation import harness


def main(checkpoint: str, first_seed: int, n: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env("peg_transfer", policy)
    u = env.unwrapped
    step = env.step
    for seed in range(first_seed, first_seed + n):
        log = []

        def traced(action, log=log):
            T_world = u.psm_base @ matrix_from_pose10(action)[0]
            out = step(action)
            d = u.data
            R = d.body("block_transfer").xmat.reshape(3, 3)
            err = math.degrees(math.atan2(T_world[1, 0], T_world[0, 0]) - math.atan2(R[1, 0], R[0, 0]))
            block = u.geo.body_geoms["block_transfer"]
            log.append(((err + 45) % 90 - 45, (u.geo.jaw_tip(d)[2] - u.geo.pad_top) * 1e3,
                        all(u.geo.touching(d, block, [f]) for f in u.geo.fingers)))
            return out
        env.step = traced
        res = harness.run_episode(env, policy, seed)
        first = next((k for k, r in enumerate(log) if r[2]), None)
        if first is None:
            print(seed, res.success, "never held")
            continue
        err, z, _ = log[first]
        print(seed, res.success, f"first hold: yaw error {err:5.1f} deg, jaw tip {z:4.1f} mm above the pad; "
              "yaw error over the next 3 s:", " ".join(f"{r[0]:.0f}" for r in log[first:first + 45:5]))


if __name__ == "__main__":
    np.set_printoptions(precision=1, suppress=True)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
