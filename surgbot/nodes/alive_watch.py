"""`AliveWatch`: the safety supervisor's view of each node's life (its part of `safety_supervisor`).

* Every node's `Diagnostics` offers a never-written publisher on
  `/safety/alive/<name>` (contract.alive_topic) whose DDS liveliness lease
  (`contract.alive_lease_of`) tells when the process died, exited or stalled.
  The watch starts at the node's first diagnostics.
* A lapse while the node's own data stream is fresh (`witnesses`) is counted,
  not a stop: a stopped process publishes nothing, and that stream's faster
  watchdog judges it.
* A lapse heard within a lease of the supervisor's own stall waits one lease
  for the node to be alive again (`surgbot.safety.own_stall`; `check_pending`).
* The launcher that started a node tells its exit at once
  (`contract.SAFETY_PROCESS_EXIT`, `surgbot.exit_watch`): liveliness lost now,
  not one lease later.
* The cause ends when the node is alive again: DDS says so, or diagnostics the
  node stamped after the loss arrive.  The FAULT stays latched until a reset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from std_msgs.msg import Empty, String

from surgbot import contract
from surgbot.rosutil import alive_qos
from surgbot.safety.own_stall import OwnStall
from surgbot.safety.supervisor import SupervisorCore, process_exit_report

ALIVE_PREFIX = "alive:"
ALIVE_LAPSE_LOG_EVERY_S = 5.0


class AliveWatch:
    def __init__(self, node: Node, core: SupervisorCore, own_stall: OwnStall, witnesses: dict[str, str],
                 on_fault: Callable[[], None], now: Callable[[], float],
                 refresh: Callable[[], None] = lambda: None):
        """`witnesses`: node name -> the watchdog of its own data stream; `on_fault()`: step the core
        and react, at once (not at the next timer tick); `now`: the supervisor's clock (the core's);
        `refresh()`: feed the core what its polled streams brought (before a witness is judged)."""
        self.node, self.core, self.own_stall, self.witnesses = node, core, own_stall, witnesses
        self.on_fault, self.now, self.refresh = on_fault, now, refresh
        self.lost_at: dict[str, float] = {}     # key -> wall time of the loss (compared with diagnostics' stamps)
        self.pending: dict[str, float] = {}     # key -> deadline: a loss heard right after our own stall
        self.lapses_with_data = 0               # liveliness losses its data stream disproved
        self._lapse_logged_s = -math.inf
        node.create_subscription(String, contract.SAFETY_PROCESS_EXIT, self.on_process_exit, 10)

    def _log(self):
        return self.node.get_logger()

    def watch(self, name: str) -> None:
        """Follow the node's liveliness from now on (it is alive: its diagnostics just came)."""
        try:
            topic = contract.alive_topic(name)
        except ValueError as exc:          # a name no node of ours uses: its diagnostics still count
            self._log().warning(f"no liveliness watch for {name!r}: {exc}")
            return
        key, qos = ALIVE_PREFIX + name, alive_qos(name)
        lease_s = qos.liveliness_lease_duration.nanoseconds * 1e-9
        self.core.watch(key, math.inf)     # liveliness events only: no silence timeout
        witness = self.witnesses.get(name)
        callbacks = SubscriptionEventCallbacks(liveliness=lambda info: self._on_liveliness(key, lease_s, info, witness))
        self.node.create_subscription(Empty, topic, lambda _m: None, qos, event_callbacks=callbacks)

    def proof_of_life(self, name: str, stamp_s: float, now: float) -> None:
        """Diagnostics node `name` stamped after its liveliness was lost: it is alive again.

        DDS does not always report a writer alive again after a lease missed under load (seen on
        the 2-core box: the cause stayed "stopped" for minutes with the node running, so no reset
        could go through).  The FAULT itself stays latched until /safety/reset; only the cause
        ends.  Stamps from before the loss (messages in flight when a node died) do not count.
        """
        key = ALIVE_PREFIX + name
        lost_at = self.lost_at.get(key)
        if lost_at is None or not stamp_s > lost_at:
            return
        del self.lost_at[key]
        self.pending.pop(key, None)
        self.core.feed(key, now)
        self._log().warning(f"{key}: liveliness lost, but diagnostics stamped after the loss arrive: alive")

    def _on_liveliness(self, key: str, lease_s: float, info, witness: str | None = None) -> None:
        if info.alive_count > 0:
            if info.alive_count_change < 0 or info.not_alive_count_change > 0:
                self._log().warning(f"{key}: one of {info.alive_count + 1} publishers lost")
            self.lost_at.pop(key, None)
            if self.pending.pop(key, None) is not None:
                self._log().info(f"{key}: alive again within its lease after the supervisor's own stall")
            self.core.feed(key, self.now())
            return
        self.refresh()
        now = self.now()
        if witness is not None and self.core.fresh(witness, now):     # see `witnesses`
            self.lapses_with_data += 1
            if now - self._lapse_logged_s >= ALIVE_LAPSE_LOG_EVERY_S:
                self._lapse_logged_s = now
                self._log().warning(f"{key}: liveliness lapsed while its data ({witness}) kept coming: "
                                    f"running, not a stop ({self.lapses_with_data} so far)")
            return
        self.lost_at[key] = time.time()
        if self.own_stall.recent(now, lease_s):    # see surgbot.safety.own_stall
            self.pending[key] = now + lease_s
            return
        self._lost(key)

    def on_process_exit(self, msg: String) -> None:
        """The launcher saw a node's process exit (contract.SAFETY_PROCESS_EXIT): its liveliness is
        lost now, not a lease later; alive again (and a reset) as after a liveliness loss."""
        report = process_exit_report(msg.data)
        key = ALIVE_PREFIX + report.value[0] if report else ""
        if key not in self.core.watchdogs:     # malformed, or a node never heard from: its own watchdogs
            self._log().warning(f"process exit report ignored: {report.reason or key + ' not watched'}")
            return
        self.lost_at[key] = time.time()
        self.pending.pop(key, None)
        self._lost(key, detail=report.value[1])

    def check_pending(self, now: float) -> None:
        """On a tick that judges: a loss heard after our own stall whose node is not alive again."""
        for key, deadline in list(self.pending.items()):
            if now >= deadline:
                del self.pending[key]
                self._lost(key, "; not alive again within its lease after the supervisor's own stall")

    def _lost(self, key: str, after: str = "", detail: str = "") -> None:
        self.core.feed(key, self.now(), ok=False, detail=detail or
                       f"stopped (DDS liveliness lost: the process was killed, exited or stalled{after})")
        self.on_fault()
