"""PolledArrivals: arrival times of a topic read by polling from a node no executor spins (the safety
supervisor's watchdog input).  In-process, real DDS (the session's private ROS domain, conftest)."""

import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.context import Context  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from surgbot.nodes.polled_arrivals import NODE_SUFFIX, PolledArrivals  # noqa: E402
from surgbot.pacing import poll_until  # noqa: E402

TOPIC = "/test_polled_arrivals/js"
DEPTH = 5


@pytest.fixture
def ros():
    ctx = Context()
    rclpy.init(context=ctx)
    owner = rclpy.create_node("polled_owner", context=ctx)
    talker = rclpy.create_node("polled_talker", context=ctx)
    arrivals = PolledArrivals(owner)
    arrivals.add("js", JointState, TOPIC, DEPTH)
    pub = talker.create_publisher(JointState, TOPIC, 10)
    try:
        assert poll_until(lambda: pub.get_subscription_count() >= 1, 20.0), "the reader never matched"
        yield owner, arrivals, pub
    finally:
        arrivals.destroy()
        talker.destroy_node()
        owner.destroy_node()
        rclpy.shutdown(context=ctx)


def test_poll_gives_the_newest_arrival_and_nothing_when_nothing_came(ros):
    owner, arrivals, pub = ros
    assert arrivals.reader.get_name() == owner.get_name() + NODE_SUFFIX
    assert arrivals.poll() == {}
    before = time.monotonic()
    for _ in range(3):
        pub.publish(JointState())
    newest: list[float] = []

    def all_three() -> bool:
        newest.extend(a.t_s for a in arrivals.poll().values())
        return arrivals.taken["js"] == 3
    assert poll_until(all_three, 5.0), arrivals.taken
    after = time.monotonic()
    # the DDS reception time on the monotonic clock: after the first publish, never after the poll
    assert newest and all(before - 0.005 <= t <= after for t in newest), (before, newest, after)
    assert arrivals.poll() == {}                             # taken once: the next poll has nothing new


def test_a_late_poll_keeps_the_newest_messages_and_their_reception_time(ros):
    """A poll long after a burst (a starved tick): the reader kept the newest DEPTH messages, and the
    arrival reported is when the last one came, not when the poll ran."""
    _owner, arrivals, pub = ros
    for _ in range(3 * DEPTH):
        pub.publish(JointState())
    last_sent = time.monotonic()
    time.sleep(0.3)
    got = arrivals.poll()
    assert "js" in got and got["js"].t_s <= last_sent + 0.05, (got, last_sent)
    assert time.monotonic() - got["js"].t_s >= 0.25
    assert DEPTH <= arrivals.taken["js"] <= 3 * DEPTH
    assert isinstance(arrivals.decode("js", got["js"].raw), JointState)


def test_drain_gives_every_message_in_order_with_its_reception_time(ros):
    """The demo observer's use: every message since the last drain (up to DEPTH), oldest first."""
    _owner, arrivals, pub = ros
    sent = []
    for i in range(DEPTH - 1):
        msg = JointState()
        msg.name = [f"m{i}"]
        pub.publish(msg)
        sent.append(time.monotonic())
        time.sleep(0.02)
    got: list = []

    def all_came() -> bool:
        got.extend(arrivals.drain().get("js", []))
        return len(got) == DEPTH - 1
    assert poll_until(all_came, 5.0), len(got)
    assert [arrivals.decode("js", a.raw).name[0] for a in got] == [f"m{i}" for i in range(DEPTH - 1)]
    times = [a.t_s for a in got]
    assert times == sorted(times) and times[-1] - times[0] >= 0.02 * (DEPTH - 2) - 0.01, times
    assert all(t0 - 0.005 <= t <= t0 + 0.5 for t, t0 in zip(times, sent, strict=True)), (times, sent)
    assert arrivals.drain() == {}
