"""An upper bound for the goal memory on needle_pick: the bundled checkpoint with the first_grasp memory
rule, its goal head's estimate replaced by the true grasp point (the middle of the needle's arc at the
expert's grasp depth, from the simulator).  If this does not lift needle_pick, a better locator will not.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/tried_first_grasp/oracle_grasp.py \
        CHECKPOINT FIRST_SEED N [RADIUS_M] [hold]

`hold`: every chunk that closes the jaws is moved (the memory is never disarmed by a first grasp) and
no other chunk is (the lift is left alone): a correction the next chunk cannot undo by opening again.
"""

import sys

import numpy as np
import torch

from surgbot.policies.evaluation import harness
from surgbot.sim.envs.experts import NEEDLE_GRASP_PRESS_M
from surgbot.sim.scene_layouts import NEEDLE_RADIUS_M


def main(checkpoint: str, first_seed: int, n: int, radius_m: float, hold: bool) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    model = policy.runtime.policy
    model.config.goal_target = "first_grasp"
    model.config.goal_memory_radius_m = radius_m
    env = harness.make_env("needle_pick", policy)
    u = env.unwrapped
    original = model._chunk

    def oracle(batch, with_goal=False):
        if not with_goal:
            return original(batch)
        chunk, _ = original(batch, with_goal=True)
        body = u.model.body("needle").id
        c, R = u.data.xpos[body], u.data.xmat[body].reshape(3, 3)
        mid = c + R @ np.array([NEEDLE_RADIUS_M, 0.0, 0.0])
        tip = np.array([mid[0], mid[1], u.geo.pad_top - NEEDLE_GRASP_PRESS_M + u.geo.jaw_length])
        base = u.to_base(np.eye(4))
        p = base[:3, :3] @ tip + base[:3, 3]
        eps = model.config.normalization_eps
        goal = (torch.as_tensor(p, dtype=torch.float32) - model.action_mean[:3]) / (model.action_std[:3] + eps)
        return chunk, goal[None]
    model._chunk = oracle
    if hold:
        remember = model._remember_goal

        def held(chunk, goal):
            closed = model._jaw_rad(chunk) < model.config.grasp_jaw_rad
            closes = bool(~closed[0, 0] & closed[0].any())
            model._grasped = torch.zeros(1, dtype=torch.bool)
            bent = remember(chunk, goal)
            return bent if closes else chunk
        model._remember_goal = held
    wins = 0
    for k, seed in enumerate(range(first_seed, first_seed + n)):
        res = harness.run_episode(env, policy, seed)
        wins += bool(res.success)
        print(f"[{k + 1}] seed {seed}: {'success' if res.success else res.failure}; {wins}/{k + 1}", flush=True)
    print(f"needle_pick with the true grasp point remembered (radius {radius_m * 1e3:.0f} mm"
          f"{', held' if hold else ''}): {wins}/{n}")
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.01,
         len(sys.argv) > 5 and sys.argv[5] == "hold")
