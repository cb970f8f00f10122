"""The head's gain from the summary's yaw to the commanded jaw yaw, chunk by chunk: a bound checkpoint runs one
peg_transfer episode with the simulator's summary; at each of its chunk requests (image, state, instruction)
it is asked again with the summary's yaw turned by +DEG, and the last chunk step's jaw yaw (about the world's
vertical) compared: gain 1 = the jaws turn as much as the summary did, 0 = not at all.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/locator_parts/yaw_gain.py BOUND SEED DEG
"""

import math
import sys

import numpy as np

from surgbot.policies.evaluation import harness
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY, world_axes_in_base

K = ORIENTATION_SYMMETRY["peg_transfer"]


class Recorder:
    """The policy as it is, keeping every request."""

    def __init__(self, policy):
        self.policy, self.metadata, self.requests = policy, policy.metadata, []

    def reset(self) -> None:
        self.policy.reset()

    def infer(self, image, state, instruction, environment_state=None):
        self.requests.append((image.copy(), state.copy(), instruction, np.asarray(environment_state).copy()))
        return self.policy.infer(image, state, instruction, environment_state)


def main(checkpoint: str, seed: int, deg: float) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env("peg_transfer", policy)
    rec = Recorder(policy)
    result = harness.run_episode(env, rec, seed)
    axes = world_axes_in_base(env)

    def yaw(action) -> float:
        x = action[3:6]
        return math.degrees(math.atan2(x @ axes[3:], x @ axes[:3]))

    for i, (image, state, text, scene) in enumerate(rec.requests):
        turned = scene.copy()
        angle = math.atan2(scene[4], scene[3]) + K * math.radians(deg)
        turned[3:5] = [math.cos(angle), math.sin(angle)]
        policy.reset()
        true = policy.infer(image, state, text, scene)
        policy.reset()
        told = policy.infer(image, state, text, turned.astype(np.float32))
        d = (yaw(told[-1]) - yaw(true[-1]) + 180) % 360 - 180
        print(i, f"jaw {true[-1][9]:.2f} yaw {yaw(true[-1]):7.1f} turned by {deg} -> {d:+6.1f} gain {d / deg:+.2f}")
    print(seed, "success", result.success)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
