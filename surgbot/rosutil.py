"""Small rclpy helpers shared by nodes, twins and clients.

* `latched_qos()`: the transient-local profile of state topics.
* `declare_config(node, Config)`: ROS parameters generated from a core's config
  dataclass (names, types, descriptions, ranges) and the config built back
  from them, so a default lives only in the dataclass.
* `Diagnostics`: one `/diagnostics` publisher per node (level, message,
  key/values from a callback, 1 Hz by default).
* `trigger_handler` / `setbool_handler`: a core call -> a std_srvs response.
* `run_node(make_node)`: init, spin, clean shutdown on Ctrl-C / SIGTERM /
  external shutdown.
* `make_executor()`: the executor a node process spins in (rclpy's C++
  EventsExecutor where this rclpy has it, see EXECUTOR_ENV).
* `fast_timer(node, period_s, fn)`: `create_timer` for a fast loop, without
  rclpy's per-tick `inspect.signature` of the callback.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import struct
import sys
import threading
from array import array
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty

from surgbot import config as config_mod
from surgbot import contract
from surgbot.processes import freeze_startup_heap, settle_scheduling

DIAGNOSTICS_TOPIC = "/diagnostics"
# Which executor the node processes spin in: "events" (default where rclpy has it) or "single".
# rclpy's SingleThreadedExecutor rebuilds its wait set in Python on every wake: measured here
# (bench/executors.py) a 500 Hz JointState subscriber + 500 Hz timer costs ~2.5x the CPU it costs
# under the C++ EventsExecutor (rclpy >= 9, "experimental" upstream).  On a 2-core machine that
# overhead, summed over the stack's nodes, is what starved the 50 ms watchdog chain.  Jazzy's
# rclpy (7.x) has no EventsExecutor: the single-threaded one is used there.
EXECUTOR_ENV = "SURGBOT_ROS_EXECUTOR"
# The node liveliness lease of every node (see alive_qos), s; unset: contract.alive_lease_of(node).
ALIVE_LEASE_ENV = "SURGBOT_ALIVE_LEASE_S"
ALIVE_LEASE_RANGE_S = (0.02, 60.0)
EXECUTOR_KINDS = ("events", "single")
SPIN_SLICE_S = 0.05     # longest an idle spin_once waits before the loop checks whether to stop
SPIN_RETRY_S = 0.01     # after a callback raised (BackgroundSpinner on_error): no hot loop on a bad stream
DIAGNOSTICS_PERIOD_S = 1.0

_ARRAY_TYPES = {float: Parameter.Type.DOUBLE_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                bool: Parameter.Type.BOOL_ARRAY, str: Parameter.Type.STRING_ARRAY}
_SCALAR_TYPES = {float: Parameter.Type.DOUBLE, int: Parameter.Type.INTEGER,
                 bool: Parameter.Type.BOOL, str: Parameter.Type.STRING}


def fast_timer(node, period_s: float, fn: Callable[[], None]):
    """`node.create_timer(period_s, fn)` for a loop of hundreds of Hz.

    rclpy inspects a timer's callback on every tick (looking for a TimerInfo parameter, since
    the callback may be swapped at runtime): ~18 us for a bound method, ~1 % of a core at 500 Hz.
    A plain function carrying its signature answers that in ~3 us.
    """
    def tick() -> None:
        fn()
    tick.__signature__ = inspect.Signature()
    return node.create_timer(period_s, tick)


def alive_lease_s(node_name: str = "") -> float:
    """A node's liveliness lease, s: ALIVE_LEASE_ENV if set (checked; then the same for every node),
    else `contract.alive_lease_of(node_name)` (`contract.ALIVE_LEASE_S` for a name not given).

    From the contract or the environment, not a ROS parameter, because a node's writer and the
    supervisor's reader (other processes on the same ROS_DOMAIN_ID) must agree on it: a writer
    offering more than the supervisor asks for does not match, and its death would go unseen."""
    raw = os.environ.get(ALIVE_LEASE_ENV, "").strip()
    if not raw:
        return contract.alive_lease_of(node_name)
    try:
        lease = float(raw)
    except ValueError:
        raise ValueError(f"{ALIVE_LEASE_ENV}={raw!r}: not a number of seconds") from None
    if not (math.isfinite(lease) and ALIVE_LEASE_RANGE_S[0] <= lease <= ALIVE_LEASE_RANGE_S[1]):
        raise ValueError(f"{ALIVE_LEASE_ENV}={raw!r}: must be {ALIVE_LEASE_RANGE_S[0]}-{ALIVE_LEASE_RANGE_S[1]} s")
    return lease


def alive_qos(node_name: str = "") -> QoSProfile:
    """Liveliness AUTOMATIC with a lease of `alive_lease_s(node_name)`, for both ends of a node's
    alive topic.  The writer's participant asserts it while the process runs, so nothing is published;
    a reader must ask for a finite lease (>= the writer's) to be told of a loss: measured here
    (Fast DDS), SIGKILL seen one lease later, SIGTERM within ~20-50 ms.  A process that gets no
    CPU for a lease is reported too: on the 2-core machine with the whole stack and its test
    harness (load ~14) that happened at 150 ms (SURGBOT_FAULTS_LOADED raises it, see
    tests/fault_harness.py)."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, liveliness=LivelinessPolicy.AUTOMATIC,
                      liveliness_lease_duration=Duration(seconds=alive_lease_s(node_name)))


