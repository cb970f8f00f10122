"""How precise must a locator be: a checkpoint trained with the true scene input, evaluated with the
simulator's summary moved by a fixed distance in a random horizontal direction (per episode, seeded) at
the grasp point (the place point moved with it where they coincide) and its yaw turned by a fixed angle
(randomly signed), as a locator with that error would feed it.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/scene_error.py CHECKPOINT TASK FIRST_SEED N MM [DEG]
"""

import json
import math
import sys

import numpy as np

from surgbot.policies.evaluation import harness
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY


class Perturbed:
    """The checkpoint's ChunkPolicy with its environment_state moved as the module doc says."""

    def __init__(self, policy, task: str, mm: float, deg: float, rng: np.random.Generator):
        self.policy, self.metadata = policy, policy.metadata
        self.k, self.mm, self.deg, self.rng = ORIENTATION_SYMMETRY[task], mm, deg, rng
        self.offset, self.turn = np.zeros(3), 0.0

    def reset(self) -> None:
        a = self.rng.uniform(0, 2 * math.pi)
        self.offset = self.mm * 1e-3 * np.array([math.cos(a), math.sin(a), 0.0])
        self.turn = math.radians(self.deg) * self.rng.choice([-1.0, 1.0])
        self.policy.reset()

    def infer(self, image, state, instruction, environment_state=None):
        s = np.asarray(environment_state, np.float64).copy()
        same = np.allclose(s[5:8], s[0:3])
        s[0:3] += self.offset                      # a horizontal offset in PSM1_base is close to one on the pad
        if same:
            s[5:8] = s[0:3]
        if self.k:
            ang = math.atan2(s[4], s[3]) + self.k * self.turn
            s[3:5] = [math.cos(ang), math.sin(ang)]
        return self.policy.infer(image, state, instruction, s.astype(np.float32))


def main(checkpoint: str, task: str, first_seed: int, n: int, mm: float, deg: float) -> None:
    base = harness.SurgVLAChunkPolicy(checkpoint)
    policy = Perturbed(base, task, mm, deg, np.random.default_rng(first_seed))
    env = harness.make_env(task, base)
    wins = 0
    for seed in range(first_seed, first_seed + n):
        wins += bool(harness.run_episode(env, policy, seed).success)
    print(json.dumps({"checkpoint": checkpoint, "task": task, "first_seed": first_seed, "episodes": n,
                      "offset_mm": mm, "turn_deg": deg, "successes": wins}))
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]),
         float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
