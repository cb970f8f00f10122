"""`surgbot policy train-locator`: a scene locator trained on its own and joined to a bound checkpoint.

The bound is a checkpoint trained with `--scene-input`: its action head was given the simulator's scene
summary (observation.environment_state, surgbot.sim.envs.scene_state) and cannot act without it.  This
stage keeps that action head as it is and trains a `Locator` (the policy's own class: conv stack,
keypoints, language FiLM) to give the summary from the episode's first image, then saves the two as one
checkpoint with `scene_locator` on, which needs nothing from the simulator.

Why a stage of its own and not `--scene-locator` inside `policy train`: trained beside the action head on
the recorded episodes' first frames, the locator saw a few hundred layouts, each through video coding,
and stayed 10-13 mm off (policies/vla/README.md, "The scene input").  Here it sees one freshly rendered
first frame per layout and target colour for many more layouts (needle_pick from seed 3000, reach from 0,
peg_transfer from 6000; all training seeds stay below 10000, evaluation uses >= 100000) and learns the
points in the pad's plane (world x, y about their mean, in WORLD_UNIT_M): the same targets expressed in
the tilted PSM1_base frame did not learn, for reasons not found.  The twin's fixed world -> PSM1_base
transform then maps the plane targets into the summary; the map is affine, so it is folded into the
locator's last layer and the joined checkpoint is an ordinary `scene_locator` checkpoint.

Each first frame also records where the grasp and place points appear in the image (projected through
that layout's camera, `scene_state.scene_pixels`): the locator's anchor keypoints learn to sit there and
its glimpse looks at the image around anchor 0 (policies/vla/encoder_surgvla.py).  Without them the
locator learnt the needle's position only after a plateau of 1500-3500 steps at the layouts' mean (or
never) and its direction not at all (32 deg median error, near chance).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from surgbot.errors import CliError
from surgbot.policies.vla.configuration_locator import (
    CHECKPOINT_SUBDIR,
    FIRST_SEEDS,
    SUMMARY_FILE,
    VAL_TASKS,
    LocatorTrainingConfig,
)
from surgbot.policies.vla.configuration_surgvla import (
    IMAGE_KEY,
    LANGUAGE_KEY,
    SCENE_DIM,
    SCENE_KEY,
    SCENE_ORIENTATION,
    SCENE_POSITIONS,
)
from surgbot.policies.vla.encoder_surgvla import Locator, anchor_loss, crop_pixels, glimpse_source, random_shift
from surgbot.policies.vla.join_locator import check_bound, join
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy
from surgbot.sim.envs.scene_state import ORIENTATION_SYMMETRY

WORLD_UNIT_M = 0.02          # the locator's position targets: pad-plane x, y in units of 20 mm about their mean
PLANE_DIM = 6                # its outputs: grasp x, y; the summary's orientation pair; place x, y
PLANE_ORIENTATION = slice(2, 4)


def orientation_error_deg(pred: torch.Tensor, true: torch.Tensor, symmetry: int) -> np.ndarray:
    """[N] angle between predicted and true (cos k*yaw, sin k*yaw) pairs [N, 2], as an object angle (/k)."""
    diff = torch.atan2(pred[:, 1], pred[:, 0]) - torch.atan2(true[:, 1], true[:, 0])
    return np.degrees(np.abs(np.arctan2(np.sin(diff.numpy()), np.cos(diff.numpy())))) / symmetry


@dataclass
class FirstFrames:
    """Encoder-ready first frames of some layouts, their instructions and true summaries."""

    images: torch.Tensor        # [N, 3, h, w] cropped and resized as the action head's encoder sees them
    language: torch.Tensor      # [N, language_dim]
    scenes: torch.Tensor        # [N, 8] the simulator's summary (metres, PSM1_base)
    base_T_world: np.ndarray    # [4, 4] the twin's fixed world -> PSM1_base transform
    anchors: torch.Tensor       # [N, 2, 2] grasp and place points in the images (x, y; encoder_surgvla's units)
    # [N, 3, H', W'] float16: the crop at the glimpse's finer resolution (LocatorTrainingConfig.frame_size);
    # None: the glimpse reads `images`
    glimpse_images: torch.Tensor | None = None

    @staticmethod
    def join(parts: list[FirstFrames]) -> FirstFrames:
        fine = None if parts[0].glimpse_images is None else torch.cat([p.glimpse_images for p in parts])
        return FirstFrames(torch.cat([p.images for p in parts]), torch.cat([p.language for p in parts]),
                           torch.cat([p.scenes for p in parts]), parts[0].base_T_world,
                           torch.cat([p.anchors for p in parts]), fine)

    def glimpse(self, idx=slice(None)) -> torch.Tensor | None:
        """The glimpse's images of rows `idx` as float32 (None: it reads the encoder's)."""
        return None if self.glimpse_images is None else self.glimpse_images[idx].float()


def crop_coordinates(pixels: np.ndarray, frame_hw: tuple[int, int], crop) -> np.ndarray:
    """[..., 2] (column, row) pixels of the camera frame -> the cropped image's normalised (x, y): -1 and
    1 its outer edges (resizing the crop leaves them unchanged)."""
    h, w = frame_hw
    r0, c0, rows, cols = crop_pixels(h, w, crop) if crop is not None else (0, 0, h, w)
    out = np.array(pixels, dtype=np.float64)
    out[..., 0] = (out[..., 0] - c0) / cols * 2 - 1
    out[..., 1] = (out[..., 1] - r0) / rows * 2 - 1
    return out


def render_first_frames(runtime, task: str, seeds, appearance: str = "none", frame_size=None,
                        glimpse_scale: float = 1.0) -> FirstFrames:
    """One reset per layout seed and target colour the layout allows, rendered at the checkpoint's image
    size (or `frame_size`) and put through its own preprocessing (no video coding); `appearance` other
    than "none": seen through that appearance shift (policies/evaluation/appearance.py, drawn from the
    layout seed).  `glimpse_scale` other than 1: also the crop at that many times the encoder's size."""
    import gymnasium as gym

    from surgbot.sim.envs import ENV_IDS
    from surgbot.sim.envs.scene_state import scene_pixels, scene_vector
    from surgbot.sim.tasks import get_task

    h, w = frame_size or runtime.image_shape[:2]
    cfg = runtime.config
    t = get_task(task)
    env = gym.make(ENV_IDS[task], render_mode="rgb_array", image_size=(h, w))
    if appearance != "none":
        from surgbot.policies.evaluation.appearance import AppearanceShift
        env = AppearanceShift(env, appearance)
    images, langs, scenes, anchors, fine = [], [], [], [], []
    try:
        for seed in seeds:
            for colour in t.target_choices(t.layout(seed, np.zeros(2))) or (None,):
                obs, info = env.reset(seed=seed, options=None if colour is None else {"target": colour})
                batch = runtime.pre(runtime.observation(obs["image"], obs["state"], info["instruction"]))
                images.append(runtime.policy.prepare_image(batch[IMAGE_KEY]))   # eval mode: no shift
                if glimpse_scale != 1.0:
                    fine.append(glimpse_source(batch[IMAGE_KEY], cfg.crop, cfg.image_size, glimpse_scale).half())
                langs.append(batch[LANGUAGE_KEY])
                scenes.append(torch.from_numpy(scene_vector(env))[None])
                anchors.append(crop_coordinates(scene_pixels(env), (h, w), cfg.crop))
        base_T_world = np.asarray(env.unwrapped.to_base(np.eye(4)), dtype=np.float64)
    finally:
        env.close()   # osmesa: one rendering context per process at a time
    return FirstFrames(torch.cat(images), torch.cat(langs), torch.cat(scenes), base_T_world,
                       torch.from_numpy(np.stack(anchors)).float(), torch.cat(fine) if fine else None)


