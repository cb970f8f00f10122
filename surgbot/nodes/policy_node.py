"""`policy_node` rclpy node (contract section 10): the VLA drives the PSM through the safety gate.

Thin shell around `surgbot.control.policy_exec.PolicyExecutor`: subscribes
`/endoscope/image_raw` (or `/compressed`), `/PSM1/measured_cp`,
`/PSM1/jaw/measured_js`, `/policy/instruction`; serves `/policy/enable`;
on a `rate_hz` timer publishes `/PSM1/servo_cp` and `/PSM1/jaw/servo_jp`
(what the gate lets through; HOLD repeats the last command) and
`/policy/state` (JSON).  Inference runs on one worker thread through the
torch-free `PolicyClient` (pyzmq, contract section 7); its results are
handed to the core on the timer thread, so the core is never shared.
Parameters: config/policy_node.yaml (generated from `PolicyNodeConfig`).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.control.policy_exec import PolicyExecConfig, PolicyExecutor, State
from surgbot.geometry import matrix_from_pose10, matrix_to_pose_msg, pose10_from_matrix, pose_msg_to_matrix
from surgbot.hw.policy_client import PolicyClient, PolicyServerError, PolicyTimeout
from surgbot.nodes.safety_link import SafetyLink
from surgbot.rosutil import Diagnostics, declare_config, latched_qos, run_node, setbool_handler

POLICY_ENABLE = "/policy/enable"
POLICY_INSTRUCTION = "/policy/instruction"
POLICY_STATE = "/policy/state"
SAFETY_CHECK_PERIOD_S = 0.01   # a silent safety supervisor is noticed within this past its stale time
STATE_PUBLISH_EVERY = 5        # ticks between /policy/state messages (3 Hz at 15 Hz)
SERVER_ERROR_LOG_PERIOD_S = 2.0


@dataclass(frozen=True)
class PolicyNodeConfig:
    server_host: str = param("127.0.0.1", "policy server host (contract section 7)")
    server_port: int = param(5555, "policy server port", lo=1, hi=65535)
    compressed_image: bool = param(False, "subscribe /endoscope/image_raw/compressed (jpeg) instead of raw")
    instruction: str = param("", "initial instruction ('' = wait for /policy/instruction)")
    exec: PolicyExecConfig = field(default_factory=PolicyExecConfig)

    def __post_init__(self):
        check_ranges(self)


def _decode_rgb8(msg: Image) -> np.ndarray | None:
    if msg.encoding != "rgb8" or msg.step != msg.width * 3 or len(msg.data) != msg.height * msg.step:
        return None
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)


def _decode_jpeg(msg: CompressedImage) -> np.ndarray | None:
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The camera frame as the policy saw its training frames: centre crop to the (h, w) aspect, then resize.

    MuJoCo's (and a pinhole camera's) field of view is vertical, so a square
    128x128 training render at the same fovy IS the centre square of the
    320x240 frame: cropping keeps the geometry, a plain resize would squash it.
    """
    h, w = size
    H, W = image.shape[:2]
    if (H, W) == (h, w):
        return image
    if W * h > H * w:                       # wider than wanted: crop the sides
        cw = max(1, round(H * w / h))
        x0 = (W - cw) // 2
        image = image[:, x0:x0 + cw]
    elif W * h < H * w:                     # taller: crop top and bottom
        ch = max(1, round(W * h / w))
        y0 = (H - ch) // 2
        image = image[y0:y0 + ch]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


