"""crtk_msgs, the dVRK's interface package, as built by scripts/build_interfaces.sh.

The expected definitions are typed out here from collaborative-robotics/crtk_msgs
1.3.0 (not read from our .msg files), so a field that drifts from the dVRK's
fails.  Every type travels once through real DDS (publish -> subscribe, service
call -> response) and through CDR serialization with every field set.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.serialization import deserialize_message, serialize_message

from surgbot.hw.crtk_msgs_path import default_prefix, ensure_crtk_msgs

REPO = Path(__file__).resolve().parents[1]
SOURCE = ensure_crtk_msgs()

from crtk_msgs import msg as crtk_msg  # noqa: E402
from crtk_msgs import srv as crtk_srv  # noqa: E402

# crtk_msgs 1.3.0, field for field (rosidl names the primitive types: bool -> boolean)
MESSAGES = {
    "OperatingState": {"header": "std_msgs/Header", "state": "string", "is_homed": "boolean",
                       "is_busy": "boolean"},
    "StringStamped": {"header": "std_msgs/Header", "string": "string"},
    "CartesianState": {"header": "std_msgs/Header", "pose": "geometry_msgs/Pose",
                       "pose_is_valid": "std_msgs/Bool", "twist": "geometry_msgs/Twist",
                       "twist_is_valid": "std_msgs/Bool", "wrench": "geometry_msgs/Wrench",
                       "wrench_is_valid": "std_msgs/Bool"},
    "CartesianImpedanceHalfPlaneGains": {"p": "geometry_msgs/Vector3", "d": "geometry_msgs/Vector3",
                                         "bias": "geometry_msgs/Vector3", "deadband": "geometry_msgs/Vector3"},
    "CartesianImpedance": {"header": "std_msgs/Header", "force_orientation": "geometry_msgs/Quaternion",
                           "force_position": "geometry_msgs/Vector3",
                           "torque_orientation": "geometry_msgs/Quaternion",
                           "position_positive": "crtk_msgs/CartesianImpedanceHalfPlaneGains",
                           "position_negative": "crtk_msgs/CartesianImpedanceHalfPlaneGains",
                           "orientation_positive": "crtk_msgs/CartesianImpedanceHalfPlaneGains",
                           "orientation_negative": "crtk_msgs/CartesianImpedanceHalfPlaneGains"},
    "SetpointMode": {"value": "uint8"},
    "JointServo": {"header": "std_msgs/Header", "name": "sequence<string>", "position": "sequence<double>",
                   "velocity": "sequence<double>", "effort": "sequence<double>",
                   "mode": "sequence<crtk_msgs/SetpointMode>"},
    "CartesianServo": {"header": "std_msgs/Header", "task_frame": "geometry_msgs/Transform",
                       "pose": "geometry_msgs/Pose", "twist": "geometry_msgs/Twist",
                       "wrench": "geometry_msgs/Wrench", "axis_mode": "crtk_msgs/SetpointMode[6]"},
}
SERVICES = {
    "QueryForwardKinematics": ({"jp": "sequence<double>", "cp": "geometry_msgs/Pose"},
                               {"cp": "geometry_msgs/Pose", "result": "boolean", "message": "string"}),
    "QueryInverseKinematics": ({"cp": "geometry_msgs/Pose", "jp": "sequence<double>"},
                               {"jp": "sequence<double>", "result": "boolean", "message": "string"}),
    "TriggerOperatingState": ({}, {"operating_state": "crtk_msgs/OperatingState"}),
}
SETPOINT_MODE_CONSTANTS = {"POSITION": 1, "VELOCITY": 2, "EFFORT": 4, "NONE": 0, "P": 1, "V": 2, "PV": 3,
                           "F": 4, "PF": 5, "VF": 6, "PVF": 7}


@pytest.mark.unit
def test_package_is_exactly_the_dvrk_set():
    built = {n for n in dir(crtk_msg) if not n.startswith("_")}
    assert built == set(MESSAGES)
    # rosidl also exposes each service's _Request/_Response/_Event classes
    assert {n for n in dir(crtk_srv) if not n.startswith("_") and "_" not in n} == set(SERVICES)
    sources = REPO / "ros2_ws" / "src" / "crtk_msgs"
    assert {p.stem for p in (sources / "msg").glob("*.msg")} == set(MESSAGES)
    assert {p.stem for p in (sources / "srv").glob("*.srv")} == set(SERVICES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.unit
def test_message_fields_match_the_dvrk_definitions(name):
    assert getattr(crtk_msg, name).get_fields_and_field_types() == MESSAGES[name]


@pytest.mark.parametrize("name", sorted(SERVICES))
@pytest.mark.unit
def test_service_fields_match_the_dvrk_definitions(name):
    srv = getattr(crtk_srv, name)
    request, response = SERVICES[name]
    assert srv.Request.get_fields_and_field_types() == request
    assert srv.Response.get_fields_and_field_types() == response


@pytest.mark.unit
def test_setpoint_mode_constants():
    for key, value in SETPOINT_MODE_CONSTANTS.items():
        assert getattr(crtk_msg.SetpointMode, key) == value


def _filled() -> dict:
    """One instance of every message and service part, every field set to a non-default value."""
    from geometry_msgs.msg import Pose, Quaternion, Vector3
    from std_msgs.msg import Bool

    def header(h, k):
        h.stamp.sec, h.stamp.nanosec, h.frame_id = 1_700_000_000 + k, 123_456_789, f"frame{k}"

    os_ = crtk_msg.OperatingState(state="ENABLED", is_homed=True, is_busy=True)
    header(os_.header, 1)
    ss = crtk_msg.StringStamped(string="home")
    header(ss.header, 2)
    cs = crtk_msg.CartesianState(pose_is_valid=Bool(data=True), twist_is_valid=Bool(data=False),
                                 wrench_is_valid=Bool(data=True))
    header(cs.header, 3)
    cs.pose.position.x, cs.pose.orientation.w, cs.twist.angular.z, cs.wrench.force.y = 0.1, 1.0, -0.3, 2.5
    gains = crtk_msg.CartesianImpedanceHalfPlaneGains(p=Vector3(x=1.0), d=Vector3(y=2.0), bias=Vector3(z=3.0),
                                                      deadband=Vector3(x=0.001))
    ci = crtk_msg.CartesianImpedance(force_orientation=Quaternion(w=1.0), force_position=Vector3(z=0.2),
                                     torque_orientation=Quaternion(x=1.0, w=0.0), position_positive=gains,
                                     position_negative=gains, orientation_positive=gains,
                                     orientation_negative=gains)
    header(ci.header, 4)
    js = crtk_msg.JointServo(name=["yaw", "pitch"], position=[0.1, 0.2], velocity=[0.3, 0.4],
                             effort=[0.5, 0.6], mode=[crtk_msg.SetpointMode(value=crtk_msg.SetpointMode.PV),
                                                      crtk_msg.SetpointMode(value=crtk_msg.SetpointMode.F)])
    header(js.header, 5)
    cserv = crtk_msg.CartesianServo(pose=Pose(), axis_mode=[crtk_msg.SetpointMode(value=v) for v in range(6)])
    header(cserv.header, 6)
    cserv.task_frame.translation.x, cserv.twist.linear.y, cserv.wrench.torque.z = 0.5, 0.6, 0.7
    fk_req = crtk_srv.QueryForwardKinematics.Request(jp=[0.0, 0.1, 0.12, 0.0, 0.2, -0.2])
    fk_req.cp.position.z = -0.1
    fk_res = crtk_srv.QueryForwardKinematics.Response(result=True, message="ok")
    fk_res.cp.orientation.w = 1.0
    ik_req = crtk_srv.QueryInverseKinematics.Request(jp=[0.0] * 6)
    ik_req.cp.position.x = 0.01
    ik_res = crtk_srv.QueryInverseKinematics.Response(jp=[0.1] * 6, result=False, message="unreachable")
    tr_res = crtk_srv.TriggerOperatingState.Response(operating_state=os_)
    return {"OperatingState": os_, "StringStamped": ss, "CartesianState": cs,
            "CartesianImpedanceHalfPlaneGains": gains, "CartesianImpedance": ci,
            "SetpointMode": crtk_msg.SetpointMode(value=crtk_msg.SetpointMode.PVF), "JointServo": js,
            "CartesianServo": cserv, "fk_req": fk_req, "fk_res": fk_res, "ik_req": ik_req, "ik_res": ik_res,
            "tr_req": crtk_srv.TriggerOperatingState.Request(), "tr_res": tr_res}


@pytest.mark.parametrize("key", sorted(_filled()))
@pytest.mark.unit
def test_cdr_round_trip_keeps_every_field(key):
    msg = _filled()[key]
    back = deserialize_message(serialize_message(msg), type(msg))
    assert back == msg
    assert back is not msg


@pytest.mark.sim
def test_every_type_round_trips_over_dds():
    """Publish each message type and call each service through real DDS, in one process."""
    from std_msgs.msg import Empty  # noqa: F401 - loads std_msgs typesupport first, as a node does

    rclpy.init()
    node = rclpy.create_node("crtk_msgs_round_trip")
    try:
        received: dict[str, object] = {}
        done = threading.Event()
        msgs = {k: v for k, v in _filled().items() if k in MESSAGES}
        pubs = {}
        for name, msg in msgs.items():
            topic = f"/crtk_round_trip/{name}"
            node.create_subscription(type(msg), topic, lambda m, n=name: (received.__setitem__(n, m),
                                     len(received) == len(msgs) and done.set()), 10)
            pubs[name] = node.create_publisher(type(msg), topic, 10)
        filled = _filled()

        def serve(kind):
            def handler(request, response):
                assert request == filled[f"{kind}_req"]
                for field in type(response).get_fields_and_field_types():
                    setattr(response, field, getattr(filled[f"{kind}_res"], field))
                return response
            return handler

        for kind, srv in (("fk", crtk_srv.QueryForwardKinematics), ("ik", crtk_srv.QueryInverseKinematics),
                          ("tr", crtk_srv.TriggerOperatingState)):
            node.create_service(srv, f"/crtk_round_trip/{kind}", serve(kind))
        clients = {kind: node.create_client(srv, f"/crtk_round_trip/{kind}") for kind, srv in
                   (("fk", crtk_srv.QueryForwardKinematics), ("ik", crtk_srv.QueryInverseKinematics),
                    ("tr", crtk_srv.TriggerOperatingState))}
        deadline = time.monotonic() + 20.0
        while not done.is_set() and time.monotonic() < deadline:
            for name, msg in msgs.items():
                if name not in received:
                    pubs[name].publish(msg)
            rclpy.spin_once(node, timeout_sec=0.05)
        assert received == msgs
        for kind, client in clients.items():
            assert client.wait_for_service(timeout_sec=10.0), kind
            future = client.call_async(filled[f"{kind}_req"])
            rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
            assert future.result() == filled[f"{kind}_res"], kind
    finally:
        node.destroy_node()
        rclpy.shutdown()


@pytest.mark.unit
def test_loader_uses_the_build_in_the_venv_and_the_build_is_stamped():
    # no ROS workspace provides crtk_msgs on this machine: ours, from <venv>/opt/crtk_msgs
    assert SOURCE == str(default_prefix())
    assert crtk_msg.__file__.startswith(SOURCE)
    assert (default_prefix() / ".surgbot-stamp").is_file()


@pytest.mark.sim
def test_build_script_is_a_no_op_when_nothing_changed():
    stamp = default_prefix() / ".surgbot-stamp"
    before = stamp.stat().st_mtime_ns
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(REPO / "scripts" / "build_interfaces.sh")], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "building" not in out.stderr, out.stderr
    assert stamp.stat().st_mtime_ns == before
    assert time.monotonic() - t0 < 30.0


@pytest.mark.sim
def test_a_crtk_msgs_of_the_environment_is_used_and_never_shadowed(tmp_path):
    """A sourced dVRK workspace puts its crtk_msgs on PYTHONPATH: the loader must leave it alone."""
    theirs = tmp_path / "site" / "crtk_msgs"
    theirs.mkdir(parents=True)
    (theirs / "__init__.py").write_text("WORKSPACE = 'dvrk'\n")
    code = ("import sys; from surgbot.hw.crtk_msgs_path import ensure_crtk_msgs, default_prefix\n"
            "src = ensure_crtk_msgs(); import crtk_msgs\n"
            "assert src == 'environment', src\n"
            "assert crtk_msgs.WORKSPACE == 'dvrk'\n"
            "assert not any(p.startswith(str(default_prefix())) for p in sys.path)\n"
            "print('ok')\n")
    import os
    import sys
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


@pytest.mark.sim
@pytest.mark.timeout(900)          # ~45 s of CPU; minutes of wall time on a loaded 2-core box
def test_colcon_builds_the_interface_package(tmp_path):
    """What a ROS 2 user runs, here against the venv's ROS wheels as the ROS prefix."""
    import os
    import sys

    venv = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv), PYTHONPATH="")
    out = subprocess.run(
        [str(venv / "bin" / "colcon"), "--log-base", str(tmp_path / "log"), "build", "--merge-install",
         "--base-paths", str(REPO / "ros2_ws" / "src"), "--packages-select", "crtk_msgs",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    install = tmp_path / "install"
    assert (install / "share" / "ament_index" / "resource_index" / "rosidl_interfaces" / "crtk_msgs").is_file()
    assert (install / "lib" / "libcrtk_msgs__rosidl_typesupport_fastrtps_c.so").is_file()
    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (site / "crtk_msgs" / "msg" / "_operating_state.py").is_file()
