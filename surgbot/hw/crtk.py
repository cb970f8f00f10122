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
import traceback

import numpy as np

from surgbot import geometry
from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES, PSM_NAMESPACE, psm_topic
from surgbot.hw.crtk_commands import CommandPublisher, message_types
from surgbot.hw.crtk_link import ArmLink, operating_state_dict
from surgbot.pacing import poll_until
from surgbot.rosutil import latched_qos

STALE_AFTER_S = 1.0     # crtk_python_client: data older than 1 s raises TimeoutError
STATE_COMMAND_MATCH_S = 2.0   # longest wait for the arm to match a state command's publisher
DEFAULT_STREAMS = ("measured_js", "setpoint_js", "measured_cp", "setpoint_cp", "measured_cv",
                   "jaw/measured_js", "jaw/setpoint_js")
EXTRA_STREAMS = ("local/measured_cp", "local/setpoint_cp", "spatial/measured_cf", "body/measured_cf",
                 "spatial/jacobian", "body/jacobian")


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


def subscribe_operating_state(node, callback, namespace: str = PSM_NAMESPACE):
    """`<namespace>/operating_state` (crtk_msgs/OperatingState, transient-local) as a dict
    {state, is_homed, is_busy} for nodes that only watch the arm (teleop mapper, console)."""
    OperatingState = message_types()["OperatingState"]

    def on_msg(msg) -> None:
        callback(operating_state_dict(msg))
    return node.create_subscription(OperatingState, psm_topic("operating_state", namespace), on_msg, latched_qos())


def pose_to_matrix(msg) -> np.ndarray:
    """4x4 of a PoseStamped as received (a non-unit quaternion is normalised)."""
    return geometry.pose_msg_to_matrix(msg, strict_norm=False)


class MoveHandle:
    """What `move_jp`/`move_cp` return: `wait(timeout)` blocks until the goal is reached."""

    def __init__(self, link: ArmLink, marks: tuple[int, int]):
        self.link, self.marks = link, marks

    @classmethod
    def send(cls, link: ArmLink, publish) -> MoveHandle:
        """`publish()` a move command; the handle waits for the goal_reached (or error) after it."""
        marks = link.marks()
        publish()
        return cls(link, marks)

    def wait(self, timeout: float = 30.0) -> bool:
        """True when goal_reached, False if the move was interrupted or refused; TimeoutError otherwise."""
        return self.link.wait_goal(*self.marks, timeout)


def _joint_field(link: ArmLink, key: str, field: str, age: float) -> tuple[np.ndarray, float]:
    """(`field` of the newest fresh JointState on `key` as floats, its stamp in s)."""
    s = link.fresh(key, age)
    return np.asarray(getattr(s.msg, field), dtype=float), geometry.stamp_to_sec(s.msg)


class JawClient:
    """The PSM's jaw, as the dVRK's Python client has it (`psm.jaw.move_jp(...)`): one joint, radians."""

    OPEN_RAD = math.radians(60)

    def __init__(self, link: ArmLink, out: CommandPublisher):
        self._link, self._out = link, out

    def measured_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = _joint_field(self._link, "jaw/measured_js", "position", age)
        return float(q[0]), t

    def setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = _joint_field(self._link, "jaw/setpoint_js", "position", age)
        return float(q[0]), t

    def servo_jp(self, angle: float) -> None:
        self._out.joints("jaw/servo_jp", [PSM_JAW_NAME], [angle])

    def servo_jf(self, effort: float) -> None:
        self._out.joints("jaw/servo_jf", [PSM_JAW_NAME], efforts=[effort])

    def move_jp(self, angle: float) -> MoveHandle:
        return MoveHandle.send(self._link, lambda: self._out.joints("jaw/move_jp", [PSM_JAW_NAME], [angle]))

    def open(self, angle: float = OPEN_RAD) -> MoveHandle:
        return self.move_jp(angle)

    def close(self) -> MoveHandle:
        return self.move_jp(0.0)


