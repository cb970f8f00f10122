"""`surgbot idm {train,label}` (contract section 1): the inverse dynamics model.

    surgbot idm train --dataset DIR [--dataset DIR ...] --out CKPT [--steps N] [--resume]
    surgbot idm label --videos DIR --idm CKPT --out DATASET [--min-confidence C]

Argument definitions only here; torch is imported when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from surgbot.errors import CliError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="idm_command", metavar="{train,label}")
    sub.required = True
    t = sub.add_parser("train", help="train the IDM on recorded LeRobot datasets",
                       description="train the inverse dynamics model (two frames k apart + state -> k actions)")
    t.add_argument("--dataset", action="append", required=True, type=Path, metavar="DIR",
                   help="recorded LeRobotDataset v3 (repeat for several tasks)")
    t.add_argument("--out", required=True, type=Path, metavar="CKPT", help="checkpoint folder (new or empty)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--k", type=int, default=16, help="frames between the two inputs = actions predicted")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-freq", type=int, default=500, help="checkpoint and training state every N steps")
    t.add_argument("--log-freq", type=int, default=25)
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on shared cores)")
    t.add_argument("--episodes", type=int, default=None, metavar="N",
                   help="use only the first N episodes of each dataset (default: all)")
    t.add_argument("--resume", action="store_true", help="continue CKPT from its training state")
    la = sub.add_parser("label", help="pseudo-kinematics for world-model clips -> LeRobotDataset v3",
                        description="label a folder of NAME.mp4 + NAME.json clips with the IDM")
    la.add_argument("--videos", required=True, type=Path, metavar="DIR", help="folder of NAME.mp4 + NAME.json")
    la.add_argument("--idm", required=True, type=Path, metavar="CKPT", help="IDM checkpoint folder")
    la.add_argument("--out", required=True, type=Path, metavar="DATASET", help="new LeRobotDataset folder")
    la.add_argument("--min-confidence", type=float, default=0.5,
                    help="drop frames whose windows agree less than this (0..1)")
    la.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("SVT_LOG", "1")
    if args.idm_command == "train":
        from surgbot.policies.idm.configuration_idm import IDMConfig
        from surgbot.policies.idm.train import train
        try:
            cfg = IDMConfig(k=args.k, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if args.save_freq < 1 or args.log_freq < 1:
            raise CliError("--save-freq and --log-freq must be >= 1")
        if args.episodes is not None and args.episodes < 1:
            raise CliError(f"--episodes must be >= 1, got {args.episodes}")
        for d in args.dataset:
            if not d.is_dir():
                raise CliError(f"--dataset {d}: not a folder")
        try:
            summary = train(args.dataset, args.out, cfg, resume=args.resume, save_freq=args.save_freq,
                            log_freq=args.log_freq, threads=args.threads, progress=sys.stderr.isatty(),
                            per_dataset=args.episodes)
        except KeyboardInterrupt:
            raise CliError(f"interrupted; {args.out} keeps its last checkpoint (continue with --resume)") from None
        print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
        return 0
    if args.idm_command == "label":
        from surgbot.policies.idm.label import label
        res = label(args.videos, args.idm, args.out, args.min_confidence, threads=args.threads,
                    progress=sys.stderr.isatty())
        print(f"labelled {res.clips} clip(s): {res.episodes} episode(s), {res.frames} frames into {args.out}; "
              f"dropped {res.frames_dropped} low-confidence frames and {res.episodes_dropped} clip(s); "
              f"IDM {res.frames_per_s:.0f} frames/s, {res.wall_s:.1f} s in all", flush=True)
        return 0
    raise CliError(f"unknown idm command {args.idm_command}")
