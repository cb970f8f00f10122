"""`surgbot policy train`: LeRobot's training step over several datasets mixed by weight.

LeRobot 0.4.4's `lerobot-train` takes one dataset (its MultiLeRobotDataset is
switched off), so this wrapper builds the pieces `lerobot-train` builds, with
LeRobot's own functions: `make_policy`, `make_pre_post_processors`,
`make_optimizer_and_scheduler`, `update_policy` (forward, backward, clip,
step under `accelerate`), `save_checkpoint` / `load_training_state`.  What it
adds: several datasets (checked to carry the contract-9 features), a sampler
that draws each dataset with its weight, the datasets' stats merged,
CPU-friendly defaults, a progress bar, `train_log.jsonl` + `loss.png`, resume;
`--in-memory` (frame_cache.py: every video decoded once into RAM instead of
a seek per sample), `--first-frames K --first-frames-weight W` (the first K
frames of each episode, where the instruction alone decides the way, drawn
W times as often) and `--cosine` (warm-up, then cosine decay of the rate).
The output folder has LeRobot's layout (`checkpoints/<step>/pretrained_model`,
`checkpoints/last`), so `from_pretrained`, `lerobot-eval` and the server load it.

GPUs / several machines (LeRobot's own multi-GPU path):
    accelerate launch --multi_gpu --num_processes 8 -m surgbot.policies.vla.train \
        --dataset DIR --dataset DIR2 --weight 0.7 --weight 0.3 --out OUT --device cuda --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from lerobot.configs.default import DatasetConfig
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.datasets.compute_stats import aggregate_stats
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.scripts.lerobot_train import update_policy
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from lerobot.utils.random_utils import set_seed
from lerobot.utils.train_utils import (
    get_step_checkpoint_dir,
    load_training_state,
    save_checkpoint,
    update_last_checkpoint,
)
from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.vla.cli import add_train_arguments
from surgbot.policies.vla.configuration_surgvla import (
    ACTION_KEY,
    GOAL_TARGETS,
    IMAGE_KEY,
    MAX_YAW_NOISE_DEG,
    POSE_DIM,
    SCENE_DIM,
    STATE_KEY,
    SurgVLAConfig,
    check_crop,
    check_keypoint_stride,
)
from surgbot.policies.vla.frame_cache import InMemoryDataset
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy

CONTRACT_FPS = 15
LOG_FILE = "train_log.jsonl"
LOGGED_PARTS = ("l1_loss", "goal_l1_loss", "scene_l1_loss")   # keys of the policy's forward() info written to the log
LOSS_PNG = "loss.png"
SUMMARY_FILE = "train_summary.json"
LAST = "last"


def check_dataset(root: Path) -> LeRobotDatasetMetadata:
    """The dataset's metadata, or CliError naming what contract section 9 misses."""
    if not (root / "meta" / "info.json").is_file():
        raise CliError(f"{root} is not a LeRobotDataset v3 folder (no meta/info.json)")
    try:
        meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
    except Exception as exc:  # noqa: BLE001 - corrupt metadata: one line
        raise CliError(f"{root}: unreadable dataset metadata ({type(exc).__name__}: {exc})") from exc
    feats = meta.features
    missing = [k for k in (IMAGE_KEY, STATE_KEY, ACTION_KEY) if k not in feats]
    if missing:
        raise CliError(f"{root} lacks the features {missing} (contract section 9)")
    for key in (STATE_KEY, ACTION_KEY):
        if tuple(feats[key]["shape"]) != (POSE_DIM,):
            raise CliError(f"{root}: {key} has shape {tuple(feats[key]['shape'])}, expected ({POSE_DIM},)")
    img = feats[IMAGE_KEY]
    if img["dtype"] not in ("video", "image") or len(img["shape"]) != 3 or img["shape"][-1] != 3:
        raise CliError(f"{root}: {IMAGE_KEY} must be an RGB video/image, got {img['dtype']} {img['shape']}")
    if int(meta.fps) != CONTRACT_FPS:
        raise CliError(f"{root}: fps {meta.fps}, the contract uses {CONTRACT_FPS}")
    if meta.total_frames == 0:
        raise CliError(f"{root} has no frames")
    return meta


def mixing_weights(lengths: list[int], weights: list[float]) -> torch.Tensor:
    """Per-sample weights so that dataset i is drawn with probability weights[i] / sum(weights)."""
    total = float(sum(weights))
    return torch.cat([torch.full((n,), w / total / n, dtype=torch.double)
                      for n, w in zip(lengths, weights, strict=True)])