# XCDR encapsulation ids (the first 2 bytes of a serialized message): CDR and PL_CDR, big / little endian
_CDR_BIG_ENDIAN, _CDR_LITTLE_ENDIAN = (0x0000, 0x0002), (0x0001, 0x0003)


def stamp_of_raw(data: bytes) -> float:
    """`header.stamp` (s) of a serialized message whose first field is a std_msgs/Header (what a
    `raw=True` subscription hands over): read from its CDR bytes without deserialising the rest
    (a 500 Hz JointState costs a Python reader ~40 us each to deserialise, measured).  ValueError on
    bytes too short or an unknown encapsulation."""
    if len(data) < 12:
        raise ValueError(f"{len(data)} bytes: too short for an encapsulation header and a stamp")
    kind = int.from_bytes(data[:2], "big")
    if kind in _CDR_LITTLE_ENDIAN:
        sec, nanosec = struct.unpack_from("<iI", data, 4)
    elif kind in _CDR_BIG_ENDIAN:
        sec, nanosec = struct.unpack_from(">iI", data, 4)
    else:
        raise ValueError(f"unknown CDR encapsulation 0x{kind:04x}")
    return sec + nanosec * 1e-9


def float64_field(values) -> array:
    """`values` for a `float64[]` field of a generated message (JointState position, ...).

    An `array('d')` is stored as it is; a list goes through the generated setter's per-element type
    and range checks in Python, half the cost of building a 29-joint JointState (measured).  High-rate
    publishers also reuse one message object, filling it anew each time: a generated message's
    `__init__` imports its field types on every call.
    """
    return array("d", np.asarray(values, dtype=np.float64).tobytes())


def operator_stream_qos(depth: int) -> QoSProfile:
    """Best effort, volatile: the console's `/teleop/*` streams (contract section 6).

    Every sample carries the operator's whole state and the next one supersedes it, so DDS's
    acknowledgements and resends buy nothing; dropping them saved ~1 % of a core per 125 Hz
    stream with two readers and ~150 us of each publish here (measured on the 2-core machine).
    A gap is judged by the readers' own watchdogs (the mapper, the holder, the supervisor's
    200 ms console link).  `depth` readers keep: a briefly starved one still has every sample.
    Best-effort readers also match reliable writers (a test's or `ros2 topic pub`'s).
    """
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable, transient-local: late joiners get the last state (operating_state, mode, safety)."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _descriptor(spec: config_mod.FieldSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.help, read_only=spec.read_only)
    if spec.is_array or (spec.lo is None and spec.hi is None):
        return d
    if spec.kind is float:
        d.floating_point_range = [FloatingPointRange(
            from_value=float(spec.lo if spec.lo is not None else -sys.float_info.max),
            to_value=float(spec.hi if spec.hi is not None else sys.float_info.max), step=0.0)]
    elif spec.kind is int:
        d.integer_range = [IntegerRange(from_value=int(spec.lo if spec.lo is not None else -(2 ** 63)),
                                        to_value=int(spec.hi if spec.hi is not None else 2 ** 63 - 1), step=0)]
    return d


def declare_config(node, cls: type, overrides: Mapping[str, Any] | None = None):
    """Declare one ROS parameter per leaf of config dataclass `cls`; return `cls` built from their values.

    Unset optional fields are declared typed without a value (a params file
    may set them).  `overrides` replace dataclass defaults for this node only
    (e.g. values computed at start); the params file still wins.  An invalid
    value raises `ValueError` from the config's `__post_init__`, naming it.
    """
    values: dict[str, Any] = {}
    for spec in config_mod.fields(cls):
        default = (overrides or {}).get(spec.name, spec.default)
        ptype = (_ARRAY_TYPES if spec.is_array else _SCALAR_TYPES)[spec.kind]
        desc = _descriptor(spec)
        if default is None or (spec.is_array and len(default) == 0):
            param = node.declare_parameter(spec.name, ptype, desc)
        else:
            param = node.declare_parameter(spec.name, list(default) if spec.is_array else default, desc)
        if param.type_ == Parameter.Type.NOT_SET:
            continue
        value = param.value
        if spec.is_array:
            value = tuple(value)
        values[spec.name] = value
    return config_mod.build(cls, values)


