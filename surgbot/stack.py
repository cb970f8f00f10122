"""The node sets of the stack, in one place: `launch/*.launch.py` and `surgbot up` both read them.

A `NodeSpec` names a ROS 2 executable of this package (a console script,
also runnable as `python -m MODULE`), its parameter files under `config/`
and its per-launch parameters (values taken from the launch arguments).
`nodes_for(options)` returns the ordered list for a stack: sources of
commands last, so a stack stops in reverse order (command sources first,
the sim last) and the robots hold while it does.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from surgbot import area_path, contract, processes

CONFIG_DIR_NAME = "config"
# On a small machine (2 cores) the whole stack oversubscribes the CPU.  The chain with
# 50 ms watchdogs (sim -> rt/lowstate -> bridge -> holder, the supervisor) can ask for SCHED_FIFO
# (processes.REALTIME_PRIORITY) at one of REALTIME_LEVELS (`surgbot up/demo --realtime LEVEL`:
# `NodeSpec.realtime` below); nodes that tolerate a late tick (the 15 Hz policy, the recorder)
# run niced.  Measured: without the nice the bridge's lowstate watchdog fired while engaging the
# G1 in `surgbot demo` (77 ms gap).
# Each node is a session of its own: `surgbot up` nices its session's scheduling group too
# (processes.lower_priority), or with the kernel's autogroup scheduling the nice value would only
# count within that group, not against the other nodes.  Under `ros2 launch` all nodes share the
# launch's session, where the `nice` prefix alone orders them.
NICE_BACKGROUND = 5
# "sim": the twin, which stands in for the robots' own real-time controllers (on hardware
# rt/lowstate comes from the G1's board, not from a process sharing the PC's cores), and the safety
# supervisor (8 % of a core: the judge of the watchdogs must run on time, or it judges its own
# lateness); "chain": those and the ROS nodes with 50 ms watchdogs.  Measured, `surgbot demo` on
# the 2-core machine (README "Real-time scheduling"): at "off" 3 of the 14 runs' FAULTs were the
# bridge's own "rt/lowstate stale" (the twin starved of a core), never with the twin at FIFO; with
# the twin alone at FIFO the supervisor's ticks ran 25-160 ms late several times a run and its
# "g1_lowstate silent 56-69 ms" FAULTs ended tasks (1 of 4 runs with both tasks in session 33),
# with the supervisor at FIFO too once a run, at start-up (2 of 3); "chain" starved the camera and
# the policy server instead (inference p50 up to 91 ms).  At "sim" the chain's ROS nodes ask for a
# larger CPU share instead (`NodeSpec.share`, processes.CHAIN_NICE: why and the runs there).
REALTIME_LEVELS = ("off", "sim", "chain")


def check_realtime_level(level: str) -> str:
    """`level` if it is one of REALTIME_LEVELS, else ValueError naming them."""
    if level not in REALTIME_LEVELS:
        raise ValueError(f"real-time level {level!r} not in {REALTIME_LEVELS}")
    return level
POLICY_DEFAULT_PORT = 5555


def config_dir() -> Path:
    """`config/` of a source checkout, or `share/surgbot/config` of an install (ament index)."""
    source = area_path("sim").parent / CONFIG_DIR_NAME
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory  # installed: ROS knows where

    return Path(get_package_share_directory("surgbot")) / CONFIG_DIR_NAME


@dataclass(frozen=True)
class NodeSpec:
    name: str                                   # ROS node name (and the process name in `surgbot up`)
    executable: str                             # console script / `ros2 run surgbot EXECUTABLE`
    module: str                                 # `python -m MODULE` equivalent
    params_files: tuple[str, ...] = ()          # under config/
    params: dict = field(default_factory=dict)  # name -> value or "$arg" (a launch argument)
    args: tuple[str, ...] = ()                  # plain command-line arguments (non-ROS processes)
    ros: bool = True                            # False: a plain process (the policy server)
    # > 0: runs below the real-time chain (see NICE_BACKGROUND); None: NICE_BACKGROUND for the ROS nodes
    # the contract lists in BACKGROUND_NODES (they get the longer liveliness lease there), else 0
    nice: int | None = None
    # the lowest REALTIME_LEVELS entry at which this node asks for SCHED_FIFO (processes.REALTIME_ENV);
    # "" never
    realtime: str = ""
    # the lowest REALTIME_LEVELS entry at which this node, when not at SCHED_FIFO, asks for a larger
    # CPU share (processes.SHARE_ENV: its session group at processes.CHAIN_NICE); "" never
    share: str = ""

    def __post_init__(self):
        for name in ("realtime", "share"):
            if getattr(self, name) not in ("",) + REALTIME_LEVELS[1:]:
                raise ValueError(f"{self.name}: {name} {getattr(self, name)!r} not in {REALTIME_LEVELS[1:]} or ''")
        if self.nice is None:
            background = self.ros and self.name in contract.BACKGROUND_NODES
            object.__setattr__(self, "nice", NICE_BACKGROUND if background else 0)

    def asks_realtime(self, level: str) -> bool:
        """Whether this node asks for SCHED_FIFO in a stack run at REALTIME_LEVELS `level`."""
        return _reached(self.realtime, level)

    def asks_share(self, level: str) -> bool:
        """Whether this node asks for the chain's larger CPU share at `level` (never when at FIFO)."""
        return _reached(self.share, level) and not self.asks_realtime(level)

    def environment(self, level: str) -> dict[str, str]:
        """Environment variables the process starts with in a stack at `level` (its scheduling requests)."""
        env = {}
        if self.asks_realtime(level):
            env[processes.REALTIME_ENV] = str(processes.REALTIME_PRIORITY)
        if self.asks_share(level):
            env[processes.SHARE_ENV] = str(processes.CHAIN_NICE)
        return env


