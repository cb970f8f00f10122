"""The bound action head fed the mean of several located checkpoints' scene estimates (each from the
episode's first frame, every part; the orientation pair rescaled to the members' mean length), and each
member's estimate with the truth in the JSON.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/locator_parts/locator_ensemble.py \
        BOUND TASK FIRST_SEED N OUT.json LOCATED [LOCATED ...]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scene_mix import located_summary  # noqa: E402

from surgbot.policies.evaluation import harness  # noqa: E402
from surgbot.policies.vla.network_surgvla import members_mean as net_members_mean  # noqa: E402


def members_mean(ests: np.ndarray) -> np.ndarray:
    """[M, 8] members' summaries -> their mean as `SurgVLANet.locate` takes it (network_surgvla.members_mean)."""
    return net_members_mean(torch.from_numpy(np.asarray(ests))[:, None])[0].numpy()


class Ensemble:
    def __init__(self, bound, located):
        self.bound, self.located = bound, located
        self.metadata = bound.metadata
        self.summary = None
        self.estimates = []

    def reset(self):
        self.summary = None
        self.bound.reset()

    def infer(self, image, state, instruction, environment_state=None):
        if self.summary is None:
            ests = np.stack([located_summary(loc, image, state, instruction) for loc in self.located])
            s = members_mean(ests)
            record = {"estimates": ests.tolist(), "truth": np.asarray(environment_state).tolist()}
            self.summary = self.corrected(s, record, image, state, instruction).astype(np.float32)
            self.estimates.append(record)
        return self.bound.infer(image, state, instruction, self.summary)

    def corrected(self, summary, record, image, state, instruction):
        """The summary the head is told (roll/ens_roll.py changes it and adds to the JSON's `record`)."""
        return summary


def main(ensemble=Ensemble, argv=None):
    argv = sys.argv[1:] if argv is None else argv
    bound, task, first, n, out = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    located = [harness.SurgVLAChunkPolicy(p) for p in argv[5:]]
    base = harness.SurgVLAChunkPolicy(bound)
    h, w = located[0].metadata["image_size"]
    base.runtime.image_shape, base.metadata["image_size"] = (h, w, 3), [h, w]
    policy = ensemble(base, located)
    env = harness.make_env(task, located[0])
    outcomes = []
    for seed in range(first, first + n):
        outcomes.append(bool(harness.run_episode(env, policy, seed).success))
        print(seed, outcomes[-1], flush=True, file=sys.stderr)
    json.dump({"bound": bound, "located": argv[5:], "task": task, "first_seed": first, "episodes": n,
               "successes": sum(outcomes), "success": outcomes, "scene": policy.estimates}, open(out, "w"))
    env.close()


if __name__ == "__main__":
    main()
