"""SurgVLA as a LeRobot policy: size, language path, save/load round trip, bad input (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.factory import make_policy, make_pre_post_processors

from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy
from surgbot.policies.vla.runtime import CheckpointError, PolicyRuntime, resolve_checkpoint
from tests import vla_fixtures as fx

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


def _features() -> dict:
    """The contract-9 features of the fixtures' 48x64 frames, as SurgVLAConfig keyword arguments."""
    return dict(input_features={"observation.images.endoscope": PolicyFeature(FeatureType.VISUAL, (3, 48, 64)),
                                "observation.state": PolicyFeature(FeatureType.STATE, (10,))},
                output_features={"action": PolicyFeature(FeatureType.ACTION, (10,))})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return fx.make_dataset(tmp_path_factory.mktemp("vla") / "tiny", episodes=2, frames=20)


def _train_steps(policy, pre, ds: LeRobotDataset, steps: int, batch: int = 8) -> None:
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, generator=gen)
    it = iter(loader)
    policy.train()
    for _ in range(steps):
        loss, info = policy.forward(pre(next(it)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert np.isfinite(info["l1_loss"])


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory) -> tuple[Path, SurgVLAPolicy, object, object]:
    """A policy built by LeRobot's make_policy from the dataset, trained 3 steps, saved LeRobot's way."""
    torch.manual_seed(0)
    meta = LeRobotDatasetMetadata("local/tiny", root=dataset)
    cfg = SurgVLAConfig(device="cpu", push_to_hub=False)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ds = LeRobotDataset("local/tiny", root=dataset,
                        delta_timestamps={"action": [i / fx.FPS for i in cfg.action_delta_indices]})
    _train_steps(policy, pre, ds, steps=3)
    out = tmp_path_factory.mktemp("ckpt") / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    policy.eval()
    return out, policy, pre, post


def test_checkpoint_is_small_and_outputs_an_h16_chunk_of_10d_poses(checkpoint):
    path, policy, _, _ = checkpoint
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < fx.CHECKPOINT_LIMIT_BYTES, f"checkpoint {size / 1e6:.1f} MB"
    rt = PolicyRuntime(path)
    img = fx.render(fx.layout(np.random.default_rng(1)), fx.px_to_xyz(24, 32))
    state = np.concatenate([fx.px_to_xyz(24, 32), fx.ROT6D, [0.0]]).astype(np.float32)
    actions, ms = rt.infer(img, state, fx.INSTRUCTIONS["red"])
    assert actions.shape == (16, 10) and actions.dtype == np.float32 and ms > 0
    # untrained-ish: the chunk starts near the current pose (offset head starts at zero)
    assert np.linalg.norm(actions[0, :3] - state[:3]) < 0.05
    meta = rt.metadata()
    assert meta["action_horizon"] == 16 and meta["image_size"] == [fx.H, fx.W]
    assert sorted(meta["instructions"]) == sorted(fx.INSTRUCTIONS.values())


def test_from_pretrained_round_trip_gives_identical_actions(checkpoint):
    path, policy, pre, post = checkpoint
    loaded = SurgVLAPolicy.from_pretrained(path)
    lpre, lpost = make_pre_post_processors(loaded.config, pretrained_path=str(path))
    rng = np.random.default_rng(7)
    for k in range(3):
        img = fx.render(fx.layout(rng), fx.px_to_xyz(20 + k, 30))
        obs = {"observation.images.endoscope": torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0,
               "observation.state": torch.from_numpy(np.concatenate(
                   [fx.px_to_xyz(20 + k, 30), fx.ROT6D, [0.1 * k]]).astype(np.float32))[None],
               "task": fx.INSTRUCTIONS["blue" if k % 2 else "red"]}
        a = post(policy.predict_action_chunk(pre(dict(obs))))
        b = lpost(loaded.predict_action_chunk(lpre(dict(obs))))
        assert torch.equal(a, b)
        c, _ = PolicyRuntime(path).infer(img, obs["observation.state"][0].numpy(), obs["task"])
        np.testing.assert_array_equal(c, a[0].numpy())


def test_language_selects_the_motion():
    """Same image and state, two instructions whose demos go opposite ways: the policy follows the words.

    Ground truth: "move left" demos move x by -STEP per step, "move right" by +STEP.
    """
    torch.manual_seed(0)
    step_m, h = 0.002, 16
    cfg = SurgVLAConfig(device="cpu", image_size=(16, 16), chunk_size=h, push_to_hub=False, dropout=0.0,
                        random_shift_px=0,
                        input_features={"observation.images.endoscope": PolicyFeature(FeatureType.VISUAL, (3, 16, 16)),
                                        "observation.state": PolicyFeature(FeatureType.STATE, (10,))},
                        output_features={"action": PolicyFeature(FeatureType.ACTION, (10,))})
    stats = {"observation.state": {"mean": np.zeros(10), "std": np.full(10, 0.01)},
             "action": {"mean": np.zeros(10), "std": np.full(10, 0.01)},
             "observation.images.endoscope": {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)}}
    policy = SurgVLAPolicy(cfg, dataset_stats=stats)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    words = {-1.0: "move the tool to the left", 1.0: "move the tool to the right"}
    k = torch.arange(1, h + 1, dtype=torch.float32)

    def batch(n: int) -> dict:
        sign = torch.tensor([-1.0, 1.0]).repeat(n // 2)
        state = torch.zeros(n, 10)
        state[:, :3] = torch.rand(n, 3) * 0.01
        action = state[:, None, :].repeat(1, h, 1)
        action[:, :, 0] += sign[:, None] * step_m * k
        return {"observation.images.endoscope": torch.rand(n, 3, 16, 16), "observation.state": state,
                "action": action, "action_is_pad": torch.zeros(n, h, dtype=torch.bool),
                "task": [words[float(s)] for s in sign]}

    opt = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    policy.train()
    for _ in range(60):
        loss, _ = policy.forward(pre(batch(16)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    probe = batch(2)
    with torch.no_grad():
        for sign, text in words.items():
            obs = {"observation.images.endoscope": probe["observation.images.endoscope"][:1],
                   "observation.state": probe["observation.state"][:1], "task": text}
            chunk = post(policy.predict_action_chunk(pre(obs)))[0]
            dx = (chunk[-1, 0] - probe["observation.state"][0, 0]).item()
            # the demo moves h*step = 32 mm; ask for the right side and at least half of it
            assert sign * dx > 0.5 * h * step_m, f"{text!r}: last action moved x by {dx * 1e3:.1f} mm"


def test_bad_checkpoints_are_one_line_errors(checkpoint, tmp_path):
    path, *_ = checkpoint
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no"):
        resolve_checkpoint(tmp_path)
    # same checkpoint, edited to another action size
    other = tmp_path / "a7"
    other.mkdir()
    for f in path.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((other / "config.json").read_text())
    cfg["output_features"]["action"]["shape"] = [7]
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"action size \(7,\)") as exc:
        PolicyRuntime(other)
    assert "\n" not in str(exc.value)
    # another policy type
    act = tmp_path / "act"
    ACTConfig(device="cpu", pretrained_backbone_weights=None).save_pretrained(act)
    (act / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="'act' policy"):
        PolicyRuntime(act)


def test_bad_inputs_are_rejected_before_the_model(checkpoint):
    path, *_ = checkpoint
    rt = PolicyRuntime(path)
    img = np.zeros((fx.H, fx.W, 3), np.uint8)
    state = np.zeros(10, np.float32)
    bad = [
        (img[:-1], state, "x", "image must be"),
        (img.astype(np.float32), state, "x", "image must be"),
        (img, np.zeros(9, np.float32), "x", "state must be"),
        (img, np.full(10, np.nan, np.float32), "x", "NaN"),
        (img, state.astype(np.int64), "x", "state must be"),
        (img, state, "", "instruction"),
        (img, state, 3, "instruction"),
        (img, state, "x" * 1000, "longer"),
    ]
    for image, st, text, match in bad:
        with pytest.raises(ValueError, match=match):
            rt.infer(image, st, text)


def test_crop_cuts_the_same_scene_box_at_any_camera_size():
    """The fractional crop (top, left, height, width) keeps exactly the pixels inside the box: a frame
    painted with its own row/column numbers tells which ones survive, at the recorded 96x128 and at the
    twin's 240x320 (the same view 2.5x larger)."""
    from surgbot.policies.vla.encoder_surgvla import crop_image

    box = (0.0, 0.125, 0.8333, 0.6875)
    for h, w, rows, cols in ((96, 128, (0, 80), (16, 104)), (240, 320, (0, 200), (40, 260))):
        rr, cc = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        frame = torch.stack([rr, cc, torch.zeros_like(rr)])[None]          # 1, 3, h, w
        out = crop_image(frame, box)
        assert out.shape[-2:] == (rows[1] - rows[0], cols[1] - cols[0])
        assert out[0, 0, 0, 0] == rows[0] and out[0, 0, -1, 0] == rows[1] - 1
        assert out[0, 1, 0, 0] == cols[0] and out[0, 1, 0, -1] == cols[1] - 1
    assert crop_image(frame, None) is frame


def test_crop_is_checked_and_applied_inside_the_model():
    """A crop outside the frame is refused; the policy's encoder sees only the crop: pixels outside it
    do not change the actions, pixels inside do."""
    for bad in ((0.5, 0.0, 0.6, 1.0), (0.0, 0.0, 0.0, 1.0), (float("nan"), 0, 1, 1), (0.0, 0.0, 1.0)):
        with pytest.raises(ValueError, match="crop"):
            SurgVLAConfig(crop=bad)
    torch.manual_seed(0)
    cfg = SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), crop=(0.25, 0.25, 0.5, 0.5),
                        input_features={"observation.images.endoscope": PolicyFeature(FeatureType.VISUAL,
                                                                                      (3, 48, 64)),
                                        "observation.state": PolicyFeature(FeatureType.STATE, (10,))},
                        output_features={"action": PolicyFeature(FeatureType.ACTION, (10,))})
    policy = SurgVLAPolicy(cfg)
    for p in policy.model.head[-1].parameters():    # the untrained head outputs zeros: make it respond
        torch.nn.init.normal_(p, std=0.1)
    policy.eval()
    image = torch.rand(1, 3, 48, 64)
    batch = {"observation.state": torch.zeros(1, 10), "observation.language_embedding": torch.zeros(1, 384)}
    base = policy.predict_action_chunk({**batch, "observation.images.endoscope": image})
    outside, inside = image.clone(), image.clone()
    outside[..., :12, :] = 1.0 - outside[..., :12, :]          # rows 0-11: above the crop (rows 12-35)
    inside[..., 20:28, 24:40] = 1.0 - inside[..., 20:28, 24:40]
    same = policy.predict_action_chunk({**batch, "observation.images.endoscope": outside})
    moved = policy.predict_action_chunk({**batch, "observation.images.endoscope": inside})
    assert torch.equal(base, same)
    assert (moved - base).abs().max() > 1e-4


