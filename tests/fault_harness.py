"""Fault-injection harness (issue 16): one real stack, an outside observer, ground-truth figures per fault.

* `FaultStack`: the node set of `surgbot up --console` (surgbot.stack, run by
  `surgbot.up.Stack`: one process per node, the shipped parameter files)
  plus a policy node fed by `tests.fault_policy_server` (a real pyzmq server
  whose answers the test can make faulty) and the scripted operator
  (`tests.teleop_operator`, the console page's protocol over WSS).  One stack
  serves every scenario; a scenario restarts only what it killed.
* `Observer`: a test-side rclpy node that sees the stack only from outside:
  `/safety/state`, the sim's ground truth (`/sim/ground_truth/psm_tip`,
  `/sim/ground_truth/endoscope_tip`), what the actuators were told (the PSM
  twin's own `setpoint_js` / `jaw/setpoint_js`, and `rt/arm_sdk` as the G1
  twin receives it on unitree DDS), and the services a user calls.
* `Observer.figures(t_fault, ...)`: detection time (first non-OK
  `/safety/state` after the fault, by its stamp), time to the safe state (the
  later of the detection and the last command any source of the stack sent:
  `/PSM1/servo_cp`, `/PSM1/jaw/servo_jp`, `/g1/arm_command`,
  `/endoscope/servo_cv`, by their header stamps), when the actuators'
  setpoints last changed (the PSM twin's `setpoint_js`, `rt/arm_sdk` targets:
  commands in flight and the twin's own lag included), the largest
  ground-truth displacement of the PSM tip and the scope tip after the fault.

Clock: every process on this machine stamps with CLOCK_MONOTONIC (receive
times here, `time.monotonic()` at injection), so the figures include the DDS
delivery to the observer (a fraction of a ms unloaded).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, String
from std_srvs.srv import SetBool, Trigger
from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_

from surgbot import contract, stack
from surgbot import processes as child_processes
from surgbot.hw import unitree, unitree_codec
from surgbot.hw.crtk import PSMClient
from surgbot.rosutil import BackgroundSpinner, make_executor, stamp_of_raw
from surgbot.teleop.url import wait_for_served_port
from surgbot.up import Stack
from tests.conftest import PYTHON, REPO

G1_DOMAIN = int(os.environ["SURGBOT_G1_DOMAIN"])
TOKEN = "fault-injection-token"
SCENE = "box_trainer"
KEEP_S = 30.0                     # history kept per stream
SETPOINT_EPS = 1e-9               # a setpoint change smaller than this is float noise, not a command
POLICY_SERVER = "fault_policy_server"
# Watchdog margins for a loaded CI box (the same kind of overrides tests/endoscope_rig.py documents:
# rt/lowstate receive gaps of 45-190 ms were measured in quiet HOLD with other suites running, and a
# load average of 26 on 2 cores was seen while this suite was written; the shipped 50 ms watchdogs then
# trip before any fault is injected).  They change what detects a stale stream, so the stale-state
# scenarios are judged against the 100 ms budget all the same and fail honestly with them;
# The shipped values are the default; SURGBOT_FAULTS_LOADED=1 runs with these margins (and the
# figures then say so).
LOADED_BOX_MARGINS = {
    "g1_bridge": {"stale_after": 0.3, "safety_stale_s": 0.5},
    "endoscope_holder": {"joint_state_timeout_s": 0.5, "safety_stale_s": 0.5},
    "safety_supervisor": {"lowstate_timeout_s": 0.3, "psm_state_timeout_s": 0.3, "console_link_timeout_s": 0.5},
    "teleop_mapper": {"safety_stale_s": 0.5},
    "policy_node": {"safety_stale_s": 0.5},
}


# ... and every node's liveliness lease (surgbot.rosutil.alive_qos: an environment variable, the same
# for every process): 150 ms lapsed twice in one run of this stack (load ~14) with nothing killed.
LOADED_ENV = {"SURGBOT_ALIVE_LEASE_S": "0.3"}


def faults_realtime_level() -> str:
    """`SURGBOT_FAULTS_REALTIME`: a stack.REALTIME_LEVELS name, or 1 for "chain"; unset: "off"
    (`make safety`, which writes the committed table, sets "sim", `make demo`'s level)."""
    value = os.environ.get("SURGBOT_FAULTS_REALTIME", "off") or "off"
    return "chain" if value == "1" else value


def margins() -> dict:
    """Node parameters overridden (by node name) and, under "environment", the variables set."""
    if os.environ.get("SURGBOT_FAULTS_LOADED") != "1":
        return {}
    return {**LOADED_BOX_MARGINS, "environment": LOADED_ENV}
OPERATOR = "operator"
PRE_FAULT_S = 0.5                 # the drift before a fault is measured over this
TRACE_EVERY = 3                 # SURGBOT_FAULT_TRACE prints every this-many ground-truth sample
CALL_RETRY_S = 5.0                # a service call unanswered this long is sent again (Observer.call)
QUEUE = 1000                      # this process lags on a loaded box: keep every stamped sample
COMMAND_TOPICS = {contract.psm_topic("servo_cp"): PoseStamped, contract.psm_topic("jaw/servo_jp"): JointState,
                  contract.G1_ARM_COMMAND: JointState, contract.ENDOSCOPE_SERVO_CV: TwistStamped}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the stack
class FaultStack:
    """The stack's processes by name; kill / signal / restart one of them."""

    def __init__(self, log_dir: Path, mode_file: Path):
        self.mode_file = mode_file
        self.console_port, self.policy_port = free_port(), free_port()
        os.environ["SURGBOT_CONSOLE_TOKEN"] = TOKEN     # the console reads it (never a ROS parameter)
        opts = stack.StackOptions(sim_scene=SCENE, console=True, g1_domain=G1_DOMAIN,
                                  console_port=self.console_port, policy_port=self.policy_port)
        nodes = []
        for spec in stack.nodes_for(opts):
            if spec.name == "sim_node":
                # the policy node needs images, nothing else does: a small, slow camera (CPU)
                spec = dataclasses.replace(spec, params={**spec.params, "camera_width": 64, "camera_height": 48,
                                                         "camera_hz": 5.0})
            nodes.append(spec)
        nodes.append(dataclasses.replace(stack.POLICY_NODE, params={**stack.POLICY_NODE.params,
                                                                    "instruction": "sweep"}))
        self.margins = margins()
        os.environ.update(self.margins.get("environment", {}))     # the stack's processes inherit it
        nodes = [dataclasses.replace(n, params={**n.params, **self.margins.get(n.name, {})}) for n in nodes]
        nodes.insert(-1, stack.NodeSpec(POLICY_SERVER, "", "tests.fault_policy_server", ros=False,
                                        args=(str(self.policy_port), str(mode_file))))
        self.stack = Stack(nodes, opts.launch_arguments(), log_dir, restart=False, say=print,
                           realtime=faults_realtime_level())
        self.operator: subprocess.Popen | None = None
        self.operator_log = log_dir / "operator.log"
        self._op_sent = 0

    def start(self) -> None:
        self.mode_file.write_text("normal")
        self.stack.start()

    def running(self, name: str):
        return next(r for r in self.stack.running if r.spec.name == name)

    def proc(self, name: str) -> subprocess.Popen:
        if name == OPERATOR:
            return self.operator
        return self.running(name).proc

    def log(self, name: str) -> str:
        path = self.operator_log if name == OPERATOR else self.running(name).log
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def send_signal(self, name: str, sig: int) -> None:
        os.killpg(self.proc(name).pid, sig)

    def kill(self, name: str, sig: int = signal.SIGKILL, wait_s: float = 10.0) -> None:
        proc = self.proc(name)
        os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self, name: str) -> None:
        if name == OPERATOR:
            self.start_operator()
            return
        for i, r in enumerate(self.stack.running):
            if r.spec.name == name:
                if r.proc.poll() is None:
                    self.kill(name)
                self.stack.running[i] = self.stack._spawn(r.spec, r.restarts + 1)
                return
        raise KeyError(name)

    def dead(self) -> list[str]:
        names = [r.spec.name for r in self.stack.running if r.proc.poll() is not None]
        if self.operator is not None and self.operator.poll() is not None:
            names.append(OPERATOR)
        return names

    def pids(self) -> dict[str, int]:
        return {r.spec.name: r.proc.pid for r in self.stack.running}

    # the scripted operator (tests/teleop_operator.py): the page's protocol at 90 Hz, steered over stdin
    def console_url_port(self, timeout: float = 120.0) -> int:
        return wait_for_served_port(lambda: self.log("teleop_console"),
                                    lambda: self.proc("teleop_console").poll() is None, timeout)

    def start_operator(self) -> None:
        port = self.console_url_port()
        self._op_sent = 0
        self.operator = child_processes.start([PYTHON, "-m", "tests.teleop_operator", str(port), TOKEN], cwd=REPO,
                                              stdin=subprocess.PIPE, stdout=open(self.operator_log, "wb"),
                                              stderr=subprocess.STDOUT)

    def operator_welcomed(self) -> bool:
        """The scripted operator is in; one that exited (a console restarted just now refused its
        connection: it listens a few seconds after its process starts) is started again."""
        if self.operator is not None and self.operator.poll() is not None:
            # checked first: the log of one that exited (its console killed) still says welcome
            time.sleep(0.5)
            self.start_operator()
            return False
        if "welcome" in self.log(OPERATOR):
            return True
        return False

    def op(self, **cmd) -> None:
        self.operator.stdin.write((json.dumps(cmd) + "\n").encode())
        self.operator.stdin.flush()
        self._op_sent += 1
        end = time.monotonic() + 5
        while f"ack {self._op_sent}" not in self.log(OPERATOR) and time.monotonic() < end:
            time.sleep(0.01)

    def stop(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            child_processes.stop(self.operator, signal.SIGTERM, 5)
        for r in reversed(self.stack.running):
            if r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGCONT)      # a scenario may have left one stopped
                except ProcessLookupError:
                    pass
        self.stack.stop()


