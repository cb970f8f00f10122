"""Ground-layer modules: geometry, config dataclasses, pacing, results (checked against independent math)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from surgbot import config, geometry
from surgbot.pacing import Pacer
from surgbot.results import Result

RNG = np.random.default_rng(7)


def _axis_angle(axis, angle):
    """Rodrigues' formula: an independent way to build a rotation."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_quaternion_of_a_known_rotation():
    # 90 deg about z: (x, y, z, w) = (0, 0, sin 45, cos 45)
    s = math.sqrt(0.5)
    R = geometry.quat_to_matrix((0, 0, s, s))
    np.testing.assert_allclose(R, _axis_angle([0, 0, 1], math.pi / 2), atol=1e-12)
    np.testing.assert_allclose(geometry.matrix_to_quat(R), (0, 0, s, s), atol=1e-12)


def test_quaternion_round_trip_over_random_rotations_including_near_180_deg():
    for k in range(500):
        angle = math.pi - 1e-9 if k % 50 == 0 else RNG.uniform(0, math.pi)
        R = _axis_angle(RNG.normal(size=3), angle)
        q = geometry.matrix_to_quat(R)
        assert q[3] >= 0
        np.testing.assert_allclose(geometry.quat_to_matrix(q), R, atol=1e-9)


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
def test_half_turns_take_each_branch_and_a_pose_message_gets_plain_floats(axis):
    from geometry_msgs.msg import PoseStamped

    T = np.eye(4)
    T[:3, :3] = _axis_angle(axis, math.pi)              # trace -1: the branch of the largest diagonal
    T[:3, 3] = (0.1, -0.2, 0.3)
    msg = geometry.matrix_to_pose_msg(T, PoseStamped())
    o, p = msg.pose.orientation, msg.pose.position
    np.testing.assert_allclose(np.abs([o.x, o.y, o.z, o.w]), [*np.abs(axis), 0.0], atol=1e-12)
    assert (p.x, p.y, p.z) == (0.1, -0.2, 0.3)
    with pytest.raises(ValueError):
        geometry.matrix_to_quat(np.full((3, 3), np.nan))


@pytest.mark.parametrize("q", [(0, 0, 0, 0), (float("nan"), 0, 0, 1), (0, 0, float("inf"), 1), (1, 2, 3)])
def test_bad_quaternions_are_rejected(q):
    with pytest.raises(ValueError):
        geometry.quat_to_matrix(q)


def test_strict_norm_rejects_non_unit_quaternions():
    with pytest.raises(ValueError, match="norm"):
        geometry.quat_to_matrix((0, 0, 0, 2), strict_norm=True)
    geometry.quat_to_matrix((0, 0, 0, 1.001), strict_norm=True)


def test_rot6d_is_the_first_two_columns_and_round_trips():
    R = _axis_angle([1, 2, 3], 1.1)
    v = geometry.matrix_to_rot6d(R)
    np.testing.assert_array_equal(v, [R[0, 0], R[1, 0], R[2, 0], R[0, 1], R[1, 1], R[2, 1]])
    np.testing.assert_allclose(geometry.rot6d_to_matrix(v), R, atol=1e-12)
    # a perturbed 6D vector still maps to a rotation (Gram-Schmidt)
    assert geometry.is_rotation(geometry.rot6d_to_matrix(v + RNG.normal(scale=0.05, size=6)))


@pytest.mark.parametrize("v", [np.zeros(6), [1, 0, 0, 2, 0, 0], [1, 0, 0, float("nan"), 1, 0], [1, 0, 0]])
def test_degenerate_6d_rotations_are_rejected(v):
    with pytest.raises(ValueError):
        geometry.rot6d_to_matrix(v)


def test_pose10_round_trip_and_transform_inverse():
    T = np.eye(4)
    T[:3, :3] = _axis_angle([0, 1, 1], 0.7)
    T[:3, 3] = [0.01, -0.02, 0.15]
    v = geometry.pose10_from_matrix(T, 0.3)
    assert v.shape == (10,) and v.dtype == np.float32
    T2, jaw = geometry.matrix_from_pose10(v)
    np.testing.assert_allclose(T2, T, atol=1e-6)
    assert jaw == pytest.approx(0.3)
    np.testing.assert_allclose(geometry.invert_transform(T) @ T, np.eye(4), atol=1e-12)
    assert geometry.rotation_angle(np.eye(3), _axis_angle([0, 0, 1], 0.25)) == pytest.approx(0.25)


def test_stamps_round_trip():
    @dataclass
    class Time:
        sec: int = 0
        nanosec: int = 0

    st = geometry.sec_to_stamp(12.000000345, Time())
    assert (st.sec, st.nanosec) == (12, 345)
    assert geometry.stamp_to_ns(st) == 12_000_000_345
    assert geometry.stamp_to_sec(st) == pytest.approx(12.000000345)
    with pytest.raises(ValueError):
        geometry.sec_to_stamp(float("nan"), Time())


@dataclass(frozen=True)
class _Inner:
    gain: float = config.param(2.0, "a gain, 1/s", lo=0.0)