def test_goal_head_is_a_training_only_loss_and_absent_by_default():
    """goal_loss_weight 0 (the default): no goal head, the weights are those of checkpoints made before
    it.  > 0: a head predicting where the episode ends (position), trained from the batch's
    `observation.episode_goal`; its loss is the L1 distance to that goal in normalised action units, so
    a goal equal to the head's own prediction adds nothing.  (At inference it feeds the goal memory:
    test_goal_memory_bends_late_chunks_to_the_first_estimate.)"""
    from surgbot.policies.vla.configuration_surgvla import GOAL_KEY

    feats = _features()
    torch.manual_seed(0)
    plain = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), **feats))
    assert not any(k.startswith("model.goal") for k in plain.state_dict())
    with pytest.raises(ValueError, match="goal_loss_weight"):
        SurgVLAConfig(goal_loss_weight=-1.0)
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32),
                                         goal_loss_weight=2.0, **feats))
    assert any(k.startswith("model.goal") for k in policy.state_dict())
    policy.eval()
    batch = {"observation.images.endoscope": torch.rand(4, 3, 48, 64), "observation.state": torch.randn(4, 10),
             "observation.language_embedding": torch.randn(4, 384), "action": torch.randn(4, 16, 10)}
    base, info = policy.forward(batch)
    assert "goal_l1_loss" not in info                       # no goal in the batch: the action loss only
    with torch.no_grad():
        _, goal = policy._chunk(batch, with_goal=True)
    exact = goal * (policy.action_std[:3] + policy.config.normalization_eps) + policy.action_mean[:3]
    same, info = policy.forward({**batch, GOAL_KEY: torch.cat([exact, torch.zeros(4, 7)], dim=1)})
    assert info["goal_l1_loss"] == pytest.approx(0.0, abs=1e-4) and same.item() == pytest.approx(base.item(), abs=1e-4)
    off = exact + 0.01                                      # 1 cm off in x, y and z
    worse, info = policy.forward({**batch, GOAL_KEY: torch.cat([off, torch.zeros(4, 7)], dim=1)})
    expected = float((0.01 / (policy.action_std[:3] + policy.config.normalization_eps)).mean())
    assert info["goal_l1_loss"] == pytest.approx(expected, rel=1e-3)
    assert worse.item() == pytest.approx(base.item() + 2.0 * expected, rel=1e-3)


