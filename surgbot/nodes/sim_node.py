"""`ros2 run surgbot sim_node --ros-args -p scene:=box_trainer`: the sim as a ROS 2 node.

Same as `surgbot sim` (sim/runner.py), configured from node parameters:
scene, seed, headless, fast, duration (<= 0: until shut down), g1_domain,
g1_interface, camera_width, camera_height, camera_hz.
"""

from __future__ import annotations

import sys
import threading


def main(argv: list[str] | None = None) -> int:
    from surgbot.sim import runner  # sets MUJOCO_GL before mujoco is imported

    argv = sys.argv if argv is None else argv
    ros = runner.RosContext(args=argv)
    node = ros.node
    defaults = runner.SimConfig()
    params = {
        "scene": defaults.scene, "seed": defaults.seed, "headless": True, "fast": False,
        "duration": 0.0, "g1_domain": defaults.g1_domain, "g1_interface": defaults.g1_interface,
        "camera_width": defaults.camera_width, "camera_height": defaults.camera_height,
        "camera_hz": defaults.camera_hz,
    }
    for name, value in params.items():
        node.declare_parameter(name, value)
    p = {name: node.get_parameter(name).value for name in params}
    cfg = runner.SimConfig(
        scene=str(p["scene"]), seed=int(p["seed"]), headless=bool(p["headless"]), fast=bool(p["fast"]),
        duration=float(p["duration"]) if float(p["duration"]) > 0 else None,
        g1_domain=int(p["g1_domain"]), g1_interface=str(p["g1_interface"]),
        camera_width=int(p["camera_width"]), camera_height=int(p["camera_height"]),
        camera_hz=float(p["camera_hz"]))
    stop = threading.Event()
    runner.install_stop_signals(stop)
    try:
        cfg.validate()
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
