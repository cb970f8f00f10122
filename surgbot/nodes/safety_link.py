"""`SafetyLink`: one command source's view of `/safety/state` (contract section 8), for its rclpy node.

Wires the topic to a `surgbot.safety.state_watch.SafetyStateWatch` and tells
the node's core when commanding becomes forbidden (ESTOP, FAULT, malformed
state, or the supervisor silent for `safety_stale_s`: fail-safe) and when it
is allowed again.  The callback runs at once on a state message (an e-stop
reaches the core in the DDS latency, not at the next tick); the node also
calls `check()` from its control loop so a silent supervisor is noticed.
Allowed again does not resume anything: each core needs its user's explicit
re-enable (engage, hold, clutch, /policy/enable).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.node import Node
from std_msgs.msg import String

from surgbot import contract
from surgbot.rosutil import declare_config, latched_qos
from surgbot.safety.state_watch import SafetyStateWatch, SafetyWatchConfig


class SafetyLink:
    def __init__(self, node: Node, on_change: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        """`on_change(block)`: block is why commanding is forbidden, "" when it is allowed again."""
        self.cfg: SafetyWatchConfig = declare_config(node, SafetyWatchConfig)
        self.watch = SafetyStateWatch.from_config(self.cfg)
        self.block = ""
        self.stops = 0
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()       # the bridge checks from its stream thread too
        self._sub = node.create_subscription(String, contract.SAFETY_STATE, self._on_state, latched_qos())

    def _on_state(self, msg: String) -> None:
        with self._lock:
            self.watch.update(msg.data, self._clock())
        self.check()

    def _take_pending(self) -> None:
        """State messages DDS has delivered but the executor has not dispatched yet, taken now.

        A node whose executor is behind (a loaded machine: a backlog of operator samples) would
        otherwise publish that backlog's commands before it reaches the e-stop queued behind them.
        """
        handle = self._sub.handle
        while True:
            try:
                with handle:
                    taken = handle.take_message(String, False)
            except Exception:  # noqa: BLE001 - the subscription is being destroyed: the callback path remains
                return
            if taken is None:
                return
            self.watch.update(taken[0].data, self._clock())

    def check(self) -> str:
        """Why commanding is forbidden now ("" = allowed); calls `on_change` on a change."""
        with self._lock:
            self._take_pending()
            r = self.watch.allows_motion(self._clock())
            block = "" if r else r.reason
            changed = bool(block) != bool(self.block)
            self.block = block
            if changed and block:
                self.stops += 1
        if changed:
            self._on_change(block)
        return block

    def status(self) -> dict:
        """For /diagnostics."""
        return {"safety": self.block or "OK", "safety_stops": self.stops,
                "safety_supervisor_required": self.cfg.require_safety_supervisor,
                "safety_state_heard": self.heard()}

    def heard(self) -> bool:
        """A /safety/state has arrived (the nodes discover each other on their own, seconds apart
        on a loaded start-up: a source that has not heard the supervisor refuses to engage)."""
        with self._lock:
            return self.watch.last_s is not None
