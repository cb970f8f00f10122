"""A small CRTK client for a dVRK PSM (sim twin or real console), after crtk_python_client.

Speaks only the contract (INTERFACES.md section 3) with the dVRK's own
message types (`crtk_msgs/OperatingState`, `crtk_msgs/StringStamped`, the
`QueryForward/InverseKinematics` services; error/warning/status as
std_msgs/String as the dVRK 2.x ROS 2 bridge publishes them), so the same
code drives `sim/psm_twin.py` and a real dVRK console (README "PSM on a real
dVRK").  The caller owns the rclpy node and spins it (e.g.
`spin_in_background(node)`); blocking calls wait on events set by the
subscription callbacks and raise `TimeoutError`.

    client = PSMClient(node)
    client.enable(5.0); client.home(10.0)
    client.move_jp(q).wait(10.0)
    pose, stamp = client.measured_cp()

`streams` chooses which state topics to subscribe to (default: the seven a
dVRK arm client reads).  Each costs the client a callback per message, so a
1 kHz loop that only needs `setpoint_cp` should subscribe to that alone.

Commands go through the ground layer's checks first (`surgbot.safety.checks`:
numeric, the right number of values, finite; a pose's rotation a rotation): a
bad one raises ValueError naming the cause and nothing is published.  What
only the arm knows (joint limits, reachability, its operating state) it
checks itself and answers on `/PSM1/error`, as a real dVRK does.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np

from surgbot import geometry
from surgbot.contract import PSM_BASE_FRAME, PSM_JAW_NAME, PSM_JOINT_NAMES, PSM_NAMESPACE, psm_topic
from surgbot.hw.crtk_msgs_path import ensure_crtk_msgs
from surgbot.rosutil import latched_qos
from surgbot.safety import checks

STALE_AFTER_S = 1.0     # crtk_python_client: data older than 1 s raises TimeoutError
QUEUE_DEPTH = 10        # crtk_python_client / dvrk_python: KEEP_LAST 10
DEFAULT_STREAMS = ("measured_js", "setpoint_js", "measured_cp", "setpoint_cp", "measured_cv",
                   "jaw/measured_js", "jaw/setpoint_js")
EXTRA_STREAMS = ("local/measured_cp", "local/setpoint_cp", "spatial/measured_cf", "body/measured_cf",
                 "spatial/jacobian", "body/jacobian")
COMMANDS = ("servo_jp", "servo_jr", "move_jp", "move_jr", "servo_jf", "servo_cp", "move_cp", "servo_cv",
            "jaw/servo_jp", "jaw/move_jp", "jaw/servo_jf", "spatial/servo_cf", "body/servo_cf")


class CRTKError(RuntimeError):
    """The arm refused a command (message from /PSM1/error) or a service failed."""


def spin_in_background(node):
    """Spin `node` in a daemon thread; returns its `surgbot.rosutil.BackgroundSpinner`.

    The executor node processes spin (`surgbot.rosutil.make_executor`: rclpy's
    C++ EventsExecutor where this rclpy has it), one thread: callbacks only
    store samples.  rclpy's SingleThreadedExecutor added 2-15 ms to a 1 kHz
    stream here (it rebuilds its wait set in Python on every wake) and its
    MultiThreadedExecutor burned ~75% of a core on 11 topics at 100 Hz.
    Tear down with `spinner.stop()` (it returns once the thread has left rclpy)
    before destroying the node; `rclpy.shutdown()` also ends the thread.
    """
    from surgbot.rosutil import BackgroundSpinner, make_executor

    executor = make_executor(context=node.context)
    executor.add_node(node)

    def report(exc: BaseException) -> None:
        # A callback that raises must not end the thread silently: every wait of the
        # client would then time out with nothing said.  Say it, and keep spinning.
        text = "".join(traceback.format_exception(exc))
        print(f"{node.get_name()}: a callback raised; spinning on:\n{text}", file=sys.stderr, flush=True)

    return BackgroundSpinner(executor, on_error=report)


def _types():
    """The message types, imported once crtk_msgs is on the path (so importing this module
    neither needs ROS nor a built crtk_msgs; a client does)."""
    ensure_crtk_msgs()
    from crtk_msgs.msg import OperatingState, StringStamped
    from crtk_msgs.srv import QueryForwardKinematics, QueryInverseKinematics
    from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Empty, Float64, Float64MultiArray, String
    return dict(OperatingState=OperatingState, StringStamped=StringStamped, JointState=JointState,
                PoseStamped=PoseStamped, TwistStamped=TwistStamped, WrenchStamped=WrenchStamped,
                Bool=Bool, Empty=Empty, Float64=Float64, Float64MultiArray=Float64MultiArray, String=String,
                QueryForwardKinematics=QueryForwardKinematics, QueryInverseKinematics=QueryInverseKinematics)


STREAM_TYPES = {"measured_js": "JointState", "setpoint_js": "JointState", "measured_cp": "PoseStamped",
                "setpoint_cp": "PoseStamped", "measured_cv": "TwistStamped", "jaw/measured_js": "JointState",
                "jaw/setpoint_js": "JointState", "local/measured_cp": "PoseStamped",
                "local/setpoint_cp": "PoseStamped", "spatial/measured_cf": "WrenchStamped",
                "body/measured_cf": "WrenchStamped", "spatial/jacobian": "Float64MultiArray",
                "body/jacobian": "Float64MultiArray"}
COMMAND_TYPES = {"servo_jp": "JointState", "servo_jr": "JointState", "move_jp": "JointState",
                 "move_jr": "JointState", "servo_jf": "JointState", "servo_cp": "PoseStamped",
                 "move_cp": "PoseStamped", "servo_cv": "TwistStamped", "jaw/servo_jp": "JointState",
                 "jaw/move_jp": "JointState", "jaw/servo_jf": "JointState", "spatial/servo_cf": "WrenchStamped",
                 "body/servo_cf": "WrenchStamped"}


def message_types() -> dict:
    """The ROS message and service classes of the CRTK link, by name (crtk_msgs put on the path first)."""
    return _types()


def subscribe_operating_state(node, callback, namespace: str = PSM_NAMESPACE):
    """`<namespace>/operating_state` (crtk_msgs/OperatingState, transient-local) as a dict
    {state, is_homed, is_busy} for nodes that only watch the arm (teleop mapper, console)."""
    OperatingState = _types()["OperatingState"]

    def on_msg(msg) -> None:
        callback({"state": msg.state, "is_homed": bool(msg.is_homed), "is_busy": bool(msg.is_busy)})
    return node.create_subscription(OperatingState, psm_topic("operating_state", namespace), on_msg, latched_qos())


def pose_to_matrix(msg) -> np.ndarray:
    """4x4 of a PoseStamped as received (a non-unit quaternion is normalised)."""
    return geometry.pose_msg_to_matrix(msg, strict_norm=False)


@dataclass
class _Sample:
    msg: object
    received: float       # time.monotonic() at receipt
    serial: int


class MoveHandle:
    """What `move_jp`/`move_cp` return: `wait(timeout)` blocks until the goal is reached."""

    def __init__(self, client: PSMClient, serial: int, error_serial: int):
        self.client, self.serial, self.error_serial = client, serial, error_serial

    def wait(self, timeout: float = 30.0) -> bool:
        """True when goal_reached, False if the move was interrupted or refused; TimeoutError otherwise."""
        return self.client._wait_goal(self.serial, self.error_serial, timeout)


class PSMClient:
    """CRTK client for one PSM namespace (see module doc)."""

    def __init__(self, node, namespace: str = PSM_NAMESPACE, streams: tuple[str, ...] = DEFAULT_STREAMS):
        unknown = [s for s in streams if s not in STREAM_TYPES]
        if unknown:
            raise ValueError(f"unknown CRTK streams {unknown}; known: {sorted(STREAM_TYPES)}")
        self.node = node
        self.namespace = namespace
        self.streams = tuple(streams)
        self._t = M = _types()
        self._cond = threading.Condition()
        self._samples: dict[str, _Sample] = {}
        self._serial = 0
        self._state: dict | None = None
        self._state_serial = 0
        self._goal_serial = 0           # number of goal_reached messages seen
        self._goals: list[bool] = []
        self._errors: list[str] = []
        self.warnings: list[str] = []
        self.statuses: list[str] = []
        t = lambda name: psm_topic(name, namespace)  # noqa: E731
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
        self._pub = {name: node.create_publisher(M[typ], t(name), QUEUE_DEPTH) for name, typ in COMMAND_TYPES.items()}
        self._pub["state_command"] = node.create_publisher(M["StringStamped"], t("state_command"), QUEUE_DEPTH)
        for name in ("hold", "free"):
            self._pub[name] = node.create_publisher(M["Empty"], t(name), QUEUE_DEPTH)
        self._pub["trajectory_j/set_ratio"] = node.create_publisher(M["Float64"], t("trajectory_j/set_ratio"),
                                                                    QUEUE_DEPTH)
        self._pub["use_gravity_compensation"] = node.create_publisher(M["Bool"], t("use_gravity_compensation"),
                                                                      QUEUE_DEPTH)
        self._fk = node.create_client(M["QueryForwardKinematics"], t("forward_kinematics"))
        self._ik = node.create_client(M["QueryInverseKinematics"], t("inverse_kinematics"))

    # ------------------------------------------------------------ callbacks
    def _on_sample(self, key: str, msg) -> None:
        with self._cond:
            self._serial += 1
            self._samples[key] = _Sample(msg, time.monotonic(), self._serial)
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        with self._cond:
            self._state = {"state": msg.state, "is_homed": bool(msg.is_homed), "is_busy": bool(msg.is_busy)}
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

    # ------------------------------------------------------- operating state
    @property
    def errors(self) -> list[str]:
        with self._cond:
            return list(self._errors)

    def operating_state(self) -> dict | None:
        with self._cond:
            return dict(self._state) if self._state else None

    def _wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.namespace}: timed out after {timeout:g} s waiting for {what} "
                                       f"(operating state {self._state})")
                self._cond.wait(min(left, 0.05))

    def _stamped(self, msg):
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    def _state_command(self, name: str) -> int:
        with self._cond:
            serial = self._state_serial
        self._pub["state_command"].publish(self._stamped(self._t["StringStamped"](string=name)))
        return serial

    def wait_for_state(self, timeout: float = 5.0) -> dict:
        """Blocks until the (transient-local) operating state has been received."""
        self._wait_for(lambda: self._state is not None, timeout, "operating_state")
        return self.operating_state()

    def enable(self, timeout: float = 5.0) -> None:
        """Power up; returns once ENABLED and not busy."""
        self._state_command("enable")
        self._wait_for(lambda: self._state is not None and self._state.get("state") == "ENABLED"
                       and not self._state.get("is_busy"), timeout, "ENABLED")

    def home(self, timeout: float = 20.0) -> None:
        """Home (powering up first if needed); returns once homed and not busy."""
        serial = self._state_command("home")
        self._wait_for(lambda: self._state_serial > serial and self._state is not None
                       and self._state.get("state") == "ENABLED" and self._state.get("is_homed")
                       and not self._state.get("is_busy"), timeout, "homed")

    def disable(self, timeout: float = 2.0) -> None:
        self._state_command("disable")
        self._wait_for(lambda: self._state is not None and self._state.get("state") == "DISABLED",
                       timeout, "DISABLED")

    def pause(self) -> None:
        self._state_command("pause")

    def resume(self) -> None:
        self._state_command("resume")

    def unhome(self) -> None:
        self._state_command("unhome")

    def state_command(self, name: str) -> None:
        """Any state command string (no waiting)."""
        self._state_command(name)

    # ------------------------------------------------------------ measured
    def _fresh(self, key: str, age: float) -> _Sample:
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

    def serial(self) -> int:
        """A counter of received samples (all streams): pass it to `wait_for_sample`."""
        with self._cond:
            return self._serial

    def wait_for_sample(self, key: str, after: int, timeout: float = 1.0) -> tuple[object, int]:
        """(message, its serial): the newest `key` message once one newer than serial `after` has
        arrived (blocks on the callbacks' condition, no polling); TimeoutError otherwise."""
        def newer() -> bool:
            s = self._samples.get(key)
            return s is not None and s.serial > after
        self._wait_for(newer, timeout, f"a new {key}")
        with self._cond:
            s = self._samples[key]
            return s.msg, s.serial

    def _js(self, key: str, age: float) -> tuple[np.ndarray, float]:
        s = self._fresh(key, age)
        return np.asarray(s.msg.position, dtype=float), geometry.stamp_to_sec(s.msg)

    def measured_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._js("measured_js", age)

    def measured_jv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_js", age)
        return np.asarray(s.msg.velocity, dtype=float), geometry.stamp_to_sec(s.msg)

    def measured_jf(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_js", age)
        return np.asarray(s.msg.effort, dtype=float), geometry.stamp_to_sec(s.msg)

    def setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._js("setpoint_js", age)

    def _cp(self, key: str, age: float) -> tuple[np.ndarray, float]:
        s = self._fresh(key, age)
        return pose_to_matrix(s.msg), geometry.stamp_to_sec(s.msg)

    def measured_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("measured_cp", age)

    def setpoint_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("setpoint_cp", age)

    def local_measured_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("local/measured_cp", age)

    def measured_cv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_cv", age)
        lin, ang = s.msg.twist.linear, s.msg.twist.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z]), geometry.stamp_to_sec(s.msg)

    def measured_cf(self, body: bool = False, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        """Wrench on the tool tip: PSM1_base axes (spatial) or tool-tip axes (body)."""
        s = self._fresh("body/measured_cf" if body else "spatial/measured_cf", age)
        f, m = s.msg.wrench.force, s.msg.wrench.torque
        return np.array([f.x, f.y, f.z, m.x, m.y, m.z]), geometry.stamp_to_sec(s.msg)

    def jacobian(self, body: bool = False, age: float = STALE_AFTER_S) -> np.ndarray:
        s = self._fresh("body/jacobian" if body else "spatial/jacobian", age)
        dims = s.msg.layout.dim
        return np.asarray(s.msg.data, dtype=float).reshape(dims[0].size, dims[1].size)

    def jaw_measured_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = self._js("jaw/measured_js", age)
        return float(q[0]), t

    def jaw_setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = self._js("jaw/setpoint_js", age)
        return float(q[0]), t

    # ------------------------------------------------------------- commands
    @staticmethod
    def _checked(what: str, values, size: int) -> list[float]:
        """`values` as `size` finite floats, or ValueError with the cause (nothing is sent)."""
        r = checks.finite(what, values, size)
        if not r:
            raise ValueError(f"{what} not sent: {r.reason}")
        return [float(v) for v in r.value.ravel()]

    def _joint_msg(self, names, positions=None, efforts=None, what: str = "joint command"):
        msg = self._stamped(self._t["JointState"]())
        msg.name = list(names)
        if positions is not None:
            msg.position = self._checked(what, positions, len(msg.name))
        if efforts is not None:
            msg.effort = self._checked(what, efforts, len(msg.name))
        return msg

    def _pose_msg(self, T, what: str = "pose command"):
        m = np.asarray(self._checked(what, T, 16)).reshape(4, 4)
        r = checks.rotation_matrix(what, m[:3, :3])
        if not r:
            raise ValueError(f"{what} not sent: {r.reason}")
        msg = self._stamped(self._t["PoseStamped"]())
        msg.header.frame_id = PSM_BASE_FRAME
        return geometry.matrix_to_pose_msg(m, msg)

    def _marks(self) -> tuple[int, int]:
        with self._cond:
            return self._goal_serial, len(self._errors)

    def servo_jp(self, q) -> None:
        self._pub["servo_jp"].publish(self._joint_msg(PSM_JOINT_NAMES, q, what="servo_jp"))

    def servo_jr(self, dq) -> None:
        """Servo to the current setpoint + dq."""
        self._pub["servo_jr"].publish(self._joint_msg(PSM_JOINT_NAMES, dq, what="servo_jr"))

    def servo_jf(self, effort) -> None:
        """Joint efforts (N m, N): the arm leaves position control until the next position command."""
        self._pub["servo_jf"].publish(self._joint_msg(PSM_JOINT_NAMES, efforts=effort, what="servo_jf"))

    def servo_cf(self, wrench, body: bool = False) -> None:
        """Tool-tip wrench (fx, fy, fz, tx, ty, tz), PSM1_base axes or (body) tool-tip axes."""
        w = self._checked("body/servo_cf" if body else "spatial/servo_cf", wrench, 6)
        msg = self._stamped(self._t["WrenchStamped"]())
        f, m = msg.wrench.force, msg.wrench.torque
        f.x, f.y, f.z, m.x, m.y, m.z = w
        self._pub["body/servo_cf" if body else "spatial/servo_cf"].publish(msg)

    def move_jp(self, q) -> MoveHandle:
        marks = self._marks()
        self._pub["move_jp"].publish(self._joint_msg(PSM_JOINT_NAMES, q, what="move_jp"))
        return MoveHandle(self, *marks)

    def move_jr(self, dq) -> MoveHandle:
        marks = self._marks()
        self._pub["move_jr"].publish(self._joint_msg(PSM_JOINT_NAMES, dq, what="move_jr"))
        return MoveHandle(self, *marks)

    def servo_cp(self, T) -> None:
        self._pub["servo_cp"].publish(self._pose_msg(T, "servo_cp"))

    def move_cp(self, T) -> MoveHandle:
        marks = self._marks()
        self._pub["move_cp"].publish(self._pose_msg(T, "move_cp"))
        return MoveHandle(self, *marks)

    def servo_cv(self, twist) -> None:
        """Twist (vx, vy, vz, wx, wy, wz) of the tool tip in PSM1_base."""
        v = self._checked("servo_cv", twist, 6)
        msg = self._stamped(self._t["TwistStamped"]())
        msg.header.frame_id = PSM_BASE_FRAME
        (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z,
         msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = v
        self._pub["servo_cv"].publish(msg)

    def hold(self) -> None:
        self._pub["hold"].publish(self._t["Empty"]())

    def free(self) -> None:
        """Zero effort (gravity compensated when enabled): the arm can be moved by hand."""
        self._pub["free"].publish(self._t["Empty"]())

    def trajectory_j_set_ratio(self, ratio: float) -> None:
        self._pub["trajectory_j/set_ratio"].publish(
            self._t["Float64"](data=self._checked("trajectory_j/set_ratio", [ratio], 1)[0]))

    def use_gravity_compensation(self, on: bool) -> None:
        self._pub["use_gravity_compensation"].publish(self._t["Bool"](data=bool(on)))

    def jaw_servo_jp(self, angle: float) -> None:
        self._pub["jaw/servo_jp"].publish(self._joint_msg([PSM_JAW_NAME], [angle], what="jaw/servo_jp"))

    def jaw_servo_jf(self, effort: float) -> None:
        self._pub["jaw/servo_jf"].publish(self._joint_msg([PSM_JAW_NAME], efforts=[effort], what="jaw/servo_jf"))

    def jaw_move_jp(self, angle: float) -> MoveHandle:
        marks = self._marks()
        self._pub["jaw/move_jp"].publish(self._joint_msg([PSM_JAW_NAME], [angle], what="jaw/move_jp"))
        return MoveHandle(self, *marks)

    def jaw_open(self, angle: float = math.radians(60)) -> MoveHandle:
        return self.jaw_move_jp(angle)

    def jaw_close(self) -> MoveHandle:
        return self.jaw_move_jp(0.0)

    def _wait_goal(self, serial: int, error_serial: int, timeout: float) -> bool:
        result: list[bool] = []

        def done() -> bool:
            if self._goal_serial > serial:
                result.append(self._goals[serial])
                return True
            if len(self._errors) > error_serial:
                result.append(False)
                return True
            return False

        self._wait_for(done, timeout, "goal_reached")
        return result[0]

    # ------------------------------------------------------------- services
    def _call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{client.srv_name}: service not available after {timeout:g} s")
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            raise TimeoutError(f"{client.srv_name}: no answer within {timeout:g} s")
        response = future.result()
        if not response.result:
            raise CRTKError(f"{client.srv_name}: {response.message}")
        return response

    def forward_kinematics(self, q, timeout: float = 2.0) -> np.ndarray:
        """4x4 tool-tip pose of joints q, computed by the arm (service `forward_kinematics`)."""
        request = self._t["QueryForwardKinematics"].Request(jp=[float(v) for v in q])
        return geometry.pose_msg_to_matrix(self._call(self._fk, request, timeout).cp)

    def inverse_kinematics(self, T, seed=None, timeout: float = 2.0) -> np.ndarray:
        """Joints reaching pose T (seeded by `seed`, default the arm's setpoint), by the arm's IK service."""
        request = self._t["QueryInverseKinematics"].Request(jp=[] if seed is None else [float(v) for v in seed])
        geometry.matrix_to_pose_msg(np.asarray(T, dtype=float), request.cp)
        return np.asarray(self._call(self._ik, request, timeout).jp, dtype=float)

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        for pub in self._pub.values():
            self.node.destroy_publisher(pub)
        self.node.destroy_client(self._fk)
        self.node.destroy_client(self._ik)
        self._subs, self._pub = [], {}