@dataclass(frozen=True)
class _Cfg:
    rate_hz: float = config.param(500.0, "loop rate, Hz", lo=1.0)
    name: str = config.param("x", "a name")
    limits_m: tuple[float, ...] = config.param((0.02, 0.15), "depth range, m")
    fulcrum: tuple[float, ...] | None = config.param(None, "fulcrum in world, m; unset: captured at start")
    inner: _Inner = field(default_factory=_Inner)

    def __post_init__(self):
        if self.rate_hz <= 0:
            raise ValueError("rate_hz must be > 0: it sets the control period")


def test_config_fields_flatten_nested_configs_with_docs():
    specs = {s.name: s for s in config.fields(_Cfg)}
    assert set(specs) == {"rate_hz", "name", "limits_m", "fulcrum", "inner.gain"}
    assert specs["fulcrum"].optional and specs["fulcrum"].default is None
    assert specs["limits_m"].is_array and specs["limits_m"].kind is float
    assert specs["inner.gain"].help == "a gain, 1/s" and specs["inner.gain"].lo == 0.0


def test_config_build_overrides_only_what_is_given_and_checks_types():
    cfg = config.build(_Cfg, {"inner.gain": 3, "fulcrum": [0, 0, 1]})
    assert cfg.inner.gain == 3.0 and cfg.fulcrum == (0.0, 0.0, 1.0) and cfg.rate_hz == 500.0
    with pytest.raises(ValueError, match="unknown"):
        config.build(_Cfg, {"rate": 1.0})
    with pytest.raises(ValueError, match="number"):
        config.build(_Cfg, {"rate_hz": "fast"})
    with pytest.raises(ValueError, match="finite"):
        config.build(_Cfg, {"rate_hz": float("nan")})
    with pytest.raises(ValueError, match="control period"):
        config.build(_Cfg, {"rate_hz": -1.0})


def test_config_from_a_ros_params_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("node:\n  ros__parameters:\n    rate_hz: 250.0\n    inner:\n      gain: 0.5\n")
    cfg = config.config_from_yaml(_Cfg, f, "node")
    assert cfg.rate_hz == 250.0 and cfg.inner.gain == 0.5


def test_pacer_sleeps_when_ahead_and_drops_a_stall():
    now = [0.0]
    stop = threading.Event()
    p = Pacer(clock=lambda: now[0], stop=stop, max_catch_up_s=0.02)
    now[0] = 0.01
    assert p.lag(0.01) == pytest.approx(0.0)
    now[0] = 0.5                      # a 0.49 s stall
    p.pace(0.011)
    assert p.stalls == 1 and p.dropped_s == pytest.approx(0.489)
    assert p.lag(0.011) == pytest.approx(0.0)
    now[0] = 0.51                     # 10 ms behind: caught up without dropping
    p.pace(0.011)
    assert p.stalls == 1


def test_poll_until_answers_as_soon_as_the_condition_holds_and_false_after_the_timeout():
    from surgbot.pacing import poll_until

    calls = []
    assert poll_until(lambda: calls.append(1) or len(calls) >= 3, 5.0, period_s=0.0)
    assert len(calls) == 3                                       # asked no more once it held
    t0 = time.monotonic()
    assert not poll_until(lambda: False, 0.05, period_s=0.01)
    assert time.monotonic() - t0 >= 0.05
    late = [False]
    assert poll_until(lambda: late[0], 0.0) is False
    late[0] = True
    assert poll_until(lambda: late[0], 0.0)                      # asked once more at the end


def test_result_convention():
    ok = Result.success(value=3)
    assert ok and ok.value == 3
    bad = Result.failure("not engaged")
    assert not bad and bad.reason == "not engaged" and bad.value is None
    with pytest.raises(ValueError):
        Result.failure("")


@pytest.mark.parametrize("seed", range(5))
def test_rotation_aligning_is_the_smallest_rotation_from_a_to_b(seed):
    rng = np.random.default_rng(seed)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    R = geometry.rotation_aligning(a, b)
    axis = np.cross(a, b)
    angle = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    assert np.allclose(R, _axis_angle(axis, angle), atol=1e-12)      # about a x b, by the angle between them
    assert geometry.is_rotation(R) and np.allclose(R @ a, b, atol=1e-12)


@pytest.mark.parametrize("a", [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.6, 0.8, 0.0)])
def test_rotation_aligning_parallel_and_opposite_vectors(a):
    a = np.array(a)
    assert np.array_equal(geometry.rotation_aligning(a, a), np.eye(3))
    R = geometry.rotation_aligning(a, -a)                             # a half turn about an axis normal to a
    assert geometry.is_rotation(R) and np.allclose(R @ a, -a, atol=1e-12)
    assert geometry.rotation_angle(R, np.eye(3)) == pytest.approx(math.pi, abs=1e-9)


def test_rpy_of_a_quaternion_rebuilds_its_rotation():
    """quat_to_rpy: R = Rz(yaw) Ry(pitch) Rx(roll), checked by composing the three turns back."""
    for q in RNG.normal(size=(20, 4)):
        q /= np.linalg.norm(q)
        roll, pitch, yaw = geometry.quat_to_rpy(q)
        R = _axis_angle([0, 0, 1], yaw) @ _axis_angle([0, 1, 0], pitch) @ _axis_angle([1, 0, 0], roll)
        assert np.allclose(R, geometry.quat_to_matrix(q), atol=1e-9)
    assert geometry.quat_to_rpy((0.0, 0.0, 0.0, 1.0)) == (0.0, 0.0, 0.0)
