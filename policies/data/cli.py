"""`surgbot data record`: expert demonstrations (or live ROS topics) -> LeRobotDataset v3.

    surgbot data record --task T --episodes N --out DIR [--seed S] [--image-size HxW]
                        [--append] [--source sim|ros] [--workers N] [--each-target] [--perturb-mm MM]
    surgbot data videos --task T --episodes N --out DIR [--backend sim|folder] [--export-conditioning DIR]
                        (policies/video/generate.py)

Bad input (unknown task, non-positive episodes, a non-empty output without
--append, an output whose features differ, Ctrl-C) exits 2 with one line and
leaves the output as it was.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from pathlib import Path

from surgbot.errors import CliError

TASK_CHOICES = ("reach", "needle_pick", "peg_transfer")   # sim/tasks TASK_NAMES (checked in run)
SIZE_RE = re.compile(r"^(\d+)x(\d+)$")
# Two simulating/rendering processes beside the writer: measured on 2 cores (docs/performance.md).
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
MAX_WORKERS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    rec = sub.add_parser("record", help="record episodes into a LeRobotDataset v3",
                         description="record expert (sim) or live (ros) episodes into a LeRobotDataset v3")
    rec.add_argument("--task", required=True, help=f"task: {', '.join(TASK_CHOICES)}")
    rec.add_argument("--episodes", required=True, type=int, help="successful episodes to keep")
    rec.add_argument("--out", required=True, help="dataset folder (new or empty, or existing with --append)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 per attempt)")
    rec.add_argument("--image-size", default="128x128", metavar="HxW", help="endoscope image size")
    rec.add_argument("--append", action="store_true", help="add episodes to an existing dataset")
    rec.add_argument("--source", choices=("sim", "ros"), default="sim",
                     help="sim: scripted experts in the in-process environment; ros: live topics")
    rec.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                     help=f"sim source: episodes simulated and rendered in this many processes "
                          f"(default {DEFAULT_WORKERS}; the dataset is the same for any number)")
    rec.add_argument("--each-target", action="store_true",
                     help="sim: record every layout seed once per colour it may name (same scene, different "
                          "instruction and motion: teaches a policy to follow the instruction)")
    rec.add_argument("--success-tail-s", type=float, default=None, metavar="S",
                     help="sim: seconds of each kept episode recorded after the success, the expert staying "
                          "where it arrived (default 1.0; without it a reach demonstration ends while the tip "
                          "is still descending, and a policy learns to push on past the target)")
    rec.add_argument("--perturb-mm", type=float, default=0.0, metavar="MM",
                     help="sim: DART, push the expert's executed commands off its path by smooth bumps of up to "
                          "MM mm while recording its intended ones, so the data shows corrections (default 0: off)")
    rec.add_argument("--timeout", type=float, default=600.0,
                     help="ros source: seconds to wait for the episodes before giving up")
    vid = sub.add_parser("videos", help="world-model clips (mp4 + prompt, no kinematics) from sim or a folder",
                         description="world-model clips (contract section 9): the sim stand-in or an external "
                                     "model's folder")
    vid.add_argument("--task", help=f"task: {', '.join(TASK_CHOICES)} (required for sim)")
    vid.add_argument("--episodes", type=int, help="clips to write (required for sim; folder: default all)")
    vid.add_argument("--out", required=True, help="new or empty folder for NAME.mp4 + NAME.json")
    vid.add_argument("--backend", choices=("sim", "folder"), default="sim",
                     help="sim: randomised rendered episodes standing in for a learned world model; "
                          "folder: clips an external world model produced (--source)")
    vid.add_argument("--source", help="folder backend: the folder of NAME.mp4 + NAME.json to validate and import")
    vid.add_argument("--seed", type=int, default=20000, help="sim: seed of the first clip (world-model seeds "
                                                             "20000-29999)")
    vid.add_argument("--image-size", default="128x128", metavar="HxW", help="frame size (as the datasets)")
    vid.add_argument("--shift", choices=("strong", "none"), default="strong",
                     help="sim: appearance and expert style beyond the demos (strong) or as the demos (none)")
    vid.add_argument("--no-first-state", action="store_true",
                     help="sim: leave the first frame's robot state out of NAME.json")
    vid.add_argument("--export-conditioning", metavar="DIR",
                     help="sim: also write first frame PNG, prompt, 2D tool-tip trajectory and affordance mask "
                          "per clip (what a video world model is conditioned on)")


def _unless_interrupted(out: Path, call):
    """`call()`'s result; on Ctrl-C, finalise what the interrupt left half-built, then the one-line error.

    An encoder interrupted mid-episode (LeRobot's AV1 writer through PyAV) prints
    "deinit called without sending EOS" when it is freed; freeing it here, once
    the except block has dropped the traceback that held it, keeps our line the last one."""
    try:
        return call()
    except KeyboardInterrupt:
        pass
    gc.collect()
    raise CliError(f"interrupted; {out} left as it was")


def parse_size(text: str) -> tuple[int, int]:
    m = SIZE_RE.match(text.strip())
    if not m:
        raise CliError(f"--image-size {text!r}: expected HxW, e.g. 128x128")
    h, w = int(m.group(1)), int(m.group(2))
    if not (16 <= h <= 960 and 16 <= w <= 1280):
        raise CliError(f"--image-size {text}: outside 16x16 .. 960x1280")
    return h, w


def run_videos(args: argparse.Namespace) -> int:
    from surgbot.sim.tasks import TASK_NAMES
    h, w = parse_size(args.image_size)
    if args.task is not None and args.task not in TASK_NAMES:
        raise CliError(f"unknown task {args.task!r} (choose from {', '.join(TASK_NAMES)})")
    if args.episodes is not None and args.episodes <= 0:
        raise CliError(f"--episodes must be positive, got {args.episodes}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"--out {out}: exists and is not an empty folder")
    from surgbot.policies.video import generate

    def make():
        if args.backend == "sim":
            if args.task is None or args.episodes is None:
                raise CliError("--backend sim needs --task and --episodes")
            if args.source:
                raise CliError("--source is for --backend folder")
            cond = Path(args.export_conditioning) if args.export_conditioning else None
            if cond is not None and cond.exists() and (not cond.is_dir() or any(cond.iterdir())):
                raise CliError(f"--export-conditioning {cond}: exists and is not an empty folder")
            return generate.generate_sim(args.task, args.episodes, out, seed=args.seed, image_size=(h, w),
                                         shift=args.shift, first_state=not args.no_first_state, conditioning=cond,
                                         progress=sys.stderr.isatty())
        if not args.source:
            raise CliError("--backend folder needs --source DIR (the external world model's clips)")
        if args.export_conditioning:
            raise CliError("--export-conditioning comes from our scenes: use it with --backend sim")
        return generate.import_folder(Path(args.source), out, TASK_NAMES, args.task, args.episodes, (h, w))

    res = _unless_interrupted(out, make)
    print(f"wrote {res.clips} clip(s), {res.frames} frames into {out} ({args.backend}); "
          f"failed (not kept): {res.failed}; {res.wall_s:.1f} s", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.data_command == "videos":
        return run_videos(args)
    from surgbot.sim.tasks import TASK_NAMES
    if args.task not in TASK_NAMES:
        raise CliError(f"unknown task {args.task!r} (choose from {', '.join(TASK_NAMES)})")
    if args.episodes <= 0:
        raise CliError(f"--episodes must be positive, got {args.episodes}")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CliError(f"--workers must be 1..{MAX_WORKERS}, got {args.workers}")
    if args.success_tail_s is not None and args.source != "sim":
        raise CliError("--success-tail-s is for the sim source (a live episode ends when the operator stops it)")
    if args.perturb_mm != 0.0 and args.source != "sim":
        raise CliError("--perturb-mm is for the sim source (it perturbs the scripted expert)")
    h, w = parse_size(args.image_size)
    out = Path(args.out)
    from surgbot.policies.data.dataset import check_output
    check_output(out, args.append, h, w)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("SVT_LOG", "1")          # the AV1 encoder's banner: errors only

    def record():
        if args.source == "sim":
            from surgbot.policies.data.record import DEFAULT_SUCCESS_TAIL_S, record_expert
            tail = DEFAULT_SUCCESS_TAIL_S if args.success_tail_s is None else args.success_tail_s
            return record_expert(args.task, args.episodes, out, seed=args.seed, image_size=(h, w),
                                 append=args.append, progress=sys.stderr.isatty(), workers=args.workers,
                                 each_target=args.each_target, success_tail_s=tail,
                                 perturb_mm=args.perturb_mm)
        from surgbot.policies.data.ros_source import record_ros
        return record_ros(args.task, args.episodes, out, image_size=(h, w), append=args.append,
                          timeout_s=args.timeout)

    res = _unless_interrupted(out, record)
    print(f"recorded {res.kept} episode(s), {res.frames} frames into {out}; failed (not kept): {res.failed}; "
          f"{res.frames_per_s:.1f} frames/s", flush=True)
    return 0
