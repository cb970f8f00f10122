"""`surgbot idm train --dataset DIR [--dataset DIR ...] --out CKPT`: train the IDM on recorded episodes.

Episodes of every dataset are decoded once into memory (data.py); a share
(`val_share`, at least one when there are 4 or more) is held out.  Adam
with a cosine learning rate, batches of random windows with augmentation
(processor_idm.py), one torch thread by default (2 shared cores).  Every
`--save-freq` steps and at the end the folder gets the checkpoint
(model.safetensors, config.json, stats.safetensors) and `training_state.pt`
(optimiser, step, random state) so `--resume` continues; `train_log.jsonl`
and `loss.png` grow as it goes.  At the end the held-out episodes measure
the error model the labeller's fusion weights by (offsets and poses, per
component) and the chunk error in mm / deg, written to `metrics.json`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.idm.configuration_idm import IDMConfig
from surgbot.policies.idm.data import DatasetError, Episode, WindowSampler, load_dataset
from surgbot.policies.idm.modeling_idm import IDMModel
from surgbot.policies.idm.processor_idm import IDMStats, augment_pairs, centre_crop, to_float

LOG_FILE = "train_log.jsonl"
LOSS_PNG = "loss.png"
METRICS = "metrics.json"
STATE_FILE = "training_state.pt"
MIN_EPISODES_FOR_VAL = 4
EVAL_BATCH = 64


def split(episodes: list[Episode], share: float, seed: int) -> tuple[list[Episode], list[Episode]]:
    if len(episodes) < MIN_EPISODES_FOR_VAL or share <= 0:
        return episodes, []
    n_val = max(1, int(round(share * len(episodes))))
    order = np.random.default_rng(seed).permutation(len(episodes))
    val = set(order[:n_val].tolist())
    return [e for i, e in enumerate(episodes) if i not in val], [e for i, e in enumerate(episodes) if i in val]


def plot_loss(out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(s) for s in (out / LOG_FILE).read_text().splitlines() if s.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if rows:
        steps = [r["step"] for r in rows]
        for key, label in (("loss", "total"), ("chunk", "chunk offsets"), ("pose", "per-frame pose")):
            ax.plot(steps, [r[key] for r in rows], lw=1.0, label=label)
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("L1 (normalised)")
    ax.set_title("IDM training loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / LOSS_PNG)
    plt.close(fig)


@torch.no_grad()
def predict_windows(model: IDMModel, sampler: WindowSampler, with_state: bool) -> tuple[np.ndarray, ...]:
    """Every window of the sampler's episodes: predicted and true offsets, poses (physical units)."""
    cfg, st = model.cfg, model.stats
    pred_d, true_d, pred_p, true_p, pred_chunk, true_chunk = [], [], [], [], [], []
    for e, ep in enumerate(sampler.eps):
        imgs = centre_crop(to_float(torch.from_numpy(ep.frames)), cfg.image_size)
        feats = torch.cat([model.encode(imgs[i:i + EVAL_BATCH]) for i in range(0, len(imgs), EVAL_BATCH)])
        poses = st.unnorm_state(model.pose(feats)).numpy()
        x = sampler.traj[e]
        n = len(ep.frames) - cfg.k
        ts = torch.arange(n)
        state = torch.from_numpy(x[:n])
        off = st.unnorm_delta(model.offsets(feats[ts], feats[ts + cfg.k], st.norm_state(state) if with_state else None))
        off = off.numpy()
        truth = np.stack([ep.actions[t:t + cfg.k] - x[t] for t in range(n)])
        pred_d.append(off)
        true_d.append(truth)
        pred_p.append(poses)
        true_p.append(x)
        anchor = x[:n] if with_state else poses[:n]
        pred_chunk.append(anchor[:, None] + off)
        true_chunk.append(np.stack([ep.actions[t:t + cfg.k] for t in range(n)]))
    return tuple(np.concatenate(v) for v in (pred_d, true_d, pred_p, true_p, pred_chunk, true_chunk))


def pose_errors(pred: np.ndarray, true: np.ndarray) -> dict:
    """Position (mm), rotation (deg, angle between the 6D rotations), jaw (deg): median and p90."""
    from surgbot.geometry import rot6d_to_matrix
    p = pred.reshape(-1, pred.shape[-1])
    t = true.reshape(-1, true.shape[-1])
    pos = np.linalg.norm(p[:, :3] - t[:, :3], axis=1) * 1e3
    rot = []
    for a, b in zip(p[:, 3:9], t[:, 3:9], strict=True):
        try:
            Ra, Rb = rot6d_to_matrix(a), rot6d_to_matrix(b)
            rot.append(math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(Ra.T @ Rb) - 1) / 2)))))
        except ValueError:
            rot.append(180.0)
    rot = np.asarray(rot)
    jaw = np.degrees(np.abs(p[:, 9] - t[:, 9]))
    out = {}
    for name, v in (("position_mm", pos), ("rotation_deg", rot), ("jaw_deg", jaw)):
        out[name] = {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "n": int(v.size)}
    return out


def _episodes(datasets: list[Path], cfg: IDMConfig, per_dataset: int | None) -> list[Episode]:
    eps = []
    for d in datasets:
        try:
            got = load_dataset(d, cfg.load_size, cfg.pose_dim)
        except DatasetError as exc:
            raise CliError(str(exc)) from None
        if per_dataset is not None:
            if len(got) < per_dataset:
                raise CliError(f"{d}: {len(got)} episodes, fewer than --episodes {per_dataset}")
            got = got[:per_dataset]
        eps += got
    if not any(len(e.frames) > cfg.k for e in eps):
        raise CliError(f"no episode longer than k = {cfg.k} frames in {', '.join(map(str, datasets))}")
    return eps