def test_goal_from_image_ignores_the_state():
    """goal_from_image: the goal head's estimate depends on the image and the instruction only (an
    absolute position), so it cannot answer "near the tool" from the state; the chunk still uses the state."""
    feats = _features()
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32),
                                         goal_loss_weight=1.0, goal_from_image=True, **feats))
    policy.eval()
    batch = {"observation.images.endoscope": torch.rand(2, 3, 48, 64), "observation.state": torch.randn(2, 10),
             "observation.language_embedding": torch.randn(2, 384)}
    moved = {**batch, "observation.state": batch["observation.state"] + 1.0}
    with torch.no_grad():
        chunk_a, goal_a = policy._chunk(batch, with_goal=True)
        chunk_b, goal_b = policy._chunk(moved, with_goal=True)
        _, goal_c = policy._chunk({**batch, "observation.images.endoscope": torch.rand(2, 3, 48, 64)}, with_goal=True)
    assert torch.equal(goal_a, goal_b) and not torch.allclose(chunk_a, chunk_b)
    assert not torch.allclose(goal_a, goal_c)                # the image decides it
    torch.manual_seed(0)                                     # the default goal head still follows the state
    plain = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32),
                                        goal_loss_weight=1.0, **feats))
    plain.eval()
    with torch.no_grad():
        assert not torch.allclose(plain._chunk(batch, with_goal=True)[1], plain._chunk(moved, with_goal=True)[1])


def test_keypoint_stride_sets_the_keypoint_map_and_is_checked():
    """keypoint_stride: the input-to-keypoint-map downsampling (default 8 as every checkpoint before it:
    an 80x88 crop -> a 10x11 map); 4 halves the cells with the same weights' shapes, so the bundled
    checkpoint (saved without the field) loads unchanged."""
    from surgbot.policies.vla.network_surgvla import SurgVLANet

    def map_size(stride, size=(80, 88)):
        net = SurgVLANet(SurgVLAConfig(keypoint_stride=stride, image_size=size))
        x = torch.zeros(1, 3, *size)
        film = [torch.zeros(1, c) for c in net._split]
        for i, block in enumerate(net.blocks):
            x = block(x, film[2 * i], film[2 * i + 1])
        return tuple(x.shape[2:]), {k: v.shape for k, v in net.state_dict().items()}

    coarse, shapes8 = map_size(8)
    fine, shapes4 = map_size(4)
    assert coarse == (10, 11) and fine == (20, 22) and shapes8 == shapes4
    assert SurgVLAConfig().keypoint_stride == 8
    assert json.loads((resolve_checkpoint("default") / "config.json").read_text()).get("keypoint_stride", 8) == 8
    for bad in (3, 0, 32, True):
        with pytest.raises(ValueError, match="keypoint_stride"):
            SurgVLAConfig(keypoint_stride=bad)