class PolicyNode(Node):
    def __init__(self, **kwargs):
        super().__init__("policy_node", **kwargs)
        self.cfg: PolicyNodeConfig = declare_config(self, PolicyNodeConfig)
        self.core = PolicyExecutor(self.cfg.exec)
        if self.cfg.instruction:
            self.core.set_instruction(self.cfg.instruction)
        self.client = PolicyClient(self.cfg.server_host, self.cfg.server_port,
                                   timeout_s=self.cfg.exec.server_timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy_client")
        self._pending: Future | None = None
        self._pending_obs: tuple[int, float] | None = None
        # the newest endoscope frame as it came off the wire: decoded only when an observation is
        # taken (15 Hz while running, never while idle); deserialising every 30 Hz 320x240 frame
        # cost the idle node ~8 % of a core on the 2-core machine
        self._image_raw: bytes | None = None
        self._image_size: tuple[int, int] | None = None   # (h, w) the server wants, from metadata
        self._jaw: float | None = None
        # the newest /PSM1/measured_cp (pose, jaw then, receive time), converted on the control tick:
        # it comes at the arm's rate (100 Hz+) and the 15 Hz loop uses one of every ~7
        self._cp_pending: tuple | None = None
        self._lock = threading.Lock()

        self.pub_cp = self.create_publisher(PoseStamped, contract.psm_topic("servo_cp"), 10)
        self.pub_jaw = self.create_publisher(JointState, contract.psm_topic("jaw/servo_jp"), 10)
        self.pub_state = self.create_publisher(String, POLICY_STATE, latched_qos())
        self._image_type = CompressedImage if self.cfg.compressed_image else Image
        self.create_subscription(self._image_type, contract.ENDOSCOPE_IMAGE_COMPRESSED if self.cfg.compressed_image
                                 else contract.ENDOSCOPE_IMAGE, self._on_image_raw, 2, raw=True)
        self.create_subscription(PoseStamped, contract.psm_topic("measured_cp"), self._on_cp, 10)
        self.create_subscription(JointState, contract.psm_topic("jaw/measured_js"), self._on_jaw, 10)
        self.create_subscription(String, POLICY_INSTRUCTION, self._on_instruction, 10)
        # /safety/state: ESTOP, FAULT or a silent supervisor disables the executor at once
        self.safety = SafetyLink(self, self._on_safety)
        self.create_timer(SAFETY_CHECK_PERIOD_S, self.safety.check)   # between the 15 Hz control ticks
        self.create_service(SetBool, POLICY_ENABLE, setbool_handler(self._enable))
        self.diagnostics = Diagnostics(self, "policy_node", self._diag)
        self.create_timer(1.0 / self.cfg.exec.rate_hz, self._on_timer)
        self.get_logger().info(f"policy_node: server {self.client.endpoint}, {self.cfg.exec.rate_hz:.0f} Hz; "
                               f"call {POLICY_ENABLE} to start")

    # --- inputs ------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic()

    def _on_image_raw(self, data: bytes) -> None:
        with self._lock:
            self._image_raw = data

    def _latest_image(self) -> np.ndarray | None:
        """The newest frame as HxWx3 RGB, or None (none yet, or malformed: counted as "bad image")."""
        with self._lock:
            data = self._image_raw
        if data is None:
            return None
        try:
            msg = deserialize_message(data, self._image_type)
        except Exception:                                     # noqa: BLE001 - malformed CDR: one counter
            msg = None
        image = None if msg is None else (_decode_jpeg(msg) if self.cfg.compressed_image else _decode_rgb8(msg))
        if image is None:
            self.core.rejections["bad image"] += 1
        return image

    def _on_jaw(self, msg: JointState) -> None:
        if len(msg.position) >= 1 and np.isfinite(msg.position[0]):
            self._jaw = float(msg.position[0])

    def _on_cp(self, msg: PoseStamped) -> None:
        if self._jaw is None or msg.header.frame_id not in ("", contract.PSM_BASE_FRAME):
            return
        self._cp_pending = (msg.pose, self._jaw, self._now())

    def _take_measured(self) -> None:
        """Hand the newest measured pose to the core (with its receive time, so staleness holds)."""
        if self._cp_pending is None:
            return
        pose, jaw, t = self._cp_pending
        self._cp_pending = None
        try:
            T = pose_msg_to_matrix(pose)
        except ValueError:
            self.core.rejections["bad measured pose"] += 1
            return
        self.core.on_measured(pose10_from_matrix(T, jaw), t)

    def _on_instruction(self, msg: String) -> None:
        before = self.core.instruction
        result = self.core.set_instruction(msg.data)
        if not result:
            self.get_logger().error(f"instruction rejected: {result.reason}")
        elif self.core.instruction != before:
            self._new_episode()

    def _enable(self, on: bool):
        self.safety.check()
        result = self.core.enable(on)
        if result and on:
            self._new_episode()
        return result

    def _new_episode(self) -> None:
        """The server's per-episode state (the VLA's goal memory) starts afresh: a new instruction or
        an enable is a new episode.  On the client's worker thread, in order with the inferences (a
        zmq socket is not thread-safe); a failure is the next inference's problem."""
        self._pool.submit(self._reset_server)

    def _reset_server(self) -> None:
        try:
            self.client.reset()
        except Exception as exc:  # noqa: BLE001 - reported; the executor's server checks hold the arm
            self.get_logger().warning(f"policy server reset failed: {type(exc).__name__}: {exc}")

    def _on_safety(self, block: str) -> None:
        self.core.set_safety(block)
        if block:
            self.get_logger().error(f"safety: stopped commanding: {block}")
            self.pub_state.publish(String(data=json.dumps(self.core.status(self._now()))))

    # --- inference on the worker thread ----------------------------------------------
    def _infer(self, image: np.ndarray, state: np.ndarray, instruction: str):
        if self._image_size is None:
            self._image_size = tuple(self.client.metadata()["image_size"])
        return self.client.infer(fit_image(image, self._image_size), state, instruction)

    def _collect(self) -> None:
        if self._pending is None or not self._pending.done():
            return
        fut, (tick, t_obs) = self._pending, self._pending_obs
        self._pending = None
        try:
            actions, infer_ms = fut.result()
        except (PolicyTimeout, PolicyServerError, KeyError, ValueError, OSError) as exc:
            self.core.on_server_error(f"{type(exc).__name__}: {exc}", unanswered=isinstance(exc, PolicyTimeout))
            self.get_logger().warning(f"policy server: {type(exc).__name__}: {exc}; holding",
                                      throttle_duration_sec=SERVER_ERROR_LOG_PERIOD_S)
            return
        self.core.on_chunk(actions, tick, t_obs, infer_ms)

    # --- loop ----------------------------------------------------------------------
    def _on_timer(self) -> None:
        self.safety.check()                  # a silent supervisor is noticed before a command goes out
        now = self._now()
        self._take_measured()
        self._collect()
        self.core.on_server_lost(self.client.server_lost())
        out = self.core.tick(now)
        for text in self.core.events:
            self.get_logger().warning(text)
        self.core.events.clear()
        if out.command is not None and not self.safety.check():    # again: a stop that came meanwhile wins
            self._publish_command(out.command)
        if out.request_chunk and self._pending is None and self.core.measured is not None:
            image = self._latest_image()
            if image is not None:
                state = self.core.measured.astype(np.float32)
                self.core.observation_taken(now)
                self._pending_obs = (self.core.tick_index, now)
                self._pending = self._pool.submit(self._infer, image, state, self.core.instruction)
        if self.core.tick_index % STATE_PUBLISH_EVERY == 0 or out.state is not State.RUNNING:
            self.pub_state.publish(String(data=json.dumps(self.core.status(now))))

    def _publish_command(self, pose10: np.ndarray) -> None:
        T, jaw = matrix_from_pose10(pose10)
        msg = PoseStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = contract.PSM_BASE_FRAME
        matrix_to_pose_msg(T, msg)
        self.pub_cp.publish(msg)
        js = JointState()
        js.header.stamp = msg.header.stamp
        js.name = [contract.PSM_JAW_NAME]
        js.position = [float(jaw)]
        self.pub_jaw.publish(js)

    def _diag(self):
        st = dict(self.core.status(self._now()), **self.safety.status())
        level = Diagnostics.OK if st["state"] != "HOLD" and not self.safety.block else Diagnostics.WARN
        return level, st["hold_reason"] or st["state"], {k: v for k, v in st.items() if k != "gate_rejections"}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args, on_shutdown=lambda n: n.close())


if __name__ == "__main__":
    raise SystemExit(main())
