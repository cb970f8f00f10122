"""A bound checkpoint (the simulator's summary) evaluated on frames rendered at another camera size: the
action head's encoder crops and resizes any frame, so this measures what a larger frame (asked for by a
locator with a finer glimpse) does to the head itself.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/locator_parts/frame_size_bound.py \
        BOUND TASK FIRST_SEED N HEIGHT WIDTH
"""

import json
import sys

from surgbot.policies.evaluation import harness


def main(checkpoint: str, task: str, first_seed: int, n: int, h: int, w: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    policy.runtime.image_shape = (h, w, 3)          # the frame the runtime accepts and the harness renders
    policy.metadata["image_size"] = [h, w]
    env = harness.make_env(task, policy)
    out = []
    for seed in range(first_seed, first_seed + n):
        out.append(bool(harness.run_episode(env, policy, seed).success))
        print(seed, out[-1], file=sys.stderr, flush=True)
    print(json.dumps({"checkpoint": checkpoint, "task": task, "frame": [h, w], "successes": sum(out),
                      "success": out}))
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(v) for v in sys.argv[3:7]))