def test_goal_memory_bends_late_chunks_to_the_first_estimate():
    """The goal head's estimate from the first chunk of an episode is remembered; a later chunk that ends
    within goal_memory_radius_m of it is bent linearly to end on it (the first step moves
    by 1/H of the gap), one that ends farther is left alone (with goal_memory_max_jaw_rad, so is one whose
    jaws are open); reset() forgets; 0 chunks or no goal head: off.  The model's outputs are scripted here
    (dataset stats 0/1: one action unit = 1 m)."""
    feats = _features()
    for bad in (dict(goal_memory_chunks=-1), dict(goal_memory_radius_m=-0.01), dict(goal_memory_radius_m=float("nan"))):
        with pytest.raises(ValueError, match="goal_memory"):
            SurgVLAConfig(**bad)

    def scripted(policy, outputs):
        """policy._chunk returns the next (chunk end xyz, goal xyz) of `outputs` as a straight chunk."""
        it = iter(outputs)

        def chunk(batch, with_goal=False):
            end, goal, *jaw = next(it)
            c = torch.zeros(1, 16, 10)
            c[0, :, :3] = torch.linspace(0, 1, 16)[:, None] * torch.tensor(end)[None, :]
            c[0, :, 9] = jaw[0] if jaw else 0.0
            g = None if goal is None else torch.tensor([goal], dtype=torch.float32)
            return (c, g) if with_goal else c
        policy._chunk = chunk

    def ends(policy, n):
        return [policy.predict_action_chunk({})[0, -1, :3].tolist() for _ in range(n)]

    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32),
                                         goal_loss_weight=1.0, **feats))
    assert policy.config.goal_memory_chunks == 1 and policy.config.goal_memory_radius_m == 0.01
    eps = policy.config.normalization_eps
    policy.reset()
    scripted(policy, [((0.095, 0.0, 0.0), (0.100, 0.0, 0.0)),    # first: remembered 0.100; ends 5 mm short
                      ((0.104, 0.0, 0.0), (0.106, 0.0, 0.0)),    # the estimate drifts: bent back to 0.100
                      ((0.130, 0.0, 0.0), (0.131, 0.0, 0.0)),    # ends 30 mm away: left alone
                      ((0.100, 0.004, -0.002), (0.0, 0.0, 0.0)),   # 4.5 mm off: x, y and z bent
                      ((0.100, 0.0, -0.020), (0.0, 0.0, 0.0))])    # under it by 20 mm (a grasp): alone
    got = ends(policy, 5)
    expected = [[0.100, 0, 0], [0.100, 0, 0], [0.130, 0, 0], [0.100, 0, 0], [0.100, 0, -0.020]]
    assert np.allclose(got, expected, atol=10 * eps), got
    policy.reset()
    scripted(policy, [((0.095, 0.0, 0.0), (0.100, 0.0, 0.0))])
    first = policy.predict_action_chunk({})[0, :, 0]
    assert first[0].item() == pytest.approx(0.005 / 16, abs=1e-6)            # the first step: 1/H of the gap
    policy.reset()                                                            # forgets: the new first estimate
    scripted(policy, [((0.045, 0.0, 0.0), (0.050, 0.0, 0.0)), ((0.046, 0.0, 0.0), (0.058, 0.0, 0.0))])
    assert np.allclose(ends(policy, 2), [[0.050, 0, 0], [0.050, 0, 0]], atol=10 * eps)

    policy.config.goal_memory_max_jaw_rad = 0.3                               # closed jaws only
    policy.reset()
    scripted(policy, [((0.095, 0.0, 0.0), (0.100, 0.0, 0.0), 0.9),  # remembered; open jaws: not bent
                      ((0.095, 0.0, 0.0), (0.0, 0.0, 0.0), 0.05),   # closed: bent
                      ((0.095, 0.0, 0.0), (0.0, 0.0, 0.0), 0.5)])   # opening: not bent
    assert np.allclose(ends(policy, 3), [[0.095, 0, 0], [0.100, 0, 0], [0.095, 0, 0]], atol=10 * eps)
    policy.config.goal_memory_max_jaw_rad = None
    with pytest.raises(ValueError, match="goal_memory_max_jaw_rad"):
        SurgVLAConfig(goal_memory_max_jaw_rad=float("nan"))

    policy.config.goal_memory_chunks = 2                                      # two estimates averaged
    policy.reset()
    scripted(policy, [((0.095, 0.0, 0.0), (0.100, 0.0, 0.0)), ((0.1, 0.0, 0.0), (0.104, 0.0, 0.0)),
                      ((0.108, 0.0, 0.0), (0.150, 0.0, 0.0))])
    assert np.allclose(ends(policy, 3), [[0.100, 0, 0], [0.102, 0, 0], [0.102, 0, 0]], atol=10 * eps)

    policy.config.goal_memory_chunks = 0                                      # off
    policy.reset()
    scripted(policy, [((0.095, 0.0, 0.0), (0.100, 0.0, 0.0))])
    assert np.allclose(ends(policy, 1), [[0.095, 0, 0]], atol=1e-6)
    plain = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), **feats))
    plain.reset()                                                             # no goal head: nothing to remember
    scripted(plain, [((0.095, 0.0, 0.0), None)])
    assert np.allclose(ends(plain, 1), [[0.095, 0, 0]], atol=1e-6)


