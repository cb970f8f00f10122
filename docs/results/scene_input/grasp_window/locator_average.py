"""A located checkpoint's scene estimate from the first frame, as it is and averaged over shifted images
(`Locator.averaged`, every whole-pixel shift within RADIUS px), against the simulator's summary of the same
reset: medians of the grasp point's error (3-D and PSM1_base x, y; mm), the place point's (mm) and the
orientation's (deg, the symmetry taken out), and the 90th percentiles of the grasp's and the orientation's.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_window/locator_average.py \
        CKPT TASK FIRST_SEED N RADIUS
"""

import sys

import numpy as np
import torch

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import SCENE_ORIENTATION, SCENE_POSITIONS
from surgbot.policies.vla.train_locator import orientation_error_deg
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY, scene_vector


def errors(est: torch.Tensor, true: np.ndarray, inner, k: int) -> tuple[float, float, float, float]:
    est = est.clone()
    scale = inner.action_std[:3] + inner.config.normalization_eps
    for lo, hi in SCENE_POSITIONS:                      # normalised like the actions -> metres
        est[lo:hi] = est[lo:hi] * scale + inner.action_mean[:3]
    est = est.numpy()
    grasp, place = ((est[slice(*p)] - true[slice(*p)]) * 1e3 for p in SCENE_POSITIONS)
    deg = float(orientation_error_deg(torch.as_tensor(est[None, SCENE_ORIENTATION]),
                                      torch.as_tensor(true[None, SCENE_ORIENTATION]), k)[0]) if k else 0.0
    return float(np.linalg.norm(grasp)), float(np.linalg.norm(grasp[:2])), float(np.linalg.norm(place)), deg


def main(checkpoint: str, task: str, seeds: range, radius: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env(task, policy)
    inner = policy.runtime.policy
    locator = inner.model.scene_locator
    seen = {}
    averaged = locator.averaged

    def capture(image, language, shift_px):          # the locator's input as the policy prepares it
        seen["input"] = (image, language)
        return averaged(image, language, shift_px)

    locator.averaged = capture
    k = ORIENTATION_SYMMETRY[task]
    rows = {"as is": [], f"averaged, {radius} px": []}
    with torch.no_grad():
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            true = scene_vector(env)
            policy.reset()
            policy.infer(obs["image"], obs["state"], info["instruction"])
            image, language = seen["input"]
            rows["as is"].append(errors(locator(image, language)[0], true, inner, k))
            rows[f"averaged, {radius} px"].append(errors(averaged(image, language, radius)[0], true, inner, k))
    for name, r in rows.items():
        r = np.array(r)
        med, p90 = np.median(r, axis=0), np.percentile(r, 90, axis=0)
        print(f"{name:14s} median grasp 3-D {med[0]:.2f} xy {med[1]:.2f} place {med[2]:.2f} yaw {med[3]:.1f} | "
              f"p90 grasp 3-D {p90[0]:.2f} yaw {p90[3]:.1f}")
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], range(int(sys.argv[3]), int(sys.argv[3]) + int(sys.argv[4])), int(sys.argv[5]))
