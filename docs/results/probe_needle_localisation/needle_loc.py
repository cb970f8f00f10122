"""Needle localisation probe (policies/vla/README.md): can the VLA's conv stack find the needle at 96x128?

First frames of needle_pick layouts (training seeds 3000-3799, validation 60000-60099) rendered at one
size; the bundled recipe's pad crop (0, 0.125, 0.8333, 0.6875); the SurgVLA conv stack (FiLM at
identity), spatial soft-argmax keypoints + pooled features -> MLP -> the middle of the needle's arc,
xy in world.  Every EVAL_EVERY steps, on validation: the median distance of the estimate to the wire
(the arc) and to the arc's middle, and the share within 3 mm of the wire.  One torch thread.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/probe_needle_localisation/needle_loc.py 96x128 3000 out.json
"""

import json
import math
import sys
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import surgbot.sim.envs  # noqa: F401 - registers the environments
from surgbot.policies.vla.encoder_surgvla import FiLMBlock, SpatialSoftArgmax
from surgbot.sim.envs import ENV_IDS

CROP = (0.0, 0.125, 0.8333, 0.6875)       # the bundled checkpoint's pad crop (fractions)
NEEDLE_RADIUS_M, HALF_ARC_RAD = 0.012, 0.375 * math.pi     # sim/scene.py: a 3/8 circle
CHANNELS = (24, 48, 96, 128)
KEYPOINTS = 32
BATCH = 32
EVAL_EVERY = 500
TARGET_SCALE_MM = 20.0                    # the regression target in units of 20 mm


def frames(seeds, h: int, w: int):
    """(pad crops uint8 [N, h', w', 3], arc middles xy [N, 2] m, arcs xy [N, 121, 2] m) of first frames."""
    env = gym.make(ENV_IDS["needle_pick"], image_size=(h, w))
    u = env.unwrapped
    imgs, mids, arcs = [], [], []
    for s in seeds:
        obs, _ = env.reset(seed=int(s))
        body = u.model.body("needle").id
        c, R = u.data.xpos[body].copy(), u.data.xmat[body].reshape(3, 3).copy()
        arc = [c + R @ np.array([NEEDLE_RADIUS_M * math.cos(a), NEEDLE_RADIUS_M * math.sin(a), 0.0])
               for a in np.linspace(-HALF_ARC_RAD, HALF_ARC_RAD, 121)]
        top, left, hh, ww = CROP
        crop = obs["image"][round(top * h): round((top + hh) * h), round(left * w): round((left + ww) * w)]
        imgs.append(crop.copy())
        mids.append((c + R @ np.array([NEEDLE_RADIUS_M, 0.0, 0.0]))[:2])
        arcs.append(np.array(arc)[:, :2])
    env.close()
    return np.stack(imgs), np.array(mids), np.stack(arcs)


class Locator(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        halvings = stride.bit_length() - 1
        ins = (3,) + CHANNELS[:-1]
        self.blocks = nn.ModuleList(FiLMBlock(a, b, 2 if i < halvings else 1)
                                    for i, (a, b) in enumerate(zip(ins, CHANNELS, strict=True)))
        self.keypoints = SpatialSoftArgmax(CHANNELS[-1], KEYPOINTS)
        self.head = nn.Sequential(nn.Linear(2 * KEYPOINTS + CHANNELS[-1], 256), nn.ReLU(), nn.Linear(256, 2))

    def forward(self, x):
        for block in self.blocks:
            identity = torch.zeros(x.shape[0], block.conv.out_channels)
            x = block(x, identity, identity)
        return self.head(torch.cat([self.keypoints(x), x.mean(dim=(2, 3))], -1))


def as_input(x: np.ndarray):
    return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.25


def main() -> None:
    h, w = (int(v) for v in sys.argv[1].split("x"))
    steps, out = int(sys.argv[2]), sys.argv[3]
    stride = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t0 = time.time()
    x_train, y_train, _ = frames(range(3000, 3800), h, w)
    x_val, y_val, arcs_val = frames(range(60000, 60100), h, w)
    centre = y_train.mean(0)
    print(f"{h}x{w}: crop {x_train.shape[1:3]}, {len(x_train) + len(x_val)} frames in {time.time() - t0:.0f} s",
          flush=True)
    net = Locator(stride)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=5e-5)
    shift = max(1, round(2 * w / 128))       # +-2 px at 96x128: the same in mm at other sizes
    target = torch.from_numpy((y_train - centre) * 1e3 / TARGET_SCALE_MM).float()

    def evaluate():
        net.eval()
        with torch.no_grad():
            p = net(as_input(x_val)).numpy() * TARGET_SCALE_MM / 1e3 + centre
        net.train()
        wire = np.array([np.min(np.linalg.norm(a - q, axis=1)) for a, q in zip(arcs_val, p, strict=True)]) * 1e3
        middle = np.linalg.norm(p - y_val, axis=1) * 1e3
        return float(np.median(wire)), float(np.median(middle)), float(np.mean(wire < 3.0))

    log = []
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(x_train), BATCH)
        x = F.pad(as_input(x_train[idx]), (shift,) * 4, mode="replicate")
        dx, dy = rng.integers(0, 2 * shift + 1, 2)
        x = x[:, :, dy:dy + x_train.shape[1], dx:dx + x_train.shape[2]]
        loss = F.l1_loss(net(x), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % EVAL_EVERY == 0 or step == steps:
            wire, middle, within = evaluate()
            log.append({"step": step, "loss": float(loss.detach()), "val_wire_mm_median": wire,
                        "val_middle_mm_median": middle, "val_within_3mm_of_wire": within, "wall_s": time.time() - t0})
            print(json.dumps(log[-1]), flush=True)
    with open(out, "w") as f:
        json.dump({"size": [h, w], "crop_px": list(x_train.shape[1:3]), "stride": stride, "steps": steps,
                   "train_layouts": len(x_train), "val_layouts": len(x_val), "log": log}, f, indent=1)


if __name__ == "__main__":
    main()
