"""Probes of a trained IDM on the held-out clips in $W (see commands.sh).

    probes.py pair CKPT TASK     the pair head (pair_head.diff) from frame 0 to every frame
    probes.py gain CKPT          each window's last offset against the truth (true state given)
    probes.py fusion CKPT        labelled error for fusion pose weights x offset sigma scales
    probes.py scale CKPT         labelled error with the position offsets scaled up before the fusion
"""

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import torch

import surgbot.policies.idm.label as lab
from surgbot.policies.idm import fuse as fusion
from surgbot.policies.idm.processor_idm import centre_crop, resize_frames, to_float
from surgbot.policies.video.clips import read_truth

W = Path(os.environ.get("W", "out/idm_tried"))
TASKS = ("reach", "needle_pick")


def clips(task, k):
    _, _, again = lab._clips(W / f"real_{task}", k)
    for clip in again():
        truth = read_truth(W / f"real_{task}", clip.name)
        yield clip, truth, np.concatenate([truth["states"][:1], truth["actions"][:-1]])


def features(model, clip):
    cfg = model.cfg
    imgs = centre_crop(to_float(torch.from_numpy(resize_frames(clip.frames, cfg.load_size))), cfg.image_size)
    with torch.no_grad():
        return imgs, model.encode(imgs)


def pair(model, task):
    st = model.stats
    for clip, _, x in clips(task, model.cfg.k):
        _, f = features(model, clip)
        with torch.no_grad():
            p0 = st.unnorm_pair(model.pair(f[[0] * len(f)], f)).numpy()
        err = np.linalg.norm(x[0, :3] + p0[:, :3] - x[:, :3], axis=1) * 1e3
        moved = np.linalg.norm(x[:, :3] - x[0, :3], axis=1) * 1e3
        at = [int(q * (len(x) - 1)) for q in (0.25, 0.5, 0.75, 1.0)]
        print(clip.name, f"median {np.median(err):.1f} mm; at 25/50/75/100%: {np.round(err[at], 1)} mm "
              f"after moving {np.round(moved[at], 1)} mm")


def gain(model):
    cfg, st = model.cfg, model.stats
    for task in TASKS:
        pred, true = [], []
        for clip, truth, x in clips(task, cfg.k):
            imgs, f = features(model, clip)
            n = len(f) - cfg.k
            ts = torch.arange(n)
            extra = {"motion": model.window_motion(imgs, ts)} if hasattr(model, "window_motion") else {}
            with torch.no_grad():
                off = st.unnorm_delta(model.offsets(f[ts], f[ts + cfg.k], st.norm_state(torch.from_numpy(x[:n])),
                                                    **extra)).numpy()
            pred.append(off[:, -1])
            true.append(np.stack([truth["actions"][t + cfg.k - 1] - x[t] for t in range(n)]))
        p, t = np.concatenate(pred), np.concatenate(true)
        for d, name in ((0, "x"), (1, "y"), (2, "z")):
            slope = float((p[:, d] * t[:, d]).sum() / (t[:, d] ** 2).sum())
            rms = float(np.sqrt(((p[:, d] - t[:, d]) ** 2).mean())) * 1e3
            print(f"{task} {name}: gain {slope:.3f}, motion rms {np.sqrt((t[:, d] ** 2).mean()) * 1e3:.2f} mm, "
                  f"error rms {rms:.2f} mm")


def labelled(model, change):
    original = fusion.fuse
    lab.fuse = change(original)
    try:
        out = []
        for task in TASKS:
            errs = [np.linalg.norm(lab.label_clip(model, c.frames, c.first_state).poses[1:, :3]
                                   - truth["actions"][:-1, :3], axis=1) * 1e3
                    for c, truth, _ in clips(task, model.cfg.k)]
            out.append(f"{task} {np.median(np.concatenate(errs)):.2f} mm")
        return ", ".join(out)
    finally:
        lab.fuse = original


def fusion_weights(model):
    for inflation, scale in itertools.product((0.25, 0.5, 1.0, 4.0), (1.0, 3.0)):
        def change(f, inflation=inflation, scale=scale):
            return lambda pe, off, ss, sd, fs, **kw: f(pe, off, ss, sd * scale, fs, pose_inflation=inflation)
        print(f"pose inflation {inflation}, offset sigma x{scale}: {labelled(model, change)}")


def offset_scale(model):
    for g, inflation in itertools.product((1.0, 1.15, 1.3), (0.25, 4.0)):
        def change(f, g=g, inflation=inflation):
            def scaled(pe, off, ss, sd, fs, **kw):
                off = off.copy()
                off[:, :, :3] *= g
                return f(pe, off, ss, sd, fs, pose_inflation=inflation)
            return scaled
        print(f"position offsets x{g}, pose inflation {inflation}: {labelled(model, change)}")


if __name__ == "__main__":
    what, ckpt = sys.argv[1], lab._load_model(W / sys.argv[2])
    {"pair": lambda: pair(ckpt, sys.argv[3]), "gain": lambda: gain(ckpt), "fusion": lambda: fusion_weights(ckpt),
     "scale": lambda: offset_scale(ckpt)}[what]()