def test_goal_memory_first_grasp_closes_the_jaws_on_the_remembered_point():
    """goal_target first_grasp: a chunk that closes the jaws (open at its first step, below grasp_jaw_rad
    at step k) is moved so that step k lands on the remembered goal, the steps before it ramped (step 0
    moves by 1/(k+1) of the gap), the steps after it shifted as much; once a grasp within the played
    steps (k < n_action_steps) has been sent, nothing more is moved (the lift away from the grasp, a
    second try); a close farther than goal_memory_radius_m is left alone, one past the played steps
    leaves the memory armed.
    Chunks that do not close follow the episode_end rule (reach).  Stats 0/1: one action unit = 1 m."""
    feats = _features()
    for bad in (dict(goal_target="grasp"), dict(grasp_jaw_rad=0.0), dict(grasp_jaw_rad=float("nan"))):
        with pytest.raises(ValueError, match="goal_target|grasp_jaw_rad"):
            SurgVLAConfig(**bad)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), goal_loss_weight=1.0,
                                         goal_target="first_grasp", goal_memory_max_jaw_rad=0.3, **feats))
    eps = policy.config.normalization_eps
    goal = (0.100, 0.0, 0.0)

    def grasping(at, close_step=None, jaw_open=0.9, jaw_closed=0.05, lift=0.0):
        """A chunk that reaches `at` by step 3 and stays (closing at close_step; None: jaw_open all along),
        then rises by `lift` over the steps after the close."""
        c = torch.zeros(1, 16, 10)
        t = torch.arange(16, dtype=torch.float32)
        c[0, :, :3] = (t / 3).clamp(max=1)[:, None] * torch.tensor(at)[None, :]
        c[0, :, 9] = jaw_open
        if close_step is not None:
            c[0, close_step:, 9] = jaw_closed
            c[0, close_step:, 2] += lift * (t[close_step:] - close_step) / (15 - close_step)
        return c

    def play(policy, chunks, goals):
        it = iter(zip(chunks, goals, strict=True))

        def chunk(batch, with_goal=False):
            c, g = next(it)
            return c, torch.tensor([g], dtype=torch.float32)
        policy._chunk = chunk
        return [policy.predict_action_chunk({})[0] for _ in chunks]

    policy.reset()
    miss = (0.097, 0.004, 0.0)                                  # 5 mm sideways of the remembered point
    out = play(policy, [grasping(miss), grasping(miss, close_step=5), grasping(miss, close_step=0, jaw_open=0.05,
                                                                               lift=0.008)],
               [goal, (0.2, 0.0, 0.0), (0.2, 0.0, 0.0)])
    assert torch.allclose(out[0][:, :3], grasping(miss)[0, :, :3], atol=1e-6)     # open jaws all along: alone
    gap = torch.tensor(goal) - torch.tensor(miss)
    assert torch.allclose(out[1][5:, :3], torch.tensor(goal).expand(11, 3), atol=10 * eps)   # closes on the goal
    assert torch.allclose(out[1][0, :3] - grasping(miss, close_step=5)[0, 0, :3], gap / 6, atol=10 * eps)
    assert torch.allclose(out[2][:, :3], grasping(miss, close_step=0, jaw_open=0.05, lift=0.008)[0, :, :3],
                          atol=1e-6)                                                # after the grasp: alone
    policy.reset()
    far = (0.080, 0.0, 0.0)                                     # 20 mm away: alone
    late = grasping(miss, close_step=12)                        # closes after the 8 played steps: moved, armed
    out = play(policy, [grasping(far, close_step=12), late, grasping(miss, close_step=4), grasping(miss, 4)],
               [goal, goal, goal, goal])
    assert torch.allclose(out[0][:, :3], grasping(far, close_step=12)[0, :, :3], atol=1e-6)
    assert torch.allclose(out[1][12:, :3], torch.tensor(goal).expand(4, 3), atol=10 * eps)
    assert torch.allclose(out[2][4:, :3], torch.tensor(goal).expand(12, 3), atol=10 * eps)
    assert torch.allclose(out[3][:, :3], grasping(miss, 4)[0, :, :3], atol=1e-6)    # a second grasp: alone
    policy.reset()                                              # reach: closed throughout, the end is moved
    out = play(policy, [grasping(miss, jaw_open=0.0)], [goal])
    assert torch.allclose(out[0][-1, :3], torch.tensor(goal), atol=10 * eps)
    assert torch.allclose(out[0][0, :3], gap / 16, atol=10 * eps)


def test_goal_encoder_is_a_separate_locator_trained_by_the_goal_loss_alone():
    """goal_encoder: the goal head has its own conv stack (image + instruction, absolute goal): the goal
    ignores the state, the goal loss's gradient reaches the locator and not the action encoder, the
    action loss's reaches the action encoder and not the locator; it needs a goal loss weight."""
    from surgbot.policies.vla.configuration_surgvla import GOAL_KEY
    from surgbot.policies.vla.encoder_surgvla import Locator

    feats = _features()
    with pytest.raises(ValueError, match="goal_encoder"):
        SurgVLAConfig(goal_encoder=True)
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), goal_loss_weight=1.0,
                                         goal_encoder=True, **feats))
    assert isinstance(policy.model.goal, Locator)
    batch = {"observation.images.endoscope": torch.rand(2, 3, 48, 64), "observation.state": torch.randn(2, 10),
             "observation.language_embedding": torch.randn(2, 384), "action": torch.randn(2, 16, 10)}
    policy.eval()
    with torch.no_grad():
        chunk_a, goal_a = policy._chunk(batch, with_goal=True)
        chunk_b, goal_b = policy._chunk({**batch, "observation.state": batch["observation.state"] + 1}, with_goal=True)
    assert torch.equal(goal_a, goal_b) and not torch.allclose(chunk_a, chunk_b)
    policy.train()

    def grads(loss):
        policy.zero_grad()
        loss.backward()
        enc = sum(float(p.grad.abs().sum()) for p in policy.model.blocks.parameters() if p.grad is not None)
        loc = sum(float(p.grad.abs().sum()) for p in policy.model.goal.parameters() if p.grad is not None)
        return enc, loc

    torch.nn.init.normal_(policy.model.head[-1].weight, std=0.01)   # zero at init: no gradient would pass
    _, goal = policy._chunk(batch, with_goal=True)
    enc, loc = grads(goal.sum())
    assert enc == 0.0 and loc > 0.0
    loss, info = policy.forward(batch)                          # no goal in the batch: the action loss only
    enc, loc = grads(loss)
    assert enc > 0.0 and loc == 0.0
    loss, info = policy.forward({**batch, GOAL_KEY: torch.randn(2, 10)})
    assert "goal_l1_loss" in info