def plot_loss(out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if rows:
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.0)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("L1 loss (normalised actions)")
    ax.set_title("surgvla training loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / LOSS_PNG)
    plt.close(fig)
    return out / LOSS_PNG


def _datasets(args, cfg: SurgVLAConfig) -> tuple[list, list[LeRobotDatasetMetadata]]:
    metas = [check_dataset(d) for d in args.dataset]
    shapes = {tuple(m.features[IMAGE_KEY]["shape"]) for m in metas}
    if len(shapes) != 1:
        raise CliError(f"the datasets' {IMAGE_KEY} shapes differ: {sorted(shapes)}")
    if getattr(args, "in_memory", False):
        # decoded once (frame_cache.py): the same items, without a video seek per sample
        sets = [InMemoryDataset(LeRobotDataset(m.repo_id, root=d), cfg.chunk_size,
                                goal_target=cfg.goal_target, grasp_jaw_rad=cfg.grasp_jaw_rad,
                                scene=_scene_rows(d) if cfg.scene_dim else None,
                                scene_frames=cfg.scene_locator_frames)
                for d, m in zip(args.dataset, metas, strict=True)]
    else:
        sets = [LeRobotDataset(m.repo_id, root=d, delta_timestamps=resolve_delta_timestamps(cfg, m))
                for d, m in zip(args.dataset, metas, strict=True)]
    return sets, metas


def _scene_rows(root: Path):
    """Per episode, the scene summary rebuilt from the layout seeds (surgbot.sim.envs.scene_state)."""
    from surgbot.policies.data.scene_rows import episode_scene_vectors  # MuJoCo: only when asked for

    try:
        return episode_scene_vectors(root)
    except ValueError as exc:
        raise CliError(f"--scene-input: {exc}") from None


def _world_axes(datasets) -> list[float]:
    """The twin's world axes in the actions' frame (scene_state.world_axes_in_base), the same for every dataset."""
    from surgbot.policies.data.scene_rows import dataset_world_axes  # MuJoCo: only when asked for

    try:
        axes = [dataset_world_axes(d) for d in datasets]
    except ValueError as exc:
        raise CliError(f"--scene-anchored-yaw: {exc}") from None
    if any(not np.allclose(a, axes[0], atol=1e-9) for a in axes):
        raise CliError("--scene-anchored-yaw: the datasets' tasks run on twins with different arm mounts")
    return [float(v) for v in axes[0]]


def sample_weights(datasets: list, weights: list[float], first_frames: int, first_weight: float) -> torch.Tensor:
    """Dataset mixing weights, times (in-memory datasets) the early-frame oversampling within each dataset."""
    w = mixing_weights([len(d) for d in datasets], weights)
    if first_frames > 0 and first_weight != 1.0:
        w = w * torch.cat([d.first_frames_weight(first_frames, first_weight) for d in datasets])
    return w


def train(args: argparse.Namespace) -> dict:
    """Run (or resume) a training; returns the summary written to OUT/train_summary.json."""
    weights = args.weight or [1.0] * len(args.dataset)
    if len(weights) != len(args.dataset):
        raise CliError(f"{len(weights)} --weight values for {len(args.dataset)} --dataset folders")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise CliError("--weight values must be finite and > 0")
    if args.steps < 1 or args.batch_size < 1:
        raise CliError("--steps and --batch-size must be >= 1")
    if args.first_frames < 0 or not (math.isfinite(args.first_frames_weight) and args.first_frames_weight > 0):
        raise CliError("--first-frames must be >= 0 and --first-frames-weight finite and > 0")
    if args.first_frames > 0 and args.first_frames_weight != 1.0 and not args.in_memory:
        raise CliError("--first-frames oversampling needs --in-memory")
    out: Path = args.out
    last = out / "checkpoints" / LAST
    if args.resume and not (last / "pretrained_model").is_dir():
        raise CliError(f"--resume: no checkpoint at {last}")
    if not args.resume and out.exists() and any(out.iterdir()):
        raise CliError(f"{out} exists and is not empty (use --resume to continue it)")
    torch.set_num_threads(max(1, args.threads))

    cfg = SurgVLAConfig(device=args.device, push_to_hub=False)
    if args.lr is not None:
        cfg.optimizer_lr = args.lr
    if args.image_size:
        cfg.image_size = tuple(args.image_size)
    if getattr(args, "keypoint_stride", None) is not None:
        try:
            cfg.keypoint_stride = check_keypoint_stride(args.keypoint_stride, len(cfg.conv_channels))
        except ValueError as exc:
            raise CliError(f"--keypoint-stride: {exc}") from None
    if getattr(args, "goal_loss_weight", 0.0):
        if not (math.isfinite(args.goal_loss_weight) and args.goal_loss_weight > 0):
            raise CliError("--goal-loss-weight must be finite and >= 0")
        if not args.in_memory:
            raise CliError("--goal-loss-weight needs --in-memory (the goal target comes from the frame cache)")
        cfg.goal_loss_weight = float(args.goal_loss_weight)
    if getattr(args, "goal_from_image", False):
        if not cfg.goal_loss_weight > 0:
            raise CliError("--goal-from-image needs --goal-loss-weight > 0 (it changes the goal head)")
        cfg.goal_from_image = True
    if getattr(args, "goal_encoder", False):
        if not cfg.goal_loss_weight > 0:
            raise CliError("--goal-encoder needs --goal-loss-weight > 0 (the goal loss is all that trains it)")
        cfg.goal_encoder = True
    if getattr(args, "goal_target", None) is not None:
        if args.goal_target not in GOAL_TARGETS:
            raise CliError(f"--goal-target must be one of {', '.join(GOAL_TARGETS)}, got {args.goal_target!r}")
        if args.goal_target != cfg.goal_target and not cfg.goal_loss_weight > 0:
            raise CliError("--goal-target needs --goal-loss-weight > 0 (it is what the goal head learns)")
        cfg.goal_target = args.goal_target
    if getattr(args, "scene_input", False):
        if not args.in_memory:
            raise CliError("--scene-input needs --in-memory (the scene summary comes from the frame cache)")
        cfg.scene_dim = SCENE_DIM
        cfg.scene_locator = bool(getattr(args, "scene_locator", False))
        cfg.scene_relative = bool(getattr(args, "scene_relative", False))
        cfg.scene_anchored = bool(getattr(args, "scene_anchored", False))
        if getattr(args, "scene_anchored_yaw", False):
            if not cfg.scene_anchored:
                raise CliError("--scene-anchored-yaw needs --scene-anchored")
            cfg.scene_anchored_yaw = True
            cfg.scene_world_axes = _world_axes(args.dataset)
        cfg.scene_noise_m = float(args.scene_noise_mm) * 1e-3
        if not (math.isfinite(cfg.scene_noise_m) and cfg.scene_noise_m >= 0):
            raise CliError("--scene-noise-mm must be finite and >= 0")
        cfg.scene_yaw_noise_deg = float(getattr(args, "scene_yaw_noise_deg", 0.0))
        if not (math.isfinite(cfg.scene_yaw_noise_deg) and 0 <= cfg.scene_yaw_noise_deg <= MAX_YAW_NOISE_DEG):
            raise CliError(f"--scene-yaw-noise-deg must be in 0..{MAX_YAW_NOISE_DEG}")
    elif any(getattr(args, flag, False) for flag in ("scene_locator", "scene_relative", "scene_anchored",
                                                      "scene_anchored_yaw", "scene_yaw_noise_deg")):
        raise CliError("--scene-locator, --scene-relative, --scene-anchored(-yaw) and --scene-yaw-noise-deg need "
                       "--scene-input")
    cfg.jaw_absolute = bool(getattr(args, "jaw_absolute", False))
    if getattr(args, "goal_memory_max_jaw_rad", None) is not None:
        if not math.isfinite(args.goal_memory_max_jaw_rad):
            raise CliError("--goal-memory-max-jaw-rad must be finite")
        cfg.goal_memory_max_jaw_rad = float(args.goal_memory_max_jaw_rad)
    if getattr(args, "shift_px", None) is not None:
        if args.shift_px < 0:
            raise CliError("--shift-px must be >= 0")
        cfg.random_shift_px = int(args.shift_px)
    if getattr(args, "crop", None) is not None:
        try:
            cfg.crop = check_crop(args.crop)
        except ValueError as exc:
            raise CliError(f"--crop: {exc}") from None
    datasets, metas = _datasets(args, cfg)
    stats = aggregate_stats([m.stats for m in metas])
    cfg.known_instructions = sorted({str(t) for m in metas for t in m.tasks.index})

    train_cfg = TrainPipelineConfig(
        dataset=DatasetConfig(repo_id=metas[0].repo_id, root=str(args.dataset[0]), use_imagenet_stats=False),
        policy=cfg, output_dir=out, job_name="surgvla", resume=args.resume, seed=args.seed,
        num_workers=args.num_workers, batch_size=args.batch_size,
        # LeRobot builds the scheduler for cfg.steps (and shrinks a longer cosine to it): the schedule's length
        steps=max(args.steps, args.cosine_steps or 0), eval_freq=0,
        log_freq=args.log_freq, save_freq=args.save_freq)
    train_cfg.optimizer = cfg.get_optimizer_preset()
    train_cfg.scheduler = cfg.get_scheduler_preset()
    horizon = args.cosine_steps or args.steps
    if args.cosine:   # warm up, then decay to 1/20 of the rate: the last steps refine millimetres
        train_cfg.scheduler = CosineDecayWithWarmupSchedulerConfig(
            num_warmup_steps=max(1, horizon // 50), num_decay_steps=horizon,
            peak_lr=cfg.optimizer_lr, decay_lr=cfg.optimizer_lr / 20)

    accelerator = Accelerator(step_scheduler_with_optimizer=False, cpu=args.device == "cpu")
    set_seed(args.seed, accelerator=accelerator)
    if args.resume:
        pretrained = last / "pretrained_model"
        cfg = PreTrainedConfig.from_pretrained(pretrained)
        cfg.device, cfg.pretrained_path = args.device, pretrained
        train_cfg.policy = cfg
        policy = SurgVLAPolicy.from_pretrained(pretrained, config=cfg)
        pre, post = make_pre_post_processors(cfg, pretrained_path=str(pretrained))
    else:
        meta = metas[0]
        meta.stats = stats
        policy = make_policy(cfg, ds_meta=meta)
        pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    optimizer, scheduler = make_optimizer_and_scheduler(train_cfg, policy)
    step = 0
    if args.resume:
        step, optimizer, scheduler = load_training_state(last.resolve(), optimizer, scheduler)

    concat = torch.utils.data.ConcatDataset(datasets)
    sampler = torch.utils.data.WeightedRandomSampler(
        sample_weights(datasets, weights, args.first_frames, args.first_frames_weight),
        num_samples=len(concat), replacement=True,
        generator=torch.Generator().manual_seed(args.seed + step))
    loader = torch.utils.data.DataLoader(
        concat, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
        pin_memory=args.device == "cuda", drop_last=False,
        prefetch_factor=2 if args.num_workers > 0 else None)
    policy, optimizer, loader, scheduler = accelerator.prepare(policy, optimizer, loader, scheduler)

    accelerator.wait_for_everyone()   # every process checked `out` before the main one writes there
    out.mkdir(parents=True, exist_ok=True)
    meters = {"loss": AverageMeter("loss", ":.4f"), "grad_norm": AverageMeter("grdn", ":.3f"),
              "lr": AverageMeter("lr", ":0.1e"), "update_s": AverageMeter("updt_s", ":.3f"),
              "dataloading_s": AverageMeter("data_s", ":.3f")}
    tracker = MetricsTracker(args.batch_size, len(concat), sum(m.total_episodes for m in metas), meters,
                             initial_step=step, accelerator=accelerator)
    main = accelerator.is_main_process
    bar = tqdm(total=args.steps, initial=step, desc="surgvla", unit="step", file=sys.stderr,
               disable=not main, dynamic_ncols=True)
    t_start, step_times = time.perf_counter(), []
    it = iter(loader)
    parts: dict[str, list[float]] = {}
    with open(out / LOG_FILE, "a") as log:
        while step < args.steps:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            batch = pre(batch)
            tracker.dataloading_s = time.perf_counter() - t0
            tracker, info = update_policy(tracker, policy, batch, optimizer, train_cfg.optimizer.grad_clip_norm,
                                          accelerator=accelerator, lr_scheduler=scheduler)
            for key in LOGGED_PARTS:              # the loss's parts, averaged over the log window
                if key in (info or {}):
                    parts.setdefault(key, []).append(float(info[key]))
            step += 1
            tracker.step()
            step_times.append(time.perf_counter() - t0)
            if main:
                bar.update(1)
                bar.set_postfix(loss=f"{tracker.loss.val:.4f}")
                if step % args.log_freq == 0 or step == args.steps:
                    log.write(json.dumps({"step": step, "loss": tracker.loss.avg, "lr": tracker.lr.val,
                                          "step_s": tracker.update_s.avg + tracker.dataloading_s.avg,
                                          **{k: sum(v) / len(v) for k, v in parts.items()}}) + "\n")
                    log.flush()
                    parts = {}
                    tracker.reset_averages()
            if step % args.save_freq == 0 or step == args.steps:
                if main:
                    ckpt = get_step_checkpoint_dir(out, args.steps, step)
                    save_checkpoint(ckpt, step, train_cfg, accelerator.unwrap_model(policy), optimizer,
                                    scheduler, pre, post)
                    update_last_checkpoint(ckpt)
                    plot_loss(out)
                accelerator.wait_for_everyone()
    bar.close()
    summary = {
        "steps": step, "datasets": [str(d) for d in args.dataset], "weights": weights,
        "frames": [len(d) for d in datasets], "batch_size": args.batch_size, "device": args.device,
        "wall_s": time.perf_counter() - t_start,
        "step_s_median": float(np.median(step_times)) if step_times else None,
        # the step folder `last` links to, relative to the run folder: the summary stays true when the
        # run (or a copy of the checkpoint with it) is moved
        "checkpoint": str((last / "pretrained_model").resolve().relative_to(out.resolve())),
        "instructions": cfg.known_instructions,
        "parameters": int(sum(p.numel() for p in accelerator.unwrap_model(policy).parameters())),
    }
    if main:
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    accelerator.end_training()
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="surgbot.policies.vla.train", description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        summary = train(args)
    except CliError as exc:
        print(f"surgbot policy train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
