"""locator_ensemble.py with the roll correction of fit_roll.py: the members' mean yaw pair turned by
-(c1 x read-out roll + c0), times 4 (the block's symmetry), the read-out from member 0's head inputs.

    MUJOCO_GL=osmesa python ens_roll.py HEAD.npz BOUND TASK FIRST_SEED N OUT.json LOCATED [LOCATED ...]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scene_mix import located_summary  # noqa: E402

from surgbot.policies.evaluation import harness  # noqa: E402
from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY, SCENE_ORIENTATION  # noqa: E402
from surgbot.policies.vla.encoder_surgvla import feature_map  # noqa: E402

H = np.load(sys.argv.pop(1))     # fit_roll.py OUT.npz
SYM = 4


def roll_hat(pol, image, state, instruction):
    rt = pol.runtime
    policy = rt.policy
    loc = policy.model.scene_locator
    with torch.no_grad():
        batch = rt.pre(rt.observation(image, state, instruction))
        img = policy.prepare_image(batch[IMAGE_KEY])
        lang = loc.language(batch[LANGUAGE_KEY])
        x = feature_map(loc.blocks, torch.split(loc.film(lang), loc._split, dim=-1), img)
        kp = loc.keypoints.positions(loc.keypoints.logits(x), *x.shape[-2:])
        f = np.concatenate([kp[0].numpy(), x.mean(dim=(2, 3))[0].numpy()])
    return float(np.r_[(f - H["mu"]) / H["sd"], 1.0] @ H["w"])


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
            s = ests.mean(axis=0)
            o = ests[:, SCENE_ORIENTATION]
            s[SCENE_ORIENTATION] *= np.linalg.norm(o, axis=1).mean() / max(np.linalg.norm(s[SCENE_ORIENTATION]), 1e-9)
            r = roll_hat(self.located[0], image, state, instruction)
            turn = -np.radians(SYM * np.polyval(H["c"], r))
            cs, sn = s[SCENE_ORIENTATION]
            s[SCENE_ORIENTATION] = [cs * np.cos(turn) - sn * np.sin(turn), cs * np.sin(turn) + sn * np.cos(turn)]
            self.estimates.append({"estimates": ests.tolist(), "roll_hat": r, "corrected": s.tolist(),
                                   "truth": np.asarray(environment_state).tolist()})
            self.summary = s.astype(np.float32)
        return self.bound.infer(image, state, instruction, self.summary)


def main():
    bound, task, first, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    located = [harness.SurgVLAChunkPolicy(p) for p in sys.argv[6:]]
    base = harness.SurgVLAChunkPolicy(bound)
    h, w = located[0].metadata["image_size"]
    base.runtime.image_shape, base.metadata["image_size"] = (h, w, 3), [h, w]
    policy = Ensemble(base, located)
    env = harness.make_env(task, located[0])
    outcomes = []
    for seed in range(first, first + n):
        outcomes.append(bool(harness.run_episode(env, policy, seed).success))
        print(seed, outcomes[-1], flush=True, file=sys.stderr)
    json.dump({"bound": bound, "located": sys.argv[6:], "task": task, "first_seed": first, "episodes": n,
               "successes": sum(outcomes), "success": outcomes, "scene": policy.estimates}, open(out, "w"))
    env.close()


main()