class Diagnostics:
    """`/diagnostics` for one node: `status()` returns (level, message, key/values) each period.

    Also offers the node's liveliness on `contract.alive_topic(name)` (see `alive_qos`): the
    supervisor learns of a killed or stalled node within the lease instead of after seconds of
    silent diagnostics.
    """

    OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN,
                              DiagnosticStatus.ERROR, DiagnosticStatus.STALE)

    def __init__(self, node, name: str, status: Callable[[], tuple[bytes, str, Mapping[str, Any]]],
                 period_s: float = DIAGNOSTICS_PERIOD_S, hardware_id: str = ""):
        self._node = node
        self._name = name
        self._hardware_id = hardware_id
        self._status = status
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        # never written: its DDS liveliness is the node's heartbeat for the safety supervisor
        self._alive = node.create_publisher(Empty, contract.alive_topic(name), alive_qos(name))
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        level, message, values = self._status()
        s = DiagnosticStatus(level=level, name=self._name, message=message, hardware_id=self._hardware_id)
        s.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[s])
        arr.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(arr)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)           # e.g. counters by cause: readable by tools, not a Python repr
    return str(v)


def trigger_handler(call: Callable[[], Any]) -> Callable:
    """std_srvs/Trigger callback from a core call returning a `Result` (or anything truthy with `reason`)."""
    def handle(_request, response):
        result = call()
        response.success = bool(result)
        response.message = getattr(result, "reason", "") or ("ok" if response.success else "refused")
        return response
    return handle


def setbool_handler(call: Callable[[bool], Any]) -> Callable:
    """std_srvs/SetBool callback from a core call taking the bool and returning a `Result`."""
    def handle(request, response):
        result = call(bool(request.data))
        response.success = bool(result)
        response.message = getattr(result, "reason", "") or ("ok" if response.success else "refused")
        return response
    return handle


class BackgroundSpinner:
    """Spins an executor in a daemon thread in short `spin_once` slices until `stop()`.

    `stop()` returns only after the thread has left rclpy, so the caller may
    then destroy nodes and shut the context down.  (Destroying them while
    another thread sits in `executor.spin()` crashed a test process with a
    segfault, intermittently, on a loaded machine.)  The thread also ends when
    the executor's context is shut down (`rclpy.shutdown()`, Ctrl-C).

    `on_error(exc)`: called when a callback raises; spinning then resumes after
    SPIN_RETRY_S (a callback that raises on every message cannot make a hot
    loop).  Without it the exception ends the thread, as a plain `spin()` would.
    """

    def __init__(self, executor, on_error: Callable[[BaseException], None] | None = None):
        self.executor = executor
        self._on_error = on_error
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=SPIN_SLICE_S)
            except (ExternalShutdownException, rclpy.executors.ShutdownException):
                return
            except Exception as exc:
                if self._on_error is None or not self.executor.context.ok():
                    raise
                self._on_error(exc)
                self._stop.wait(SPIN_RETRY_S)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.executor.shutdown()


def executor_kind() -> str:
    """"events" or "single": EXECUTOR_ENV if set (checked), else events where rclpy has it."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if kind and kind not in EXECUTOR_KINDS:
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: must be one of {', '.join(EXECUTOR_KINDS)}")
    if kind == "single":
        return kind
    try:
        from rclpy.experimental import EventsExecutor  # noqa: F401  (rclpy >= 9 only)
    except ImportError:
        if kind == "events":
            raise ValueError(f"{EXECUTOR_ENV}=events: this rclpy has no EventsExecutor (rclpy >= 9)") from None
        return "single"
    return "events"


def make_executor(context=None):
    """A new executor of `executor_kind()` (the context: rclpy's default one unless given)."""
    if executor_kind() == "events":
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=context)
    return rclpy.executors.SingleThreadedExecutor(context=context)


def run_node(make_node: Callable[[], object], args: list[str] | None = None,
             on_shutdown: Callable[[object], None] | None = None) -> int:
    """init, spin until Ctrl-C, SIGTERM or external shutdown, run `on_shutdown(node)`, tear down."""
    # before any thread: the priority `surgbot up` asked for, then no AV1 encoder can take FIFO 99
    scheduling = settle_scheduling()
    rclpy.init(args=sys.argv if args is None else args)
    # rclpy's own SIGINT/SIGTERM handlers shut the context down; spin then
    # raises ExternalShutdownException (or KeyboardInterrupt).
    node = None
    try:
        node = make_node()
        if scheduling:
            node.get_logger().info(f"scheduling: {scheduling}")
        freeze_startup_heap()
        executor = make_executor()
        executor.add_node(node)
        # spin_once slices, not executor.spin(): the EventsExecutor's spin() (and spin_once()
        # without a timeout) kept the GIL from this process's other threads (the G1 bridge's DDS
        # receive thread) and did not return at shutdown; bounded slices do both.
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            if on_shutdown is not None:
                on_shutdown(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
