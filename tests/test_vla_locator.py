"""`surgbot policy train-locator`'s cores: the pad-plane <-> summary map, the settings' checks, and the
locator's anchors and glimpse (policies/vla/encoder_surgvla.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgbot.policies.vla.configuration_locator import LocatorTrainingConfig
from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_POSITIONS, SurgVLAConfig
from surgbot.policies.vla.encoder_surgvla import (
    Glimpse,
    Locator,
    LocatorOutput,
    anchor_loss,
    cell_centres,
    glimpse_source,
    random_shift,
    shifted,
)
from surgbot.policies.vla.train_locator import PLANE_DIM, WORLD_UNIT_M, PadPlaneMap, crop_coordinates


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
                                 {"weight_decay": -1.0}, {"other_layouts": True}, {"peg_layouts": 0},
                                 {"needle_layouts": 60000},   # would reach the validation seeds
                                 {"glimpse_px": -1}, {"glimpse_px": 2.0}, {"anchor_loss_weight": float("inf")},
                                 {"anchor_sigma_cells": 0.0}, {"glimpse_noise_px": -0.5},
                                 {"shift_px": -1}, {"shift_px": 1.5}, {"frame_size": (240,)},
                                 {"frame_size": (240, 8)}, {"frame_size": (240.0, 320)},
                                 {"frame_size": (240, 320), "glimpse_px": 0}])
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


def test_crop_coordinates_put_the_crop_edges_at_minus_and_plus_one():
    crop = (0.0, 0.125, 0.8333, 0.6875)                  # the bundled recipe's: rows 0-80, columns 16-104 of 96x128
    got = crop_coordinates(np.array([[16.0, 0.0], [104.0, 80.0], [60.0, 40.0]]), (96, 128), crop)
    np.testing.assert_allclose(got, [[-1, -1], [1, 1], [0, 0]], atol=1e-9)
    np.testing.assert_allclose(crop_coordinates(np.array([[64.0, 48.0]]), (96, 128), None), [[0, 0]])


def test_random_shift_reports_how_far_the_content_moved():
    """The anchors' targets move with the augmentation: a lone bright pixel ends up where the offsets say."""
    torch.manual_seed(0)
    img = torch.zeros(16, 3, 20, 24)
    img[:, :, 9, 11] = 1.0
    shifted, moved = random_shift(img, 3)
    assert moved.shape == (16, 2) and int(moved.abs().max()) <= 3 and len({tuple(m) for m in moved.tolist()}) > 1
    for b in range(16):
        rows, cols = torch.nonzero(shifted[b, 0] == 1.0, as_tuple=True)
        assert (int(cols[0]), int(rows[0])) == (11 + int(moved[b, 0]), 9 + int(moved[b, 1]))


def test_shifted_moves_the_content_as_random_shift_does():
    img = torch.zeros(1, 3, 20, 24)
    img[:, :, 9, 11] = 1.0
    assert torch.equal(shifted(img, 0, 0), img)
    for dx, dy in ((2, -1), (-3, 3), (0, 1)):
        rows, cols = torch.nonzero(shifted(img, dx, dy)[0, 0] == 1.0, as_tuple=True)
        assert (int(cols[0]), int(rows[0])) == (11 + dx, 9 + dy)


