"""`surgbot policy train-locator`'s cores: the pad-plane <-> summary map and the settings' checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgbot.policies.vla.configuration_locator import LocatorTrainingConfig
from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_POSITIONS
from surgbot.policies.vla.train_locator import PLANE_DIM, WORLD_UNIT_M, PadPlaneMap


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _scenes(rng: np.random.Generator, base_T_world: np.ndarray, n: int, height_m: float) -> torch.Tensor:
    """Summaries whose two points lie at one world height (as scene_state puts them), in base coordinates."""
    s = np.zeros((n, SCENE_DIM))
    for lo, hi in SCENE_POSITIONS:
        world = np.c_[rng.uniform(-0.05, 0.05, (n, 2)), np.full(n, height_m), np.ones(n)]
        s[:, lo:hi] = (base_T_world @ world.T).T[:, :3]
    yaw = rng.uniform(-np.pi, np.pi, n)
    s[:, 3], s[:, 4] = np.cos(2 * yaw), np.sin(2 * yaw)
    return torch.from_numpy(s).float()


def test_plane_targets_map_back_to_the_normalised_summary_exactly():
    """The locator learns pad-plane points (world x, y about their mean, WORLD_UNIT_M); the joined
    checkpoint's last layer applies to_summary(): the two together must give the summary normalised like
    the actions, for points the map was not built from."""
    rng = np.random.default_rng(0)
    base_T_world = np.eye(4)
    base_T_world[:3, :3], base_T_world[:3, 3] = _rotation(rng), rng.normal(0, 0.2, 3)
    mean, scale = rng.normal(0, 0.05, 10), rng.uniform(0.005, 0.03, 10)
    plane = PadPlaneMap(base_T_world, _scenes(rng, base_T_world, 50, 0.012), mean, scale)
    assert plane.height_m == pytest.approx(0.012, abs=1e-6)
    test = _scenes(rng, base_T_world, 20, 0.012)
    targets = plane.targets(test)
    assert targets.shape == (20, PLANE_DIM)
    assert float(targets[:, :2].abs().max()) < 0.2 / WORLD_UNIT_M      # plane units, about the centre
    M, off = plane.to_summary()
    got = (targets.double() @ M.double().T + off.double()).numpy()
    want = test.double().numpy().copy()
    for lo, hi in SCENE_POSITIONS:
        want[:, lo:hi] = (want[:, lo:hi] - mean[:3]) / scale[:3]
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("bad", [{"steps": 0}, {"needle_layouts": -1}, {"batch_size": 2.5}, {"lr": float("nan")},
                                 {"weight_decay": -1.0}, {"other_layouts": True},
                                 {"needle_layouts": 60000}])   # would reach the validation seeds
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        LocatorTrainingConfig(**bad)


def test_orientation_error_is_an_object_angle_with_the_symmetry_taken_out():
    """The summary holds (cos k*yaw, sin k*yaw): a needle (k = 2) turned by 10 deg, or by 190 deg (the same
    needle), is 10 deg off; a block (k = 4) turned by 85 deg is 5 deg off."""
    from surgbot.policies.vla.train_locator import orientation_error_deg

    def pair(yaw_deg: float, k: int) -> torch.Tensor:
        a = np.radians(yaw_deg) * k
        return torch.tensor([[np.cos(a), np.sin(a)]], dtype=torch.float64)

    for turn, k, want in ((10, 2, 10), (190, 2, 10), (-80, 2, 80), (85, 4, 5), (0, 2, 0)):
        got = orientation_error_deg(pair(30 + turn, k), pair(30, k), k)
        assert got.shape == (1,) and got[0] == pytest.approx(want, abs=1e-6), (turn, k, got)
