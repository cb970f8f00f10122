"""`teleop_mapper` rclpy node: operator hands -> PSM1 and scope commands (contract section 6).

Thin shell around `surgbot.teleop.mapper.TeleopMapperCore`.  Takes
`/teleop/right` + `/teleop/buttons` (paired by stamp: one console sample),
`/endoscope/measured_cp`, `/endoscope/mode`, `/PSM1/measured_cp`,
`/PSM1/jaw/measured_js`, `/PSM1/operating_state`; publishes
`/PSM1/servo_cp` (PSM1_base), `/PSM1/jaw/servo_jp`, `/endoscope/servo_cv`
(left-stick zoom), `/teleop/mapper_state` (JSON, latched) and
`/diagnostics`; calls `/endoscope/follow_tool` and `/endoscope/hold` for the
A/B buttons.  A Joy whose frame_id is `link_lost` (sent by the console when
the operator's link drops) stops commanding until a fresh clutch, as the
core's own watchdog does.  Parameters: config/teleop_mapper.yaml.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import SetBool

from surgbot import contract, geometry
from surgbot.hw.crtk import subscribe_operating_state
from surgbot.nodes.safety_link import SafetyLink
from surgbot.rosutil import Diagnostics, declare_config, latched_qos, operator_stream_qos, run_node
from surgbot.teleop.config import MapperConfig
from surgbot.teleop.mapper import Command, State, TeleopMapperCore

MAPPER_STATE_TOPIC = "/teleop/mapper_state"
LINK_LOST_FRAME = "link_lost"
WATCHDOG_HZ = 100.0
WATCHDOG_LATE_S = 0.05      # a watchdog tick this late skips its check once (see _on_watchdog)
HAND_MAX_AGE_S = 0.2        # a right pose this much older than the Joy: hand not tracked (a pose that old
                            # repeats a target already sent: it moves nothing; DDS may deliver the two
                            # topics tens of ms apart on a loaded machine)
SAMPLE_QUEUE = 50            # a starved executor must not drop one half of a sample (~0.5 s at 90 Hz)


def psm_state_subscription(node: Node, callback: Callable[[dict], None]):
    """`/PSM1/operating_state` (crtk_msgs/OperatingState, latched) as a dict {state, is_homed, is_busy}."""
    return subscribe_operating_state(node, callback)


def psm_base_matrix(cfg: MapperConfig) -> np.ndarray:
    pose = list(cfg.psm_base_pose)
    if not pose and cfg.scene:
        from surgbot.nodes.endoscope_holder import scene_psm_base  # sim only: the scene model
        pose = scene_psm_base(cfg.scene) or []
    if len(pose) != 7:
        raise ValueError("teleop_mapper needs psm_base_pose (x y z qx qy qz qw) or scene:=NAME")
    return geometry.pose_to_matrix(pose[:3], pose[3:], strict_norm=True)


class TeleopMapperNode(Node):
    def __init__(self, **kwargs):
        super().__init__("teleop_mapper", **kwargs)
        self.cfg = declare_config(self, MapperConfig)
        self.core = TeleopMapperCore(self.cfg, psm_base_matrix(self.cfg))
        # /safety/state: ESTOP, FAULT or a silent supervisor stops commanding at once (core.set_safety)
        self.safety = SafetyLink(self, self._on_safety)
        self.pub_cp = self.create_publisher(PoseStamped, contract.psm_topic("servo_cp"), 10)
        self.pub_jaw = self.create_publisher(JointState, contract.psm_topic("jaw/servo_jp"), 10)
        self.pub_cv = self.create_publisher(TwistStamped, contract.ENDOSCOPE_SERVO_CV, 10)
        self.pub_state = self.create_publisher(String, MAPPER_STATE_TOPIC, latched_qos())
        # one message per command topic, filled anew for each command: the executor is single-threaded,
        # publish serializes at once, and a generated message's __init__ imports its field types on
        # every call (~20 us a PoseStamped, more than the rest of the publish's Python)
        self._out_cp = PoseStamped()
        self._out_cp.header.frame_id = contract.PSM_BASE_FRAME
        self._out_jaw = JointState(name=[contract.PSM_JAW_NAME])
        self._out_cv = TwistStamped()
        self._out_cv.header.frame_id = contract.ENDOSCOPE_TIP_FRAME
        self.create_subscription(PoseStamped, contract.TELEOP_RIGHT, self._on_right, operator_stream_qos(SAMPLE_QUEUE))
        self.create_subscription(Joy, contract.TELEOP_BUTTONS, self._on_joy, operator_stream_qos(SAMPLE_QUEUE))
        self.create_subscription(PoseStamped, contract.ENDOSCOPE_MEASURED_CP, self._on_camera, 10)
        self.create_subscription(String, contract.ENDOSCOPE_MODE,
                                 lambda m: setattr(self.core, "endoscope_mode", m.data), latched_qos())
        self.create_subscription(PoseStamped, contract.psm_topic("measured_cp"), self._on_measured, 10)
        self.create_subscription(JointState, contract.psm_topic("jaw/measured_js"), self._on_jaw, 10)
        psm_state_subscription(self, self._on_psm_state)
        self.cli_follow = self.create_client(SetBool, contract.ENDOSCOPE_FOLLOW_TOOL)
        self.cli_hold = self.create_client(SetBool, contract.ENDOSCOPE_HOLD)
        self._right: tuple[int, np.ndarray] | None = None     # newest right pose (stamp ns, 4x4)
        self._last_state: State | None = None
        self._last_watchdog: float | None = None
        self.create_timer(1.0 / WATCHDOG_HZ, self._on_watchdog)
        self.create_timer(1.0, lambda: self._publish_state(force=True))
        Diagnostics(self, "teleop_mapper", self._diagnostics, hardware_id="PSM1 teleop")
        self._publish_state(force=True)

    def _now(self) -> float:
        # ROS time: the console stamps each sample on receipt with it, and the core compares the two
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ robot state
    def _on_camera(self, msg: PoseStamped) -> None:
        try:
            T = geometry.pose_msg_to_matrix(msg)
        except ValueError:
            T = np.full((4, 4), np.nan)
        if msg.header.frame_id != contract.WORLD_FRAME:
            T = np.full((4, 4), np.nan)
        self.core.set_camera(T, self._now())

    def _on_measured(self, msg: PoseStamped) -> None:
        try:
            T = geometry.pose_msg_to_matrix(msg)
        except ValueError:
            T = np.full((4, 4), np.nan)
        self.core.set_measured(T)

    def _on_jaw(self, msg: JointState) -> None:
        if len(msg.position):
            self.core.set_jaw_measured(float(msg.position[0]))

    def _on_psm_state(self, state: dict) -> None:
        self.core.set_psm_enabled(state.get("state") == "ENABLED" and bool(state.get("is_homed")))
        self._drain()

    # ------------------------------------------------------------------ operator samples
    # One console sample = /teleop/right + /teleop/buttons with one stamp.  Each Joy drives the core
    # with the newest right pose; the executor may hand the two topics over in either order, so that
    # pose may be a few samples older, never a stale one: a pose more than HAND_MAX_AGE_S older than
    # the Joy means the right hand is not tracked.
    def _on_right(self, msg: PoseStamped) -> None:
        try:
            T = geometry.pose_msg_to_matrix(msg)
        except ValueError:
            T = np.full((4, 4), np.nan)                 # the core rejects and counts it
        stamp = geometry.stamp_to_ns(msg)
        if self._right is None or stamp >= self._right[0]:
            self._right = (stamp, T)

    def _on_joy(self, msg: Joy) -> None:
        if msg.header.frame_id == LINK_LOST_FRAME:
            self._right = None
            self.core.link_lost("the console lost the operator's link")
            self._drain()
            return
        stamp = geometry.stamp_to_ns(msg)
        hand = None
        if self._right is not None and abs(stamp - self._right[0]) <= HAND_MAX_AGE_S * 1e9:
            hand = self._right[1]
        self._process(stamp, hand, list(msg.buttons), list(msg.axes))

    def _process(self, stamp_ns: int, right, buttons, axes) -> None:
        self.safety.check()                      # a silent supervisor is noticed before a command goes out
        # the sample's own stamp (console receipt) times it: gaps in the operator's stream are
        # measured there, not where this process happened to be scheduled
        cmd = self.core.sample(stamp_ns * 1e-9, right, buttons, axes, received=self._now())
        if not self.safety.check():              # again: a stop that came while the core ran wins
            self._publish(cmd)
        self._drain()

    def _publish(self, cmd: Command) -> None:
        stamp = self.get_clock().now().to_msg()
        if cmd.servo_cp is not None:
            msg = self._out_cp
            msg.header.stamp = stamp
            self.pub_cp.publish(geometry.matrix_to_pose_msg(cmd.servo_cp, msg))
        if cmd.jaw is not None:
            js = self._out_jaw
            js.header.stamp = stamp
            js.position = [float(cmd.jaw)]
            self.pub_jaw.publish(js)
        if cmd.insertion_m_s is not None:
            tw = self._out_cv
            tw.header.stamp = stamp
            tw.twist.linear.z = float(cmd.insertion_m_s)
            self.pub_cv.publish(tw)
        for action in cmd.actions:
            cli, value = {"follow_tool_on": (self.cli_follow, True), "follow_tool_off": (self.cli_follow, False),
                          "hold": (self.cli_hold, True)}[action]
            self._call(cli, value, action)

    def _call(self, cli, value: bool, what: str) -> None:
        if not cli.service_is_ready():
            self.get_logger().warning(f"{what}: {cli.srv_name} not available")
            return
        req = SetBool.Request()
        req.data = value
        fut = cli.call_async(req)

        def done(f):
            res = f.result()
            if res is not None and not res.success:
                self.get_logger().warning(f"{what} refused: {res.message}")
        fut.add_done_callback(done)

    # ------------------------------------------------------------------ housekeeping
    def _on_safety(self, block: str) -> None:
        self.core.set_safety(block)
        if block:
            self.get_logger().error(f"safety: stopped commanding: {block}")
        self._drain()

    def _on_watchdog(self) -> None:
        self.safety.check()
        now = self._now()
        late = self._last_watchdog is not None and now - self._last_watchdog > WATCHDOG_LATE_S
        self._last_watchdog = now
        if late:
            return      # this process was starved: let the samples queued meanwhile be taken first
        self.core.tick(now)
        self._drain()

    def _drain(self) -> None:
        log = self.get_logger()
        for level, text in self.core.events:
            if level == "warn":
                log.warning(text)
            else:
                log.info(text)
        self.core.events.clear()
        self._publish_state()

    def _publish_state(self, force: bool = False) -> None:
        if force or self.core.state != self._last_state:
            self._last_state = self.core.state
            self.pub_state.publish(String(data=json.dumps(self.core.diagnostics())))

    def _diagnostics(self):
        d = dict(self.core.diagnostics(), **self.safety.status())
        level = Diagnostics.WARN if self.core.state in (State.WAITING, State.NEED_CLUTCH) else Diagnostics.OK
        if self.safety.block:
            level = Diagnostics.WARN
        return level, d["state"] + (f"; held by safety: {self.safety.block}" if self.safety.block else ""), d


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopMapperNode, args)


if __name__ == "__main__":
    sys.exit(main())
