"""The PSM twin as the dVRK's own Python clients see it (sim in the loop).

The endpoint table below is transcribed from the dVRK's published client
sources, not from our code: dvrk_python `dvrk.psm` (dVRK 2.3/2.4,
jhu-dvrk/dvrk_python) builds an arm with crtk_python_client `crtk.utils`
(`add_operating_state`, `add_setpoint_js`, ... `add_inverse_kinematics`),
children `spatial/`, `body/` (`add_measured_cf`, `add_servo_cf`,
`add_jacobian`), `local/` (`add_measured_cp`, `add_setpoint_cp`,
`add_forward_kinematics`), a `jaw/` child (`add_measured_js`,
`add_setpoint_js`, `add_servo_jp`, `add_move_jp`, `add_servo_jf`) and a few
plain publishers/subscribers.  This test creates exactly those endpoints with
rclpy (QoS as crtk's ral: KEEP_LAST 10, transient-local where it latches)
and requires every one to be connected to the twin, as the dVRK's
`check_connections()` does, and every remote endpoint to carry the type the
dVRK uses.  Then it drives the twin through them: kinematics services
against surgbot.kinematics.psm, bad state commands, bad inputs on the new
command topics, and joint effort applied to the simulated arm.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile

from surgbot.hw.crtk_msgs_path import ensure_crtk_msgs
from surgbot.kinematics import psm
from tests.psm_rig import make_ready, psm_twin_client

pytestmark = pytest.mark.sim

ensure_crtk_msgs()
from crtk_msgs.msg import OperatingState, StringStamped  # noqa: E402
from crtk_msgs.srv import QueryForwardKinematics, QueryInverseKinematics  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Empty, Float64, Float64MultiArray, String  # noqa: E402

NS = "PSM1"
# (relative name, type, "pub" = the client publishes / "sub" = subscribes, latched)
DVRK_PSM_ENDPOINTS = [
    # crtk.utils on the arm (dvrk.arm)
    ("operating_state", OperatingState, "sub", False), ("state_command", StringStamped, "pub", True),
    ("setpoint_js", JointState, "sub", False), ("setpoint_cp", PoseStamped, "sub", False),
    ("measured_js", JointState, "sub", False), ("measured_cp", PoseStamped, "sub", False),
    ("measured_cv", TwistStamped, "sub", False),
    ("hold", Empty, "pub", False), ("free", Empty, "pub", False),
    ("servo_jp", JointState, "pub", False), ("servo_jr", JointState, "pub", False),
    ("servo_cp", PoseStamped, "pub", False), ("servo_jf", JointState, "pub", False),
    ("move_jp", JointState, "pub", False), ("move_jr", JointState, "pub", False),
    ("move_cp", PoseStamped, "pub", False),
    # spatial/ and body/ children
    ("spatial/measured_cf", WrenchStamped, "sub", False), ("spatial/servo_cf", WrenchStamped, "pub", False),
    ("spatial/jacobian", Float64MultiArray, "sub", False),
    ("body/measured_cf", WrenchStamped, "sub", False), ("body/servo_cf", WrenchStamped, "pub", False),
    ("body/jacobian", Float64MultiArray, "sub", False),
    # local/ child
    ("local/measured_cp", PoseStamped, "sub", False), ("local/setpoint_cp", PoseStamped, "sub", False),
    # dvrk.arm's own publishers / subscriber
    ("body/set_cf_orientation_absolute", Bool, "pub", True), ("use_gravity_compensation", Bool, "pub", True),
    ("trajectory_j/set_ratio", Float64, "pub", True), ("trajectory_j/ratio", Float64, "sub", False),
    # dvrk.psm: jaw/ child and tool emulation
    ("jaw/measured_js", JointState, "sub", False), ("jaw/setpoint_js", JointState, "sub", False),
    ("jaw/servo_jp", JointState, "pub", False), ("jaw/move_jp", JointState, "pub", False),
    ("jaw/servo_jf", JointState, "pub", False),
    ("emulate_tool_present", Bool, "pub", True),
]
DVRK_PSM_SERVICES = [("forward_kinematics", QueryForwardKinematics),
                     ("inverse_kinematics", QueryInverseKinematics),
                     ("local/forward_kinematics", QueryForwardKinematics)]
# error/warning/status: the dVRK 2.x ROS 2 bridge (cisst-ros) publishes them as std_msgs/String
DVRK_MESSAGE_TOPICS = [("error", String), ("warning", String), ("status", String)]


def _type_name(typ) -> str:
    return f"{typ.__module__.split('.')[0]}/msg/{typ.__name__}"


def _qos(latched: bool) -> QoSProfile:
    qos = QoSProfile(depth=10)
    if latched:
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    return qos


@pytest.fixture(scope="module")
def twin(module_processes):
    with psm_twin_client(module_processes, "dvrk_python_psm_layout", ("--duration", "400", "--start-home"),
                         up_timeout_s=30.0,
                         streams=("measured_js", "setpoint_js", "jaw/setpoint_js", "spatial/measured_cf",
                                  "spatial/jacobian", "local/measured_cp")) as client:
        yield client


def _ready(arm) -> None:
    make_ready(arm, home_timeout_s=15.0)
    arm.hold()


def test_every_endpoint_of_the_dvrk_python_psm_connects_with_the_dvrk_types(twin):
    # A node of its own, never spun: matching and graph queries need no executor, and
    # destroying ~40 entities of the client's spinning node is a race this test need not run.
    node = rclpy.create_node("dvrk_python_psm_endpoints")
    endpoints = []
    for name, typ, kind, latched in DVRK_PSM_ENDPOINTS:
        topic = f"/{NS}/{name}"
        if kind == "pub":
            endpoints.append((topic, typ, node.create_publisher(typ, topic, _qos(latched))))
        else:
            endpoints.append((topic, typ, node.create_subscription(typ, topic, lambda m: None, _qos(latched))))
    services = [(f"/{NS}/{name}", node.create_client(typ, f"/{NS}/{name}")) for name, typ in DVRK_PSM_SERVICES]
    try:
        def unconnected():
            out = [t for t, _, e in endpoints
                   if (e.get_subscription_count() if hasattr(e, "get_subscription_count")
                       else e.get_publisher_count()) == 0]
            return out + [t for t, c in services if not c.service_is_ready()]

        deadline = time.monotonic() + 20.0           # check_connections()' loop, with a longer timeout
        while unconnected() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert unconnected() == []
        # the twin's side of each topic has the dVRK's type
        for topic, typ, e in endpoints:
            infos = (node.get_subscriptions_info_by_topic(topic) if hasattr(e, "get_subscription_count")
                     else node.get_publishers_info_by_topic(topic))
            remote = {i.topic_type for i in infos if i.node_name not in (node.get_name(), twin.node.get_name())}
            assert remote == {_type_name(typ)}, (topic, remote)
        for name, typ in DVRK_MESSAGE_TOPICS:
            infos = node.get_publishers_info_by_topic(f"/{NS}/{name}")
            assert {i.topic_type for i in infos} == {_type_name(typ)}, name
        state_pub = [i for i in node.get_publishers_info_by_topic(f"/{NS}/operating_state")]
        assert state_pub and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in state_pub)
    finally:
        node.destroy_node()


def test_kinematics_services_agree_with_our_kinematics_to_1e9(twin):
    rng = np.random.default_rng(3)
    for _ in range(10):
        q = rng.uniform(psm.LOWER, psm.UPPER)
        q[2] = rng.uniform(psm.MIN_IK_INSERTION, psm.UPPER[2])
        T = twin.forward_kinematics(q)
        np.testing.assert_allclose(T, psm.fk(q), atol=1e-9)
        q_ik = twin.inverse_kinematics(T, seed=q + 0.01)
        np.testing.assert_allclose(q_ik, psm.ik(psm.fk(q), seed=q + 0.01).q, atol=1e-9)
        np.testing.assert_allclose(psm.fk(q_ik), psm.fk(q), atol=1e-9)
    from surgbot.hw.crtk import CRTKError
    with pytest.raises(CRTKError, match="6"):
        twin.forward_kinematics([0.0] * 5)
    with pytest.raises(CRTKError):
        twin.forward_kinematics([0.0, 0.0, math.nan, 0.0, 0.0, 0.0])


def test_jacobian_and_measured_cf_topics(twin):
    _ready(twin)
    q, _ = twin.measured_js()
    J = twin.jacobian()
    for i in range(6):                               # J column i = d(tip position)/dq_i, finite differences
        dq = np.zeros(6)
        dq[i] = 1e-6
        dp = (psm.fk(q + dq)[:3, 3] - psm.fk(q)[:3, 3]) / 1e-6
        np.testing.assert_allclose(J[:3, i], dp, atol=1e-5)
    w, _ = twin.measured_cf()
    np.testing.assert_array_equal(w, np.zeros(6))    # nothing touches the arm in the psm-only world
    T_local, _ = twin.local_measured_cp()
    np.testing.assert_allclose(T_local[:3, 3], psm.fk(q)[:3, 3], atol=2e-3)


@pytest.mark.parametrize("state", ["DISABLED", "ENABLED"])
def test_bad_state_commands_warn_on_the_dvrk_channel_and_change_nothing(twin, state):
    if state == "DISABLED":
        twin.disable()
    else:
        _ready(twin)
    time.sleep(0.3)
    before = twin.operating_state()
    q0, _ = twin.setpoint_js()
    n_warn, n_err = len(twin.warnings), len(twin.errors)
    bad = ["fly", "", "ENABLE", "home now", "resume"]   # resume: known, but not accepted when DISABLED/ENABLED
    for cmd in bad:
        twin.state_command(cmd)
    deadline = time.monotonic() + 5.0
    while len(twin.warnings) < n_warn + len(bad) and time.monotonic() < deadline:
        time.sleep(0.05)
    new = twin.warnings[n_warn:]
    assert len(new) == len(bad), new
    assert "'fly'" in new[0] and "''" in new[1] and "'ENABLE'" in new[2]
    assert new[4] == f"command resume is not supported in state {state}"
    time.sleep(0.6)                                   # longer than a power-up: nothing started
    assert twin.operating_state() == before
    np.testing.assert_array_equal(twin.setpoint_js()[0], q0)
    assert len(twin.errors) == n_err


_PUBS: dict = {}


def _publish(twin, node, topic: str, msg) -> None:
    """Publish on a topic of the twin (publisher kept: one destroyed at once may lose its message)."""
    pub = _PUBS.get(topic)
    if pub is None:
        pub = _PUBS[topic] = node.create_publisher(type(msg), f"/{NS}/{topic}", 10)
        deadline = time.monotonic() + 5.0
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    pub.publish(msg)


def _bad_new_commands():
    nan6 = [0.0, 0.0, math.nan, 0.0, 0.0, 0.0]
    return [
        ("servo_jr", JointState(position=nan6), "NaN"),
        ("servo_jr", JointState(position=[0.01] * 5), "6 positions"),
        ("move_jr", JointState(position=[0.0, 0.0, 0.5, 0.0, 0.0, 0.0]), "limits"),
        ("move_jr", JointState(position=[0.0] * 7), "6 positions"),
        ("servo_jf", JointState(effort=nan6), "NaN"),
        ("servo_jf", JointState(effort=[0.1] * 3), "6 positions"),
        ("servo_jf", JointState(effort=[100.0, 0, 0, 0, 0, 0]), "actuator range"),
        ("jaw/servo_jf", JointState(effort=[math.inf]), "NaN"),
        ("jaw/servo_jf", JointState(effort=[0.1, 0.1]), "1 position"),
        ("spatial/servo_cf", WrenchStamped(), None),      # filled below with NaN
        ("body/servo_cf", WrenchStamped(), None),         # filled below with 1 kN
        ("trajectory_j/set_ratio", Float64(data=math.nan), "(0, 1]"),
        ("trajectory_j/set_ratio", Float64(data=2.0), "(0, 1]"),
    ]


def test_bad_inputs_on_new_command_topics_one_error_each_and_nothing_moves(twin):
    _ready(twin)
    time.sleep(0.5)
    node = twin.node
    for topic, msg, why in _bad_new_commands():
        if topic == "spatial/servo_cf":
            msg.wrench.force.x, why = math.nan, "NaN"
        elif topic == "body/servo_cf":
            msg.wrench.force.z, why = 1000.0, "actuator range"
        q0, _ = twin.measured_js()
        sp0, _ = twin.setpoint_js()
        before = len(twin.errors)
        _publish(twin, node, topic, msg)
        deadline = time.monotonic() + 3.0
        while len(twin.errors) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        new = twin.errors[before:]
        assert len(new) == 1 and why in new[0], (topic, why, new)
        np.testing.assert_array_equal(twin.setpoint_js()[0], sp0, err_msg=topic)
        assert np.abs(twin.measured_js()[0] - q0).max() < 5e-4, topic
    assert twin.operating_state()["state"] == "ENABLED"


def test_servo_jf_is_applied_as_joint_effort(twin):
    """An insertion force F on the gravity-compensated arm: terminal speed F / kv (psm.xml kv = 63 N s/m)."""
    _ready(twin)
    twin.move_jp(psm.HOME).wait(10.0)
    time.sleep(0.5)
    twin.free()                                       # zero effort, gravity compensated: the arm stays
    time.sleep(0.5)
    q0, _ = twin.measured_js()
    time.sleep(0.5)
    q1, _ = twin.measured_js()
    assert np.abs(q1 - q0).max() < 1e-3, q1 - q0
    force = 0.5
    twin.servo_jf([0.0, 0.0, force, 0.0, 0.0, 0.0])
    time.sleep(0.3)                                   # time constant (m + armature) / kv ~ 10 ms
    speeds = []
    for _ in range(10):                               # the simulated joint velocity, not wall-clock stamps
        speeds.append(twin.measured_jv()[0][2])
        time.sleep(0.02)
    assert np.median(speeds) == pytest.approx(force / 63.0, rel=0.1), speeds
    qb, _ = twin.measured_js()
    sp, _ = twin.setpoint_js()
    assert abs(sp[2] - qb[2]) < 0.01                  # effort mode: the setpoint follows the arm
    twin.hold()
    time.sleep(0.3)
    qh, _ = twin.measured_js()
    time.sleep(0.5)
    assert abs(twin.measured_js()[0][2] - qh[2]) < 1e-3
    assert twin.operating_state()["state"] == "ENABLED"


def test_operating_state_service_and_trajectory_ratio(twin):
    _ready(twin)
    from crtk_msgs.srv import TriggerOperatingState
    node = twin.node
    client = node.create_client(TriggerOperatingState, f"/{NS}/operating_state")
    got: list[float] = []
    sub = node.create_subscription(Float64, f"/{NS}/trajectory_j/ratio", lambda m: got.append(m.data),
                                   _qos(True))
    try:
        assert client.wait_for_service(timeout_sec=10.0)
        done = threading.Event()
        future = client.call_async(TriggerOperatingState.Request())
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(10.0)
        st = future.result().operating_state
        assert (st.state, st.is_homed, st.is_busy) == ("ENABLED", True, False)
        twin.trajectory_j_set_ratio(0.5)
        deadline = time.monotonic() + 5.0
        while (not got or got[-1] != 0.5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got and got[-1] == 0.5
        twin.trajectory_j_set_ratio(1.0)
    finally:
        node.destroy_client(client)
        node.destroy_subscription(sub)


def test_subscribe_operating_state_helper_sees_the_twin(twin):
    from surgbot.hw.crtk import subscribe_operating_state
    got: list[dict] = []
    sub = subscribe_operating_state(twin.node, got.append)
    try:
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:       # transient-local: the current state at once
            time.sleep(0.05)
        assert got and got[-1] == twin.operating_state()
    finally:
        twin.node.destroy_subscription(sub)
