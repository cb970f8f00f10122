"""`ros2 run surgbot sim_node --ros-args -p scene:=box_trainer`: the sim as a ROS 2 node.

Same as `surgbot sim` (sim/runner.py), configured from node parameters
generated from `SimConfig` (scene, seed, headless, fast, duration (unset:
until shut down), g1_domain, g1_interface, camera_*).  Ends cleanly on
Ctrl-C, SIGTERM and external shutdown (the runner's stop event).
"""

from __future__ import annotations

import sys
import threading

# sets MUJOCO_GL before mujoco is first imported (runner's module top)
from surgbot.processes import settle_scheduling
from surgbot.rosutil import declare_config
from surgbot.sim import runner


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    scheduling = settle_scheduling()           # before the DDS and step-loop threads start
    ros = runner.RosContext(args=argv)
    node = ros.node
    if scheduling:
        node.get_logger().info(f"scheduling: {scheduling}")
    stop = threading.Event()
    runner.install_stop_signals(stop)
    ros.context.on_shutdown(stop.set)          # external shutdown ends the run like a signal
    try:
        cfg = declare_config(node, runner.SimConfig)
        result = runner.simulate(cfg, node=node, stop=stop, log=node.get_logger().info)
    except ValueError as exc:
        node.get_logger().error(f"bad parameter: {exc}")
        print(f"sim_node: error: {exc}", file=sys.stderr)
        return 2
    finally:
        ros.close()
    runner.report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
