"""A minimal ROS node with diagnostics (so the safety supervisor watches its liveliness), for tests.

    python -m tests.liveness_probe --ros-args -r __node:=NAME      (diagnostics name = NAME)
"""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException

from surgbot.rosutil import Diagnostics

DIAGNOSTICS_PERIOD_S = 0.2


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("liveness_probe")
    Diagnostics(node, node.get_name(), lambda: (Diagnostics.OK, "fine", {}), period_s=DIAGNOSTICS_PERIOD_S)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