def test_scene_input_is_an_action_head_input_checked_and_normalised():
    """scene_dim: the action head also takes observation.environment_state (8 numbers): the chunk depends
    on it, its positions are normalised like the actions' (a scene at the action mean gives zeros there),
    a batch without it or of the wrong width is a clear error; 0 (the default) leaves the model as it was;
    the config accepts only 0 or the summary's length."""
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY

    for bad in (3, -1, True):
        with pytest.raises(ValueError, match="scene_dim"):
            SurgVLAConfig(scene_dim=bad)
    with pytest.raises(ValueError, match="scene_noise_m"):
        SurgVLAConfig(scene_dim=SCENE_DIM, scene_noise_m=float("nan"))
    feats = _features()
    stats = {"action": {"mean": [0.01, -0.02, 0.1] + [0.0] * 7, "std": [0.02] * 10}}
    torch.manual_seed(0)
    plain = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), **feats))
    assert plain.model.scene is None
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), scene_dim=SCENE_DIM,
                                         **feats), dataset_stats=stats)
    torch.nn.init.normal_(policy.model.head[-1].weight, std=0.01)    # zero at init: every chunk would be equal
    batch = {"observation.images.endoscope": torch.rand(2, 3, 48, 64), "observation.state": torch.randn(2, 10),
             "observation.language_embedding": torch.randn(2, 384)}
    scene = torch.tensor([[0.01, -0.02, 0.1, 1.0, 0.0, 0.01, -0.02, 0.1]] * 2)
    policy.eval()
    normalised = policy.normalised_scene({SCENE_KEY: scene})
    assert torch.allclose(normalised[:, [0, 1, 2, 5, 6, 7]], torch.zeros(2, 6), atol=1e-6)
    assert torch.equal(normalised[:, 3:5], scene[:, 3:5])
    with torch.no_grad():
        a = policy._chunk({**batch, SCENE_KEY: scene})
        b = policy._chunk({**batch, SCENE_KEY: scene + 0.01})
    assert not torch.allclose(a, b)
    with pytest.raises(KeyError, match="environment_state"):
        policy._chunk(batch)
    with pytest.raises(ValueError, match=r"\[B, 8\]"):
        policy._chunk({**batch, SCENE_KEY: scene[:, :5]})
    policy.train()
    loss, _ = policy.forward({**batch, SCENE_KEY: scene, "action": torch.randn(2, 16, 10)})
    loss.backward()
    assert float(policy.model.scene[0].weight.grad.abs().sum()) > 0.0


def test_scene_locator_learns_the_summary_and_feeds_the_first_images_estimate_for_the_episode():
    """scene_locator: training gives the action head the true summary and the locator its own L1 loss (its
    gradient reaches only the locator); at inference no summary is needed: the locator's estimate from the
    episode's first image is used for every chunk until reset()."""
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY, SCENE_SEEN_KEY
    from surgbot.policies.vla.encoder_surgvla import Locator

    with pytest.raises(ValueError, match="scene_locator"):
        SurgVLAConfig(scene_locator=True)
    with pytest.raises(ValueError, match="scene_loss_weight"):
        SurgVLAConfig(scene_dim=SCENE_DIM, scene_locator=True, scene_loss_weight=0.0)
    with pytest.raises(ValueError, match="scene_locator_frames"):
        SurgVLAConfig(scene_dim=SCENE_DIM, scene_locator=True, scene_locator_frames=0)
    feats = _features()
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), scene_dim=SCENE_DIM,
                                         scene_locator=True, **feats))
    assert isinstance(policy.model.scene_locator, Locator)
    torch.nn.init.normal_(policy.model.head[-1].weight, std=0.01)
    batch = {"observation.images.endoscope": torch.rand(1, 3, 48, 64), "observation.state": torch.randn(1, 10),
             "observation.language_embedding": torch.randn(1, 384)}
    policy.reset()
    first = policy.predict_action_chunk(batch)                       # no SCENE_KEY needed
    memory = policy._scene_memory.clone()
    later = {**batch, "observation.images.endoscope": torch.rand(1, 3, 48, 64)}
    policy.predict_action_chunk(later)
    assert torch.equal(policy._scene_memory, memory)                  # kept from the first image
    policy.reset()
    policy.predict_action_chunk(later)
    assert not torch.equal(policy._scene_memory, memory)              # a new episode looks again
    policy.reset()
    assert torch.equal(policy.predict_action_chunk(batch), first)
    policy.config.scene_locator_average_px = 1                      # the shift-averaged estimate instead
    policy.reset()
    policy.predict_action_chunk(batch)
    image = policy.prepare_image(batch["observation.images.endoscope"])
    with torch.no_grad():
        averaged = policy.model.scene_locator.averaged(image, batch["observation.language_embedding"], 1)
    assert torch.allclose(policy._scene_memory, averaged) and not torch.allclose(policy._scene_memory, memory)
    policy.config.scene_locator_average_px = 0
    policy.train()
    train_batch = {**batch, SCENE_KEY: torch.randn(1, SCENE_DIM), "action": torch.randn(1, 16, 10)}
    with pytest.raises(KeyError, match="scene_as_reset"):
        policy.forward(train_batch)
    policy.zero_grad()
    unseen, _ = policy.forward({**train_batch, SCENE_SEEN_KEY: torch.zeros(1)})     # a later frame: not taught
    unseen.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in policy.model.scene_locator.parameters())
    train_batch[SCENE_SEEN_KEY] = torch.ones(1)
    loss, info = policy.forward(train_batch)
    assert np.isfinite(info["scene_l1_loss"])
    policy.zero_grad()
    policy._chunk(train_batch).sum().backward()                       # the action path: true summary, no locator
    assert all(p.grad is None for p in policy.model.scene_locator.parameters())
    policy.zero_grad()
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in policy.model.scene_locator.parameters()) > 0.0


def test_scene_relative_adds_the_points_relative_to_the_tool():
    """scene_relative: the scene MLP also gets grasp - tool and place - tool (action units), so moving the
    tool and the scene together by the same offset leaves that part unchanged; it needs scene_dim."""
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY

    with pytest.raises(ValueError, match="scene_relative"):
        SurgVLAConfig(scene_relative=True)
    feats = _features()
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), scene_dim=SCENE_DIM,
                                         scene_relative=True, **feats))
    assert policy.model.scene[0].in_features == SCENE_DIM + 6
    seen = []
    policy.model.scene.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].clone()))
    state = torch.zeros(1, 10)
    scene = torch.tensor([[0.01, -0.02, 0.03, 1.0, 0.0, 0.02, 0.0, 0.01]])
    batch = {"observation.images.endoscope": torch.rand(1, 3, 48, 64), "observation.language_embedding":
             torch.randn(1, 384)}
    policy.eval()
    policy._chunk({**batch, "observation.state": state, SCENE_KEY: scene})
    moved_state = state.clone()
    moved_state[0, :3] = 0.005                       # state stats are identity: metres; the scene moved alike
    moved_scene = scene.clone()
    moved_scene[0, [0, 1, 2, 5, 6, 7]] += 0.005
    policy._chunk({**batch, "observation.state": moved_state, SCENE_KEY: moved_scene})
    assert torch.allclose(seen[0][:, SCENE_DIM:], seen[1][:, SCENE_DIM:], atol=1e-5)
    assert not torch.allclose(seen[0][:, :SCENE_DIM], seen[1][:, :SCENE_DIM])


