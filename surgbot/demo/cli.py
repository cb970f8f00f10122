"""`surgbot demo` (= `make demo`): the whole stack in sim, the G1 holding the scope, the VLA doing two tasks.

What runs (all through the ROS nodes, as `surgbot up` starts them; nothing
here shortcuts the stack): the MuJoCo twin of both robots with the task laid
out, the G1 bridge, the endoscope holder, the safety supervisor, the policy
server with the bundled checkpoint and the policy node (plus the recorder
with `--record`).  The script then does what an operator would: engage the
G1 and HOLD the view through the port, enable and home the PSM, and for
each task (needle_pick, then peg_transfer on a fresh layout via
`/sim/task/set`) move the PSM to the layout's start pose, give the policy
its instruction, enable it and wait for the sim to judge the task (or its
horizon to pass).  Meanwhile `DemoObserver` measures everything from the
topics and the videos are written.

Outputs in `--out` (default `out/demo`): endoscope.mp4, overview.mp4,
summary.json, summary.png, logs/ (one log per node).  The seeds default to
evaluation seeds (>= 100000, never used for training), chosen as layouts the
bundled checkpoint solves (see DEFAULT_SEED); `--seed` shows any other.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

from surgbot.errors import CliError

DEFAULT_OUT = Path("out/demo")
DEFAULT_TASKS = ("needle_pick", "peg_transfer")
# A demo shows the stack working, so its default layouts are ones the bundled checkpoint solves
# with a margin: needle_pick 100014 and peg_transfer 100015 succeeded in all three in-process
# evaluations of docs/results (nominal, appearance shift, TOOL_FOLLOW), peg_transfer each time
# in 14.5-16.8 s of its 30 s horizon (a layout solved slowly in some evaluations, 24 of 30 s,
# failed through the stack once in four runs).  Over the 50 evaluation layouts peg_transfer
# succeeds 31 times (README "Status"); other seeds fail that often.
DEFAULT_SEED = 100_014
# The policy runs at 15 Hz: a 30 Hz endoscope would cost a third of a core (osmesa) for frames nobody uses.
CAMERA_HZ = 15.0
# The twin at SCHED_FIFO, as the robots' own controllers are (stack.REALTIME_LEVELS: measured there)
DEMO_REALTIME = "sim"
DEMO_NICE = 5             # this process (observer, video encoding) below the real-time chain (stack.NICE_BACKGROUND)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from surgbot.up import add_realtime_argument

    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}; "
                   "must not exist or be empty)")
    p.add_argument("--checkpoint", default="default", help="policy checkpoint (default: the bundled one)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help=f"comma-separated tasks, in order (default {','.join(DEFAULT_TASKS)})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="layout seed of the first task; "
                   f"the next tasks use seed+1, ... (default {DEFAULT_SEED})")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="at most S seconds per task (default: the task's horizon x 1.5)")
    p.add_argument("--follow", action="store_true", help="the holder keeps the tool in view (TOOL_FOLLOW) "
                   "instead of holding the view still")
    p.add_argument("--record", action="store_true", help="also record the run as a rosbag2/MCAP folder")
    add_realtime_argument(p, default=DEMO_REALTIME)
    p.add_argument("--policy-port", type=int, default=5555)


def _check_args(args: argparse.Namespace) -> tuple[list[str], Path]:
    from surgbot.sim.tasks import TASK_NAMES

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if not tasks or unknown:
        raise CliError(f"unknown task(s) {unknown or args.tasks!r} (choose from {', '.join(TASK_NAMES)})")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise CliError(f"--duration must be a positive number of seconds, got {args.duration}")
    out = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not an empty folder (choose another --out or remove it)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", args.policy_port))
        except OSError:
            raise CliError(f"policy port {args.policy_port} is in use (another policy server?)") from None
    from surgbot.policies.vla.runtime import CheckpointError, resolve_checkpoint

    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    return tasks, checkpoint


class Progress:
    """One line per step with the run time, so a terminal and a log both show what is happening."""

    def __init__(self):
        self.t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[demo {time.monotonic() - self.t0:6.1f} s] {text}", flush=True)


def _wait(pred, timeout: float, what: str, stack_dead: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack_dead.is_set():
            raise RuntimeError(f"a node of the stack died while waiting for {what} (see the logs)")
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def run(args: argparse.Namespace) -> int:
    tasks, checkpoint = _check_args(args)
    from surgbot.demo.media import OVERVIEW_FPS
    from surgbot.demo.script import DemoScript
    from surgbot.stack import StackOptions, nodes_for
    from surgbot.up import Stack

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = Progress()
    opts = StackOptions(task=tasks[0], seed=args.seed, policy_checkpoint=str(checkpoint),
                        policy_port=args.policy_port, overview_hz=OVERVIEW_FPS, camera_hz=CAMERA_HZ,
                        record_dir=str(out / "bag") if args.record else None)
    nodes = nodes_for(opts)
    # no ctl relay: the demo drives itself, and its 2-core margin is thin (a participant more in this
    # process for a `surgbot ctl` nobody may call; 2 of 4 demo runs with it lost peg_transfer to a
    # 54-55 ms lowstate gap: not shown to be the relay, not risked)
    stack = Stack(nodes, opts.launch_arguments(), out / "logs", restart=False, say=say, realtime=args.realtime,
                  ctl_relay=False)
    stack_dead = threading.Event()
    say(f"starting {len(nodes)} nodes ({', '.join(n.name for n in nodes)}); logs in {out / 'logs'}")
    watcher = threading.Thread(target=lambda: stack.watch() and stack_dead.set(), daemon=True)
    script = None
    try:
        stack.start()
        os.nice(DEMO_NICE)      # after the nodes started (they keep their priority): video and figures wait
        watcher.start()
        script = DemoScript(out, args, tasks, say, lambda *a: _wait(*a, stack_dead),
                            {r.spec.name: r.proc.pid for r in stack.running})
        summary = script.run()
    except RuntimeError as exc:
        print(f"surgbot demo: failed: {exc}", file=sys.stderr)
        summary = None
    except KeyboardInterrupt:
        print("surgbot demo: interrupted", file=sys.stderr)
        summary = None
    finally:
        if script is not None:
            script.finish()
        say("stopping the stack (command sources first; the robots hold)")
        stack.stop_event.set()
        stack.stop()
        watcher.join(timeout=5)
    if summary is None:
        if script is not None:
            # on 2 cores most failures are watchdog FAULTs of lateness: the CPU each node took says
            # how loaded (or slowed down) the machine was (README "What you get")
            print(f"surgbot demo: the FAULTs, the steps taken and each node's CPU are in {out / 'summary.json'}, "
                  f"the node logs in {out / 'logs'}", file=sys.stderr)
        return 1
    _print_table(summary, out)
    return 0 if summary["all_succeeded"] else 1


def _print_table(summary: dict, out: Path) -> None:
    print()
    print(f"{'task':14s} {'seed':>7s} {'result':8s} {'time s':>7s}  instruction")
    for t in summary["tasks"]:
        print(f"{t['task']:14s} {t['seed']:7d} {'success' if t['success'] else 'FAILED':8s} "
              f"{t['time_s']:7.1f}  {t['instruction']}" + (f"  ({t['failure']})" if t.get("failure") else ""))
        for n, e in enumerate(t.get("earlier_attempts", []), 1):
            print(f"{'':14s} {'':7s} attempt {n} interrupted after {e['time_s']:.1f} s: {e['failure']}")
    fe = summary["fulcrum_error_mm"]
    inf = summary["policy_inference_ms"]
    print(f"fulcrum error p99 {fe.get('p99', float('nan')):.3f} mm (max {fe.get('max', float('nan')):.3f}); "
          f"scope jitter {summary['scope_jitter_mm_rms'] or float('nan'):.3f} mm rms; tool in view "
          f"{100 * (summary['tool_in_view_fraction'] or 0):.0f} % of frames; policy inference p50 "
          f"{inf.get('p50', float('nan')):.1f} ms; faults {summary['fault_count']}")
    print("rates: " + ", ".join(f"{k.removesuffix('_hz')} {v:.1f} Hz" for k, v in summary["rates_hz"].items() if v))
    cpu = summary.get("cpu_percent_of_a_core") or {}
    print("CPU, % of a core: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
    for name in ("endoscope.mp4", "overview.mp4", "summary.json", "summary.png"):
        print(f"  {out / name}")
