"""What `surgbot demo` sees of the running stack: frames, ground truth, states, rates.

One rclpy node in its own context, spun by `rosutil.BackgroundSpinner`.  It
only listens (plus the CRTK client and service calls the demo script makes
through `node`); every figure in `summary.json` is computed here from the
topics the stack publishes, with the sim's ground truth for the geometry:

* fulcrum error: distance from the port (`/sim/ground_truth/fulcrum`) to the
  scope shaft line (`/sim/ground_truth/endoscope_tip`, optical z axis), m;
* scope tip deviation: distance of the scope tip from where it was when the
  current task started (the view is held), m;
* tool in view: the PSM tool tip projected through the endoscope's pinhole
  (`/endoscope/camera_info`) lands inside the image;
* rates: messages per second of the streams that matter, over the run.

The 100 Hz streams (the ground truth, `/PSM1/measured_js`) are not taken by a
callback each: `POLL_PERIOD_S` a timer drains them all (`PolledArrivals.drain`,
each message with its DDS reception time) and handles them in arrival order,
as callbacks would have.  ~400 wake-ups a second of this process become 10;
on the 2-core machine the demo shares with the whole stack, each wake-up of a
sleeping thread costs ~0.2 ms of CPU (bench `machine.wake_penalty`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped, PoseStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState
from std_msgs.msg import String

from surgbot import contract
from surgbot.geometry import pose_msg_to_matrix
from surgbot.nodes.polled_arrivals import PolledArrivals
from surgbot.rosutil import DIAGNOSTICS_TOPIC, BackgroundSpinner, latched_qos, make_executor

POLICY_STATE = "/policy/state"
# Streams whose rate the summary reports (as received here).  /g1/joint_states (250 Hz) is
# left out: counting it cost this process more than the video encoding; the bridge reports
# its own rates in /diagnostics.
RATE_TOPICS = {"psm_measured_js_hz": (contract.psm_topic("measured_js"), JointState),
               "endoscope_image_hz": (contract.ENDOSCOPE_IMAGE, Image),
               "psm_servo_cp_hz": (contract.psm_topic("servo_cp"), PoseStamped)}
RATE_QOS_DEPTH = 100      # deep: a late (niced) process or a late poll still counts every message
POLL_PERIOD_S = 0.1       # the polled streams are drained this often (their depth holds 1 s of 100 Hz)
GT_QOS_DEPTH = 100


def fulcrum_error_m(tip_T: np.ndarray, fulcrum: np.ndarray) -> float:
    """Distance from the fulcrum point to the shaft line through the tip along its optical z axis."""
    d = fulcrum - tip_T[:3, 3]
    z = tip_T[:3, 2]
    return float(np.linalg.norm(d - np.dot(d, z) * z))


def project(K: np.ndarray, cam_T: np.ndarray, p_world: np.ndarray) -> tuple[float, float, float]:
    """Pixel (u, v) and depth of a world point in an optical frame (z forward, x right, y down)."""
    p = cam_T[:3, :3].T @ (p_world - cam_T[:3, 3])
    if p[2] <= 1e-6:
        return float("nan"), float("nan"), float(p[2])
    return float(K[0, 0] * p[0] / p[2] + K[0, 2]), float(K[1, 1] * p[1] / p[2] + K[1, 2]), float(p[2])


def _json_map(msg: String) -> dict | None:
    """A String message's JSON object, or None for anything else (a malformed message changes nothing)."""
    try:
        value = json.loads(msg.data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class RateCounter:
    def __init__(self):
        self.count = 0
        self.first = self.last = None

    def tick(self, t: float) -> None:
        self.count += 1
        self.first = t if self.first is None else self.first
        self.last = t

    def rate_hz(self) -> float | None:
        if self.count < 2 or self.last <= self.first:
            return None
        return (self.count - 1) / (self.last - self.first)


class DemoObserver:
    """Subscribes to the stack; thread-safe accessors for the demo script and the video writer."""

    def __init__(self, node_name: str = "surgbot_demo"):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(node_name, context=self.context)
        self._lock = threading.Lock()
        self.endoscope: np.ndarray | None = None
        self.overview: np.ndarray | None = None
        self.task: dict | None = None
        self.policy: dict | None = None
        self.safety: dict | None = None
        self.endoscope_mode: str | None = None
        self.K: np.ndarray | None = None
        self.image_size: tuple[int, int] = (0, 0)          # (width, height) from camera_info
        self._tip_T = self._fulcrum = self._psm_tip = None
        self.fulcrum_errors: list[tuple[float, float]] = []      # (wall s, m)
        self.tip_deviation: list[tuple[float, float]] = []       # (wall s, m) from the segment's anchor
        self.tool_in_view: list[bool] = []
        self.inference_ms: list[float] = []
        self.error_diagnostics: set[str] = set()
        self.node_values: dict[str, dict[str, str]] = {}         # /diagnostics key/values by node
        self.safety_stops: list[dict] = []                        # each entry into FAULT/ESTOP, with its reasons
        self.rates = defaultdict(RateCounter)
        self._anchor: np.ndarray | None = None
        self._t0 = time.monotonic()
        self.polled = PolledArrivals(self.node)
        self._poll_lock = threading.Lock()          # the timer (spinner thread) and anchor/close (callers)
        self._subscribe()
        self.executor = make_executor(context=self.context)     # see rosutil.EXECUTOR_ENV
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def _subscribe(self) -> None:
        n = self.node
        n.create_subscription(Image, contract.ENDOSCOPE_IMAGE, self._on_image, 2)
        n.create_subscription(CompressedImage, contract.SIM_OVERVIEW_IMAGE_COMPRESSED, self._on_overview, 2)
        n.create_subscription(CameraInfo, contract.ENDOSCOPE_CAMERA_INFO, self._on_info, 2)
        n.create_subscription(String, contract.SIM_TASK, self._on_task, 10)
        n.create_subscription(String, POLICY_STATE, self._on_policy, 10)
        n.create_subscription(String, contract.SAFETY_STATE, self._on_safety, latched_qos())
        n.create_subscription(String, contract.ENDOSCOPE_MODE, self._on_mode, latched_qos())
        n.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)
        polled = self.polled
        polled.add("tip", PoseStamped, contract.GT_ENDOSCOPE_TIP, GT_QOS_DEPTH)
        polled.add("fulcrum", PointStamped, contract.GT_FULCRUM, GT_QOS_DEPTH)
        polled.add("psm_tip", PoseStamped, contract.GT_PSM_TIP, GT_QOS_DEPTH)
        for key, (topic, msg_type) in RATE_TOPICS.items():
            if key != "endoscope_image_hz":               # counted in _on_image
                polled.add(key, msg_type, topic, RATE_QOS_DEPTH)
        n.create_timer(POLL_PERIOD_S, self.poll)

    # ------------------------------------------------------------------ callbacks (spinner thread)
    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _tick(self, key: str) -> None:
        self.rates[key].tick(self._now())

    def _on_image(self, msg: Image) -> None:
        if msg.encoding != "rgb8" or len(msg.data) != msg.height * msg.width * 3:
            return
        frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()
        with self._lock:
            self.endoscope = frame
        self._tick("endoscope_image_hz")

    def _on_overview(self, msg: CompressedImage) -> None:
        bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            with self._lock:
                self.overview = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _on_info(self, msg: CameraInfo) -> None:
        self.K = np.array(msg.k, float).reshape(3, 3)
        self.image_size = (msg.width, msg.height)

    def _on_task(self, msg: String) -> None:
        payload = _json_map(msg)
        if payload is not None:
            with self._lock:
                self.task = payload

    def poll(self) -> None:
        """Handle every polled message that came since the last poll, in arrival order."""
        with self._poll_lock:
            drained = self.polled.drain()
            for key in RATE_TOPICS:
                for arrival in drained.get(key, ()):
                    self.rates[key].tick(arrival.t_s - self._t0)
            geometry = sorted(((a.t_s, key, a.raw) for key in ("tip", "fulcrum", "psm_tip")
                               for a in drained.get(key, ())), key=lambda item: item[0])
            for t_s, key, raw in geometry:
                msg = self.polled.decode(key, raw)
                if key == "tip":
                    self._on_tip(msg, t_s - self._t0)
                elif key == "fulcrum":
                    self._fulcrum = np.array([msg.point.x, msg.point.y, msg.point.z])
                else:
                    self._psm_tip = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])

    def _on_tip(self, msg: PoseStamped, t: float) -> None:
        T = pose_msg_to_matrix(msg, strict_norm=False)
        with self._lock:
            self._tip_T = T
            if self._fulcrum is not None:
                self.fulcrum_errors.append((t, fulcrum_error_m(T, self._fulcrum)))
            if self._anchor is not None:
                self.tip_deviation.append((t, float(np.linalg.norm(T[:3, 3] - self._anchor))))
            if self._psm_tip is not None and self.K is not None:
                u, v, depth = project(self.K, T, self._psm_tip)
                w, h = self.image_size
                self.tool_in_view.append(bool(depth > 0 and 0 <= u < w and 0 <= v < h))

    def _on_policy(self, msg: String) -> None:
        state = _json_map(msg)
        if state is None:
            return
        with self._lock:
            self.policy = state
            ms = state.get("inference_ms")
            if state.get("enabled") and isinstance(ms, (int, float)):
                self.inference_ms.append(float(ms))

    def _on_safety(self, msg: String) -> None:
        state = _json_map(msg)
        if state is None:
            return
        was = (self.safety or {}).get("state", "OK")
        if state.get("state") != "OK" and was == "OK":
            self.safety_stops.append({"t_s": round(self._now(), 2), "state": state.get("state"),
                                      "reasons": list(state.get("reasons", []))})
        self.safety = state

    def _on_mode(self, msg: String) -> None:
        self.endoscope_mode = msg.data

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.node_values[status.name] = {kv.key: kv.value for kv in status.values}
            if status.level >= DiagnosticStatus.ERROR:
                self.error_diagnostics.add(f"{status.name}: {status.message}")

    def heard_supervisor(self, node: str) -> bool:
        """`node`'s diagnostics say it has received /safety/state (SafetyLink.status)."""
        return self.node_values.get(node, {}).get("safety_state_heard") == "True"

    # ------------------------------------------------------------------ accessors (any thread)
    def frames(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        with self._lock:
            return self.endoscope, self.overview

    def task_state(self) -> dict | None:
        with self._lock:
            return self.task

    def last_fulcrum_error_m(self) -> float | None:
        with self._lock:
            return self.fulcrum_errors[-1][1] if self.fulcrum_errors else None

    def anchor_scope_tip(self) -> None:
        """Deviation of the scope tip is measured from where it is now (start of a held segment)."""
        self.poll()                                  # what came before now is judged against the old anchor
        with self._lock:
            self._anchor = None if self._tip_T is None else self._tip_T[:3, 3].copy()

    def rates_hz(self) -> dict[str, float | None]:
        return {key: self.rates[key].rate_hz() for key in RATE_TOPICS}

    def close(self) -> None:
        self.spinner.stop()
        self.poll()                                  # the last messages count too
        self.polled.destroy()
        self.node.destroy_node()
        self.context.try_shutdown()