def test_scene_anchored_positions_follow_the_scene_point_their_weights_pick():
    """scene_anchored: per step the head gives an offset from the tool and from each scene point and a
    softmax weight per anchor; with the grasp point's weight ~1 the chunk's positions are that point plus
    the offset wherever the tool is (a grasp no longer regressed as a long motion), moving with the scene,
    while rotation and jaw stay offsets from the tool's state.  It needs scene_dim; it trains end to end."""
    from surgbot.policies.vla.anchored_surgvla import ANCHORED_STEP_DIM, ANCHORS, anchored_chunk
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY

    with pytest.raises(ValueError, match="scene_anchored"):
        SurgVLAConfig(scene_anchored=True)
    with pytest.raises(ValueError, match="per step"):
        anchored_chunk(torch.zeros(1, 16, 10), torch.zeros(1, 10), torch.zeros(1, SCENE_DIM))
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), scene_dim=SCENE_DIM,
                                         scene_anchored=True, **_features()))
    last = policy.model.head[-1]
    assert last.out_features == 16 * ANCHORED_STEP_DIM
    bias = torch.zeros(16, ANCHORED_STEP_DIM)
    bias[:, 10:13] = torch.tensor([0.0, 0.0, 0.002])        # 2 mm above the grasp point (identity stats: metres)
    bias[:, 9] = 0.3                                         # the jaw: +0.3 from the state's
    bias[:, -ANCHORS + 1] = 30.0                             # the grasp point's weight ~1
    with torch.no_grad():
        last.bias.copy_(bias.reshape(-1))
    batch = {"observation.images.endoscope": torch.rand(1, 3, 48, 64), "observation.language_embedding":
             torch.randn(1, 384)}
    scene = torch.tensor([[0.01, -0.02, 0.03, 1.0, 0.0, 0.02, 0.0, 0.01]])
    policy.eval()
    for tool in (torch.zeros(1, 10), torch.full((1, 10), 0.05)):
        for shift in (0.0, 0.004):
            moved = scene.clone()
            moved[0, [0, 1, 2, 5, 6, 7]] += shift
            chunk = policy._chunk({**batch, "observation.state": tool, SCENE_KEY: moved})
            # (to 1e-5: the stats' eps of 1e-4 on a std of 1)
            assert torch.allclose(chunk[0, :, :3], (moved[0, :3] + torch.tensor([0.0, 0.0, 0.002])).expand(16, 3),
                                  atol=1e-5)
            assert torch.allclose(chunk[0, :, 3:], (tool[0, 3:] + bias[0, 3:10]).expand(16, 7), atol=1e-5)
    policy.train()
    scene.requires_grad_(True)
    loss, _ = policy.forward({**batch, "observation.state": torch.zeros(1, 10), SCENE_KEY: scene,
                              "action": torch.randn(1, 16, 10)})
    loss.backward()
    assert float(last.weight.grad.abs().sum()) > 0.0
    assert float(scene.grad[0, :3].abs().sum()) > 0.0          # the anchor itself, not only the scene MLP


@pytest.mark.parametrize("anchored", [False, True])
def test_jaw_absolute_makes_the_heads_jaw_output_the_command_whatever_the_measured_jaw(anchored):
    """jaw_absolute: the head's jaw output is the (normalised) jaw command itself, not an offset from the
    measured jaw, so a head saying "squeeze at 0.05" says it whether the jaws now measure 1.3 or 0.19 (the
    offset head's fixed point); pose stays relative to the tool (or anchored), with and without scene
    anchoring.  Checkpoints without it are unchanged (default False)."""
    from surgbot.policies.vla.anchored_surgvla import step_dim
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY

    assert SurgVLAConfig().jaw_absolute is False
    extra = dict(scene_dim=SCENE_DIM, scene_anchored=True) if anchored else {}
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), jaw_absolute=True,
                                         **extra, **_features()))
    step = step_dim(anchored)
    bias = torch.zeros(16, step)
    bias[:, :3] = 0.001                                      # 1 mm from the tool (anchored: its weight ~1)
    bias[:, 9] = 0.05                                        # the jaw command (identity stats: radians)
    if anchored:
        bias[:, -3] = 30.0
    with torch.no_grad():
        policy.model.head[-1].bias.copy_(bias.reshape(-1))
    batch = {"observation.images.endoscope": torch.rand(1, 3, 48, 64), "observation.language_embedding":
             torch.randn(1, 384), SCENE_KEY: torch.tensor([[0.01, -0.02, 0.03, 1.0, 0.0, 0.02, 0.0, 0.01]])}
    policy.eval()
    for jaw in (1.3, 0.19):
        state = torch.zeros(1, 10)
        state[0, 9] = jaw
        chunk = policy._chunk({**batch, "observation.state": state})
        assert torch.allclose(chunk[0, :, 9], torch.full((16,), 0.05), atol=1e-5)
        assert torch.allclose(chunk[0, :, :3], torch.full((16, 3), 0.001), atol=1e-5)
    policy.train()
    loss, _ = policy.forward({**batch, "observation.state": torch.zeros(1, 10), "action": torch.randn(1, 16, 10)})
    loss.backward()
    assert float(policy.model.head[-1].weight.grad[9::step].abs().sum()) > 0.0


