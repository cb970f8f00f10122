"""High-rate topics read by polling: their newest message and its arrival, without a wake-up per message.

A subscription callback wakes the node's executor thread for every message.
The safety supervisor only needs to know when its fastest streams last
arrived (`/g1/joint_states` 250 Hz, `/PSM1/measured_js` 100 Hz, `/teleop/head`
60-125 Hz: ~450 wake-ups a second) and otherwise sleeps between its 50 Hz
judgements; on the 2-core machine a wake-up of a sleeping thread costs
~0.2 ms of CPU (bench `machine.wake_penalty`).  Measured here: a raw callback
subscription to a 250 Hz JointState cost ~6 % of a core, the same stream
taken at 50 Hz ~2 %; the supervisor in the 4-node stack 9.0-9.4 -> 6.4-6.7 %
(bench `executor.watch_*`).  The teleop console, asleep between operator
samples, reads the two status topics that stream (the fulcrum error, the
safety state) the same way at its 10 Hz status tick: idle in the 6-node stack
6.5-6.7 -> 4.4 %.  `surgbot demo`'s observer drains its 100 Hz ground-truth and
counted streams at 10 Hz (`drain`: every message, in order): 14 -> 10-11 %.
(Not used where a node wakes at 100-500 Hz on its own timer anyway: the
teleop mapper's robot state and the endoscope holder's joint states read this
way measured the same CPU as by callback, within the runs' noise.)

So these topics are subscribed by a second node of the same process that no
executor spins (`<node>_arrivals`: the same DDS participant, nothing
published): DDS keeps the newest messages in each reader's history (keep-last
`depth`), and the owner calls `poll()` when it needs them; it takes them raw
and returns, per topic, the newest one (still serialised: `decode` it if the
content matters) and when it arrived: the middleware's reception time, given
on the owner's clock (its age on the wall clock subtracted from the owner's
now; a reception stamp ahead of the wall clock counts as now).  So a
watchdog sees when a message reached this process, not when a late tick got
to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

NODE_SUFFIX = "_arrivals"
NS_PER_S = 1e9


class Arrival(NamedTuple):
    t_s: float          # when it reached this process, on the owner's clock
    raw: bytes          # the serialised message (`PolledArrivals.decode`)


class PolledArrivals:
    def __init__(self, owner: Node, clock: Callable[[], float] = time.monotonic):
        self.reader = rclpy.create_node(owner.get_name() + NODE_SUFFIX, namespace=owner.get_namespace(),
                                        context=owner.context, start_parameter_services=False,
                                        enable_rosout=False)
        self.clock = clock
        self._subs: dict[str, object] = {}
        self.taken: dict[str, int] = {}          # messages taken per key (the tests and the bench count them)

    def add(self, key: str, msg_type, topic: str, qos: QoSProfile | int) -> None:
        self._subs[key] = self.reader.create_subscription(msg_type, topic, _never_called, qos, raw=True)
        self.taken[key] = 0

    def poll(self) -> dict[str, Arrival]:
        """key -> the newest message that came since the last poll, and when."""
        return {key: got[-1] for key, got in self.drain(newest_only=True).items()}

    def drain(self, newest_only: bool = False) -> dict[str, list[Arrival]]:
        """key -> every message that came since the last call (oldest first; as many as the
        reader's keep-last depth holds), each with when it arrived."""
        now, wall = self.clock(), time.time()
        out = {}
        for key, sub in self._subs.items():
            got: list = []
            with sub.handle:
                while (taken := sub.handle.take_message(sub.msg_type, True)) is not None:
                    self.taken[key] += 1
                    if newest_only:
                        got[:] = [taken]
                    else:
                        got.append(taken)
            if got:
                out[key] = [Arrival(now - _age_s(info, wall), raw) for raw, info in got]
        return out

    def decode(self, key: str, raw: bytes):
        return deserialize_message(raw, self._subs[key].msg_type)

    def destroy(self) -> None:
        self.reader.destroy_node()


def _age_s(info: dict, wall_s: float) -> float:
    """How long ago the middleware received a message (0 without a stamp, or one ahead of the wall clock)."""
    received_s = (info.get("received_timestamp") or 0) / NS_PER_S
    return max(0.0, wall_s - received_s) if received_s > 0 else 0.0


def _never_called(_msg) -> None:
    """The reader node is never spun: messages are taken by `poll`."""
