"""`recorder` rclpy node: selected topics to rosbag2 folders with MCAP storage (contract section 10).

`/recorder/start` opens `<out_dir>/<YYYYmmdd-HHMMSS>/` and records every
configured topic that exists (topics that appear later are picked up within
`discovery_period_s`); `/recorder/stop` closes it (metadata.yaml written), so
`ros2 bag info/play`, Foxglove and the `mcap` reader open it.  Messages are
taken raw (CDR bytes, never deserialised) and stamped with the receive time.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from std_srvs.srv import Trigger

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.recording import BagWriter
from surgbot.results import Result
from surgbot.rosutil import Diagnostics, declare_config, run_node, trigger_handler

NODE_NAME = "recorder"
RECORDER_START = "/recorder/start"
RECORDER_STOP = "/recorder/stop"
DEFAULT_TOPICS = (
    contract.psm_topic("measured_js"), contract.psm_topic("measured_cp"), contract.psm_topic("setpoint_cp"),
    contract.psm_topic("servo_cp"), contract.psm_topic("jaw/measured_js"), contract.psm_topic("jaw/servo_jp"),
    contract.psm_topic("operating_state"), contract.G1_JOINT_STATES, contract.G1_ARM_COMMAND,
    contract.ENDOSCOPE_MEASURED_CP, contract.ENDOSCOPE_FULCRUM_ERROR, contract.ENDOSCOPE_MODE,
    contract.ENDOSCOPE_IMAGE_COMPRESSED, contract.SAFETY_STATE, "/policy/state", contract.SIM_TASK,
    contract.GT_ENDOSCOPE_TIP, contract.GT_PSM_TIP, contract.TELEOP_HEAD, contract.TELEOP_RIGHT, "/diagnostics",
)


@dataclass(frozen=True)
class RecorderConfig:
    topics: tuple[str, ...] = param(DEFAULT_TOPICS, "topics to record (those that exist; others when they appear)")
    out_dir: str = param("recordings", "folder under which each recording gets its own rosbag2 folder")
    discovery_period_s: float = param(1.0, "how often topics that did not exist yet are looked for, s", lo=0.05)
    record_on_start: bool = param(False, "start recording when the node starts (`surgbot up/demo --record`)")

    def __post_init__(self):
        check_ranges(self)
        if not self.topics:
            raise ValueError("topics: at least one topic to record")
        if any(not t.startswith("/") for t in self.topics):
            raise ValueError("topics: absolute names (starting with /) only")


def message_class(msgtype: str):
    """`pkg/msg/Type` -> the Python class (interface packages are plain Python packages)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.cfg: RecorderConfig = declare_config(self, RecorderConfig)
        self.bag: BagWriter | None = None
        self._subs: dict[str, object] = {}
        self._skipped: dict[str, str] = {}
        self.create_service(Trigger, RECORDER_START, trigger_handler(self.start))
        self.create_service(Trigger, RECORDER_STOP, trigger_handler(self.stop))
        self.create_timer(self.cfg.discovery_period_s, self._discover)
        self.diagnostics = Diagnostics(self, NODE_NAME, self._status)
        if self.cfg.record_on_start:
            result = self.start()
            if not result.ok:
                raise ValueError(result.reason)     # run_node reports it and exits non-zero

    def start(self) -> Result[str]:
        if self.bag is not None:
            return Result.failure(f"already recording to {self.bag.path}")
        path = Path(self.cfg.out_dir) / time.strftime("%Y%m%d-%H%M%S")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.bag = BagWriter(path)
        except (OSError, FileExistsError) as exc:
            return Result.failure(f"cannot record to {path}: {exc}")
        self._discover()
        self.get_logger().info(f"recording {len(self.bag.topics)} topics to {path}")
        return Result.success(str(path), reason=str(path))

    def stop(self) -> Result[str]:
        if self.bag is None:
            return Result.failure("not recording")
        bag, self.bag = self.bag, None
        for sub in self._subs.values():
            self.destroy_subscription(sub)
        self._subs.clear()
        bag.close()
        summary = ", ".join(f"{t} {n}" for t, n in sorted(bag.counts.items()))
        self.get_logger().info(f"recording closed: {bag.path} ({summary})")
        return Result.success(str(bag.path), reason=f"{bag.path}: {sum(bag.counts.values())} messages")

    def _discover(self) -> None:
        if self.bag is None:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in self.cfg.topics:
            if topic in self._subs or topic not in types or topic in self._skipped:
                continue
            msgtype = types[topic][0]
            try:
                cls = message_class(msgtype)
                self.bag.add_topic(topic, msgtype)
            except (ImportError, AttributeError, LookupError) as exc:
                self._skipped[topic] = str(exc)
                self.get_logger().warning(f"not recording {topic}: {exc}")
                continue
            self._subs[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic: self._on_raw(t, data), qos_profile_sensor_data, raw=True)

    def _on_raw(self, topic: str, data: bytes) -> None:
        if self.bag is not None:
            self.bag.write(topic, self.get_clock().now().nanoseconds, data)

    def _status(self):
        if self.bag is None:
            return Diagnostics.OK, "idle", {"skipped": len(self._skipped)}
        return Diagnostics.OK, f"recording to {self.bag.path}", {
            "topics": len(self.bag.topics), "messages": sum(self.bag.counts.values()), "skipped": len(self._skipped)}


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args, on_shutdown=lambda node: node.bag is not None and node.stop())


if __name__ == "__main__":
    raise SystemExit(main())