def glimpse_scale_for(config, frame_size) -> float:
    """How many times the encoder's image_size the crop of a `frame_size` frame is (1.0 for None); the crop
    must keep the encoder's aspect (within a pixel) so one scale serves both sides."""
    if frame_size is None:
        return 1.0
    _, _, rows, cols = crop_pixels(*frame_size, config.crop) if config.crop is not None else (0, 0, *frame_size)
    h, w = config.image_size
    if abs(rows / h * w - cols) > 1.0:
        raise CliError(f"--frame-size {frame_size[0]}x{frame_size[1]}: its crop ({rows}x{cols}) is not the "
                       f"encoder's image ({h}x{w}) scaled")
    return rows / h


class PadPlaneMap:
    """The locator's targets (pad-plane points about a centre, WORLD_UNIT_M) <-> the scene summary
    normalised like the actions, through the fixed world -> PSM1_base transform.  Every summary position
    lies at one height above the pad (scene_state), so the map from the plane back is affine."""

    def __init__(self, base_T_world: np.ndarray, scenes: torch.Tensor, action_mean: np.ndarray,
                 action_scale: np.ndarray):
        self.base_T_world = np.asarray(base_T_world, dtype=np.float64)
        self.world_T_base = np.linalg.inv(self.base_T_world)
        self.mean, self.scale = np.asarray(action_mean, np.float64)[:3], np.asarray(action_scale, np.float64)[:3]
        grasp = self._to_world(scenes.numpy().astype(np.float64)[:, slice(*SCENE_POSITIONS[0])])
        self.centre_xy = grasp[:, :2].mean(axis=0)
        self.height_m = float(grasp[0, 2])

    def _to_world(self, points: np.ndarray) -> np.ndarray:
        return (self.world_T_base[:3, :3] @ points.T + self.world_T_base[:3, 3:]).T

    def targets(self, scenes: torch.Tensor) -> torch.Tensor:
        """[N, 8] summaries (metres) -> [N, 6] plane targets."""
        s = scenes.numpy().astype(np.float64)
        xy = [(self._to_world(s[:, lo:hi])[:, :2] - self.centre_xy) / WORLD_UNIT_M for lo, hi in SCENE_POSITIONS]
        return torch.from_numpy(np.concatenate([xy[0], s[:, 3:5], xy[1]], axis=1)).float()

    def to_summary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M [8, 6], offset [8]): normalised summary = M @ plane target + offset."""
        R, o = self.base_T_world[:3, :3], self.base_T_world[:3, 3]
        A = R[:, :2] * WORLD_UNIT_M / self.scale[:, None]
        c = (R[:, :2] @ self.centre_xy + R[:, 2] * self.height_m + o - self.mean) / self.scale
        M, off = np.zeros((SCENE_DIM, PLANE_DIM)), np.zeros(SCENE_DIM)
        (g0, g1), (p0, p1) = SCENE_POSITIONS
        M[g0:g1, 0:2], M[g1:p0, 2:4], M[p0:p1, 4:6] = A, np.eye(2), A
        off[g0:g1], off[p0:p1] = c, c
        return torch.from_numpy(M).float(), torch.from_numpy(off).float()


def train_locator(bound: str | Path, out: Path, tc: LocatorTrainingConfig, progress=print) -> dict:
    """Train, join, save OUT/checkpoints/last/pretrained_model and OUT/train_summary.json; returns the summary."""
    from surgbot.policies.vla.runtime import PolicyRuntime

    rt = PolicyRuntime(bound)
    # seeded after loading the bound, whose construction draws its own initial weights: the locator's
    # initialisation and batches then do not depend on which action head it joins
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    out = Path(out)
    check_bound(rt, out, tc.glimpse_px)
    policy: SurgVLAPolicy = rt.policy
    cfg = rt.config
    t0 = time.time()
    fine = glimpse_scale_for(cfg, tc.frame_size)
    counts = {"needle_pick": tc.needle_layouts, "reach": tc.other_layouts, "peg_transfer": tc.peg_layouts}
    parts = []
    looks = ("none",) if tc.appearance == "none" else ("none", tc.appearance)
    for task, n in counts.items():
        for look in looks:
            parts.append(render_first_frames(rt, task, range(FIRST_SEEDS[task], FIRST_SEEDS[task] + n), look,
                                             tc.frame_size, fine))
            progress(f"rendered {task} ({look}): {len(parts[-1].images)} first frames ({time.time() - t0:.0f} s)")
    train = FirstFrames.join(parts)
    scale = (policy.action_std + cfg.normalization_eps).numpy()
    plane = PadPlaneMap(train.base_T_world, train.scenes, policy.action_mean.numpy(), scale)
    target = plane.targets(train.scenes)
    val = {(task if look == "none" else f"{task}_{look}", task):
           render_first_frames(rt, task, range(tc.val_seed, tc.val_seed + tc.val_layouts), look, tc.frame_size,
                               fine)
           for task in VAL_TASKS for look in looks}
    M, off = plane.to_summary()

    locator = Locator(cfg, PLANE_DIM, tc.glimpse_px)
    column_weight = torch.ones(PLANE_DIM)      # L1 weight of each output: the orientation pair's is set apart
    column_weight[PLANE_ORIENTATION] = tc.orientation_loss_weight
    opt = torch.optim.AdamW(locator.parameters(), tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, tc.steps, eta_min=tc.lr_end)

    def evaluate() -> dict:
        """Per validation task, the grasp point's horizontal error (median, mm; PSM1_base x, y), where the
        place point is another point (peg_transfer's target) its error too, for an object with an
        orientation its orientation error (median, degrees, the symmetry taken out), and with anchors how
        far anchor 0 is from the grasp point in the image (median, encoder pixels)."""
        locator.eval()
        res = {}
        with torch.no_grad():
            for (name, task), v in val.items():
                located = locator.locate(v.images, v.language, glimpse_image=v.glimpse())
                pred = located.out @ M.T + off
                if anchored:
                    px = (located.anchors[:, 0] - v.anchors[:, 0]) * half_size
                    res[f"{name}_anchor_px_median"] = float(px.norm(dim=-1).median())
                err = (pred - policy.normalised_scene({SCENE_KEY: v.scenes})).numpy()
                for point, (lo, hi) in zip(("grasp", "place"), SCENE_POSITIONS, strict=True):
                    if point == "place" and torch.equal(v.scenes[:, lo:hi], v.scenes[:, slice(*SCENE_POSITIONS[0])]):
                        continue                 # reach, needle_pick: the place point is the grasp point
                    xy = err[:, lo:lo + 2] * scale[:2]
                    res[f"{name}_{point}_mm_median"] = float(np.median(np.linalg.norm(xy, axis=1)) * 1e3)
                if ORIENTATION_SYMMETRY[task]:
                    res[f"{name}_orientation_deg_median"] = float(np.median(
                        orientation_error_deg(pred[:, SCENE_ORIENTATION], v.scenes[:, SCENE_ORIENTATION],
                                              ORIENTATION_SYMMETRY[task])))
        locator.train()
        return res

    anchored = tc.anchor_loss_weight > 0 or tc.glimpse_px > 0
    shift_px = cfg.random_shift_px if tc.shift_px is None else tc.shift_px
    half_size = torch.tensor([train.images.shape[-1] / 2.0, train.images.shape[-2] / 2.0])   # units -> px
    log = []
    for step in range(1, tc.steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(target), tc.batch_size))
        images, moved_px = random_shift(train.images[idx], shift_px) if shift_px else (
            train.images[idx], torch.zeros(len(idx), 2))
        anchors = train.anchors[idx] + (moved_px / half_size)[:, None]   # where the shifted images show them
        glimpse_at = None
        if tc.glimpse_px:
            # a finer glimpse reads its own image, not shifted: centred where that image shows the point
            at = anchors[:, 0] if train.glimpse_images is None else train.anchors[idx, 0]
            glimpse_at = at + torch.randn(len(idx), 2) * tc.glimpse_noise_px / half_size
        located = locator.locate(images, train.language[idx], glimpse_at, train.glimpse(idx))
        loss = ((located.out - target[idx]).abs() * column_weight).mean()
        if tc.anchor_loss_weight > 0:
            loss = loss + tc.anchor_loss_weight * anchor_loss(located, anchors, tc.anchor_sigma_cells)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % tc.eval_every_steps == 0 or step == tc.steps:
            log.append({"step": step, "loss": float(loss.detach()), **evaluate(), "wall_s": time.time() - t0})
            progress(json.dumps(log[-1]))

    weights = locator.state_dict()       # its last layer composed with the plane -> summary map
    weights["head.2.weight"], weights["head.2.bias"] = M @ weights["head.2.weight"], M @ weights["head.2.bias"] + off
    join(rt, [weights], out / CHECKPOINT_SUBDIR, tc.glimpse_px, tc.frame_size, fine)
    summary = {"bound": str(rt.path), "checkpoint": str(CHECKPOINT_SUBDIR), "training_frames": len(target),
               "config": asdict(tc), "final": log[-1], "wall_s": time.time() - t0, "log": log}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def run(args: argparse.Namespace) -> dict:
    try:
        tc = LocatorTrainingConfig(steps=args.steps, needle_layouts=args.needle_layouts,
                                   other_layouts=args.other_layouts, peg_layouts=args.peg_layouts,
                                   batch_size=args.batch_size,
                                   eval_every_steps=args.eval_every, val_layouts=args.val_layouts,
                                   orientation_loss_weight=args.orientation_weight,
                                   glimpse_px=args.glimpse_px, anchor_loss_weight=args.anchor_weight,
                                   appearance=args.appearance, shift_px=args.shift_px,
                                   frame_size=args.frame_size, seed=args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    torch.set_num_threads(max(1, args.threads))
    from surgbot.policies.vla.runtime import CheckpointError
    try:
        return train_locator(args.bound, args.out, tc, progress=lambda line: print(line, flush=True))
    except CheckpointError as exc:
        raise CliError(str(exc)) from exc