def test_scene_anchored_yaw_turns_the_jaws_to_the_objects_yaw_nearest_the_tools():
    """scene_anchored_yaw: with the block's anchor weighted ~1 the chunk's rotation is the jaws-down rotation
    at the summary's yaw plus the quarter turn nearest the tool's yaw, whatever the tool's rotation was;
    the world axes are checked (needed, 6 finite numbers, unit and orthogonal) and saved in the config."""
    import math

    from surgbot.policies.vla.anchored_surgvla import ANCHORED_STEP_DIM, ROTATION_ANCHORS, YAW_SYMMETRIES
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM, SCENE_KEY

    axes = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]             # world = the actions' frame
    for bad, error in (({"scene_anchored_yaw": True}, "needs scene_anchored"),
                       ({"scene_anchored": True, "scene_anchored_yaw": True}, "needs scene_world_axes"),
                       ({"scene_anchored": True, "scene_anchored_yaw": True, "scene_world_axes": axes[:5]}, "6"),
                       ({"scene_anchored": True, "scene_anchored_yaw": True,
                         "scene_world_axes": [1.0, 0, 0, 1.0, 0, 0]}, "orthogonal"),
                       ({"scene_anchored": True, "scene_anchored_yaw": True,
                         "scene_world_axes": [math.nan, 0, 0, 0, 1.0, 0]}, "finite")):
        with pytest.raises(ValueError, match=error):
            SurgVLAConfig(scene_dim=SCENE_DIM, **bad)
    torch.manual_seed(0)
    policy = SurgVLAPolicy(SurgVLAConfig(device="cpu", push_to_hub=False, image_size=(24, 32), scene_dim=SCENE_DIM,
                                         scene_anchored=True, scene_anchored_yaw=True, scene_world_axes=axes,
                                         **_features()))
    step = policy.model.step
    assert step == ANCHORED_STEP_DIM + 6 * len(YAW_SYMMETRIES) + ROTATION_ANCHORS
    bias = torch.zeros(16, step)
    bias[:, step - ROTATION_ANCHORS + 1 + YAW_SYMMETRIES.index(4)] = 30.0     # the block's rotation anchor
    with torch.no_grad():
        policy.model.head[-1].bias.copy_(bias.reshape(-1))
    block_yaw = math.radians(10.0)
    scene = torch.tensor([[0.01, -0.02, 0.03, math.cos(4 * block_yaw), math.sin(4 * block_yaw), 0.02, 0.0, 0.01]])
    batch = {"observation.images.endoscope": torch.rand(1, 3, 48, 64), "observation.language_embedding":
             torch.randn(1, 384), SCENE_KEY: scene}
    policy.eval()
    for tool_deg, expected_deg in ((0.0, 10.0), (70.0, 100.0), (-50.0, -80.0)):
        t = math.radians(tool_deg)                      # the tool's jaws-down rotation at that yaw
        state = torch.tensor([[0.0, 0.0, 0.0, math.cos(t), math.sin(t), 0.0, math.sin(t), -math.cos(t), 0.0, 0.0]])
        rot = policy._chunk({**batch, "observation.state": state})[0, :, 3:9]
        e = math.radians(expected_deg)
        want = torch.tensor([math.cos(e), math.sin(e), 0.0, math.sin(e), -math.cos(e), 0.0])
        assert torch.allclose(rot, want.expand(16, 6), atol=1e-3), (tool_deg, rot[0])


def test_yaw_noise_turns_each_summary_by_its_objects_symmetry():
    """scene_yaw_noise_deg: in training the orientation pair of a block's summary (a place point of its own)
    turns by 4x, a needle's by 2x the drawn object yaw, so both objects' yaws scatter by the configured
    std; reach's (0, 0) pair and every position stay; bad settings are refused."""
    import math

    from surgbot.policies.vla.anchored_surgvla import turned_orientation
    from surgbot.policies.vla.configuration_surgvla import SCENE_DIM

    n, std = 4000, 4.0
    gen = torch.Generator().manual_seed(0)
    scene = torch.randn(3 * n, SCENE_DIM, generator=gen)
    needle = slice(n, 2 * n)
    scene[needle, 5:8] = scene[needle, 0:3]                      # needle: the place point is the grasp point
    yaw0 = torch.rand(3 * n, generator=gen) * 2 * math.pi
    scene[:, 3], scene[:, 4] = torch.cos(yaw0), torch.sin(yaw0)
    scene[2 * n:, 3:5] = 0.0                                     # reach: no orientation
    torch.manual_seed(1)
    out = turned_orientation(scene, std)
    assert torch.equal(out[:, 0:3], scene[:, 0:3]) and torch.equal(out[:, 5:8], scene[:, 5:8])
    assert torch.equal(out[2 * n:, 3:5], scene[2 * n:, 3:5])
    turn = torch.atan2(out[:, 4], out[:, 3]) - yaw0
    turn = torch.atan2(torch.sin(turn), torch.cos(turn))          # the pair's turn, wrapped
    for rows, k in ((slice(0, n), 4), (needle, 2)):
        assert math.degrees(float((turn[rows] / k).std())) == pytest.approx(std, rel=0.08)
        assert float(out[rows, 3:5].norm(dim=-1).sub(1).abs().max()) < 1e-5      # still a unit pair
    for bad in (-1.0, float("nan"), 46.0):
        with pytest.raises(ValueError, match="scene_yaw_noise_deg"):
            SurgVLAConfig(scene_dim=SCENE_DIM, scene_yaw_noise_deg=bad)
    with pytest.raises(ValueError, match="scene_yaw_noise_deg needs scene_dim"):
        SurgVLAConfig(scene_yaw_noise_deg=3.0)
