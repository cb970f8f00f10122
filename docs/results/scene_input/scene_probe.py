"""How far the scene locator's estimate (a --scene-locator checkpoint, from the episode's first image) is
from the simulator's scene summary: the grasp point and the place point (horizontal, mm, in PSM1_base as
the actions are) and the orientation (degrees, the object's own symmetry taken out).

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/scene_probe.py CHECKPOINT TASK FIRST_SEED N [OUT.json]
"""

import json
import sys

import numpy as np
import torch

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.train_locator import orientation_error_deg
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY, scene_vector


def main(checkpoint: str, task: str, first_seed: int, n: int, out: str | None) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    model = policy.runtime.policy
    env = harness.make_env(task, policy)
    eps = model.config.normalization_eps
    mean, std = model.action_mean[:3].numpy(), model.action_std[:3].numpy() + eps
    k = ORIENTATION_SYMMETRY[task]
    rows = []
    for seed in range(first_seed, first_seed + n):
        obs, info = env.reset(seed=seed)
        policy.reset()
        policy.infer(obs["image"], obs["state"].astype(np.float32), info["instruction"])
        est = model._scene_memory[0].detach().numpy().astype(np.float64).copy()
        est[0:3] = est[0:3] * std + mean
        est[5:8] = est[5:8] * std + mean
        true = scene_vector(env).astype(np.float64)
        row = {"seed": seed, "grasp_mm": float(np.linalg.norm(est[:2] - true[:2]) * 1e3),
               "place_mm": float(np.linalg.norm(est[5:7] - true[5:7]) * 1e3)}
        if k:
            row["orient_deg"] = float(orientation_error_deg(torch.from_numpy(est[None, 3:5]),
                                                            torch.from_numpy(true[None, 3:5]), k)[0])
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"checkpoint": checkpoint, "task": task, "first_seed": first_seed, "episodes": n}
    for key in ("grasp_mm", "place_mm", "orient_deg"):
        vals = [r[key] for r in rows if key in r]
        if vals:
            summary[key] = {"median": float(np.median(vals)), "p90": float(np.percentile(vals, 90))}
    summary["grasp_within_2mm"] = float(np.mean([r["grasp_mm"] < 2 for r in rows]))
    print(json.dumps(summary))
    if out:
        with open(out, "w") as f:
            json.dump({"summary": summary, "episodes": rows}, f, indent=1)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
