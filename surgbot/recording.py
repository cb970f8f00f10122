"""rosbag2 folders with MCAP storage, written without a ROS install (the `recorder` node's core).

`BagWriter` takes CDR-serialised messages as they arrive on the wire (rclpy
raw subscriptions), so nothing is deserialised on the hot path, and writes a
rosbag2 folder (`metadata.yaml` + `.mcap`) with `rosbags`: `ros2 bag info`,
`ros2 bag play`, Foxglove and the `mcap` reader open it.  Message
definitions come from rosbags' Jazzy type store; a type it does not know
(e.g. `crtk_msgs/msg/OperatingState`) is registered from its `.msg` file in
an installed interface package (`share/<pkg>/msg/<Type>.msg`).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

BAG_VERSION = 9                # rosbag2 metadata version written by Jazzy


def _share_dirs() -> list[Path]:
    """Where interface packages keep their .msg files: AMENT_PREFIX_PATH, this venv, the built crtk_msgs."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(Path(sys.prefix))
    return [p / "share" for p in prefixes]


class BagWriter:
    """One rosbag2 folder; `add_topic` once per topic, then `write` raw CDR bytes."""

    def __init__(self, path: str | Path, share_dirs: Iterable[Path] | None = None):
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists: a bag is never written over")
        self.typestore = get_typestore(Stores.ROS2_JAZZY)
        self._share_dirs = list(share_dirs) if share_dirs is not None else _share_dirs()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self.counts: Counter[str] = Counter()

    def _ensure_type(self, msgtype: str) -> None:
        if msgtype in self.typestore.fielddefs:
            return
        pkg, _, name = msgtype.split("/")
        for share in self._share_dirs:
            msg_file = share / pkg / "msg" / f"{name}.msg"
            if msg_file.is_file():
                self.typestore.register(get_types_from_msg(msg_file.read_text(), msgtype))
                return
        raise LookupError(f"no definition of {msgtype} (not a Jazzy type and no {pkg}/msg/{name}.msg installed)")

    def add_topic(self, topic: str, msgtype: str) -> None:
        """`msgtype` as ROS writes it: `pkg/msg/Type`."""
        if topic in self._connections:
            return
        self._ensure_type(msgtype)
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], stamp_ns, data)
        self.counts[topic] += 1

    @property
    def topics(self) -> list[str]:
        return list(self._connections)

    def close(self) -> None:
        self._writer.close()
