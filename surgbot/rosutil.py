"""Small rclpy helpers shared by nodes, twins and clients (rclpy imported lazily)."""

from __future__ import annotations

import sys
from typing import Callable


def latched_qos(depth: int = 1):
    """Reliable, transient-local: late joiners get the last state (operating_state, mode, safety)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def run_node(make_node: Callable[[], object], args: list[str] | None = None,
             on_shutdown: Callable[[object], None] | None = None) -> int:
    """init, spin until SIGINT/SIGTERM, run `on_shutdown(node)`, tear down.  For `main()`s."""
    import rclpy
    rclpy.init(args=sys.argv if args is None else args)
    node = make_node()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    except Exception:  # noqa: BLE001 - ExternalShutdownException on SIGINT/SIGTERM
        if rclpy.ok():
            raise
    finally:
        if on_shutdown is not None:
            on_shutdown(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
