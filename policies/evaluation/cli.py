"""`surgbot policy eval --checkpoint CKPT --task T --episodes N --seed S [--json] [--video DIR] [--ros]
[--appearance strong] [--view tool_follow]`.

Default: the Gymnasium environment in this process, through the policy
node's execution core and safety gate (harness.py; fast, deterministic).
`--ros`: the deployment path, one sim per seed (ros_eval.py): the MuJoCo
twin with the task over CRTK, `surgbot policy serve`, `policy_node`.
`--appearance strong`: every episode seen through the `sim` video source's
appearance randomisation drawn from its seed (appearance.py); `--view
tool_follow`: the endoscope re-aimed at the tool as the holder's TOOL_FOLLOW
does (views.py).
A progress line per episode goes to stderr; the last stdout line is one JSON
object (success_rate, wilson95, episodes, task, seed, per-episode results).
Bad input (unknown task, missing checkpoint, a checkpoint for another action
size, non-positive episodes) exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from surgbot.errors import CliError

TASK_CHOICES = ("reach", "needle_pick", "peg_transfer")   # sim/tasks TASK_NAMES (checked in run)
APPEARANCE_CHOICES = ("none", "strong")                   # policies/video/appearance SHIFTS (tested equal)
VIEW_CHOICES = ("fixed", "tool_follow")                   # policies/evaluation/views VIEWS (tested equal)
MAX_EPISODES = 10000
ROS_MAX_EPISODES = 50


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="'default' (bundled), a pretrained_model folder or a training output folder "
                        "(surgvla; act/diffusion through the LeRobot adapter)")
    p.add_argument("--task", required=True, help=f"task: {', '.join(TASK_CHOICES)}")
    p.add_argument("--episodes", type=int, default=10, help="episodes (seeds S, S+1, ...)")
    p.add_argument("--seed", type=int, default=100000,
                   help="first layout seed (evaluation seeds are >= 100000; 0-9999 are training seeds)")
    p.add_argument("--json", action="store_true", help="only the JSON line on stdout (no summary line)")
    p.add_argument("--video", type=Path, metavar="DIR", help="write DIR/<task>_seed<S>.mp4 per episode")
    p.add_argument("--ros", action="store_true",
                   help="full deployment path: sim twin + policy server + policy_node over CRTK, per seed")
    p.add_argument("--target", choices=("red", "green", "blue"), default=None,
                   help="in-process: every layout names this colour instead of its own (same scenes, another "
                        "instruction: the language check); tasks with a named target only")
    p.add_argument("--device", default="cpu", help="torch device of the policy (in-process)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--view", default="fixed", choices=VIEW_CHOICES,
                   help="endoscope view: fixed (the layout's) or tool_follow (re-aimed at the tool as the "
                        "holder's TOOL_FOLLOW does; in-process only)")
    p.add_argument("--appearance", default="none", choices=APPEARANCE_CHOICES,
                   help="appearance shift at evaluation: the `sim` video source's randomisation drawn per "
                        "seed (tissue, lighting, highlights, blur, haze, noise; in-process only)")


def _check(args: argparse.Namespace) -> None:
    from surgbot.sim.tasks import TASK_NAMES
    if args.task not in TASK_NAMES:
        raise CliError(f"unknown task {args.task!r} (choose from {', '.join(TASK_NAMES)})")
    limit = ROS_MAX_EPISODES if args.ros else MAX_EPISODES
    if not 1 <= args.episodes <= limit:
        raise CliError(f"--episodes must be in 1..{limit}, got {args.episodes}")
    if args.seed < 0 or args.seed + args.episodes > 2 ** 31 - 1:
        raise CliError(f"--seed must be >= 0 and seed + episodes < 2^31, got {args.seed}")
    if args.video is not None and args.video.exists() and not args.video.is_dir():
        raise CliError(f"--video {args.video}: exists and is not a folder")
    if args.threads < 1:
        raise CliError("--threads must be >= 1")
    if args.target is not None and args.ros:
        raise CliError("--target is for the in-process evaluation (not --ros)")
    if args.target is not None and args.task == "needle_pick":
        raise CliError("--target: needle_pick names no colour")
    if args.ros and args.appearance != "none":
        raise CliError("--appearance is applied in-process only (the ROS twin renders its own scene)")
    if args.ros and args.view != "fixed":
        raise CliError("--view tool_follow is emulated in-process only (on the ROS stack the holder does it)")


def _progress(r, results) -> None:
    wins = sum(x.success for x in results)
    print(f"[{len(results)}] seed {r.seed}: {'success' if r.success else 'fail (' + r.failure + ')'} "
          f"in {r.elapsed_s:.1f} s sim, {r.wall_s:.1f} s wall; {wins}/{len(results)} so far",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    _check(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from surgbot.policies.evaluation.harness import TRAINING_SEED_LIMIT, PolicyLoadError

    if args.seed < TRAINING_SEED_LIMIT:
        print(f"policy eval: note: seeds {args.seed}.. overlap the training seed range 0-{TRAINING_SEED_LIMIT - 1}",
              file=sys.stderr)
    if args.ros:
        from surgbot.policies.evaluation.ros_eval import evaluate_ros
        try:
            summary = evaluate_ros(args.checkpoint, args.task, args.episodes, args.seed, video_dir=args.video,
                                   progress=_progress)
        except PolicyLoadError as exc:
            raise CliError(str(exc)) from None
    else:
        import torch

        from surgbot.policies.evaluation.harness import evaluate, load_chunk_policy
        torch.set_num_threads(args.threads)
        try:
            policy = load_chunk_policy(args.checkpoint, device=args.device)
        except PolicyLoadError as exc:
            raise CliError(str(exc)) from None
        env = None
        if args.appearance != "none" or args.view != "fixed":
            from surgbot.policies.evaluation.appearance import AppearanceShift
            from surgbot.policies.evaluation.harness import make_env
            from surgbot.policies.evaluation.views import ToolFollowView
            env = make_env(args.task, policy)
            if args.view == "tool_follow":
                env = ToolFollowView(env)
            if args.appearance != "none":
                env = AppearanceShift(env, args.appearance)
        try:
            summary = evaluate(policy, args.task, args.episodes, args.seed, video_dir=args.video,
                               progress=_progress, env=env, target=args.target)
        except ValueError as exc:    # a layout that may not name --target (peg_transfer: too near the block)
            if args.target is None:
                raise
            raise CliError(f"--target {args.target}: {exc}") from None
    summary["appearance"] = args.appearance
    summary["view"] = args.view
    if not args.json:
        lo, hi = summary["wilson95"]
        print(f"{args.task}: {summary['successes']}/{summary['episodes']} = {summary['success_rate']:.0%} "
              f"(Wilson 95 % {lo:.0%}-{hi:.0%}), seeds {args.seed}-{args.seed + args.episodes - 1}, "
              f"{summary['wall_s']:.0f} s", file=sys.stderr)
    print(json.dumps(summary), flush=True)
    return 0
