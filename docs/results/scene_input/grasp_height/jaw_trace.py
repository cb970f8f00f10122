"""The jaw command chunks a checkpoint returns (the first 14 steps of each) and the measured jaw when it was
asked, from 4 s into one episode until UNTIL_S.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_height/jaw_trace.py CHECKPOINT TASK SEED UNTIL_S
"""

import sys

import numpy as np

from surgbot.policies.evaluation import harness


def main(checkpoint: str, task: str, seed: int, until_s: float) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env(task, policy)
    u = env.unwrapped
    infer = policy.infer

    def traced(image, state, text, **kw):
        actions = infer(image, state, text, **kw)
        if 4.0 < u.elapsed_s < until_s:
            print(f"t={u.elapsed_s:5.2f} measured jaw={state[9]:.3f} chunk jaw={np.round(actions[:14, 9], 2)}")
        return actions
    policy.infer = traced
    harness.run_episode(env, policy, seed)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