def train(datasets: list[Path], out: Path, cfg: IDMConfig, resume: bool = False, save_freq: int = 500,
          log_freq: int = 25, threads: int = 1, progress: bool = True, per_dataset: int | None = None) -> dict:
    """Train (or resume) into `out`; `per_dataset`: only the first N episodes of each dataset."""
    out = Path(out)
    if resume:
        if not (out / STATE_FILE).is_file():
            raise CliError(f"--resume: no training state in {out}")
        steps = cfg.steps
        cfg = IDMConfig.load(out / "config.json")
        cfg.steps = max(steps, cfg.steps) if steps else cfg.steps
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not empty (use --resume to continue it)")
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(cfg.seed)
    eps = _episodes(datasets, cfg, per_dataset)
    train_eps, val_eps = split(eps, cfg.val_share, cfg.seed)
    sampler = WindowSampler(train_eps, cfg.k, cfg.seed)
    states, deltas = sampler.all_windows()
    stats = IDMStats.from_data(states, deltas)
    model = IDMModel(cfg, stats)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if resume:
        state = torch.load(out / STATE_FILE, weights_only=False)
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(out / "model.safetensors")))
        model.stats = IDMStats.from_tensors(load_file(str(out / "stats.safetensors")))
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        gen.set_state(state["generator"])
        sampler.rng.bit_generator.state = state["sampler"]
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        model.save(out)
    bar = tqdm(total=cfg.steps, initial=step, desc="idm", unit="step", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    t0, acc = time.perf_counter(), {"loss": 0.0, "chunk": 0.0, "pose": 0.0, "n": 0}
    model.train()
    with open(out / LOG_FILE, "a") as log:
        while step < cfg.steps:
            lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            pairs, ref_a, ref_b, dl = sampler.batch(cfg.batch_size)
            images = augment_pairs(to_float(torch.from_numpy(pairs)), cfg, gen)
            known = (torch.rand(cfg.batch_size, generator=gen) >= cfg.state_dropout).float()
            losses = model.loss(images, torch.from_numpy(ref_a), torch.from_numpy(ref_b), torch.from_numpy(dl), known)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            step += 1
            for key in ("loss", "chunk", "pose"):
                acc[key] += float(losses[key].detach())
            acc["n"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{acc['loss'] / acc['n']:.3f}")
            if step % log_freq == 0 or step == cfg.steps:
                row = {"step": step, "lr": lr, **{k: acc[k] / acc["n"] for k in ("loss", "chunk", "pose")},
                       "wall_s": time.perf_counter() - t0}
                log.write(json.dumps(row) + "\n")
                log.flush()
                acc = {"loss": 0.0, "chunk": 0.0, "pose": 0.0, "n": 0}
            if step % save_freq == 0 or step == cfg.steps:
                model.save(out)
                torch.save({"optimizer": opt.state_dict(), "step": step, "generator": gen.get_state(),
                            "sampler": sampler.rng.bit_generator.state}, out / STATE_FILE)
                plot_loss(out)
    bar.close()
    train_s = time.perf_counter() - t0
    model.eval()
    metrics = evaluate_and_calibrate(model, train_eps, val_eps)
    ckpt = model.save(out)
    rows = [json.loads(s) for s in (out / LOG_FILE).read_text().splitlines() if s.strip()]
    summary = {"checkpoint": str(out.resolve()), "id": ckpt, "steps": step, "train_s_this_run": train_s,
               "episodes": {"train": len(train_eps), "val": len(val_eps)}, "windows": sampler.windows,
               "datasets": [str(d) for d in datasets], "loss_first": rows[0]["loss"] if rows else None,
               "loss_last": rows[-1]["loss"] if rows else None,
               "parameters": int(sum(p.numel() for p in model.parameters())), "config": asdict(cfg), **metrics}
    (out / METRICS).write_text(json.dumps(summary, indent=1))
    plot_loss(out)
    return summary


def evaluate_and_calibrate(model: IDMModel, train_eps: list[Episode], val_eps: list[Episode]) -> dict:
    """Held-out error model for the fusion (train episodes when nothing is held out) and chunk errors."""
    held = val_eps or train_eps
    sampler = WindowSampler(held, model.cfg.k, 0)
    out = {"calibrated_on": "held-out episodes" if val_eps else "training episodes (too few to hold out)"}
    pd_, td_, pp, tp, pc, tc = predict_windows(model, sampler, with_state=True)
    sigma_delta = np.sqrt(np.mean((pd_ - td_) ** 2, axis=0))
    sigma_state = np.sqrt(np.mean((pp - tp) ** 2, axis=0))
    floor = model.stats.delta_std * 1e-2
    model.stats.sigma_delta = np.maximum(sigma_delta, floor).astype(np.float32)
    model.stats.sigma_state = np.maximum(sigma_state, model.stats.state_std * 1e-2).astype(np.float32)
    out["val_chunk_with_state"] = pose_errors(pc, tc)
    _, _, _, _, pc2, tc2 = predict_windows(model, sampler, with_state=False)
    out["val_chunk_without_state"] = pose_errors(pc2, tc2)
    out["val_pose_head"] = pose_errors(pp, tp)
    return out
