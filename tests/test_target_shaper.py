"""TargetShaper (the G1 bridge's rate-limited targets) and the upper-body command check, without the bridge."""

import numpy as np

from surgbot.control.g1_arm import CAUSE_NAMES, N_UPPER, UPPER_NAMES, check_upper_command, upper_limits
from surgbot.control.target_shaper import TargetShaper
from surgbot.safety import checks

LIMITS = np.array([[-1.0, 1.0], [-0.5, 0.5]])


def test_targets_move_at_most_max_velocity_and_stay_inside_limits():
    s = TargetShaper(LIMITS, max_velocity=0.5, command_timeout=0.1)
    s.set_goals(np.array([0, 1]), np.array([0.2, 0.9]), None, now=0.0)   # joint 1's goal beyond its limit
    dq = s.advance(now=0.002, elapsed=0.002)
    np.testing.assert_allclose(s.target, [0.001, 0.001])
    np.testing.assert_allclose(dq, [0.5, 0.5])
    for k in range(2, 1000):
        dq = s.advance(now=0.002 * k, elapsed=0.002)
    np.testing.assert_allclose(s.target, [0.2, 0.5])          # goal reached; the other clipped at its limit
    assert dq[0] == 0.0


def test_velocity_feed_forward_only_at_the_goal_and_only_until_the_timeout():
    s = TargetShaper(LIMITS, max_velocity=0.5, command_timeout=0.1)
    s.set_goals(np.array([0]), np.array([0.0]), np.array([2.0]), now=0.0)   # clipped to max_velocity
    np.testing.assert_allclose(s.advance(now=0.05, elapsed=0.002), [0.5, 0.0])
    np.testing.assert_allclose(s.advance(now=0.11, elapsed=0.002), [0.0, 0.0])   # the commander went silent


def test_hold_stops_where_the_target_is_or_jumps_it():
    s = TargetShaper(LIMITS, max_velocity=0.5, command_timeout=0.1)
    s.set_goals(np.array([0]), np.array([0.8]), np.array([0.3]), now=0.0)
    s.advance(now=0.01, elapsed=0.01)
    here = s.target.copy()
    s.hold()
    np.testing.assert_allclose(s.advance(now=0.02, elapsed=0.002), 0.0)
    np.testing.assert_allclose(s.target, here)
    s.hold(np.array([0.3, -0.2]))
    np.testing.assert_allclose(s.advance(now=0.03, elapsed=0.002), 0.0)
    np.testing.assert_allclose(s.target, [0.3, -0.2])


def test_check_upper_command_refuses_with_a_cause_and_accepts_whole():
    lim = upper_limits()
    ok = check_upper_command(UPPER_NAMES[-2:], [0.1, 0.2], [0.0, 0.1], lim)
    assert ok
    idx, pos, vel = ok.value
    assert list(idx) == [N_UPPER - 2, N_UPPER - 1] and list(pos) == [0.1, 0.2] and list(vel) == [0.0, 0.1]
    cases = [(([], [], None), checks.CAUSE_SHAPE),
             ((UPPER_NAMES[:1], [float("nan")], None), None),
             ((UPPER_NAMES[:1] * 2, [0.0, 0.0], None), CAUSE_NAMES),
             ((["left_hip_pitch_joint"], [0.0], None), CAUSE_NAMES),
             ((["no_such_joint"], [0.0], None), CAUSE_NAMES),
             ((UPPER_NAMES[:1], [lim[0, 1] + 0.1], None), checks.CAUSE_LIMIT)]
    for args, cause in cases:
        res = check_upper_command(*args, lim)
        assert not res, args
        if cause is not None:
            assert res.reason.startswith(cause), res.reason
