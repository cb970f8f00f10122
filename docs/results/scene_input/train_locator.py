"""A scene locator trained on its own, then joined to a checkpoint trained with the true scene input.

The action head of the bound (`--scene-input`, the simulator's summary) is kept as it is; a `Locator`
(the policy's own class: conv stack, keypoints, language FiLM) learns the summary from first frames
rendered straight from the environment (no video coding, as the needle probe did), one per layout and
colour, for needle_pick (seeds from 3000), reach and peg_transfer (seeds from 0 and 6000, each colour
the layout allows); all training seeds are below 10000.  The two are saved as one checkpoint with
`scene_locator` on: it needs nothing from the simulator at evaluation.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/train_locator.py BOUND_CKPT OUT \
        [STEPS] [NEEDLE_LAYOUTS] [OTHER_LAYOUTS] [FRAME]

FRAME `world` (default): the locator learns the points in the pad's plane (world x, y about their mean,
20 mm units) and the twin's fixed PSM1_base transform maps them into the summary when the two are
joined; `base`: it learns the summary as it is (this did not learn: policies/vla/README.md).

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

from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY, SCENE_KEY, SCENE_POSITIONS, STATE_KEY
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
WORLD_UNIT_M = 0.02                   # "world" targets: pad-plane x, y in units of 20 mm about their mean
WORLD_TO_BASE = np.eye(4)


def world_targets(scene: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """The summaries [N,8] as pad-plane targets [N,6]: grasp x, y, orientation, place x, y (world), and
    the centre they are taken about."""
    to_world = np.linalg.inv(WORLD_TO_BASE)
    s = scene.numpy().astype(np.float64)
    xy = [(to_world[:3, :3] @ s[:, lo:hi].T + to_world[:3, 3:]).T[:, :2] for lo, hi in SCENE_POSITIONS]
    centre = xy[0].mean(axis=0)
    t = np.concatenate([(xy[0] - centre) / WORLD_UNIT_M, s[:, 3:5], (xy[1] - centre) / WORLD_UNIT_M], axis=1)
    return torch.from_numpy(t).float(), centre


def world_to_summary(policy: SurgVLAPolicy, centre: np.ndarray, height_m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M [8,6], c [8]): pad-plane targets -> the summary normalised like the actions (a fixed affine map:
    a pad-plane point at world height `height_m`, through the twin's PSM1_base transform)."""
    R, o = WORLD_TO_BASE[:3, :3], WORLD_TO_BASE[:3, 3]
    std = (policy.action_std[:3] + policy.config.normalization_eps).numpy().astype(np.float64)
    mean = policy.action_mean[:3].numpy().astype(np.float64)
    A = R[:, :2] * WORLD_UNIT_M / std[:, None]                                   # [3, 2]
    c = (R[:, :2] @ centre + R[:, 2] * height_m + o - mean) / std
    M, off = np.zeros((8, 6)), np.zeros(8)
    M[0:3, 0:2], M[3:5, 2:4], M[5:8, 4:6] = A, np.eye(2), A
    off[0:3], off[5:8] = c, c
    return torch.from_numpy(M).float(), torch.from_numpy(off).float()


def frames(rt: PolicyRuntime, task: str, seeds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(encoder-ready images [N,3,h,w], language [N,384], true summaries [N,8]) of first frames; the
    world -> PSM1_base transform (fixed in the twin) in WORLD_TO_BASE."""
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
            WORLD_TO_BASE[:] = env.unwrapped.to_base(np.eye(4))
    env.close()
    return torch.cat(images), torch.cat(langs), torch.cat(scenes)


def main(bound: str, out: str, steps: int, needle_layouts: int, other_layouts: int, frame: str) -> None:
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
    if frame == "world":     # learn pad-plane points, map them into the summary afterwards
        target, centre = world_targets(scene)
        to_world = np.linalg.inv(WORLD_TO_BASE)
        height = float((to_world[:3, :3] @ scene[0, 0:3].numpy() + to_world[:3, 3])[2])
        M, off = world_to_summary(policy, centre, height)
    elif frame == "base":    # learn the summary as it is (normalised like the actions)
        target = policy._true_scene({SCENE_KEY: scene})
        M, off = torch.eye(SCENE_DIM), torch.zeros(SCENE_DIM)
    else:
        raise SystemExit(f"FRAME must be world or base, got {frame!r}")
    val = {task: frames(rt, task, range(VAL_SEED, VAL_SEED + VAL_LAYOUTS)) for task in ("needle_pick", "reach")}
    print(f"{len(x)} training frames, {sum(len(v[0]) for v in val.values())} validation, "
          f"{time.time() - t0:.0f} s", flush=True)
    scale = (policy.action_std[:3] + cfg.normalization_eps).numpy()

    locator = Locator(cfg, target.shape[1])
    opt = torch.optim.AdamW(locator.parameters(), LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=LR_END)

    def evaluate() -> dict:
        locator.eval()
        res = {}
        with torch.no_grad():
            for task, (vx, vl, vs) in val.items():
                pred = locator(vx, vl) @ M.T + off
                err = (pred - policy._true_scene({SCENE_KEY: vs}))[:, :2].numpy() * scale[:2]
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
    weights = locator.state_dict()           # the last layer composed with the affine map: 8 outputs
    weights["head.2.weight"], weights["head.2.bias"] = M @ weights["head.2.weight"], M @ weights["head.2.bias"] + off
    joined.model.scene_locator.load_state_dict(weights)
    joined.save_pretrained(dest)
    (Path(out) / "locator_log.json").write_text(json.dumps(
        {"bound": bound, "frame": frame, "steps": steps, "needle_layouts": needle_layouts,
         "other_layouts": other_layouts, "training_frames": len(x), "log": log}, indent=1))
    print(f"joined checkpoint: {dest}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4000,
         int(sys.argv[4]) if len(sys.argv) > 4 else 800, int(sys.argv[5]) if len(sys.argv) > 5 else 200,
         sys.argv[6] if len(sys.argv) > 6 else "world")
