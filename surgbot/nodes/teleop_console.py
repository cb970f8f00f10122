"""`teleop_console` rclpy node: the VR console server (contract section 6).

Thin shell around `surgbot.teleop.server.ConsoleServer` (aiohttp, asyncio in
the main thread; rclpy spins in a background thread).  Each valid `xr`
message becomes `/teleop/head`, `/teleop/left`, `/teleop/right`
(PoseStamped, `world`, operator axes) and `/teleop/buttons` (Joy, layout in
`surgbot.teleop.protocol`), all with one stamp.  A lost link (no valid `xr`
for `link_timeout_s`, or the operator gone) publishes one all-released Joy,
so the holder's deadman lets go and the view stops.  Video: the camera's
JPEG (`/endoscope/image_raw/compressed`) is passed through, or `image_raw`
encoded (`video_source`).  Status shown by the page: `/endoscope/mode`,
`/endoscope/fulcrum_error`, `/PSM1/operating_state`, `/safety/state`,
`/teleop/mapper_state` (the fulcrum error and the safety state, the two that
stream, read at the 10 Hz status tick: `polled_arrivals.py`).  Record: the page's `record` messages call the
recorder's episode services (`/recorder/episode/start`, `/stop`, `/discard`,
std_srvs/Trigger; `surgbot data record --source ros` serves them)
asynchronously, one at a time, never blocking the socket loop; the outcome
and the episode counts go into the status (`surgbot.teleop.record`).
Parameters: config/teleop_console.yaml; the token comes from
`SURGBOT_CONSOLE_TOKEN` (or `surgbot console --token`) or is generated and
printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
import traceback

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, Joy
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from surgbot import area_path, contract, geometry
from surgbot.nodes.polled_arrivals import PolledArrivals
from surgbot.nodes.teleop_mapper import LINK_LOST_FRAME, MAPPER_STATE_TOPIC, SAMPLE_QUEUE, psm_state_subscription
from surgbot.rosutil import (
    BackgroundSpinner,
    Diagnostics,
    declare_config,
    latched_qos,
    make_executor,
    operator_stream_qos,
)
from surgbot.teleop import protocol as P
from surgbot.teleop import tls
from surgbot.teleop.config import ConsoleConfig
from surgbot.teleop.record import NOT_RUNNING, RecordControl
from surgbot.teleop.server import ConsoleServer
from surgbot.teleop.url import url_line
from surgbot.teleop.video import JpegEncoder, capture_ms

TOKEN_ENV = "SURGBOT_CONSOLE_TOKEN"
TOKEN_BYTES = 24
LOOPBACK = ("127.0.0.1", "::1", "localhost")
RECORD_SERVICES = {"start": contract.RECORDER_EPISODE_START, "stop": contract.RECORDER_EPISODE_STOP,
                   "discard": contract.RECORDER_EPISODE_DISCARD}
STATUS_TICK_S = 0.1             # the status' polled topics, the record status (elapsed time), the call-timeout check


def console_token(given: str = "") -> tuple[str, bool]:
    """(token, generated): `given`, else $SURGBOT_CONSOLE_TOKEN, else a new random one."""
    token = given or os.environ.get(TOKEN_ENV, "")
    if token:
        return token, False
    return secrets.token_urlsafe(TOKEN_BYTES), True


class TeleopConsoleNode(Node):
    def __init__(self, token: str, overrides: dict | None = None, **kwargs):
        super().__init__("teleop_console", **kwargs)
        self.cfg = declare_config(self, ConsoleConfig, overrides)
        self.token = token
        # ~0.5 s of samples: a briefly starved subscriber must not lose one half of a sample
        stream = operator_stream_qos(SAMPLE_QUEUE)
        self.pub_head = self.create_publisher(PoseStamped, contract.TELEOP_HEAD, stream)
        self.pub_left = self.create_publisher(PoseStamped, contract.TELEOP_LEFT, stream)
        self.pub_right = self.create_publisher(PoseStamped, contract.TELEOP_RIGHT, stream)
        self.pub_buttons = self.create_publisher(Joy, contract.TELEOP_BUTTONS, stream)
        # One message per topic, filled anew for each sample: only the server's loop publishes them
        # (on_xr, on_link_lost), publish serializes at once, and a generated message's __init__
        # imports its field types on every call (~20 us a PoseStamped, the most of its Python cost).
        self._out_pose = {pub: PoseStamped() for pub in (self.pub_head, self.pub_left, self.pub_right)}
        for msg in self._out_pose.values():
            msg.header.frame_id = contract.WORLD_FRAME
        self._out_joy = Joy()
        self.robot = {"endoscope_mode": None, "psm_state": None, "fulcrum_error_mm": None, "safety": None,
                      "mapper": None, "stamp_source": None}
        if self.cfg.video_source == "raw":
            self.encoder = JpegEncoder(self.cfg.jpeg_quality, self.cfg.video_width)
        # the video is subscribed only while a page is connected (`_watch_video`, at the status tick):
        # with none, its 15-30 frames a second woke this process for nothing, and the twin's camera
        # JPEG-encodes only for a subscriber of the compressed topic
        self._video_sub = None
        self.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: self._set("endoscope_mode", m.data),
                                 latched_qos())
        # only shown in the status, so read at the status tick (polled_arrivals.py): by callback the
        # holder's 100 Hz fulcrum error and the supervisor's 50 Hz state woke this process, which
        # otherwise sleeps between operator samples, 150 times a second
        self.shown = PolledArrivals(self)
        self.shown.add(contract.ENDOSCOPE_FULCRUM_ERROR, Float64, contract.ENDOSCOPE_FULCRUM_ERROR, 10)
        self.shown.add(contract.SAFETY_STATE, String, contract.SAFETY_STATE, latched_qos())
        self.create_subscription(String, MAPPER_STATE_TOPIC, self._on_mapper, latched_qos())
        psm_state_subscription(self, lambda s: self._set("psm_state", s.get("state")))
        self.server: ConsoleServer | None = None
        self.record = RecordControl(self.cfg.record_call_timeout_s)
        self.record_clients = {a: self.create_client(Trigger, name) for a, name in RECORD_SERVICES.items()}
        self._record_call = None                # (client, future) of the call in flight
        self._record_logged = 0                 # outcomes logged so far
        self.robot["record"] = self.record.status(time.monotonic())
        self.create_timer(STATUS_TICK_S, self._tick)
        Diagnostics(self, "teleop_console", self._diagnostics, hardware_id="console")

    # ------------------------------------------------------------------ ConsoleSink
    def on_xr(self, sample: P.XrSample, t_recv: float) -> None:
        # stamped when the message came off the socket (wall clock, as this node's ROS time): the
        # mapper judges gaps in the operator's stream on it, the bench measures receive -> servo_cp
        stamp = geometry.sec_to_stamp(t_recv, Time())
        # the mapper's inputs first: it acts on the Joy, with the newest right pose, so the head's
        # publish (~150 us on this machine) is not in the PSM's path
        self._publish_pose(self.pub_right, sample.right.pose if sample.right else None, stamp)
        buttons, axes = sample.joy()
        self._publish_joy(stamp, buttons, axes)
        self._publish_pose(self.pub_head, sample.head, stamp)
        self._publish_pose(self.pub_left, sample.left.pose if sample.left else None, stamp)

    def _publish_pose(self, pub, T, stamp) -> None:
        # a topic nobody reads is not published: each publish costs ~50 us of this process's
        # CPU even without a reader (measured), and no node of ours reads /teleop/left
        if T is not None and pub.get_subscription_count():
            msg = self._out_pose[pub]
            msg.header.stamp = stamp
            pub.publish(geometry.matrix_to_pose_msg(T, msg))

    def on_link_lost(self, reason: str) -> None:
        self.get_logger().warning(f"operator link lost ({reason}): deadman and clutch released")
        self._publish_joy(self.get_clock().now().to_msg(), [0] * P.N_BUTTONS, [0.0] * P.N_AXES, LINK_LOST_FRAME)

    def on_record(self, action: str) -> None:
        """A valid `record` from the operator (socket loop): send the service call, never wait for it."""
        now = time.monotonic()
        if self.record.request(action, now):
            client = self.record_clients[action]
            if client.service_is_ready():
                future = client.call_async(Trigger.Request())
                self._record_call = (client, future)
                future.add_done_callback(lambda f: self._record_answer(action, f))
            else:
                self.record.answered(action, False, NOT_RUNNING, now)
        self._record_changed(now)

    def _record_answer(self, action: str, future) -> None:
        if future.cancelled() or future.exception() is not None:
            return                              # given up by the timeout (it reported the outcome)
        res = future.result()
        self.record.answered(action, res.success, res.message or ("ok" if res.success else "refused"),
                             time.monotonic())
        self._record_changed(time.monotonic())

    def _read_shown(self) -> None:
        """The newest fulcrum error and safety state, into the status."""
        for topic, arrival in self.shown.poll().items():
            msg = self.shown.decode(topic, arrival.raw)
            if topic == contract.SAFETY_STATE:
                self._on_safety(msg)
            else:
                self._set("fulcrum_error_mm", round(msg.data * 1e3, 2))

    def destroy_node(self):
        self.shown.destroy()
        return super().destroy_node()

    def _tick(self) -> None:
        self._read_shown()
        self._watch_video()
        now = time.monotonic()
        call = self._record_call
        if self.record.expire(now) and call is not None:
            call[0].remove_pending_request(call[1])       # a late answer must not count as this one's
        self._record_changed(now)

    def _watch_video(self) -> None:
        """Subscribe the endoscope video while any page (operator or viewer) is connected, not otherwise."""
        wanted = self.server is not None and bool(self.server.clients)
        if wanted and self._video_sub is None:
            newest = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            if self.cfg.video_source == "compressed":
                self._video_sub = self.create_subscription(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED,
                                                           self._on_jpeg, newest)
            elif self.cfg.video_source == "raw":
                self._video_sub = self.create_subscription(Image, contract.ENDOSCOPE_IMAGE, self._on_raw, newest)
        elif not wanted and self._video_sub is not None:
            self.destroy_subscription(self._video_sub)
            self._video_sub = None

    def _record_changed(self, now: float) -> None:
        status = self.record.status(now)
        last = status["last"]
        if last is not None and last["n"] != self._record_logged:
            self._record_logged = last["n"]
            text = (f"record {last['action']}: {'ok' if last['ok'] else 'refused'} ({last['message']}); "
                    f"{status['episodes']} kept, {status['discarded']} discarded")
            # two call sites: rclpy refuses one call site logging at two severities
            if last["ok"]:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)
        self._set("record", status)

    def _publish_joy(self, stamp, buttons, axes, frame: str = contract.WORLD_FRAME) -> None:
        joy = self._out_joy
        joy.header.stamp = stamp
        joy.header.frame_id = frame
        joy.buttons, joy.axes = list(buttons), [float(a) for a in axes]
        self.pub_buttons.publish(joy)

    # ------------------------------------------------------------------ inputs
    def _set(self, key: str, value) -> None:
        self.robot[key] = value
        if self.server is not None:
            self.server.set_robot_status(self.robot)

    def _on_safety(self, msg: String) -> None:
        try:
            self._set("safety", json.loads(msg.data).get("state"))
        except (ValueError, AttributeError):
            self._set("safety", "unreadable")

    def _on_mapper(self, msg: String) -> None:
        try:
            self._set("mapper", json.loads(msg.data).get("state"))
        except (ValueError, AttributeError):
            self._set("mapper", "unreadable")

    def _frame(self, jpeg: bytes, stamp) -> None:
        if self.server is None:
            return
        cap, own = capture_ms(geometry.stamp_to_sec(stamp))
        if self.robot["stamp_source"] != ("camera" if own else "receipt"):
            self._set("stamp_source", "camera" if own else "receipt")
        self.server.publish_frame(jpeg, cap)

    def _on_jpeg(self, msg: CompressedImage) -> None:
        self._frame(bytes(msg.data), msg.header.stamp)

    def _on_raw(self, msg: Image) -> None:
        if msg.encoding != "rgb8" or msg.step != msg.width * 3:
            return
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        self._frame(self.encoder.encode(img), msg.header.stamp)

    def _diagnostics(self):
        s = self.server.status() if self.server is not None else {}
        level = Diagnostics.OK if s.get("link") == "up" or not s.get("operator") else Diagnostics.WARN
        keys = ("link", "operator", "viewers", "xr_rate_hz", "accepted", "rejected_total", "video_sent",
                "video_dropped", "video_age_ms", "glass_to_glass_ms")
        values = {k: s.get(k) for k in keys}
        values.update({f"rejected_{k}": v for k, v in s.get("rejected", {}).items()})
        rec = self.record.status(time.monotonic())
        values.update({"recording": rec["recording"], "episodes_kept": rec["episodes"],
                       "episodes_discarded": rec["discarded"]})
        return level, f"link {s.get('link', 'down')}", values

    # ------------------------------------------------------------------ server
    async def serve(self, stop: asyncio.Event) -> None:
        cert, key, created = tls.ensure_certificate(self.cfg.cert, self.cfg.key, (self.cfg.host,))
        self.server = ConsoleServer(self.cfg, self.token, self, area_path("teleop") / "web",
                                    tls.server_context(cert, key))
        self.server.set_robot_status(self.robot)
        port = await self.server.start()
        host = self.cfg.host if self.cfg.host not in ("0.0.0.0", "::") else "<this machine's address>"
        log = self.get_logger()
        if self.cfg.host not in LOOPBACK:
            log.warning(f"the console listens on {self.cfg.host}:{port}: reachable from other machines on that "
                        f"network (token required, but anyone there can try); use the default 127.0.0.1 with "
                        f"`adb reverse` where you can")
        print(f"{url_line(host, port, self.token)}\n"
              f"  certificate {cert} ({'created' if created else 'existing'})\n"
              f"  SHA-256 fingerprint {tls.fingerprint(cert)}", flush=True)
        try:
            await stop.wait()
        finally:
            await self.server.stop()


def run_console(token: str, overrides: dict | None = None, args: list[str] | None = None) -> int:
    """rclpy in a background thread, the server in this thread's asyncio loop, until SIGINT/SIGTERM."""
    # asyncio owns SIGINT/SIGTERM here (rclpy's own handlers would race it for the same signals)
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = TeleopConsoleNode(token, overrides)
    executor = make_executor()             # the EventsExecutor where rclpy has it (rosutil.EXECUTOR_ENV)
    executor.add_node(node)
    running: dict = {}                     # the server's loop and stop event, once it runs
    failed: list[BaseException] = []

    def on_callback_error(exc: BaseException) -> None:
        # A ROS callback raised.  Every other node ends on that (rosutil.run_node), and so must the
        # console: a console whose ROS thread is gone would serve the page and publish nothing, and
        # no diagnostics would say why.  Ended, its launcher and the supervisor see it at once.
        failed.append(exc)
        node.get_logger().fatal("a ROS callback raised; the console stops:\n"
                                + "".join(traceback.format_exception(exc)).rstrip())
        if "loop" in running:
            running["loop"].call_soon_threadsafe(running["stop"].set)

    spinner = BackgroundSpinner(executor, on_error=on_callback_error)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        running.update(loop=loop, stop=stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if failed:                         # raised before the server ran
            stop.set()
        await node.serve(stop)

    try:
        asyncio.run(main())
    finally:
        spinner.stop()                     # out of rclpy before the node goes (sim.runner.RosContext)
        node.destroy_node()
        rclpy.try_shutdown()
    return 1 if failed else 0


def main(args: list[str] | None = None) -> int:
    token, generated = console_token()
    if generated:
        print("teleop console: no SURGBOT_CONSOLE_TOKEN set, generated a token for this run", flush=True)
    return run_console(token, args=args)


if __name__ == "__main__":
    sys.exit(main())
