"""Where the goal head puts the goal at the first request of an episode (the estimate the goal memory keeps).

needle_pick: the estimate's horizontal distance to the needle's wire (its 3/8 arc); reach: to the named
disc.  The policy's goal is the tool-tip frame in the tilted PSM1_base frame, jaw_length above the jaw
tip: it is taken to world coordinates and down to the jaw tip before comparing.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/tried_first_grasp/goal_probe.py CHECKPOINT TASK FIRST_SEED N
"""

import math
import sys

import numpy as np

from surgbot.policies.evaluation import harness

NEEDLE_RADIUS_M, HALF_ARC_RAD = 0.012, 0.375 * math.pi     # sim/scene.py: a 3/8 circle


def jaw_tip_world(env, pose):
    base_to_world = np.linalg.inv(env.to_base(np.eye(4)))
    p = base_to_world[:3, :3] @ np.asarray(pose[:3], float) + base_to_world[:3, 3]
    return p - np.array([0.0, 0.0, env.geo.jaw_length])


def main(checkpoint: str, task: str, first_seed: int, n: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    model = policy.runtime.policy
    env = harness.make_env(task, policy)
    u = env.unwrapped
    original = type(model)._remember_goal
    errors = []
    for seed in range(first_seed, first_seed + n):
        seen = []

        def keep(self, chunk, goal, seen=seen):
            scale = self.action_std[:3] + self.config.normalization_eps
            seen.append(goal[0].detach().numpy() * scale.numpy() + self.action_mean[:3].numpy())
            return original(self, chunk, goal)
        type(model)._remember_goal = keep
        obs, info = env.reset(seed=seed)
        policy.reset()
        policy.infer(obs["image"], obs["state"].astype(np.float32), info["instruction"])
        type(model)._remember_goal = original
        goal = jaw_tip_world(u, seen[0])
        if task == "reach":
            err = np.linalg.norm(u.geo.target_point(u.data, u.layout.target)[:2] - goal[:2])
        else:
            body = u.model.body("needle").id
            c, R = u.data.xpos[body], u.data.xmat[body].reshape(3, 3)
            arc = np.array([c + R @ np.array([NEEDLE_RADIUS_M * math.cos(a), NEEDLE_RADIUS_M * math.sin(a), 0.0])
                            for a in np.linspace(-HALF_ARC_RAD, HALF_ARC_RAD, 181)])
            err = np.min(np.linalg.norm(arc[:, :2] - goal[:2], axis=1))
        errors.append(err * 1e3)
        print(f"{seed}: {errors[-1]:.1f} mm", flush=True)
    print(f"{task}: median {np.median(errors):.1f} mm, {np.mean(np.array(errors) < 3):.0%} within 3 mm")
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
