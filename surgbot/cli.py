"""`surgbot` command line (contract section 1).

Each subcommand lives in the module that owns it and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only dispatches, so
importing the CLI stays cheap and a broken optional area cannot break `--help`.
Bad input exits 2 with a one-line reason (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from surgbot.errors import CliError
from surgbot.processes import forbid_realtime_scheduling

# name -> (module, one-line help)
# `surgbot up/demo --realtime` keep the right to real-time scheduling for the nodes they start (the
# watchdog chain asks for SCHED_FIFO, processes.REALTIME_ENV); each node drops it for itself once
# it has its priority, and neither opens an AV1 encoder (the demo writes H.264).  `surgbot bench`
# only starts one process per area; each area gives the right up first unless its module says
# STARTS_REALTIME_NODES (bench/psm.py: the combined sim at the `--realtime chain` scheduling).
STARTS_REALTIME_NODES = ("up", "demo", "bench")
# Commands that import only their own module (build_parser).  Only ctl, a client that starts no
# process: the others start nodes, whose environment the full import shapes (the wheels' libraries
# on LD_LIBRARY_PATH, MUJOCO_GL).  With `surgbot demo` importing only its own module, 3 of 3
# demos failed on watchdog FAULTs with the twin at 86-97 % of a core (78 % before); not yet
# understood, so the stack launchers keep the environment they were measured with.
LIGHT_COMMANDS = ("ctl",)
SUBCOMMANDS = {
    "sim": ("surgbot.sim.runner", "MuJoCo twin of the hardware (G1 over unitree DDS, PSM over CRTK ROS 2)"),
    "bench": ("surgbot.bench.runner", "performance suite; last stdout line is one JSON object"),
    "data": ("surgbot.policies.data.cli", "datasets: record expert or live episodes as LeRobotDataset v3; "
             "world-model videos"),
    "up": ("surgbot.up", "every node of the stack as supervised processes (for machines without ros2 launch)"),
    "ctl": ("surgbot.ctl", "service calls and one-shot messages to a running stack (no ros2 CLI needed)"),
    "console": ("surgbot.teleop.cli", "teleop VR console server (HTTPS + WSS, token, video)"),
    "policy": ("surgbot.policies.vla.cli", "VLA policy: train (LeRobot), serve (pyzmq)"),
    "demo": ("surgbot.demo.cli", "the main job: the whole stack in sim, the G1 holding the scope, the VLA doing "
             "needle_pick and peg_transfer; videos + summary"),
    "idm": ("surgbot.policies.idm.cli", "inverse dynamics model: train on recordings, label world-model clips"),
    "results": ("surgbot.policies.results.cli", "learning results: run/resume cells, regenerate docs/results.md"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; for a LIGHT_COMMANDS `command`, only that subcommand's module is imported.

    Every module imported for its arguments was the cost of every command: `surgbot ctl` imported
    the twin's (MuJoCo, OpenGL), ~0.6 s of CPU of its ~0.8 s, on a 2-core machine where the
    running stack's 50 ms watchdogs feel a CLI's start (issue 16's `estop_by_surgbot_ctl`).
    """
    parser = argparse.ArgumentParser(prog="surgbot", description=__doc__.splitlines()[0])
    from surgbot import __version__
    parser.add_argument("--version", action="version", version=f"surgbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    only = command if command in LIGHT_COMMANDS else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    if command not in STARTS_REALTIME_NODES:
        forbid_realtime_scheduling()  # before any thread: an AV1 encoder would take SCHED_FIFO 99 (processes.py)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except CliError as exc:
        print(f"surgbot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
