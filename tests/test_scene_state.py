"""The scene summary (`observation.environment_state`): what it says about each task's layout, in the
actions' frame, and its rebuilding from a recorded dataset's layout seeds (real MuJoCo environments)."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

from surgbot.policies.data.scene_rows import episode_scene_vectors
from surgbot.policies.vla.configuration_surgvla import SCENE_DIM as MODEL_SCENE_DIM
from surgbot.policies.vla.configuration_surgvla import SCENE_POSITIONS
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.scene_state import SCENE_DIM, SCENE_NAMES, scene_pixels, scene_vector
from surgbot.sim.tasks import get_task

pytestmark = pytest.mark.sim


def _world(env, p_base):
    """A scene position (tool-tip frame origin in PSM1_base) -> the jaw tip in world."""
    u = env.unwrapped
    T = np.eye(4)
    T[:3, 3] = p_base
    return np.linalg.inv(u.to_base(np.eye(4))) @ T @ np.array([0, 0, 0, 1.0]) - [0, 0, u.geo.jaw_length, 1.0]


@pytest.fixture(scope="module")
def envs():
    made = {task: gym.make(ENV_IDS[task], images=False) for task in ("reach", "needle_pick", "peg_transfer")}
    yield made
    for env in made.values():
        env.close()


def test_the_summary_has_one_length_for_the_simulator_and_the_model():
    assert SCENE_DIM == MODEL_SCENE_DIM == len(SCENE_NAMES)
    assert [SCENE_NAMES[lo][:-2] for lo, _ in SCENE_POSITIONS] == ["grasp", "place"]


def test_needle_pick_summary_points_at_the_middle_of_the_wire(envs):
    env = envs["needle_pick"]
    for seed in (1, 2, 3):
        env.reset(seed=seed)
        v = scene_vector(env)
        assert v.shape == (SCENE_DIM,) and v.dtype == np.float32
        u = env.unwrapped
        body = u.model.body("needle").id
        c, R = u.data.xpos[body], u.data.xmat[body].reshape(3, 3)
        tip = _world(env, v[:3])[:3]
        # 12 mm from the needle's centre along its local x (the middle of the 3/8 arc), at pad height
        assert np.linalg.norm(tip[:2] - (c + R @ [0.012, 0, 0])[:2]) < 1e-5
        assert tip[2] == pytest.approx(u.geo.pad_top, abs=1e-5)
        yaw = math.atan2(R[1, 0], R[0, 0]) + math.pi / 2
        assert v[3:5] == pytest.approx([math.cos(2 * yaw), math.sin(2 * yaw)], abs=1e-5)
        assert np.array_equal(v[5:], v[:3])


def _peg_colours(seed: int) -> tuple[str, ...]:
    task = get_task("peg_transfer")
    return task.target_choices(task.layout(seed, np.zeros(2)))


def test_peg_and_reach_summaries_name_the_block_and_the_named_target(envs):
    env = envs["peg_transfer"]
    for colour in _peg_colours(6001):
        env.reset(seed=6001, options={"target": colour})
        v, u = scene_vector(env), env.unwrapped
        assert np.linalg.norm(_world(env, v[5:8])[:2] - u.data.body(f"target_{colour}").xpos[:2]) < 1e-5
        assert np.linalg.norm(_world(env, v[:3])[:2] - u.data.body("block_transfer").xpos[:2]) < 1e-5
        assert np.hypot(v[3], v[4]) == pytest.approx(1.0, abs=1e-5)
    env = envs["reach"]
    env.reset(seed=7, options={"target": "green"})
    v, u = scene_vector(env), env.unwrapped
    assert np.linalg.norm(_world(env, v[:3])[:2] - u.geo.target_point(u.data, "green")[:2]) < 1e-5
    assert list(v[3:5]) == [0.0, 0.0] and np.array_equal(v[5:], v[:3])


def test_rebuilt_from_a_sidecar_it_matches_the_reset_and_bad_sidecars_are_errors(envs, tmp_path):
    first, second = _peg_colours(6001)[0], _peg_colours(6002)[-1]
    meta = {"task": "peg_transfer", "episodes": [
        {"episode_index": 1, "seed": 6002, "task": "peg_transfer", "target": second, "instruction": "x"},
        {"episode_index": 0, "seed": 6001, "task": "peg_transfer",
         "instruction": f"put the block on the {first} target"}]}
    (tmp_path / "meta").mkdir()
    sidecar = tmp_path / "meta" / "surgbot.json"
    sidecar.write_text(json.dumps(meta))
    rows = episode_scene_vectors(tmp_path)
    env = envs["peg_transfer"]
    for i, (seed, colour) in enumerate(((6001, first), (6002, second))):
        env.reset(seed=seed, options={"target": colour})
        assert np.array_equal(rows[i], scene_vector(env))
    for bad in ("{", json.dumps({"episodes": [{"episode_index": 1, "seed": 1, "task": "reach"}]}),
                json.dumps({"episodes": [{"episode_index": 0, "seed": 1, "task": "reach", "instruction": "go"}]}),
                json.dumps({"episodes": [{"episode_index": 0, "seed": 1, "task": "juggle"}]})):
        sidecar.write_text(bad)
        with pytest.raises(ValueError, match="surgbot.json|colour|task"):
            episode_scene_vectors(tmp_path)
    sidecar.unlink()
    with pytest.raises(ValueError, match="surgbot.json"):
        episode_scene_vectors(tmp_path)


# the discs' colours as rendered (lit from above): one channel far above the other two
DISC_CHANNEL = {"red": 0, "green": 1, "blue": 2}


@pytest.mark.parametrize("task", ["reach", "peg_transfer"])
def test_scene_pixels_are_where_the_endoscope_image_shows_the_points(task):
    """The locator's anchors learn from these: projected through each layout's own (randomised) camera,
    the named disc's centre lands on a pixel of that disc's colour in the rendered image; the needle's arc
    middle on a pixel brighter than the pad around it is not asserted (the wire is under a pixel wide)."""
    env = gym.make(ENV_IDS[task], render_mode="rgb_array", image_size=(96, 128))
    try:
        for seed in range(4):
            obs, _ = env.reset(seed=seed)
            px = scene_pixels(env)
            assert px.shape == (2, 2) and np.all(np.isfinite(px))
            assert 0 <= px[1, 0] < 128 and 0 <= px[1, 1] < 96
            rgb = obs["image"][int(px[1, 1]), int(px[1, 0])].astype(int)
            c = DISC_CHANNEL[env.unwrapped.layout.target]
            assert rgb[c] > 150 and rgb[c] > 2 * max(np.delete(rgb, c)), (seed, rgb)
        with pytest.raises(ValueError, match="behind"):
            u = env.unwrapped
            cam = u.model.camera("endoscope_camera").id
            u.image_points(u.data.cam_xpos[cam] - u.data.cam_xmat[cam].reshape(3, 3)[:, 2] * -0.1)
    finally:
        env.close()


def test_the_yaw_anchor_is_the_rotation_the_peg_expert_grasps_with(envs):
    """scene_anchored_yaw's anchor for the block's 4-fold symmetry (from the summary's orientation, the
    tool's start rotation and the twin's world axes, the same for every task) is the rotation the
    peg_transfer expert closes its jaws with, to float precision, on several layouts."""
    import torch

    from surgbot.policies.vla.anchored_surgvla import YAW_SYMMETRIES, yaw_anchors
    from surgbot.sim.envs.experts import make_expert
    from surgbot.sim.envs.scene_state import world_axes_in_base

    for env in envs.values():
        env.reset(seed=0)                          # (the arm is mounted on the first reset)
    axes = {task: world_axes_in_base(env) for task, env in envs.items()}
    assert all(np.allclose(a, axes["reach"]) for a in axes.values())
    env = envs["peg_transfer"]
    block = YAW_SYMMETRIES.index(4)
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        expert = make_expert(env)
        expert.reset()
        anchors = yaw_anchors(torch.tensor(obs["state"][None, 3:9]), torch.tensor(scene_vector(env)[None, 3:5]),
                              torch.tensor(axes["peg_transfer"], dtype=torch.float32))
        opened = False
        for _ in range(400):
            action = expert.act()
            opened = opened or action[9] > 0.3
            if opened and action[9] < 0.1:        # the jaws close on the block
                break
        assert opened and action[9] < 0.1
        assert np.allclose(anchors[0, block].numpy(), action[3:9], atol=1e-4)


def test_a_datasets_world_axes_come_from_its_sidecars_task(envs, tmp_path):
    """`dataset_world_axes`: the twin's axes for the task the sidecar's episodes name (recorded datasets
    name it per episode); a sidecar without a task or with an unknown one is a clear error."""
    from surgbot.policies.data.scene_rows import dataset_world_axes
    from surgbot.sim.envs.scene_state import world_axes_in_base

    env = envs["needle_pick"]
    env.reset(seed=0)
    (tmp_path / "meta").mkdir()
    sidecar = tmp_path / "meta" / "surgbot.json"
    sidecar.write_text(json.dumps({"episodes": [{"episode_index": 0, "seed": 3, "task": "needle_pick"}]}))
    assert np.allclose(dataset_world_axes(tmp_path), world_axes_in_base(env))
    for meta, error in (({"episodes": []}, "no readable"), ({"episodes": [{"task": "juggle"}]}, "unknown task")):
        sidecar.write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=error):
            dataset_world_axes(tmp_path)
