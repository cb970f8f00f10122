"""What a CRTK arm says: its state streams, operating state, goals and errors, and waits on them.

`ArmLink` owns the subscriptions of one arm namespace and the condition
variable their callbacks notify; `surgbot.hw.crtk.PSMClient` reads and waits
through it and publishes commands through `surgbot.hw.crtk_commands`.  Callbacks only store (the executor
thread must never block); every wait blocks on the condition, never polls.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from surgbot.contract import psm_topic
from surgbot.rosutil import latched_qos

QUEUE_DEPTH = 10        # crtk_python_client / dvrk_python: KEEP_LAST 10
WAIT_SLICE_S = 0.05     # a wait re-checks its deadline at least this often
STREAM_TYPES = {"measured_js": "JointState", "setpoint_js": "JointState", "measured_cp": "PoseStamped",
                "setpoint_cp": "PoseStamped", "measured_cv": "TwistStamped", "jaw/measured_js": "JointState",
                "jaw/setpoint_js": "JointState", "local/measured_cp": "PoseStamped",
                "local/setpoint_cp": "PoseStamped", "spatial/measured_cf": "WrenchStamped",
                "body/measured_cf": "WrenchStamped", "spatial/jacobian": "Float64MultiArray",
                "body/jacobian": "Float64MultiArray"}


def operating_state_dict(msg) -> dict:
    """crtk_msgs/OperatingState as {state, is_homed, is_busy}."""
    return {"state": msg.state, "is_homed": bool(msg.is_homed), "is_busy": bool(msg.is_busy)}


@dataclass
class Sample:
    msg: object
    received: float       # time.monotonic() at receipt
    serial: int


class ArmLink:
    """Subscriptions of one arm namespace (`streams` + operating_state, goal_reached, error,
    warning, status) and the waits on them; `types`: the message classes by name."""

    def __init__(self, node, namespace: str, streams: tuple[str, ...], types: dict):
        unknown = [s for s in streams if s not in STREAM_TYPES]
        if unknown:
            raise ValueError(f"unknown CRTK streams {unknown}; known: {sorted(STREAM_TYPES)}")
        self.node, self.namespace, self.streams = node, namespace, tuple(streams)
        self._cond = threading.Condition()
        self._samples: dict[str, Sample] = {}
        self._serial = 0
        self._state: dict | None = None
        self._state_serial = 0
        self._goal_serial = 0           # number of goal_reached messages seen
        self._goals: list[bool] = []
        self._errors: list[str] = []
        self.warnings: list[str] = []
        self.statuses: list[str] = []
        t = lambda name: psm_topic(name, namespace)  # noqa: E731
        M = types
        self._subs = [node.create_subscription(M[STREAM_TYPES[name]], t(name),
                                               lambda m, key=name: self._on_sample(key, m), QUEUE_DEPTH)
                      for name in self.streams]
        self._subs += [
            node.create_subscription(M["OperatingState"], t("operating_state"), self._on_state, latched_qos()),
            node.create_subscription(M["Bool"], t("goal_reached"), self._on_goal, QUEUE_DEPTH),
            node.create_subscription(M["String"], t("error"), self._on_error, QUEUE_DEPTH),
            node.create_subscription(M["String"], t("warning"),
                                     lambda m: self._append(self.warnings, m.data), QUEUE_DEPTH),
            node.create_subscription(M["String"], t("status"),
                                     lambda m: self._append(self.statuses, m.data), QUEUE_DEPTH),
        ]

    # ------------------------------------------------------------ callbacks
    def _on_sample(self, key: str, msg) -> None:
        with self._cond:
            self._serial += 1
            self._samples[key] = Sample(msg, time.monotonic(), self._serial)
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        with self._cond:
            self._state = operating_state_dict(msg)
            self._state_serial += 1
            self._cond.notify_all()

    def _on_goal(self, msg) -> None:
        with self._cond:
            self._goals.append(bool(msg.data))
            self._goal_serial += 1
            self._cond.notify_all()

    def _on_error(self, msg) -> None:
        with self._cond:
            self._errors.append(msg.data)
            self._cond.notify_all()

    def _append(self, target: list, text: str) -> None:
        with self._cond:
            target.append(text)
            self._cond.notify_all()

    # --------------------------------------------------------------- reads
    @property
    def errors(self) -> list[str]:
        with self._cond:
            return list(self._errors)

    def operating_state(self) -> dict | None:
        with self._cond:
            return dict(self._state) if self._state else None

    def state_serial(self) -> int:
        """Operating-state messages received so far (a command's answer is one after it)."""
        with self._cond:
            return self._state_serial

    def serial(self) -> int:
        """A counter of received samples (all streams)."""
        with self._cond:
            return self._serial

    def fresh(self, key: str, age: float) -> Sample:
        """The newest `key` sample, or ValueError (not subscribed) / TimeoutError (none, or older than `age` s)."""
        if key not in self.streams:
            raise ValueError(f"{key} is not subscribed: pass streams=(..., {key!r}) to PSMClient")
        with self._cond:
            sample = self._samples.get(key)
        if sample is None:
            raise TimeoutError(f"{psm_topic(key, self.namespace)}: no data received yet")
        old = time.monotonic() - sample.received
        if old > age:
            raise TimeoutError(f"{psm_topic(key, self.namespace)}: data is {old:.2f} s old (> {age:g} s)")
        return sample

    def marks(self) -> tuple[int, int]:
        """(goal_reached messages, errors) so far: where a move's answer will start."""
        with self._cond:
            return self._goal_serial, len(self._errors)

    # --------------------------------------------------------------- waits
    def wait_for(self, predicate, timeout: float, what: str) -> None:
        """Block until `predicate()` (called under the lock) holds; TimeoutError naming `what` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.namespace}: timed out after {timeout:g} s waiting for {what} "
                                       f"(operating state {self._state})")
                self._cond.wait(min(left, WAIT_SLICE_S))

    def wait_for_state(self, accept, timeout: float, what: str, after: int = -1) -> None:
        """Block until an operating state newer than serial `after` satisfies `accept(state dict)`."""
        self.wait_for(lambda: self._state_serial > after and self._state is not None and accept(self._state),
                      timeout, what)

    def wait_for_sample(self, key: str, after: int, timeout: float) -> tuple[object, int]:
        """(message, its serial): the newest `key` message once one newer than serial `after` has arrived."""
        def newer() -> bool:
            s = self._samples.get(key)
            return s is not None and s.serial > after
        self.wait_for(newer, timeout, f"a new {key}")
        with self._cond:
            s = self._samples[key]
            return s.msg, s.serial

    def wait_goal(self, serial: int, error_serial: int, timeout: float) -> bool:
        """True on the goal_reached after `marks()` gave (serial, error_serial) if it says reached;
        False if it says not, or the arm published an error first; TimeoutError otherwise."""
        result: list[bool] = []

        def done() -> bool:
            if self._goal_serial > serial:
                result.append(self._goals[serial])
                return True
            if len(self._errors) > error_serial:
                result.append(False)
                return True
            return False

        self.wait_for(done, timeout, "goal_reached")
        return result[0]

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
