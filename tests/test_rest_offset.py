"""RestOffset: the static offset a position-controlled arm needs at rest (where a safety stop freezes it)."""
from __future__ import annotations

import numpy as np
import pytest

from surgbot.control.rest_offset import REST_SPEED_RAD_S, RestOffset

pytestmark = pytest.mark.unit

ZERO = np.zeros(3)


def test_nothing_learnt_yet_freezes_the_targets():
    r = RestOffset(3)
    target = np.array([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(r.freeze(np.zeros(3), target), target)
    np.testing.assert_array_equal(r.freeze(None, target), target)


def test_learns_only_while_still_and_freezes_at_measured_plus_the_offset():
    r = RestOffset(3)
    target = np.array([0.1, 0.2, 0.3])
    offset = np.array([0.004, -0.002, 0.0])
    for _ in range(300):
        assert r.update(target, target - offset, ZERO, ZERO)
    # moving (measured or commanded): the lag is not taken for an offset
    fast = np.array([0.0, 2 * REST_SPEED_RAD_S, 0.0])
    assert not r.update(target, target - 0.1, fast, ZERO)
    assert not r.update(target, target - 0.1, ZERO, -fast)
    assert not r.update(target, np.array([np.nan, 0, 0]), ZERO, ZERO)
    measured = np.array([0.5, -0.5, 1.0])
    np.testing.assert_allclose(r.freeze(measured, target), measured + offset, atol=1e-8)
    r.reset()
    np.testing.assert_array_equal(r.freeze(measured, target), target)


def test_the_average_follows_a_changed_rest_offset_without_jumping_on_one_noisy_sample():
    r = RestOffset(1)
    t = np.array([1.0])
    r.update(t, t - 0.002, np.zeros(1), np.zeros(1))
    r.update(t, t - 0.102, np.zeros(1), np.zeros(1))          # one 0.1 rad outlier
    assert r.freeze(np.zeros(1), t)[0] < 0.002 + 0.1 * 0.05
    for _ in range(500):
        r.update(t, t - 0.003, np.zeros(1), np.zeros(1))
    assert r.freeze(np.zeros(1), t)[0] == pytest.approx(0.003, abs=1e-6)
