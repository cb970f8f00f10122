"""`surgbot policy {train,train-locator,serve,eval}` (contract section 1).

Argument definitions only: the learning stack (torch, LeRobot) is imported
when a subcommand runs, so `surgbot --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from surgbot.errors import CliError

DEFAULT_PORT = 5555


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", action="append", required=True, type=Path, metavar="DIR",
                   help="LeRobotDataset v3 folder (repeat to mix several: expert, teleop, pseudo-labelled)")
    p.add_argument("--weight", action="append", type=float, metavar="W",
                   help="sampling weight of each --dataset, same order (default 1 each): dataset i is "
                        "drawn with probability W_i / sum(W)")
    p.add_argument("--out", required=True, type=Path, metavar="CKPT",
                   help="training output folder (LeRobot layout: checkpoints/last/pretrained_model)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the policy preset, 3e-4)")
    p.add_argument("--save-freq", type=int, default=500, help="checkpoint every N steps (and at the end)")
    p.add_argument("--log-freq", type=int, default=25, help="train_log.jsonl line every N steps")
    p.add_argument("--num-workers", type=int, default=0, help="dataloader worker processes (0 = main)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="size the image encoder sees (default 96 96)")
    p.add_argument("--crop", type=float, nargs=4, default=None, metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"),
                   help="cut this box (fractions of the frame) before resizing to --image-size "
                        "(default: the whole frame)")
    p.add_argument("--goal-loss-weight", type=float, default=0.0, metavar="W",
                   help="with --in-memory: auxiliary loss weight of a head predicting where the episode ends "
                        "(0 = no goal head)")
    p.add_argument("--goal-from-image", action="store_true",
                   help="with --goal-loss-weight: the goal head sees the image and instruction only (no state) "
                        "and predicts the absolute position")
    p.add_argument("--goal-encoder", action="store_true",
                   help="with --goal-loss-weight: the goal head gets its own image encoder (image + instruction "
                        "only, trained by the goal loss alone)")
    p.add_argument("--scene-input", action="store_true",
                   help="with --in-memory: the action head also gets where the objects are (the simulator's "
                        "observation.environment_state, rebuilt from each episode's layout seed): evaluation "
                        "then needs the simulator's values (an upper bound for an object locator)")
    p.add_argument("--scene-noise-mm", type=float, default=0.0, metavar="MM",
                   help="with --scene-input: Gaussian noise (std, mm) on its positions in training")
    p.add_argument("--scene-yaw-noise-deg", type=float, default=0.0, metavar="DEG",
                   help="with --scene-input: Gaussian noise (std, degrees of the object's yaw) on its "
                        "orientation in training")
    p.add_argument("--scene-locator", action="store_true",
                   help="with --scene-input: a locator with its own encoder learns the scene summary and gives "
                        "it from the episode's first image at evaluation (nothing from the simulator)")
    p.add_argument("--scene-relative", action="store_true",
                   help="with --scene-input: also its grasp and place points relative to the tool")
    p.add_argument("--scene-anchored", action="store_true",
                   help="with --scene-input: each step's position also as an offset from the grasp or place point "
                        "(learnt per-step weights; policies/vla/anchored_surgvla.py)")
    p.add_argument("--scene-anchored-yaw", action="store_true",
                   help="with --scene-anchored: the rotation also anchored on the object's yaw (the twin's "
                        "world axes are saved in the checkpoint)")
    p.add_argument("--jaw-absolute", action="store_true",
                   help="the jaw command as an absolute value, not an offset from the measured jaw "
                        "(SurgVLAConfig.jaw_absolute)")
    p.add_argument("--goal-target", default=None, metavar="{episode_end,first_grasp}",
                   help="with --goal-loss-weight: what the goal head learns and the goal memory aims at: the "
                        "episode's last position (default) or where the jaws first close (first_grasp)")
    p.add_argument("--goal-memory-max-jaw-rad", type=float, default=None, metavar="RAD",
                   help="saved in the checkpoint: the goal memory bends only chunks whose last jaw command is "
                        "below RAD (closed jaws); default: any jaw")
    p.add_argument("--keypoint-stride", type=int, default=None, metavar="S",
                   help="downsampling from the encoder input to its keypoint map (power of 2; default the "
                        "policy's 8; 4: a map twice as fine at ~2.5x the step time)")
    p.add_argument("--shift-px", type=int, default=None, metavar="PX",
                   help="training image shift augmentation, +-PX pixels (default: the policy's 4)")
    p.add_argument("--resume", action="store_true", help="continue OUT from checkpoints/last")
    p.add_argument("--cosine", action="store_true",
                   help="learning rate: linear warm-up (2 %% of the steps), cosine decay to 1/20 at --steps")
    p.add_argument("--cosine-steps", type=int, default=None, metavar="N",
                   help="length of the cosine schedule (default --steps; larger: stop part-way along it)")
    p.add_argument("--in-memory", action="store_true",
                   help="decode every video once into RAM (uint8, ~37 kB per 96x128 frame) instead of one "
                        "video seek per sample: several times faster steps on CPU")
    p.add_argument("--first-frames", type=int, default=0, metavar="K",
                   help="with --in-memory: oversample the first K frames of every episode (see --first-frames-weight)")
    p.add_argument("--first-frames-weight", type=float, default=1.0, metavar="W",
                   help="how many times as often the first K frames are drawn")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy_command",
                                metavar="{train,train-locator,join-locator,strip-locator,serve,eval}")
    sub.required = True
    t = sub.add_parser("train", help="train the VLA (LeRobot training, several datasets mixed by weight)")
    add_train_arguments(t)
    loc = sub.add_parser("train-locator", help="train a scene locator on rendered first frames and join it to a "
                                               "--scene-input checkpoint (the result needs nothing from the simulator)")
    importlib.import_module("surgbot.policies.vla.configuration_locator").add_arguments(loc)
    j = sub.add_parser("join-locator", help="put the locator of a joined checkpoint onto another --scene-input "
                                            "checkpoint trained on the same data (no locator training)")
    j.add_argument("--bound", required=True, metavar="CKPT", help="a checkpoint trained with --scene-input")
    j.add_argument("--locator-from", required=True, metavar="CKPT", action="append",
                   help="a checkpoint with a scene locator whose bound has the same normalisation stats; "
                        "given again, more locators whose estimates are averaged (SurgVLAConfig.scene_locator_extra)")
    j.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder: checkpoints/last/pretrained_model, train_summary.json")
    st = sub.add_parser("strip-locator", help="the --scene-input checkpoint inside a joined one (its action head, "
                                              "taking the simulator's summary; no locator)")
    st.add_argument("--checkpoint", required=True, metavar="CKPT", help="'default' or a checkpoint with a locator")
    st.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="output folder: checkpoints/last/pretrained_model, train_summary.json")
    s = sub.add_parser("serve", help="pyzmq policy server (contract section 7)")
    s.add_argument("--checkpoint", required=True,
                   help="'default', a pretrained_model folder, or a training output folder")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve other machines)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: beside the sim and nodes on 2 cores, OpenMP spinning of a second "
                        "thread raised p99 from 4 to 150 ms here)")
    e = sub.add_parser("eval", help="closed-loop success rate in sim (in-process env, or --ros: the full stack)")
    importlib.import_module("surgbot.policies.evaluation.cli").add_arguments(e)


def run(args: argparse.Namespace) -> int:
    if args.policy_command == "eval":
        return importlib.import_module("surgbot.policies.evaluation.cli").run(args)
    if args.policy_command == "train":
        summary = importlib.import_module("surgbot.policies.vla.train").train(args)
        print(json.dumps(summary))
        return 0
    if args.policy_command == "train-locator":
        summary = importlib.import_module("surgbot.policies.vla.train_locator").run(args)
        print(json.dumps({k: v for k, v in summary.items() if k != "log"}))
        return 0
    if args.policy_command == "strip-locator":
        summary = importlib.import_module("surgbot.policies.vla.join_locator").strip(args.checkpoint, args.out)
        print(json.dumps(summary))
        return 0
    if args.policy_command == "join-locator":
        summary = importlib.import_module("surgbot.policies.vla.join_locator").join_from(
            args.bound, args.locator_from, args.out)
        print(json.dumps({k: v for k, v in summary.items() if k != "locator_training"}))
        return 0
    if args.policy_command == "serve":
        if not 0 < args.port < 65536:
            raise CliError(f"--port {args.port} outside 1..65535")
        import torch  # the learning stack only when serving: `surgbot --help` stays fast
        import zmq

        from surgbot.policies.serving.server import run_server
        from surgbot.policies.vla.runtime import CheckpointError, PolicyRuntime
        torch.set_num_threads(max(1, args.threads))
        try:
            runtime = PolicyRuntime(args.checkpoint, device=args.device)
        except CheckpointError as exc:
            raise CliError(str(exc)) from None
        try:
            return run_server(runtime, args.host, args.port)
        except zmq.ZMQError as exc:   # address in use, bad host
            raise CliError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    raise CliError(f"unknown policy command {args.policy_command}")
