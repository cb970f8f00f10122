"""Console protocol (teleop/protocol.py): what a client message must be, the axes, the frame header."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surgbot.teleop import protocol as P

pytestmark = pytest.mark.unit


def xr_pose(R=np.eye(3), p=(0.0, 1.6, 0.0)):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, p
    return P.column_major(m)


def msg(**over):
    m = {"type": "xr", "t": 1234.5, "head": xr_pose(),
         "right": {"pose": xr_pose(p=(0.2, 1.2, -0.3)), "trigger": 0.25, "squeeze": 1.0,
                   "buttons": [0.25, 1.0, 0, 0, 1, 0], "axes": [0, 0, 0.1, -0.9]},
         "left": {"pose": xr_pose(p=(-0.2, 1.2, -0.3)), "trigger": 0.0, "squeeze": 0.9,
                  "buttons": [0, 0.9, 0, 0, 0, 1], "axes": [0, 0, 0, 0], "source": "hand"}}
    m.update(over)
    return m


def parse(m):
    return P.parse_xr(P.loads(json.dumps(m)))


def test_valid_xr_is_converted_to_the_operator_frame():
    s = parse(msg())
    # OpenXR (x right, y up, z back) -> operator (x forward, y left, z up)
    np.testing.assert_allclose(s.right.pose[:3, 3], [0.3, -0.2, 1.2])
    np.testing.assert_allclose(s.head[:3, 3], [0.0, 0.0, 1.6])
    # a head turned 30 deg to the left (about +y_xr) is a +30 deg yaw about the operator's z (up)
    c, sn = math.cos(math.radians(30)), math.sin(math.radians(30))
    R_xr = np.array([[c, 0, sn], [0, 1, 0], [-sn, 0, c]])
    s2 = parse(msg(head=xr_pose(R_xr)))
    np.testing.assert_allclose(s2.head[:3, :3], [[c, -sn, 0], [sn, c, 0], [0, 0, 1]], atol=1e-12)
    assert s.left.source == "hand"
    buttons, axes = s.joy()
    assert buttons[P.BTN_DEADMAN] == 1 and buttons[P.BTN_CLUTCH] == 1
    assert buttons[P.BTN_A] == 1 and buttons[P.BTN_B] == 0 and buttons[P.BTN_Y] == 1
    assert axes[P.AX_RTRIG] == 0.25 and axes[P.AX_RY] == -0.9


@pytest.mark.parametrize("text, reason", [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_shape"),
    ("[" * 50 + "]" * 50, "too_deep"),
    ('{"type": "xr", "t": NaN, "head": []}', "non_finite"),
    ('{"type": "xr", "t": Infinity, "head": []}', "non_finite"),
    ('{"type": "xr", "t": 1e400, "head": []}', "non_finite"),
])
def test_bad_text_rejected_with_its_reason(text, reason):
    with pytest.raises(P.Rejected) as e:
        P.parse_xr(P.loads(text))
    assert e.value.reason == reason


@pytest.mark.parametrize("over, reason", [
    ({"head": [0.0] * 15}, "bad_shape"),
    ({"head": "identity"}, "bad_shape"),
    ({"head": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]}, "not_rigid"),                     # singular
    ({"head": P.column_major(np.diag([2.0, 1, 1, 1]))}, "not_rigid"),
    ({"head": P.column_major(np.diag([1.0, 1, -1, 1]))}, "not_rigid"),                             # mirror
    ({"head": xr_pose(p=(0, 100.0, 0))}, "out_of_range"),
    ({"head": [True] * 16}, "bad_type"),
    ({"t": "now"}, "bad_type"),
    ({"t": -5}, "out_of_range"),
    ({"extra": 1}, "bad_shape"),
    ({"right": {"pose": xr_pose(), "trigger": 1.5}}, "out_of_range"),
    ({"right": {"pose": xr_pose(), "squeeze": "x"}}, "bad_type"),
    ({"right": {"pose": xr_pose(), "buttons": [0] * 20}}, "bad_shape"),
    ({"right": {"pose": xr_pose(), "axes": [2.0]}}, "out_of_range"),
    ({"right": {"pose": xr_pose(), "source": "gaze"}}, "bad_type"),
    ({"right": {"trigger": 0}}, "bad_shape"),
    ({"right": [1, 2]}, "bad_type"),
    ({"left": {"pose": xr_pose(), "evil": 1}}, "bad_shape"),
    # integers JSON allows and a float cannot hold: refused, not an OverflowError out of the parser
    ({"t": 10 ** 400}, "out_of_range"),
    ({"head": [10 ** 400] + [0] * 15}, "out_of_range"),
    ({"right": {"pose": xr_pose(), "trigger": -(10 ** 400)}}, "out_of_range"),
    ({"right": {"pose": xr_pose(), "buttons": [0, 10 ** 400]}}, "out_of_range"),
    ({"right": {"pose": xr_pose(), "axes": [True, None]}}, "bad_type"),
])
def test_bad_xr_rejected_with_its_reason(over, reason):
    with pytest.raises(P.Rejected) as e:
        parse(msg(**over))
    assert e.value.reason == reason


def test_hello_and_ack():
    assert P.parse_hello({"type": "hello", "token": "abc"}) == ("abc", "operator")
    assert P.parse_hello({"type": "hello", "token": "abc", "role": "viewer"}) == ("abc", "viewer")
    for bad in ({"type": "hello"}, {"type": "hello", "token": 5}, {"type": "hello", "token": "a", "role": "root"},
                {"type": "hello", "token": "x" * 1000}):
        with pytest.raises(P.Rejected):
            P.parse_hello(bad)
    assert P.parse_ack({"type": "ack", "seq": 7}) == 7
    for bad in ({"type": "ack"}, {"type": "ack", "seq": -1}, {"type": "ack", "seq": 1.5}, {"type": "ack", "seq": True}):
        with pytest.raises(P.Rejected):
            P.parse_ack(bad)


def test_frame_header_round_trip():
    data = P.pack_frame(42, 1.7e12 + 0.25, b"\xff\xd8jpeg")
    assert len(data) == P.FRAME_HEADER_SIZE + 6
    assert P.unpack_frame(data) == (42, 1.7e12 + 0.25, b"\xff\xd8jpeg")
    with pytest.raises(ValueError):
        P.unpack_frame(b"XXXX" + data[4:])


def test_record_message():
    for action in P.RECORD_ACTIONS:
        assert P.parse_record(P.loads(json.dumps({"type": "record", "action": action}))) == action
    for bad, reason in (({"type": "record"}, "bad_type"),                              # no action
                        ({"type": "record", "action": "erase"}, "bad_type"),
                        ({"type": "record", "action": "START"}, "bad_type"),
                        ({"type": "record", "action": ["start"]}, "bad_type"),
                        ({"type": "record", "action": None}, "bad_type"),
                        ({"type": "record", "action": "start", "episodes": 3}, "bad_shape")):
        with pytest.raises(P.Rejected) as e:
            P.parse_record(bad)
        assert e.value.reason == reason, bad