def test_the_averaged_locator_is_the_mean_over_every_shift():
    """scene_locator_average_px: (2n+1)^2 shifted views in one batch, their mean per sample; 0 is the locator
    itself; bad values are refused (the policy's scene memory using it: test_vla_model)."""
    torch.manual_seed(0)
    cfg = SurgVLAConfig(image_size=(40, 48), scene_dim=SCENE_DIM, scene_locator=True, scene_locator_glimpse_px=12)
    loc = Locator(cfg, PLANE_DIM, cfg.scene_locator_glimpse_px).eval()
    img, lang = torch.randn(2, 3, 40, 48), torch.randn(2, cfg.language_dim)
    with torch.no_grad():
        assert torch.equal(loc.averaged(img, lang, 0), loc(img, lang))
        views = [loc(shifted(img, dx, dy), lang) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        mean = torch.stack(views).mean(dim=0)
        assert torch.allclose(loc.averaged(img, lang, 1), mean, atol=1e-5)
        assert not torch.allclose(mean, loc(img, lang), atol=1e-4)           # the shifts do change it
    for bad in (-1, 5, True, 1.0):
        with pytest.raises(ValueError, match="scene_locator_average_px"):
            SurgVLAConfig(scene_dim=SCENE_DIM, scene_locator=True, scene_locator_average_px=bad)


def test_glimpse_reads_the_full_resolution_window_around_its_centre():
    g = Glimpse(6)
    h, w = 20, 24
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = (100.0 * rows + cols).float().expand(2, 3, h, w).contiguous()
    # window centres on pixel corners (x, y in pixels) 10, 8 and 5, 13 -> normalised coordinates
    centre = torch.tensor([[10 / w * 2 - 1, 8 / h * 2 - 1], [5 / w * 2 - 1, 13 / h * 2 - 1]])
    win = g.window(img, centre)
    assert win.shape == (2, 3, 6, 6)
    assert torch.allclose(win[0, 0], img[0, 0, 5:11, 7:13]) and torch.allclose(win[1, 1], img[1, 1, 10:16, 2:8])
    assert g(img, centre).shape == (2, g.out_dim)


def test_anchors_are_the_attention_expectation_and_their_loss_wants_the_target_cell():
    h, w = 10, 11
    centres = cell_centres(h, w)
    assert centres.shape == (h * w, 2) and centres[0].tolist() == pytest.approx([-1 + 1 / w, -1 + 1 / h])
    target = torch.stack([centres[37], centres[80]])[None]         # [1, 2 anchors, 2]
    def output(cells):
        logits = torch.full((1, 2, h * w), -30.0)
        for a, c in enumerate(cells):
            logits[0, a, c] = 30.0
        return LocatorOutput(torch.zeros(1, 1), logits, torch.softmax(logits, -1) @ centres, (h, w))
    right, wrong = output([37, 80]), output([80, 37])
    assert torch.allclose(right.anchors, target, atol=1e-6)
    assert float(anchor_loss(right, target, 0.6)) < float(anchor_loss(wrong, target, 0.6)) - 10


def test_a_locator_with_a_glimpse_looks_where_its_anchor_is_unless_told():
    cfg = SurgVLAConfig(image_size=(40, 48), scene_dim=SCENE_DIM, scene_locator=True, scene_locator_glimpse_px=12)
    loc = Locator(cfg, PLANE_DIM, cfg.scene_locator_glimpse_px).eval()
    img, lang = torch.randn(3, 3, 40, 48), torch.randn(3, cfg.language_dim)
    with torch.no_grad():
        out = loc.locate(img, lang)
        assert out.out.shape == (3, PLANE_DIM) and out.anchors.shape == (3, 2, 2)
        assert out.anchor_logits.shape == (3, 2, 5 * 6)
        assert torch.equal(loc(img, lang), out.out)
        assert torch.equal(loc.locate(img, lang, out.anchors[:, 0]).out, out.out)
        assert not torch.equal(loc.locate(img, lang, out.anchors[:, 0] + 0.3).out, out.out)
    with pytest.raises(ValueError, match="scene_locator_glimpse_px"):
        SurgVLAConfig(scene_dim=SCENE_DIM, scene_locator_glimpse_px=12)          # no locator to look with
    with pytest.raises(ValueError, match="scene_locator_glimpse_px"):
        SurgVLAConfig(image_size=(40, 48), scene_dim=SCENE_DIM, scene_locator=True, scene_locator_glimpse_px=41)


def test_the_appearance_choices_are_the_appearance_shifts():
    """configuration_locator restates them (it must not import cv2/mujoco: `surgbot --help` stays fast)."""
    from surgbot.policies.video.appearance import SHIFTS
    from surgbot.policies.vla.configuration_locator import APPEARANCES

    assert APPEARANCES == SHIFTS
    with pytest.raises(ValueError, match="appearance"):
        LocatorTrainingConfig(appearance="foggy")


def test_a_finer_glimpse_reads_its_own_image_where_the_anchor_is():
    """scene_locator_glimpse_scale: the glimpse reads the crop at that many times the encoder's size (the
    frame's own pixels where they match), centred where the anchor sits in the encoder's image."""
    cfg = SurgVLAConfig(image_size=(20, 22), crop=(0.0, 0.125, 0.8333, 0.6875), scene_dim=SCENE_DIM,
                        scene_locator=True, scene_locator_glimpse_px=8, scene_locator_glimpse_scale=2.5,
                        frame_size=(60, 80))
    frame = torch.randn(2, 3, 60, 80)
    fine = glimpse_source(frame, cfg.crop, cfg.image_size, cfg.scene_locator_glimpse_scale)
    assert torch.equal(fine, frame[..., 0:50, 10:65])                   # 50x55 = 2.5 x 20x22: no resize
    assert glimpse_source(frame, None, (20, 22), 2.0).shape == (2, 3, 40, 44)
    loc = Locator(cfg, PLANE_DIM, cfg.scene_locator_glimpse_px).eval()
    img, lang = torch.randn(2, 3, 20, 22), torch.randn(2, cfg.language_dim)
    with torch.no_grad():
        coarse, finer = loc.locate(img, lang), loc.locate(img, lang, glimpse_image=fine)
        assert torch.equal(coarse.anchors, finer.anchors) and not torch.allclose(coarse.out, finer.out)
        # the fine image matters only around the anchor: changed beyond the 8 px window, the same output
        h, w = fine.shape[-2:]
        centre = (finer.anchors[:, 0] + 1) / 2 * torch.tensor([w, h])                 # [2, (x, y)] px
        rows, cols = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        far = ((cols[None] - centre[:, 0, None, None]).abs() > 6) | ((rows[None] - centre[:, 1, None, None]).abs() > 6)
        moved = torch.where(far[:, None], fine + 5.0, fine)
        assert torch.allclose(loc.locate(img, lang, glimpse_image=moved).out, finer.out, atol=1e-6)
        near = torch.where(far[:, None], fine, fine + 5.0)
        assert not torch.allclose(loc.locate(img, lang, glimpse_image=near).out, finer.out, atol=1e-4)
        assert torch.equal(loc.averaged(img, lang, 0, fine), finer.out)
        # the head is told where the finer glimpse looked (training's glimpse_at), not the encoder's anchor
        # (on an image training shifts): looking at a blank image elsewhere still changes the output
        blank, at = torch.zeros_like(fine), finer.anchors[:, 0]
        looked = loc.locate(img, lang, at, blank).out
        assert torch.allclose(looked, loc.locate(img, lang, glimpse_image=blank).out, atol=1e-6)
        assert not torch.allclose(loc.locate(img, lang, at + 0.2, blank).out, looked, atol=1e-4)
        with pytest.raises(ValueError, match="glimpse image"):
            loc.averaged(img, lang, 1, fine)
    for bad in ({"scene_locator_glimpse_scale": 0.5}, {"scene_locator_glimpse_scale": float("nan")},
                {"scene_locator_glimpse_scale": 5.0}, {"scene_locator_glimpse_scale": True},
                {"scene_locator_glimpse_scale": 2.0, "scene_locator_glimpse_px": 0},
                {"scene_locator_glimpse_scale": 2.0, "scene_locator_average_px": 1},
                {"frame_size": (60,)}, {"frame_size": (60, 8)}, {"frame_size": (60.0, 80)}):
        args = {"image_size": (20, 22), "scene_dim": SCENE_DIM, "scene_locator": True,
                "scene_locator_glimpse_px": 8, **bad}
        with pytest.raises(ValueError, match="glimpse|frame_size|average"):
            SurgVLAConfig(**args)
