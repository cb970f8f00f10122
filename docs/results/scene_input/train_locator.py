"""A scene locator trained on its own, then joined to a checkpoint trained with the true scene input.

The action head of the bound (`--scene-input`, the simulator's summary) is kept as it is; a `Locator`
(the policy's own class: conv stack, keypoints, language FiLM) learns the summary from first frames
rendered straight from the environment (no video coding, as the needle probe did), one per layout and
colour, for needle_pick (seeds from 3000), reach and peg_transfer (seeds from 0 and 6000, each colour
the layout allows); all training seeds are below 10000.  The two are saved as one checkpoint with
`scene_locator` on: it needs nothing from the simulator at evaluation.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/train_locator.py BOUND_CKPT OUT \
        [STEPS] [NEEDLE_LAYOUTS] [OTHER_LAYOUTS]

OUT/pretrained_model is the joined checkpoint; OUT/locator_log.json the validation errors (layouts
60000-60029: the grasp point's horizontal distance, median, mm) every 500 steps.
"""

import json
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY, SCENE_KEY, STATE_KEY
from surgbot.policies.vla.modeling_surgvla import Locator, SurgVLAPolicy, _random_shift, crop_image
from surgbot.policies.vla.runtime import PolicyRuntime
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.scene_state import SCENE_DIM, scene_vector
from surgbot.sim.tasks import get_task

BATCH = 32
LR, LR_END = 1e-3, 5e-5
EVAL_EVERY = 500
FIRST_SEEDS = {"needle_pick": 3000, "reach": 0, "peg_transfer": 6000}
VAL_SEED, VAL_LAYOUTS = 60000, 30


def frames(rt: PolicyRuntime, task: str, seeds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(encoder-ready images [N,3,h,w], language [N,384], true summaries [N,8]) of first frames."""
    h, w = rt.image_shape[:2]
    env = gym.make(ENV_IDS[task], render_mode="rgb_array", image_size=(h, w))
    t = get_task(task)
    images, langs, scenes = [], [], []
    for seed in seeds:
        for colour in t.target_choices(t.layout(seed, np.zeros(2))) or (None,):
            obs, info = env.reset(seed=seed, options=None if colour is None else {"target": colour})
            batch = rt.pre({IMAGE_KEY: torch.from_numpy(obs["image"].copy()).permute(2, 0, 1).float().div_(255.0)[None],
                            STATE_KEY: torch.from_numpy(obs["state"].astype(np.float32))[None],
                            "task": info["instruction"]})
            image = crop_image(batch[IMAGE_KEY], rt.config.crop)
            images.append(F.interpolate(image, size=tuple(rt.config.image_size), mode="bilinear", align_corners=False))
            langs.append(batch[LANGUAGE_KEY])
            scenes.append(torch.from_numpy(scene_vector(env))[None])
    env.close()
    return torch.cat(images), torch.cat(langs), torch.cat(scenes)


def main(bound: str, out: str, steps: int, needle_layouts: int, other_layouts: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rt = PolicyRuntime(bound)
    policy: SurgVLAPolicy = rt.policy
    cfg = rt.config
    t0 = time.time()
    train = [frames(rt, task, range(FIRST_SEEDS[task], FIRST_SEEDS[task] + n))
             for task, n in (("needle_pick", needle_layouts), ("reach", other_layouts),
                             ("peg_transfer", other_layouts))]
    x, lang, scene = (torch.cat(parts) for parts in zip(*train, strict=True))
    target = policy._true_scene({SCENE_KEY: scene})
    val = {task: frames(rt, task, range(VAL_SEED, VAL_SEED + VAL_LAYOUTS)) for task in ("needle_pick", "reach")}
    print(f"{len(x)} training frames, {sum(len(v[0]) for v in val.values())} validation, "
          f"{time.time() - t0:.0f} s", flush=True)
    scale = (policy.action_std[:3] + cfg.normalization_eps).numpy()

    locator = Locator(cfg, SCENE_DIM)
    opt = torch.optim.AdamW(locator.parameters(), LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=LR_END)

    def evaluate() -> dict:
        locator.eval()
        res = {}
        with torch.no_grad():
            for task, (vx, vl, vs) in val.items():
                err = (locator(vx, vl) - policy._true_scene({SCENE_KEY: vs}))[:, :2].numpy() * scale[:2]
                res[f"{task}_grasp_mm_median"] = float(np.median(np.linalg.norm(err, axis=1)) * 1e3)
        locator.train()
        return res

    log = []
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(x), BATCH))
        pred = locator(_random_shift(x[idx], cfg.random_shift_px), lang[idx])
        loss = F.l1_loss(pred, target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % EVAL_EVERY == 0 or step == steps:
            log.append({"step": step, "loss": float(loss.detach()), **evaluate(), "wall_s": time.time() - t0})
            print(json.dumps(log[-1]), flush=True)

    dest = Path(out) / "pretrained_model"
    dest.mkdir(parents=True, exist_ok=True)
    for f in Path(rt.path).iterdir():        # the processors and everything else the bound has
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, dest / f.name)
    cfg.scene_locator = True
    joined = SurgVLAPolicy(cfg)
    missing, unexpected = joined.load_state_dict(policy.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("model.scene_locator.") for k in missing), (missing, unexpected)
    joined.model.scene_locator.load_state_dict(locator.state_dict())
    joined.save_pretrained(dest)
    (Path(out) / "locator_log.json").write_text(json.dumps(
        {"bound": bound, "steps": steps, "needle_layouts": needle_layouts, "other_layouts": other_layouts,
         "training_frames": len(x), "log": log}, indent=1))
    print(f"joined checkpoint: {dest}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4000,
         int(sys.argv[4]) if len(sys.argv) > 4 else 800, int(sys.argv[5]) if len(sys.argv) > 5 else 200)
