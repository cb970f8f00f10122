"""The anchored head's weights (tool, grasp point, place point) along one episode: for every other
chunk request, the weights of the chunk's first and last steps.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/anchored/anchor_weights.py CHECKPOINT TASK SEED
"""

import sys

import surgbot.policies.vla.modeling_surgvla as modeling
from surgbot.policies.evaluation import harness


def main(checkpoint: str, task: str, seed: int) -> None:
    seen = []
    anchored_chunk = modeling.anchored_chunk

    def spy(*args):
        chunk, weights = anchored_chunk(*args)
        seen.append(weights[0].numpy().copy())
        return chunk, weights
    modeling.anchored_chunk = spy
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env(task, policy)
    res = harness.run_episode(env, policy, seed)
    print(task, seed, "success", res.success)
    for k in range(0, len(seen), 2):
        print(f"chunk {k:3d}: first step tool/grasp/place {seen[k][0].round(2)}, last {seen[k][-1].round(2)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