def _reached(lowest: str, level: str) -> bool:
    """Whether a request made from REALTIME_LEVELS entry `lowest` on ("" never) holds at `level`."""
    check_realtime_level(level)
    return bool(lowest) and REALTIME_LEVELS.index(level) >= REALTIME_LEVELS.index(lowest)


@dataclass(frozen=True)
class StackOptions:
    sim_scene: str | None = "box_trainer"      # None: hardware (a real G1 and a real dVRK console)
    task: str | None = None
    console: bool = False
    policy_checkpoint: str | None = None
    g1_domain: int = field(default_factory=contract.g1_sim_domain)
    g1_interface: str = contract.G1_SIM_INTERFACE
    console_host: str = "127.0.0.1"
    console_port: int = contract.CONSOLE_DEFAULT_PORT
    policy_port: int = POLICY_DEFAULT_PORT
    seed: int = 0
    overview_hz: float = 0.0
    camera_hz: float = 30.0
    record_dir: str | None = None              # rosbag2/MCAP recording of the run into this folder

    def launch_arguments(self) -> dict[str, str]:
        return {"scene": self.sim_scene or "", "task": self.task or "", "g1_domain": str(self.g1_domain),
                "g1_interface": self.g1_interface, "checkpoint": self.policy_checkpoint or "",
                "console_host": self.console_host, "console_port": str(self.console_port),
                "policy_port": str(self.policy_port), "seed": str(self.seed),
                "overview_hz": str(self.overview_hz), "camera_hz": str(self.camera_hz),
                "record_dir": self.record_dir or ""}


SIM = NodeSpec("sim_node", "sim_node", "surgbot.nodes.sim_node", ("psm.yaml",), realtime="sim",
               params={"scene": "$scene", "task": "$task", "seed": "$seed", "headless": True,
                       "g1_domain": "$g1_domain", "g1_interface": "$g1_interface", "overview_hz": "$overview_hz",
                       "camera_hz": "$camera_hz"})
# Every command source of a stack runs with its safety supervisor (the SUPERVISOR node below): it
# commands only while /safety/state is OK and fresh, a missing supervisor holds (fail-safe).
SAFETY = {"require_safety_supervisor": True}
BRIDGE = NodeSpec("g1_bridge", "g1_bridge", "surgbot.nodes.g1_bridge", ("g1_bridge.yaml",),
                  {"g1_domain": "$g1_domain", "g1_interface": "$g1_interface", **SAFETY}, realtime="chain",
                  share="sim")
HOLDER = NodeSpec("endoscope_holder", "endoscope_holder", "surgbot.nodes.endoscope_holder",
                  ("endoscope_holder.yaml",), {"scene": "$scene", **SAFETY}, realtime="chain",
                  share="sim")
SUPERVISOR = NodeSpec("safety_supervisor", "safety_supervisor", "surgbot.nodes.safety_supervisor", realtime="sim")
CONSOLE = NodeSpec("teleop_console", "teleop_console", "surgbot.nodes.teleop_console", ("teleop_console.yaml",),
                   {"host": "$console_host", "port": "$console_port"})   # token: SURGBOT_CONSOLE_TOKEN, never a param
