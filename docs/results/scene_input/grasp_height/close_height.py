"""Where the jaws close on peg_transfer's block: per episode, the jaw tip's offset from the block's centre in
the block's frame (mm; z up) when the commanded jaw first falls below 0.3 rad after being above it, the
block's tilt then (deg), the highest lift of the block (mm) and success; with `expert`, the scripted
expert's on the same layout beside it.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_height/close_height.py CKPT FIRST_SEED N [expert]
"""

import sys

import numpy as np

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig
from surgbot.sim.envs import experts

CLOSING_JAW_RAD = SurgVLAConfig.grasp_jaw_rad     # a jaw command below it after one above is a close


def close_height(env, u, run) -> str:
    log = []
    step = env.step

    def traced(action):
        out = step(action)
        d = u.data
        b = d.body("block_transfer").xpos.copy()
        R = d.body("block_transfer").xmat.reshape(3, 3)
        log.append((float(action[9]), R.T @ (u.geo.jaw_tip(d) - b) * 1e3,
                    np.degrees(np.arccos(np.clip(R[2, 2], -1, 1))), (b[2] - u.geo.pad_top) * 1e3))
        return out
    env.step = traced
    res = run()
    env.step = step
    ok = res.success if hasattr(res, "success") else res["success"]
    k = next((i for i in range(1, len(log)) if log[i][0] < CLOSING_JAW_RAD <= log[i - 1][0]), None)
    if k is None:
        return f"{int(ok)} no close"
    return f"{int(ok)} close off={np.round(log[k][1], 1)} tilt={log[k][2]:.1f} maxh={max(r[3] for r in log):.1f}"


def main(checkpoint: str, first_seed: int, n: int, expert: bool) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env("peg_transfer", policy)
    u = env.unwrapped
    for seed in range(first_seed, first_seed + n):
        mine = close_height(env, u, lambda s=seed: harness.run_episode(env, policy, s))
        theirs = close_height(u, u, lambda s=seed: experts.run_episode(u, s)) if expert else ""
        print(seed, "policy", mine, "| expert", theirs, flush=True)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "expert")
