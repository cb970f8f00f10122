"""A small CRTK client for a dVRK PSM (sim twin or real console), after crtk_python_client.

Speaks only the contract (INTERFACES.md section 3), so the same code drives
`sim/psm_twin.py` and a real dVRK console.  The caller owns the rclpy node
and spins it (e.g. `spin_in_background(node)`); blocking calls wait on
events set by the subscription callbacks and raise `TimeoutError`.

    client = PSMClient(node)
    client.enable(5.0); client.home(10.0)
    client.move_jp(q).wait(10.0)
    pose, stamp = client.measured_cp()
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from surgbot.contract import PSM_BASE_FRAME, PSM_JAW_NAME, PSM_JOINT_NAMES, PSM_NAMESPACE, psm_topic
from surgbot.rosutil import latched_qos

STALE_AFTER_S = 1.0     # crtk_python_client: data older than 1 s raises TimeoutError


class CRTKError(RuntimeError):
    """The arm refused a command (message from /PSM1/error)."""


def spin_in_background(node):
    """Spin `node` in a daemon thread; returns (executor, thread).

    Single-threaded on purpose: callbacks only store samples, and rclpy's
    MultiThreadedExecutor burned ~75% of a core here on 11 topics at 100 Hz
    (futex churn), starving the control loop it was meant to serve.
    """
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return executor, thread


def _quat_from_matrix(R: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w), numerically stable branch selection."""
    m = np.asarray(R, dtype=float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return x, y, z, w


def _matrix_from_quat(x, y, z, w) -> np.ndarray:
    n = math.sqrt(x * x + y * y + z * z + w * w) or 1.0
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose_to_matrix(msg) -> np.ndarray:
    p, o = msg.pose.position, msg.pose.orientation
    T = np.eye(4)
    T[:3, :3] = _matrix_from_quat(o.x, o.y, o.z, o.w)
    T[:3, 3] = [p.x, p.y, p.z]
    return T


@dataclass
class _Sample:
    msg: object
    received: float       # time.monotonic() at receipt


class MoveHandle:
    """What `move_jp`/`move_cp` return: `wait(timeout)` blocks until the goal is reached."""

    def __init__(self, client: "PSMClient", serial: int, error_serial: int):
        self.client, self.serial, self.error_serial = client, serial, error_serial

    def wait(self, timeout: float = 30.0) -> bool:
        """True when goal_reached, False if the move was interrupted or refused; TimeoutError otherwise."""
        return self.client._wait_goal(self.serial, self.error_serial, timeout)


class PSMClient:
    """CRTK client for one PSM namespace (see module doc)."""

    def __init__(self, node, namespace: str = PSM_NAMESPACE):
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty, String

        self.node = node
        self.namespace = namespace
        self._JointState, self._PoseStamped, self._TwistStamped = JointState, PoseStamped, TwistStamped
        self._String, self._Empty = String, Empty
        self._cond = threading.Condition()
        self._samples: dict[str, _Sample] = {}
        self._state: dict | None = None
        self._state_serial = 0
        self._goal_serial = 0           # number of goal_reached messages seen
        self._goals: list[bool] = []
        self._errors: list[str] = []
        self.warnings: list[str] = []
        t = lambda name: psm_topic(name, namespace)  # noqa: E731
        latched = latched_qos()
        self._subs = []
        for name, typ in (("measured_js", JointState), ("setpoint_js", JointState),
                          ("measured_cp", PoseStamped), ("setpoint_cp", PoseStamped),
                          ("measured_cv", TwistStamped), ("jaw/measured_js", JointState),
                          ("jaw/setpoint_js", JointState)):
            self._subs.append(node.create_subscription(
                typ, t(name), lambda m, key=name: self._on_sample(key, m), 10))
        self._subs.append(node.create_subscription(String, t("operating_state"), self._on_state, latched))
        self._subs.append(node.create_subscription(Bool, t("goal_reached"), self._on_goal, 10))
        self._subs.append(node.create_subscription(String, t("error"), self._on_error, 10))
        self._subs.append(node.create_subscription(String, t("warning"), self._on_warning, 10))
        self._pub = {
            "state_command": node.create_publisher(String, t("state_command"), 10),
            "servo_jp": node.create_publisher(JointState, t("servo_jp"), 10),
            "move_jp": node.create_publisher(JointState, t("move_jp"), 10),
            "servo_cp": node.create_publisher(PoseStamped, t("servo_cp"), 10),
            "move_cp": node.create_publisher(PoseStamped, t("move_cp"), 10),
            "servo_cv": node.create_publisher(TwistStamped, t("servo_cv"), 10),
            "jaw/servo_jp": node.create_publisher(JointState, t("jaw/servo_jp"), 10),
            "jaw/move_jp": node.create_publisher(JointState, t("jaw/move_jp"), 10),
            "hold": node.create_publisher(Empty, t("hold"), 10),
        }

    # ------------------------------------------------------------ callbacks
    def _on_sample(self, key: str, msg) -> None:
        with self._cond:
            self._samples[key] = _Sample(msg, time.monotonic())
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        try:
            state = json.loads(msg.data)
        except ValueError:
            return
        with self._cond:
            self._state = state
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

    def _on_warning(self, msg) -> None:
        with self._cond:
            self.warnings.append(msg.data)

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

    def _state_command(self, name: str) -> int:
        with self._cond:
            serial = self._state_serial
        self._pub["state_command"].publish(self._String(data=name))
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
        with self._cond:
            sample = self._samples.get(key)
        if sample is None:
            raise TimeoutError(f"{psm_topic(key, self.namespace)}: no data received yet")
        old = time.monotonic() - sample.received
        if old > age:
            raise TimeoutError(f"{psm_topic(key, self.namespace)}: data is {old:.2f} s old (> {age:g} s)")
        return sample

    @staticmethod
    def _stamp(msg) -> float:
        return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec

    def _js(self, key: str, age: float) -> tuple[np.ndarray, float]:
        s = self._fresh(key, age)
        return np.asarray(s.msg.position, dtype=float), self._stamp(s.msg)

    def measured_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._js("measured_js", age)

    def measured_jv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_js", age)
        return np.asarray(s.msg.velocity, dtype=float), self._stamp(s.msg)

    def setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        return self._js("setpoint_js", age)

    def measured_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_cp", age)
        return pose_to_matrix(s.msg), self._stamp(s.msg)

    def setpoint_cp(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("setpoint_cp", age)
        return pose_to_matrix(s.msg), self._stamp(s.msg)

    def measured_cv(self, age: float = STALE_AFTER_S) -> tuple[np.ndarray, float]:
        s = self._fresh("measured_cv", age)
        lin, ang = s.msg.twist.linear, s.msg.twist.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z]), self._stamp(s.msg)

    def jaw_measured_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = self._js("jaw/measured_js", age)
        return float(q[0]), t

    def jaw_setpoint_js(self, age: float = STALE_AFTER_S) -> tuple[float, float]:
        q, t = self._js("jaw/setpoint_js", age)
        return float(q[0]), t

    # ------------------------------------------------------------- commands
    def _joint_msg(self, names, positions):
        msg = self._JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(names)
        msg.position = [float(v) for v in positions]
        return msg

    def _pose_msg(self, T):
        T = np.asarray(T, dtype=float)
        msg = self._PoseStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = PSM_BASE_FRAME
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in T[:3, 3])
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = _quat_from_matrix(T[:3, :3])
        return msg

    def _marks(self) -> tuple[int, int]:
        with self._cond:
            return self._goal_serial, len(self._errors)

    def servo_jp(self, q) -> None:
        self._pub["servo_jp"].publish(self._joint_msg(PSM_JOINT_NAMES, q))

    def move_jp(self, q) -> MoveHandle:
        marks = self._marks()
        self._pub["move_jp"].publish(self._joint_msg(PSM_JOINT_NAMES, q))
        return MoveHandle(self, *marks)

    def servo_cp(self, T) -> None:
        self._pub["servo_cp"].publish(self._pose_msg(T))

    def move_cp(self, T) -> MoveHandle:
        marks = self._marks()
        self._pub["move_cp"].publish(self._pose_msg(T))
        return MoveHandle(self, *marks)

    def servo_cv(self, twist) -> None:
        """Twist (vx, vy, vz, wx, wy, wz) of the tool tip in PSM1_base."""
        v = [float(x) for x in twist]
        msg = self._TwistStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = PSM_BASE_FRAME
        (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z,
         msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = v
        self._pub["servo_cv"].publish(msg)

    def hold(self) -> None:
        self._pub["hold"].publish(self._Empty())

    def jaw_servo_jp(self, angle: float) -> None:
        self._pub["jaw/servo_jp"].publish(self._joint_msg([PSM_JAW_NAME], [angle]))

    def jaw_move_jp(self, angle: float) -> MoveHandle:
        marks = self._marks()
        self._pub["jaw/move_jp"].publish(self._joint_msg([PSM_JAW_NAME], [angle]))
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

    def close(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        for pub in self._pub.values():
            self.node.destroy_publisher(pub)
        self._subs, self._pub = [], {}
