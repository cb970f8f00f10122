"""How far a located checkpoint's scene summary is from the simulator's, per layout: the locator's estimate
from the first frame (what the episode then keeps) against `scene_vector` of the same reset.  Grasp point
error (PSM1_base x, y, z, mm), place point error (mm), orientation error (deg, the symmetry taken out);
then medians and 90th percentiles (3-D, horizontal, |z|, place, orientation).

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_height/locator_error.py CKPT TASK FIRST_SEED N
"""

import sys

import numpy as np
import torch

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import SCENE_ORIENTATION, SCENE_POSITIONS
from surgbot.policies.vla.train_locator import orientation_error_deg
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY, scene_vector


def main(checkpoint: str, task: str, first_seed: int, n: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env(task, policy)
    inner = policy.runtime.policy
    scale = inner.action_std[:3] + inner.config.normalization_eps
    k = ORIENTATION_SYMMETRY[task]
    rows = []
    for seed in range(first_seed, first_seed + n):
        obs, info = env.reset(seed=seed)
        true = scene_vector(env)
        policy.reset()
        policy.infer(obs["image"], obs["state"], info["instruction"])
        est = inner._scene_memory[0].clone()          # normalised like the actions: back to metres
        for lo, hi in SCENE_POSITIONS:
            est[lo:hi] = est[lo:hi] * scale + inner.action_mean[:3]
        est = est.numpy()
        grasp, place = ((est[slice(*p)] - true[slice(*p)]) * 1e3 for p in SCENE_POSITIONS)
        deg = float(orientation_error_deg(torch.as_tensor(est[None, SCENE_ORIENTATION]),
                                          torch.as_tensor(true[None, SCENE_ORIENTATION]), k)[0]) if k else 0.0
        rows.append((np.linalg.norm(grasp), np.linalg.norm(grasp[:2]), grasp[2], np.linalg.norm(place), deg))
        print(seed, f"grasp {np.round(grasp, 2)} |{rows[-1][0]:.2f}| place |{rows[-1][3]:.2f}| yaw {deg:.1f}",
              flush=True)
    r = np.abs(np.array(rows))
    for name, v in (("median", np.median(r, axis=0)), ("p90   ", np.percentile(r, 90, axis=0))):
        print(f"{name} grasp 3d {v[0]:.2f} xy {v[1]:.2f} z {v[2]:.2f} place {v[3]:.2f} yaw {v[4]:.1f}")
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
