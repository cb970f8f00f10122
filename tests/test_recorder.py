"""The recorder node writes rosbag2/MCAP folders that rosbags and the mcap reader open."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from surgbot import contract
from surgbot.recording import BagWriter
from tests.conftest import PYTHON
from tests.test_safety_supervisor import _call
from tests.test_sim import _wait_for, listener_node

pytestmark = pytest.mark.sim


def test_bag_writer_refuses_to_write_over_an_existing_folder(tmp_path):
    (tmp_path / "bag").mkdir()
    with pytest.raises(FileExistsError):
        BagWriter(tmp_path / "bag")


def test_bag_writer_names_an_unknown_type(tmp_path):
    bag = BagWriter(tmp_path / "bag", share_dirs=[])
    with pytest.raises(LookupError, match="no definition of nosuch_msgs/msg/Thing"):
        bag.add_topic("/x", "nosuch_msgs/msg/Thing")
    bag.close()


def test_recorder_records_the_psm_twin(processes, tmp_path):
    processes.start([PYTHON, "-m", "surgbot.sim.psm_twin", "--duration", "300"], name="psm_twin")
    rec = processes.start([PYTHON, "-m", "surgbot.nodes.recorder", "--ros-args", "-p", f"out_dir:={tmp_path}",
                           "-p", "discovery_period_s:=0.2"], name="recorder")
    topics = [contract.psm_topic("measured_js"), contract.psm_topic("measured_cp")]
    with listener_node("test_recorder_client") as (node, ex):
        from sensor_msgs.msg import JointState
        got = []
        node.create_subscription(JointState, topics[0], lambda _m: got.append(1), 10)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or len(got) > 20, 60), processes.log(rec)
        r = _call(node, ex, "/recorder/start", timeout=30)
        assert r.success, r.message
        time.sleep(3.0)
        assert not _call(node, ex, "/recorder/start").success          # one recording at a time
        r = _call(node, ex, "/recorder/stop")
        assert r.success and "messages" in r.message, r.message
        assert not _call(node, ex, "/recorder/stop").success
    assert processes.stop(rec, signal.SIGINT) == 0, processes.log(rec)
    bag = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))

    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        for t in topics:
            assert counts.get(t, 0) > 100, counts          # ~2-3 s at 100 Hz
        conn = next(c for c in reader.connections if c.topic == topics[0])
        _, stamp, raw = next(reader.messages(connections=[conn]))
        msg = reader.deserialize(raw, conn.msgtype)
        assert list(msg.name) == list(contract.PSM_JOINT_NAMES) and np.all(np.isfinite(msg.position))
    with open(next(bag.glob("*.mcap")), "rb") as f:
        summary = make_reader(f).get_summary()
        assert {ch.topic for ch in summary.channels.values()} >= set(topics)
        assert {s.name for s in summary.schemas.values()} >= {"sensor_msgs/msg/JointState"}