class PSMClient:
    """CRTK client for one PSM namespace (see module doc); `jaw`: its `JawClient`."""

    def __init__(self, node, namespace: str = PSM_NAMESPACE, streams: tuple[str, ...] = DEFAULT_STREAMS):
        self._t = M = message_types()
        self.link = ArmLink(node, namespace, streams, M)
        self.node, self.namespace, self.streams = node, namespace, self.link.streams
        self._out = CommandPublisher(node, namespace, M)
        self.jaw = JawClient(self.link, self._out)
        self._fk = node.create_client(M["QueryForwardKinematics"], psm_topic("forward_kinematics", namespace))
        self._ik = node.create_client(M["QueryInverseKinematics"], psm_topic("inverse_kinematics", namespace))

    # ------------------------------------------------------- operating state
    @property
    def errors(self) -> list[str]:
        return self.link.errors

    @property
    def warnings(self) -> list[str]:
        return self.link.warnings

    @property
    def statuses(self) -> list[str]:
        return self.link.statuses

    def operating_state(self) -> dict | None:
        return self.link.operating_state()

    def _state_command(self, name: str) -> int:
        serial = self.link.state_serial()
        pub = self._out.pub["state_command"]
        # a command sent before the arm's reader is matched is lost (volatile): `surgbot ctl psm-home`
        # on a fresh node sent `home` right after the operating state came and waited 30 s for nothing
        poll_until(lambda: pub.get_subscription_count() > 0, STATE_COMMAND_MATCH_S)
        pub.publish(self._out.stamped(self._t["StringStamped"](string=name)))
        return serial

    def wait_for_state(self, timeout: float = 5.0) -> dict:
        """Blocks until the (transient-local) operating state has been received."""
        self.link.wait_for_state(lambda s: True, timeout, "operating_state")
        return self.operating_state()

    def enable(self, timeout: float = 5.0) -> None:
        """Power up; returns once ENABLED and not busy."""
        self._state_command("enable")
        self.link.wait_for_state(lambda s: s.get("state") == "ENABLED" and not s.get("is_busy"), timeout, "ENABLED")

    def home(self, timeout: float = 20.0) -> None:
        """Home (powering up first if needed); returns once homed and not busy."""
        serial = self._state_command("home")
        self.link.wait_for_state(lambda s: s.get("state") == "ENABLED" and s.get("is_homed") and not s.get("is_busy"),
                                 timeout, "homed", after=serial)

    def disable(self, timeout: float = 2.0) -> None:
        self._state_command("disable")
        self.link.wait_for_state(lambda s: s.get("state") == "DISABLED", timeout, "DISABLED")

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
    def serial(self) -> int:
        """A counter of received samples (all streams): pass it to `wait_for_sample`."""
        return self.link.serial()

    def wait_for_sample(self, key: str, after: int, timeout: float = 1.0) -> tuple[object, int]:
        """(message, its serial): the newest `key` message once one newer than serial `after` has
        arrived (blocks on the callbacks' condition, no polling); TimeoutError otherwise."""
        return self.link.wait_for_sample(key, after, timeout)

    def measured_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return _joint_field(self.link, "measured_js", "position", age)

    def measured_jv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return _joint_field(self.link, "measured_js", "velocity", age)

    def measured_jf(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return _joint_field(self.link, "measured_js", "effort", age)

    def setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return _joint_field(self.link, "setpoint_js", "position", age)

    def _cp(self, key: str, age: float) -> tuple[np.ndarray, float]:
        s = self.link.fresh(key, age)
        return pose_to_matrix(s.msg), geometry.stamp_to_sec(s.msg)

    def measured_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("measured_cp", age)

    def setpoint_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("setpoint_cp", age)

    def local_measured_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._cp("local/measured_cp", age)

    def measured_cv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self.link.fresh("measured_cv", age)
        lin, ang = s.msg.twist.linear, s.msg.twist.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z]), geometry.stamp_to_sec(s.msg)

    def measured_cf(self, body: bool = False, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        """Wrench on the tool tip: PSM1_base axes (spatial) or tool-tip axes (body)."""
        s = self.link.fresh("body/measured_cf" if body else "spatial/measured_cf", age)
        f, m = s.msg.wrench.force, s.msg.wrench.torque
        return np.array([f.x, f.y, f.z, m.x, m.y, m.z]), geometry.stamp_to_sec(s.msg)

    def jacobian(self, body: bool = False, age: float = STALE_AFTER_S) -> np.ndarray:
        s = self.link.fresh("body/jacobian" if body else "spatial/jacobian", age)
        dims = s.msg.layout.dim
        return np.asarray(s.msg.data, dtype=float).reshape(dims[0].size, dims[1].size)

    # ------------------------------------------------------------- commands
    def servo_jp(self, q) -> None:
        self._out.joints("servo_jp", PSM_JOINT_NAMES, q)

    def servo_jr(self, dq) -> None:
        """Servo to the current setpoint + dq."""
        self._out.joints("servo_jr", PSM_JOINT_NAMES, dq)

    def servo_jf(self, effort) -> None:
        """Joint efforts (N m, N): the arm leaves position control until the next position command."""
        self._out.joints("servo_jf", PSM_JOINT_NAMES, efforts=effort)

    def servo_cf(self, wrench, body: bool = False) -> None:
        """Tool-tip wrench (fx, fy, fz, tx, ty, tz), PSM1_base axes or (body) tool-tip axes."""
        self._out.wrench("body/servo_cf" if body else "spatial/servo_cf", wrench)

    def move_jp(self, q) -> MoveHandle:
        return MoveHandle.send(self.link, lambda: self._out.joints("move_jp", PSM_JOINT_NAMES, q))

    def move_jr(self, dq) -> MoveHandle:
        return MoveHandle.send(self.link, lambda: self._out.joints("move_jr", PSM_JOINT_NAMES, dq))

    def servo_cp(self, T) -> None:
        self._out.pose("servo_cp", T)

    def move_cp(self, T) -> MoveHandle:
        return MoveHandle.send(self.link, lambda: self._out.pose("move_cp", T))

    def servo_cv(self, twist) -> None:
        """Twist (vx, vy, vz, wx, wy, wz) of the tool tip in PSM1_base."""
        self._out.twist("servo_cv", twist)

    def hold(self) -> None:
        self._out.pub["hold"].publish(self._t["Empty"]())

    def free(self) -> None:
        """Zero effort (gravity compensated when enabled): the arm can be moved by hand."""
        self._out.pub["free"].publish(self._t["Empty"]())

    def trajectory_j_set_ratio(self, ratio: float) -> None:
        value = self._out.checked("trajectory_j/set_ratio", [ratio], 1)[0]
        self._out.pub["trajectory_j/set_ratio"].publish(self._t["Float64"](data=value))

    def use_gravity_compensation(self, on: bool) -> None:
        self._out.pub["use_gravity_compensation"].publish(self._t["Bool"](data=bool(on)))

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
        self.link.close()
        self._out.close()
        self.node.destroy_client(self._fk)
        self.node.destroy_client(self._ik)
