"""locator_ensemble.py with the roll correction of fit_roll.py: the members' mean yaw pair turned by
-(c1 x read-out roll + c0), times 4 (the block's symmetry), the read-out from member 0's head inputs.

    MUJOCO_GL=osmesa python ens_roll.py HEAD.npz BOUND TASK FIRST_SEED N OUT.json LOCATED [LOCATED ...]
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from locator_ensemble import Ensemble, main  # noqa: E402

from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY, SCENE_ORIENTATION  # noqa: E402
from surgbot.policies.vla.encoder_surgvla import feature_map  # noqa: E402

SYMMETRY = 4
HEAD = np.load(sys.argv[1])       # fit_roll.py OUT.npz


def read_roll(member, image, state, instruction) -> float:
    """The ridge read-out of the view's roll (deg) from `member`'s locator head inputs on this frame."""
    rt = member.runtime
    policy = rt.policy
    loc = policy.model.scene_locator
    with torch.no_grad():
        batch = rt.pre(rt.observation(image, state, instruction))
        lang = loc.language(batch[LANGUAGE_KEY])
        x = feature_map(loc.blocks, torch.split(loc.film(lang), loc._split, dim=-1),
                        policy.prepare_image(batch[IMAGE_KEY]))
        kp = loc.keypoints.positions(loc.keypoints.logits(x), *x.shape[-2:])
        f = np.concatenate([kp[0].numpy(), x.mean(dim=(2, 3))[0].numpy()])
    return float(np.r_[(f - HEAD["mu"]) / HEAD["sd"], 1.0] @ HEAD["w"])


class RollCorrected(Ensemble):
    def corrected(self, summary, record, image, state, instruction):
        roll = read_roll(self.located[0], image, state, instruction)
        turn = -np.radians(SYMMETRY * np.polyval(HEAD["c"], roll))
        c, s = summary[SCENE_ORIENTATION]
        summary[SCENE_ORIENTATION] = [c * np.cos(turn) - s * np.sin(turn), c * np.sin(turn) + s * np.cos(turn)]
        record.update(roll_hat=roll, corrected=summary.tolist())
        return summary


if __name__ == "__main__":
    main(RollCorrected, sys.argv[2:])