MAPPER = NodeSpec("teleop_mapper", "teleop_mapper", "surgbot.nodes.teleop_mapper", ("teleop_mapper.yaml",),
                  {"scene": "$scene", **SAFETY})
# not niced: a late reply is not a late tick that costs nothing (the node gives up after 0.5 s and
# the chunk-age watchdog FAULTs).  Seen with its session's group at nice 5 (a third of a nice-0
# group's CPU share on a saturated machine): a fresh clone's `make demo` lost peg_transfer to
# "policy_chunk: chunk 1138 ms old" (no reply in 0.5 s; 25 ms single-thread inference bursts
# otherwise, ~3 % of a core on average).
POLICY_SERVER = NodeSpec("policy_server", "surgbot", "surgbot.cli", ros=False, nice=0,
                         args=("policy", "serve", "--checkpoint", "$checkpoint", "--port", "$policy_port"))
RECORDER = NodeSpec("recorder", "recorder", "surgbot.nodes.recorder",
                    params={"out_dir": "$record_dir", "record_on_start": True})
POLICY_NODE = NodeSpec("policy_node", "policy_node", "surgbot.nodes.policy_node", ("policy_node.yaml",),
                       {"server_port": "$policy_port", **SAFETY})


def nodes_for(options: StackOptions) -> list[NodeSpec]:
    """The ordered node set of a stack (the launch files: sim, teleop, autonomy, hardware)."""
    nodes: list[NodeSpec] = []
    if options.sim_scene is not None:
        nodes.append(SIM)
    nodes += [BRIDGE, HOLDER, SUPERVISOR]
    if options.console:
        nodes += [CONSOLE, MAPPER]
    if options.policy_checkpoint:
        nodes += [POLICY_SERVER, POLICY_NODE]
    if options.record_dir:
        nodes.insert(0, RECORDER)       # first up, last down: records the whole run
    return nodes


def resolve(value, arguments: dict[str, str]):
    """A "$arg" placeholder -> the launch argument's value; anything else unchanged."""
    if isinstance(value, str) and value.startswith("$"):
        return arguments[value[1:]]
    return value


# --------------------------------------------------------------------------- ros2 launch
LAUNCH_KINDS = {
    "sim": StackOptions(),
    "teleop": StackOptions(console=True),
    "autonomy": StackOptions(policy_checkpoint="default"),
    "hardware": StackOptions(sim_scene=None, g1_domain=0, g1_interface="eth0"),
}
LAUNCH_ARG_HELP = {
    "scene": "sim scene: box_trainer or endonasal", "task": "task laid out in the sim (empty: none)",
    "g1_domain": "G1 DDS domain (sim 1, robot 0)", "g1_interface": "G1 DDS interface (sim lo, robot: its NIC)",
    "checkpoint": "policy checkpoint ('default' = bundled)", "console_host": "console bind address",
    "console_port": "console HTTPS/WSS port (its token: SURGBOT_CONSOLE_TOKEN, else generated and printed)",
    "policy_port": "policy server port",
    "seed": "sim seed (task layout)",
    "overview_hz": "sim outside overview camera rate on /sim/overview/* (0: off)",
    "camera_hz": "sim endoscope camera rate, Hz",
    "record_dir": "record the run (rosbag2, MCAP) under this folder ('' = no recorder node)",
}


def _nice_prefix(spec: NodeSpec) -> str | None:
    return f"nice -n {spec.nice}" if spec.nice else None


def generate_launch_description_for(kind: str):
    """The LaunchDescription of `launch/<kind>.launch.py` (imports ROS 2 `launch` only here)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    options = LAUNCH_KINDS[kind]
    actions = [DeclareLaunchArgument(name, default_value=value, description=LAUNCH_ARG_HELP[name])
               for name, value in options.launch_arguments().items()]
    args = {name: LaunchConfiguration(name) for name in options.launch_arguments()}
    for spec in nodes_for(options):
        if not spec.ros:
            cmd = [sys.executable, "-m", spec.module] + [resolve(a, args) for a in spec.args]
            actions.append(ExecuteProcess(cmd=cmd, name=spec.name, output="screen", prefix=_nice_prefix(spec)))
            continue
        params = [os.path.join(str(config_dir()), f) for f in spec.params_files]
        overrides = {k: resolve(v, args) for k, v in spec.params.items()}
        actions.append(Node(package="surgbot", executable=spec.executable, name=spec.name, output="screen",
                            parameters=params + ([overrides] if overrides else []), prefix=_nice_prefix(spec)))
    return LaunchDescription(actions)
