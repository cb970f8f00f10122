"""locator_ensemble.py with the roll correction of fit_roll.py: the members' mean yaw pair turned by
-(c1 x read-out roll + c0), times 4 (the block's symmetry), the read-out from member 0's head inputs.

    MUJOCO_GL=osmesa python ens_roll.py HEAD.npz BOUND TASK FIRST_SEED N OUT.json LOCATED [LOCATED ...]
"""
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from head_inputs import head_inputs  # noqa: E402
from locator_ensemble import Ensemble, main  # noqa: E402

from surgbot.policies.vla.configuration_surgvla import SCENE_ORIENTATION  # noqa: E402

SYMMETRY = 4
HEAD = np.load(sys.argv[1])       # fit_roll.py OUT.npz


def read_roll(member, image, state, instruction) -> float:
    """The ridge read-out of the view's roll (deg) from `member`'s locator head inputs on this frame."""
    rt = member.runtime
    kp, pool = head_inputs(rt.policy, rt.pre(rt.observation(image, state, instruction)))
    f = np.concatenate([kp[0].numpy(), pool[0].numpy()])
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
