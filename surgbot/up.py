"""`surgbot up`: the launch files' node sets as supervised processes, for machines without `ros2 launch`.

One process per node, as launch would start them (`python -m MODULE
--ros-args -r __node:=NAME --params-file config/X.yaml -p k:=v`), from the
same `surgbot.stack` definitions.  Supervised: a node that exits is reported
within `POLL_PERIOD_S` with the tail of its log, and then either restarted
(`--restart`, at most `MAX_RESTARTS` times per node) or the whole stack is
stopped and `surgbot up` exits 1: never a stack silently missing a node.
Ctrl-C (or SIGTERM) stops the nodes in reverse order (command sources first,
the sim last), so the robots hold while the stack goes down.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from surgbot import contract, exit_watch, processes
from surgbot.errors import CliError
from surgbot.stack import REALTIME_LEVELS, NodeSpec, StackOptions, check_realtime_level, config_dir, nodes_for, resolve

POLL_PERIOD_S = 0.2          # a dead node is reported within this (contract: within 1 s)
MAX_RESTARTS = 3
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", metavar="SCENE", default="box_trainer", choices=contract.SCENES,
                       help="run the MuJoCo twin of this scene (default box_trainer)")
    where.add_argument("--hardware", action="store_true", help="real G1 and a running dVRK console: no twins")
    p.add_argument("--task", help="lay out this task in the sim (reach, needle_pick, peg_transfer)")
    p.add_argument("--seed", type=int, default=0, help="sim seed: the task's layout (default 0)")
    p.add_argument("--camera-hz", type=float, default=StackOptions.camera_hz, metavar="HZ",
                   help=f"sim endoscope camera rate (default {StackOptions.camera_hz:g}; contract >= 15 Hz; the "
                        "renderer is the stack's largest load that may wait: on 2 cores the full stack rendered "
                        "7-20 Hz of 30 asked, so ask 15 there)")
    p.add_argument("--record", metavar="DIR", type=Path, default=None,
                   help="record the run (rosbag2 + MCAP, contract section 10) into a new folder under DIR")
    p.add_argument("--console", action="store_true", help="add the teleop console and mapper")
    p.add_argument("--policy", metavar="CKPT", help="add the policy server and node with this checkpoint "
                                                     "('default' = the bundled one)")
    p.add_argument("--g1-domain", type=int, default=None, help="G1 DDS domain (sim 1, robot 0)")
    p.add_argument("--g1-interface", default=None, help="G1 DDS interface (sim lo, robot: its NIC)")
    p.add_argument("--console-host", default="127.0.0.1")
    p.add_argument("--console-port", type=int, default=contract.CONSOLE_DEFAULT_PORT)
    p.add_argument("--console-token", default=None,
                   help="console token (default: SURGBOT_CONSOLE_TOKEN, else generated and printed by the console)")
    p.add_argument("--policy-port", type=int, default=5555)
    add_realtime_argument(p, default="off")
    p.add_argument("--restart", action="store_true", help=f"restart a node that dies (<= {MAX_RESTARTS} times)")
    p.add_argument("--log-dir", type=Path, default=None, help="node logs (default: a new folder under /tmp)")


@dataclass
class Running:
    spec: NodeSpec
    argv: list[str]
    log: Path
    proc: subprocess.Popen
    started: float
    restarts: int = 0


def node_argv(spec: NodeSpec, arguments: dict[str, str]) -> list[str]:
    """The command line `surgbot up` runs for one node (what `ros2 launch` would run)."""
    argv = [sys.executable, "-m", spec.module]
    if not spec.ros:
        return argv + [str(resolve(a, arguments)) for a in spec.args]
    argv += ["--ros-args", "-r", f"__node:={spec.name}"]
    for name in spec.params_files:
        argv += ["--params-file", name if os.path.isabs(name) else str(config_dir() / name)]
    for key, value in spec.params.items():
        value = resolve(value, arguments)
        if value == "":
            continue                                   # unset launch argument: the node's default
        if isinstance(value, bool):
            value = "true" if value else "false"
        argv += ["-p", f"{key}:={value}"]
    return argv


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def options_from(args: argparse.Namespace) -> StackOptions:
    hardware = bool(args.hardware)
    if args.task is not None and hardware:
        raise CliError("--task lays out a task in the sim; it cannot be used with --hardware")
    defaults = StackOptions()
    opts = StackOptions(
        sim_scene=None if hardware else args.sim, task=args.task, console=args.console,
        policy_checkpoint=args.policy,
        g1_domain=args.g1_domain if args.g1_domain is not None else (0 if hardware else defaults.g1_domain),
        g1_interface=args.g1_interface or defaults.g1_interface,
        console_host=args.console_host, console_port=args.console_port, policy_port=args.policy_port,
        seed=args.seed, camera_hz=args.camera_hz, record_dir=str(args.record.resolve()) if args.record else None)
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    from surgbot.sim.runner import check_camera_hz  # the sim's own check (importing the sim: only here)

    try:
        check_camera_hz(args.camera_hz)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if hardware and args.camera_hz != StackOptions.camera_hz:
        raise CliError("--camera-hz sets the sim's rendered endoscope; with --hardware the camera is the robot's")
    if opts.console and not _port_free(opts.console_host, opts.console_port):
        raise CliError(f"port {opts.console_port} on {opts.console_host} is in use (another console?)")
    if opts.policy_checkpoint and not _port_free("127.0.0.1", opts.policy_port):
        raise CliError(f"policy port {opts.policy_port} is in use (another policy server?)")
    return opts


def add_realtime_argument(p: argparse.ArgumentParser, default: str) -> None:
    """`--realtime [LEVEL]` of `surgbot up` and `surgbot demo` (stack.REALTIME_LEVELS)."""
    p.add_argument("--realtime", nargs="?", const="chain", default=default, choices=REALTIME_LEVELS,
                   metavar="{" + ",".join(REALTIME_LEVELS) + "}",
                   help=f"SCHED_FIFO {processes.REALTIME_PRIORITY} where permitted for: nothing (off), the sim "
                        "twin standing in for the robots' own controllers and the safety supervisor (sim), or "
                        "those and the nodes with "
                        f"50 ms watchdogs (chain; --realtime alone); at sim those nodes (G1 bridge, endoscope "
                        f"holder) get a larger CPU share instead (nice {processes.CHAIN_NICE}, their session "
                        f"group too); default {default}; the other nodes get less CPU (README: Real-time "
                        "scheduling)")


class Stack:
    """Starts, watches and stops the node processes of one stack."""

    def __init__(self, nodes: list[NodeSpec], arguments: dict[str, str], log_dir: Path, restart: bool, say=print,
                 realtime: str = "off", ctl_relay: bool = True):
        self.nodes, self.arguments, self.log_dir, self.restart = nodes, arguments, log_dir, restart
        self.realtime = check_realtime_level(realtime)   # which nodes ask for SCHED_FIFO (NodeSpec.asks_realtime)
        self.say = say
        self.running: list[Running] = []
        self.stop_event = threading.Event()
        self.ctl_relay = ctl_relay       # serve `surgbot ctl` from one node kept from the start (ctl_relay.py)
        self.relay = None
        # the relay's node also reports a node process's exit to the supervisor the moment the
        # kernel tells us (exit_watch), not one liveliness lease later
        self.exits: exit_watch.ExitWatch | None = None

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.ctl_relay and any(spec.ros for spec in self.nodes):
            from surgbot.ctl_relay import CtlRelay

            try:
                self.relay = CtlRelay()
            except (RuntimeError, OSError, CliError) as exc:     # `surgbot ctl` then starts nodes of its own
                self.say(f"surgbot up: no ctl relay: {exc}")
        if self.relay is not None:
            if exit_watch.available():
                self.exits = exit_watch.ExitWatch(self._report_exit)
            else:
                self.say("surgbot up: no pidfds on this kernel: a node's death reaches the safety "
                         "supervisor through its liveliness lease only")
        for spec in self.nodes:
            self.running.append(self._spawn(spec))

    def _report_exit(self, name: str, pid: int, returncode: int | None) -> None:
        relay = self.relay
        if relay is not None and not self.stop_event.is_set():
            relay.report_exit(name, pid, returncode)

    def _spawn(self, spec: NodeSpec, restarts: int = 0) -> Running:
        argv = node_argv(spec, self.arguments)
        log = self.log_dir / f"{spec.name}.log"
        env = spec.environment(self.realtime)
        with open(log, "ab") as out:
            proc = processes.start(argv, stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, **env) if env else None)
        if spec.nice:                       # its session's group too (processes.AUTOGROUP says why)
            problem = processes.lower_priority(proc.pid, spec.nice)
            if problem:                     # gone already (the watch reports it) or not permitted
                self.say(f"surgbot up: could not lower the priority of {spec.name}: {problem}")
        if self.exits is not None and spec.ros:     # a ROS node: its name is its diagnostics name
            self.exits.add(spec.name, proc)
        return Running(spec, argv, log, proc, time.monotonic(), restarts)

    def watch(self) -> int:
        """Until stopped: 0 after Ctrl-C/SIGTERM, 1 when a node died and was not restarted."""
        while not self.stop_event.wait(POLL_PERIOD_S):
            for i, r in enumerate(self.running):
                code = r.proc.poll()
                if code is None:
                    continue
                self.say(f"surgbot up: node {r.spec.name} exited with code {code} after "
                         f"{time.monotonic() - r.started:.1f} s; last lines of {r.log}:\n{_tail(r.log)}")
                if self.restart and r.restarts < MAX_RESTARTS:
                    self.say(f"surgbot up: restarting {r.spec.name} ({r.restarts + 1}/{MAX_RESTARTS})")
                    self.running[i] = self._spawn(r.spec, r.restarts + 1)
                    continue
                self.say("surgbot up: stopping the stack")
                return 1
        return 0

    def stop(self) -> None:
        self.stop_event.set()               # the nodes' exits from here on are the stop's, not faults
        if self.exits is not None:
            self.exits.close()
            self.exits = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        for r in reversed(self.running):
            if r.proc.poll() is None:
                processes.stop(r.proc, signal.SIGINT, STOP_TIMEOUT_S)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + ln for ln in lines[-LOG_TAIL_LINES:])


def run(args: argparse.Namespace) -> int:
    opts = options_from(args)
    nodes = nodes_for(opts)
    if args.console_token:
        os.environ["SURGBOT_CONSOLE_TOKEN"] = args.console_token   # the console reads it; never a ROS parameter
    log_dir = args.log_dir or Path(f"/tmp/surgbot-up-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    stack = Stack(nodes, opts.launch_arguments(), log_dir, args.restart, realtime=args.realtime)
    previous = {s: signal.signal(s, lambda *_: stack.stop_event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        print(f"surgbot up: {len(nodes)} nodes ({', '.join(n.name for n in nodes)}); logs in {log_dir}; "
              "Ctrl-C stops", flush=True)
        return stack.watch()
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("surgbot up: stopped", flush=True)
