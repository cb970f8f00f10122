"""Which part of the located scene summary costs the episodes: an action head trained with the true scene
input (the bound checkpoint) evaluated with the simulator's summary, except that the parts named in PARTS
come from a located checkpoint's locator instead (its estimate from the episode's first frame, as the
located checkpoint keeps it).  PARTS: any of g (grasp point xyz), y (its orientation), p (place point),
joined, e.g. "gyp" (everything located: the located checkpoint itself when its head is the bound's).
Frames are rendered at the size the located checkpoint asks for.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/locator_parts/scene_mix.py \
        BOUND LOCATED TASK FIRST_SEED N PARTS
"""

import json
import sys

import numpy as np

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import SCENE_ORIENTATION, SCENE_POSITIONS

PART_SLICES = {"g": slice(*SCENE_POSITIONS[0]), "y": SCENE_ORIENTATION, "p": slice(*SCENE_POSITIONS[1])}


def located_summary(located: harness.SurgVLAChunkPolicy, image, state, instruction) -> np.ndarray:
    """The located checkpoint's scene memory after its first call, in the summary's own units."""
    inner = located.runtime.policy
    located.reset()
    located.infer(image, state, instruction)
    est = inner._scene_memory[0].clone()            # normalised like the actions' positions
    scale = inner.action_std[:3] + inner.config.normalization_eps
    for lo, hi in SCENE_POSITIONS:
        est[lo:hi] = est[lo:hi] * scale + inner.action_mean[:3]
    return est.numpy().astype(np.float64)


class Mixed:
    """The bound ChunkPolicy fed the true summary with PARTS replaced by the located estimate."""

    def __init__(self, bound, located, parts: str):
        self.bound, self.located, self.parts = bound, located, parts
        self.metadata = bound.metadata
        self.summary = None

    def reset(self) -> None:
        self.summary = None
        self.bound.reset()

    def infer(self, image, state, instruction, environment_state=None):
        if self.summary is None:
            s = np.asarray(environment_state, np.float64).copy()
            est = located_summary(self.located, image, state, instruction)
            for part in self.parts:
                s[PART_SLICES[part]] = est[PART_SLICES[part]]
            self.summary = s.astype(np.float32)
        return self.bound.infer(image, state, instruction, self.summary)


def main(bound: str, located: str, task: str, first_seed: int, n: int, parts: str) -> None:
    if not parts or set(parts) - set(PART_SLICES):
        raise SystemExit(f"PARTS: letters of {''.join(PART_SLICES)}, got {parts!r}")
    base = harness.SurgVLAChunkPolicy(bound)
    loc = harness.SurgVLAChunkPolicy(located)
    # frames of the size the located checkpoint asks for (a finer-glimpse locator's 240x320), which the
    # bound then accepts too: its encoder crops and resizes any frame (frame_size_bound.py)
    h, w = loc.metadata["image_size"]
    base.runtime.image_shape, base.metadata["image_size"] = (h, w, 3), [h, w]
    policy = Mixed(base, loc, parts)
    env = harness.make_env(task, loc)
    outcomes = []
    for seed in range(first_seed, first_seed + n):
        outcomes.append(bool(harness.run_episode(env, policy, seed).success))
        print(seed, outcomes[-1], flush=True, file=sys.stderr)
    print(json.dumps({"bound": bound, "located": located, "task": task, "first_seed": first_seed,
                      "episodes": n, "located_parts": parts, "successes": sum(outcomes),
                      "success": outcomes}))
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
