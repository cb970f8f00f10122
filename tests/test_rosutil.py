"""surgbot.rosutil helpers that need no running ROS graph."""

from __future__ import annotations

import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import serialize_message
from sensor_msgs.msg import JointState

from surgbot.rosutil import stamp_of_raw


@pytest.mark.parametrize("msg", [JointState(name=["a", "b"], position=[1.0, 2.0]), PoseStamped()])
def test_the_stamp_is_read_from_the_serialized_bytes(msg):
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_765_000_123, 456_789_012
    msg.header.frame_id = "world"
    assert stamp_of_raw(serialize_message(msg)) == pytest.approx(1_765_000_123.456789012, abs=1e-9)


def test_big_endian_bytes_and_bad_bytes():
    big = bytes([0, 0, 0, 0]) + (7).to_bytes(4, "big", signed=True) + (500_000_000).to_bytes(4, "big")
    assert stamp_of_raw(big) == pytest.approx(7.5)
    with pytest.raises(ValueError, match="too short"):
        stamp_of_raw(b"\x00\x01\x00\x00\x01")
    with pytest.raises(ValueError, match="encapsulation"):
        stamp_of_raw(b"\x12\x34" + bytes(10))