# --------------------------------------------------------------------------- the observer
class Series:
    """(monotonic time, value) rows, thread-safe, the last KEEP_S seconds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t: list[float] = []
        self.v: list = []

    def add(self, t: float, v) -> None:
        with self.lock:
            self.t.append(t)
            self.v.append(v)
            if len(self.t) > 4096 and t - self.t[0] > KEEP_S:
                cut = len(self.t) // 2
                del self.t[:cut], self.v[:cut]

    def between(self, t0: float, t1: float = float("inf")) -> tuple[np.ndarray, list]:
        with self.lock:
            idx = [i for i, t in enumerate(self.t) if t0 <= t <= t1]
            return np.array([self.t[i] for i in idx]), [self.v[i] for i in idx]

    def last_before(self, t: float):
        with self.lock:
            for i in range(len(self.t) - 1, -1, -1):
                if self.t[i] <= t:
                    return self.v[i]
        return None

    def latest(self):
        with self.lock:
            return self.v[-1] if self.v else None


class ChangeSeries(Series):
    """Keeps a row only when the value changed (setpoints: a row = a command took effect)."""

    def __init__(self):
        super().__init__()
        self._prev = None

    def offer(self, t: float, v: np.ndarray) -> None:
        if self._prev is None or v.shape != self._prev.shape or np.max(np.abs(v - self._prev)) > SETPOINT_EPS:
            self._prev = v
            self.add(t, v)


class Observer:
    """Times are this machine's monotonic clock.  Stamped messages are placed by their stamp (wall clock,
    converted with one offset), not by when this busy process got round to them: the supervisor's state
    (its "stamp"), the twins' setpoints and ground truth (header stamps).  `rt/arm_sdk` has no stamp:
    its DDS listener thread's receive time."""

    def __init__(self):
        self.wall_to_mono = time.monotonic() - time.time()
        self.seen: dict[str, float] = {}     # stream -> newest stamp handled (catching up, see `caught_up`)
        rclpy.init()
        self.node = n = rclpy.create_node("fault_injection_observer")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.safety = Series()              # (state, reasons)
        self.gt_psm, self.gt_scope = Series(), Series()
        self.psm_sp, self.jaw_sp, self.arm_sdk = ChangeSeries(), ChangeSeries(), ChangeSeries()
        self.holds = Series()
        # commands the stack's sources published, placed by their header stamps (when they were sent);
        # raw: only the stamp is needed (the holder's 500 Hz /g1/arm_command deserialised cost this
        # process, which shares the stack's two cores, a large part of its CPU)
        self.sent = {topic: Series() for topic in COMMAND_TOPICS}
        for topic, kind in COMMAND_TOPICS.items():
            n.create_subscription(kind, topic, lambda m, tp=topic: self.sent[tp].add(self._t_raw(m), 1), QUEUE,
                                  raw=True)
        self.mode: str | None = None
        self.mapper: dict = {}
        self.policy: dict = {}
        self.diag: dict[str, tuple[int, str, dict]] = {}
        n.create_subscription(String, contract.SAFETY_STATE, self._on_safety, 50)
        n.create_subscription(PoseStamped, contract.GT_PSM_TIP, lambda m: self._on_gt(self.gt_psm, m, "gt_psm"), QUEUE)
        n.create_subscription(PoseStamped, contract.GT_ENDOSCOPE_TIP,
                              lambda m: self._on_gt(self.gt_scope, m, "gt_scope"), QUEUE)
        n.create_subscription(JointState, contract.psm_topic("setpoint_js"),
                              lambda m: self.psm_sp.offer(self._t(m, "psm_sp"), np.array(m.position)), QUEUE)
        n.create_subscription(JointState, contract.psm_topic("jaw/setpoint_js"),
                              lambda m: self.jaw_sp.offer(self._t(m, "jaw_sp"), np.array(m.position)), QUEUE)
        n.create_subscription(Empty, contract.psm_topic("hold"), lambda _m: self.holds.add(time.monotonic(), 1), 10)
        n.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: setattr(self, "mode", m.data), latched)
        n.create_subscription(String, "/teleop/mapper_state", lambda m: setattr(self, "mapper", json.loads(m.data)),
                              latched)
        n.create_subscription(String, "/policy/state", lambda m: setattr(self, "policy", json.loads(m.data)), 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.estop = n.create_client(Trigger, contract.SAFETY_ESTOP)
        self.reset = n.create_client(Trigger, contract.SAFETY_RESET)
        self.engage = n.create_client(Trigger, contract.G1_ENGAGE)
        self.hold = n.create_client(SetBool, contract.ENDOSCOPE_HOLD)
        self.follow_tool = n.create_client(SetBool, contract.ENDOSCOPE_FOLLOW_TOOL)
        self.policy_enable = n.create_client(SetBool, "/policy/enable")
        self.disturbance = n.create_publisher(JointState, "/sim/psm/disturbance", 10)
        self.psm = PSMClient(n, streams=())          # state commands, moves, hold (the streams are above)
        self.executor = make_executor()     # the EventsExecutor where rclpy has it: less CPU per message
        self.executor.add_node(n)
        self.spinner = BackgroundSpinner(self.executor)
        unitree.init_channel(G1_DOMAIN, "lo")
        self._dp = unitree.participant()
        self.reader = unitree.RawReader(self._dp, contract.G1_TOPIC_ARM_SDK, LowCmd_, self._on_arm_sdk)

    # callbacks
    def _t(self, m, stream: str = "") -> float:
        s = m.header.stamp
        t = s.sec + s.nanosec * 1e-9 + self.wall_to_mono if (s.sec or s.nanosec) else time.monotonic()
        if stream:
            self.seen[stream] = t
        return t

    def _t_raw(self, data: bytes) -> float:
        stamp = stamp_of_raw(data)
        return stamp + self.wall_to_mono if stamp else time.monotonic()

    def caught_up(self, t: float, timeout: float = 5.0) -> bool:
        """Wait until every stamped stream has been handled up to `t` (this process may lag behind)."""
        streams = ("gt_psm", "gt_scope", "psm_sp", "jaw_sp")
        return self.wait(lambda: all(self.seen.get(k, -1e18) >= t for k in streams), timeout)

    def _on_safety(self, m: String) -> None:
        try:
            d = json.loads(m.data)
            t = float(d["stamp"]) + self.wall_to_mono if "stamp" in d else time.monotonic()
            self.safety.add(t, (d["state"], tuple(d.get("reasons", ()))))
        except (ValueError, KeyError, TypeError):
            self.safety.add(time.monotonic(), ("MALFORMED", ()))

    def _on_gt(self, series: Series, m: PoseStamped, stream: str) -> None:
        p = m.pose.position
        series.add(self._t(m, stream), np.array([p.x, p.y, p.z]))

    def _on_diag(self, m: DiagnosticArray) -> None:
        for s in m.status:
            self.diag[s.name] = (s.level, s.message, {kv.key: kv.value for kv in s.values})

    def _on_arm_sdk(self, data: bytes, t_recv: float) -> None:
        rec, crc_ok = unitree_codec.decode_lowcmd(data)
        if rec is None or not crc_ok:
            return                                     # what the twin drops too (checked by the twin's tests)
        q = rec["motor_cmd"]["q"]
        self.arm_sdk.offer(t_recv, np.concatenate([q[12:29], q[contract.G1_ARM_SDK_WEIGHT_INDEX:
                                                                contract.G1_ARM_SDK_WEIGHT_INDEX + 1]]))

    # state
    def state(self) -> str:
        s = self.safety.latest()
        return s[0] if s else ""

    def reasons(self) -> tuple[str, ...]:
        s = self.safety.latest()
        return s[1] if s else ()

    def safety_heard(self) -> float:
        """When the newest /safety/state was stamped (-inf: never): a silent supervisor shows here."""
        with self.safety.lock:
            return self.safety.t[-1] if self.safety.t else float("-inf")

    def bridge(self) -> str:
        d = self.diag.get("g1_bridge")
        return d[1] if d else ""

    # calls
    def call(self, cli, req, timeout: float = 10.0):
        """Call and wait; asked again every CALL_RETRY_S without an answer (every call here is
        idempotent): a node restarted by the previous scenario offers its service before its reply
        writer has matched this reader, and a reply sent then is lost (seen: /policy/enable
        unanswered for 30 s right after the policy node's restart)."""
        if not cli.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"{cli.srv_name} not available")
        end = time.monotonic() + timeout
        while True:
            fut = cli.call_async(req)
            retry = min(end, time.monotonic() + CALL_RETRY_S)
            while not fut.done() and time.monotonic() < retry:
                time.sleep(0.005)
            if fut.done():
                return fut.result()
            cli.remove_pending_request(fut)
            if time.monotonic() >= end:
                raise AssertionError(f"{cli.srv_name}: no answer in {timeout} s")

    def trigger(self, cli, timeout: float = 10.0):
        return self.call(cli, Trigger.Request(), timeout)

    def set_bool(self, cli, value: bool, timeout: float = 10.0):
        return self.call(cli, SetBool.Request(data=value), timeout)

    @staticmethod
    def wait(cond, timeout: float = 15.0, period: float = 0.02) -> bool:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() >= end:
                return False
            time.sleep(period)
        return True

    # figures
    def figures(self, t_fault: float, t_end: float, budget_ms: float, expect_state: bool,
                measure_safe: bool = True, motion_from: float | None = None) -> dict:
        """Figures of one fault over [t_fault, t_end] (see the module doc).

        `measure_safe` False (input refused where it enters: the stack keeps commanding as before):
        no time to a safe state, only the displacements.  `motion_from`: the displacements are
        measured from then, not from `t_fault` (a push above the actuators' force moves the arm
        until it ends, whatever the stack does).  `*_drift_before_mm`: how far each tip moved in
        the PRE_FAULT_S before the fault (motion a preceding step left, not the fault's).
        """
        self.caught_up(t_end)
        ts, states = self.safety.between(t_fault, t_end)
        bad = [(t, s) for t, s in zip(ts, states, strict=True) if s[0] != "OK"]
        detection_ms = (bad[0][0] - t_fault) * 1e3 if bad else None
        reasons = list(bad[0][1][1]) if bad else []
        last = {}
        for name, series in (("psm", self.psm_sp), ("jaw", self.jaw_sp), ("g1_arm_sdk", self.arm_sdk)):
            t, _ = series.between(t_fault, t_end)
            last[name] = float((t[-1] - t_fault) * 1e3) if len(t) else None
        sent = {}
        for topic, series in self.sent.items():
            t, _ = series.between(t_fault, t_end)
            sent[topic] = float((t[-1] - t_fault) * 1e3) if len(t) else None
        stops = [v for v in sent.values() if v is not None]
        sources_ms = max(stops) if stops else 0.0
        changes = [v for v in last.values() if v is not None]
        settled_ms = max(changes) if changes else 0.0
        if not measure_safe:
            safe_ms = None
        elif expect_state:
            safe_ms = None if detection_ms is None else max(detection_ms, sources_ms)
        else:
            safe_ms = sources_ms
        out = {"detection_ms": _r(detection_ms), "time_to_safe_ms": _r(safe_ms), "reasons": reasons,
               "last_command_sent_ms": {k: _r(v) for k, v in sent.items()},
               "last_setpoint_change_ms": {k: _r(v) for k, v in last.items()},
               "setpoints_settled_ms": _r(settled_ms) if measure_safe else None,
               "command_after_budget": (any(v is not None and v > budget_ms for v in sent.values())
                                        if measure_safe else None),
               "setpoint_changed_after_budget": settled_ms > budget_ms if measure_safe else None}
        t_motion = t_fault if motion_from is None else motion_from
        if motion_from is not None:
            out["displacement_from_ms"] = _r((motion_from - t_fault) * 1e3)
        for name, series in (("psm_tip", self.gt_psm), ("scope_tip", self.gt_scope)):
            # no ground truth in the window (a stalled twin, a lagging observer): not measured, never 0
            out[f"{name}_max_mm"] = _r(self.displacement_mm(series, t_motion, t_end), 4)
            out[f"{name}_samples"] = len(series.between(t_motion, t_end)[0])
            out[f"{name}_drift_before_mm"] = _r(self.displacement_mm(series, t_fault - PRE_FAULT_S, t_fault), 4)
        return out

    def trace(self, name: str, t_fault: float, t_end: float, every: int = TRACE_EVERY) -> str:
        """Each tip's distance from where it was at the fault, `ms:mm`, from PRE_FAULT_S before it to t_end."""
        lines = []
        for label, series in (("scope", self.gt_scope), ("psm", self.gt_psm)):
            p0 = series.last_before(t_fault)
            ts, ps = series.between(t_fault - PRE_FAULT_S, t_end)
            if p0 is not None:
                lines.append(f"TRACE {name} {label} tip: " + " ".join(
                    f"{(t - t_fault) * 1e3:.0f}:{np.linalg.norm(p - p0) * 1e3:.2f}"
                    for t, p in zip(ts[::every], ps[::every], strict=True)))
        return "\n".join(lines)

    @staticmethod
    def displacement_mm(series: Series, t0: float, t1: float) -> float | None:
        """Largest distance over [t0, t1] from where the tip was at t0 (None: no samples)."""
        p0 = series.last_before(t0)
        _, ps = series.between(t0, t1)
        if p0 is None or not ps:
            return None
        return max(float(np.linalg.norm(p - p0)) * 1e3 for p in ps)

    def tips_still(self, span_s: float, tol_mm: float) -> bool:
        """Both tips (ground truth) moved less than `tol_mm` over the last `span_s`."""
        t1 = time.monotonic()
        self.caught_up(t1, timeout=1.0)
        moved = [self.displacement_mm(s, t1 - span_s, t1) for s in (self.gt_psm, self.gt_scope)]
        return all(m is not None and m < tol_mm for m in moved)

    def still_since(self, t0: float) -> bool:
        """No actuator setpoint changed since `t0`."""
        return all(len(s.between(t0)[0]) == 0 for s in (self.psm_sp, self.jaw_sp, self.arm_sdk))

    def close(self) -> None:
        self.reader.close()
        self.psm.close()
        self.spinner.stop()
        self.node.destroy_node()
        rclpy.try_shutdown()


def _r(v, nd: int = 1):
    return None if v is None else round(float(v), nd)


def children_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
