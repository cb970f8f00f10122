"""`surgbot policy eval` in-process: the harness drives the environment through the node's core and gate,
physics judges; Wilson intervals; bad input; the training frame cache; same layout, other colour.

The policies here are scripted with privileged ground truth (where the named
target is, from the physics state), so what the harness must report is known
independently of any learned model: a policy that goes to the named target
succeeds, one that goes to another colour fails with the task's own reason.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from surgbot.policies.evaluation.harness import (
    PolicyLoadError,
    evaluate,
    load_chunk_policy,
    run_episode,
    wilson_interval,
)
from surgbot.policies.vla.frame_cache import InMemoryDataset
from surgbot.sim.tasks import get_task
from surgbot.sim.tasks.base import COLOURS
from tests import vla_fixtures as fx
from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.unit

H = 16
STEP_M = 0.0015              # oracle speed: 22 mm/s at 15 Hz, below the gate's 6 mm per tick
TOUCH_HEIGHT_M = 0.0005      # jaw tip this far above the disc top (as the expert aims)
SEEDS = (100000, 100001, 100002)


class OracleReach:
    """Reads the colour in the instruction and moves the tool straight to that disc (privileged layout).

    `lie`: go to the next colour instead (a policy that ignores what it is told)."""

    metadata = {"model": "oracle", "checkpoint_id": "oracle", "image_size": [48, 64], "action_horizon": H}

    def __init__(self, env, lie: bool = False):
        self.env = env.unwrapped
        self.lie = lie
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def infer(self, image, state, instruction):
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        self.calls += 1
        colour = next(c for c in COLOURS if c in instruction)
        if self.lie:
            colour = COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)]
        e = self.env
        goal_world = e.geo.target_point(e.data, colour) + [0.0, 0.0, TOUCH_HEIGHT_M + e.geo.jaw_length]
        goal = (np.linalg.inv(e.psm_base) @ np.append(goal_world, 1.0))[:3]
        chunk = np.repeat(np.asarray(state, np.float64)[None], H, axis=0)
        chunk[:, 9] = 0.0                                   # jaws closed
        d = goal - state[:3]
        n = float(np.linalg.norm(d))
        for i in range(H):
            chunk[i, :3] = state[:3] + d * min(1.0, STEP_M * i / n) if n > 0 else state[:3]
        return chunk.astype(np.float32)


@pytest.fixture(scope="module")
def reach_env():
    import gymnasium as gym

    import surgbot.sim.envs  # noqa: F401 - registers the environments
    env = gym.make("surgbot/Reach-v0", render_mode="rgb_array", image_size=(48, 64))
    yield env
    env.close()


class RefusingPolicy:
    """Refuses every frame, as a checkpoint given frames of another size does."""

    metadata = {"model": "refusing", "checkpoint_id": "refusing", "image_size": [48, 64], "action_horizon": H}

    def reset(self) -> None:
        pass

    def infer(self, image, state, instruction):
        raise ValueError("image must be uint8 [96, 128, 3]")


def test_a_policy_that_never_answers_is_named_as_the_failure(reach_env):
    """Every infer raising: the arm holds (nothing but the start pose is commanded), the episode fails,
    and the failure names the policy's error instead of only "horizon reached"."""
    res = run_episode(reach_env, RefusingPolicy(), SEEDS[0])
    assert not res.success and res.infer_calls == 0 and res.policy_errors > 0
    assert res.failure == "policy error: ValueError: image must be uint8 [96, 128, 3]", res.failure


def test_wilson_interval_matches_the_closed_form():
    # Wilson 95 % for 5/10, 0/10, 10/10, 45/50 (the textbook values, z = 1.96)
    for (k, n), (lo, hi) in {(5, 10): (0.2366, 0.7634), (0, 10): (0.0, 0.2775), (10, 10): (0.7225, 1.0),
                             (45, 50): (0.7864, 0.9565)}.items():
        got = wilson_interval(k, n)
        assert got[0] == pytest.approx(lo, abs=5e-4) and got[1] == pytest.approx(hi, abs=5e-4), (k, n, got)


def test_harness_reports_what_physics_judges(reach_env):
    honest = evaluate(OracleReach(reach_env), "reach", len(SEEDS), SEEDS[0], env=reach_env)
    assert honest["episodes"] == 3 and honest["seeds"] == list(SEEDS)
    assert honest["successes"] == 3 and honest["success_rate"] == 1.0, honest["results"]
    for r in honest["results"]:
        # touched within the 10 s horizon, at 22 mm/s from 35-45 mm above the pad and <= 40 mm sideways
        assert r["success"] and 0 < r["elapsed_s"] < 6.0 and r["steps"] == round(r["elapsed_s"] * 15)
        assert r["failure"] == "" and "gate_rejections" in r
    assert honest["wilson95"] == pytest.approx(list(wilson_interval(3, 3)))
    liar = OracleReach(reach_env, lie=True)
    wrong = evaluate(liar, "reach", len(SEEDS), SEEDS[0], env=reach_env)
    assert wrong["successes"] == 0, wrong["results"]
    for r in wrong["results"]:
        assert re.match(r"touched the \w+ target, not the \w+ one", r["failure"]), r
    assert liar.calls >= 2    # chunks are asked for again as they are played
    told = evaluate(OracleReach(reach_env), "reach", 2, SEEDS[0], env=reach_env, target="green")
    assert told["target"] == "green" and told["successes"] == 2, told["results"]
    assert all("green" in r["instruction"] for r in told["results"])


def test_same_layout_other_colour_changes_only_the_instruction(reach_env):
    seed = SEEDS[0]
    layouts = {}
    for colour in ("red", "blue"):
        res = run_episode(reach_env, OracleReach(reach_env), seed, target=colour)
        assert res.success and colour in res.instruction
        layouts[colour] = reach_env.unwrapped.layout
    a, b = layouts["red"], layouts["blue"]
    assert a.objects == b.objects and a.start == b.start and a.view == b.view
    task = get_task("peg_transfer")
    lay = task.layout(7, np.zeros(2))
    bx, by, _ = lay.objects["block_transfer"]
    for c in COLOURS:
        x, y, _ = lay.objects[f"target_{c}"]
        near = math.hypot(x - bx, y - by) < 0.025           # the task's own rule: >= 25 mm to transfer
        if near:
            with pytest.raises(ValueError, match="not allowed"):
                task.retarget(lay, c)
        else:
            assert task.retarget(lay, c).target == c


def test_frame_cache_gives_lerobot_items(tmp_path):
    root = fx.make_dataset(tmp_path / "tiny", episodes=2, frames=20)
    chunk = [i / fx.FPS for i in range(H)]
    ref = LeRobotDataset("local/tiny", root=root, delta_timestamps={"action": chunk})
    cached = InMemoryDataset(LeRobotDataset("local/tiny", root=root), H, progress=False)
    assert len(cached) == len(ref) == 40
    for i in (0, 7, 19, 20, 33, 39):
        a, b = ref[i], cached[i]
        assert torch.equal(a["action"], b["action"]) and torch.equal(a["action_is_pad"], b["action_is_pad"])
        assert torch.equal(a["observation.state"], b["observation.state"]) and a["task"] == b["task"]
        assert torch.allclose(a["observation.images.endoscope"], b["observation.images.endoscope"], atol=1e-6)
    for i in (0, 19, 20, 39):      # the goal head's target: the last action of the frame's episode
        last = 19 if i < 20 else 39
        assert torch.equal(cached[i]["observation.episode_goal"], ref[last]["action"][0])
    # goal_target first_grasp: these episodes never open the jaws, so the target is still the last action
    grasp = InMemoryDataset(LeRobotDataset("local/tiny", root=root), H, progress=False, goal_target="first_grasp")
    assert torch.equal(grasp.goal_row, cached.goal_row) and cached.goal_row.tolist() == [19] * 20 + [39] * 20
    with pytest.raises(ValueError, match="goal_target"):
        InMemoryDataset(LeRobotDataset("local/tiny", root=root), H, progress=False, goal_target="grasp")
    w = cached.first_frames_weight(5, 3.0)
    assert w.mean().item() == pytest.approx(1.0)
    assert w[0].item() == pytest.approx(3 * w[10].item()) and w[20].item() == pytest.approx(w[0].item())


def test_first_grasp_rows_find_where_the_jaws_first_close():
    """The first_grasp goal row of an episode: the first row whose jaw command is below the threshold
    right after one at or above it (an episode that starts closed and opens first, as the experts do,
    counts its later close; a second close does not count); no close: the episode's last row."""
    from surgbot.policies.vla.frame_cache import first_grasp_rows

    jaw = np.array([0.0, 0.4, 0.9, 0.5, 0.1, 0.05, 0.05, 0.9, 0.1,     # episode 0: closes at row 4
                    0.0, 0.0, 0.0, 0.0,                                  # episode 1 (rows 9-12): never opens
                    0.9, 0.9, 0.3, 0.2])                                 # episode 2 (rows 13-16): 0.3 is open
    start = np.array([0] * 9 + [9] * 4 + [13] * 4)
    end = np.array([9] * 9 + [13] * 4 + [17] * 4)
    rows = first_grasp_rows(jaw, start, end, 0.3)
    assert rows.tolist() == [4] * 9 + [12] * 4 + [16] * 4


class RecordedChunks:
    """Plays back what training sees: the recorded dataset's action chunk of the frame the harness observes
    (frame k = the observation after k environment steps), with the frame's state checked against the
    one the harness sends.  If the dataset's chunk convention (action[0] answers the frame it was taken
    from) and the executor's (action i is the command for tick t_obs + i) disagreed, or the state or the
    action were in different frames, the expert's own demonstration would not succeed when played
    through the harness."""

    def __init__(self, env, data: InMemoryDataset, episode: int):
        self.env, self.data = env.unwrapped, data
        self.start, self.end = int(data.ep_start[episode]), int(data.ep_end[episode])
        self.metadata = {"model": "replay", "checkpoint_id": "replay", "image_size": [48, 64], "action_horizon": H}
        self.state_err_m = []

    def reset(self) -> None:
        self.state_err_m = []

    def infer(self, image, state, instruction):
        k = min(self.start + self.env._steps, self.end - 1)
        item = self.data[k]
        assert item["task"] == instruction
        self.state_err_m.append(float(np.linalg.norm(item["observation.state"][:3].numpy() - state[:3])))
        return item["action"].numpy()


def test_recorded_demonstration_replayed_through_the_harness_succeeds(tmp_path):
    """The expert's recorded chunks, played through the policy node's executor and gate, solve the layout
    they were recorded on (needle_pick: a grasp that only holds with the jaws closed at the right place)."""
    import gymnasium as gym

    import surgbot.sim.envs  # noqa: F401 - registers the environments
    from surgbot.policies.data.record import record_expert

    seed = 3000
    out = tmp_path / "needle"
    rec = record_expert("needle_pick", 1, out, seed=seed, image_size=(48, 64), progress=False)
    assert rec.kept == 1
    data = InMemoryDataset(LeRobotDataset("local/needle", root=out), H, progress=False)
    env = gym.make("surgbot/NeedlePick-v0", render_mode="rgb_array", image_size=(48, 64))
    try:
        replay = RecordedChunks(env, data, 0)
        res = run_episode(env, replay, seed)
    finally:
        env.close()
    assert res.success, res
    assert res.infer_calls >= 3 and max(replay.state_err_m) < 0.002, replay.state_err_m


def _eval_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "surgbot.cli", "policy", "eval", *args], capture_output=True, text=True,
                          timeout=240, cwd=REPO)


def test_bad_input_is_a_one_line_error(tmp_path):
    wrong = tmp_path / "act14"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps(
        {"type": "act", "output_features": {"action": {"type": "ACTION", "shape": [14]}}}))
    (wrong / "model.safetensors").write_bytes(b"")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"type": "pi0"}))
    (other / "model.safetensors").write_bytes(b"")
    cases = [
        (("--checkpoint", "default", "--task", "suture"), "unknown task 'suture'"),
        (("--checkpoint", str(tmp_path / "nothing"), "--task", "reach"), "not found"),
        (("--checkpoint", str(wrong), "--task", "reach"), "[14] actions"),
        (("--checkpoint", str(other), "--task", "reach"), "policy type 'pi0' is not supported"),
        (("--checkpoint", "default", "--task", "reach", "--episodes", "0"), "--episodes must be"),
        (("--checkpoint", "default", "--task", "needle_pick", "--target", "red"), "needle_pick names no colour"),
        (("--checkpoint", "default", "--task", "reach", "--target", "red", "--ros"), "--target is for"),
        (("--checkpoint", "default", "--task", "reach", "--ros", "--appearance", "strong"), "in-process only"),
        (("--checkpoint", "default", "--task", "reach", "--ros", "--view", "tool_follow"), "in-process only"),
    ]
    for args, expected in cases:
        res = _eval_cli(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, res.stderr)
    with pytest.raises(PolicyLoadError, match=r"\[14\] actions"):
        load_chunk_policy(wrong)


def test_policy_node_crops_to_the_policy_aspect_never_squeezes():
    from surgbot.nodes.policy_node import fit_image

    frame = np.full((240, 320, 3), 100, np.uint8)
    frame[:, :40] = (255, 0, 0)          # outside the central 240x240 square
    frame[:, 280:] = (0, 0, 255)
    square = fit_image(frame, (96, 96))
    assert square.shape == (96, 96, 3) and np.all(square == 100)
    same_aspect = fit_image(frame, (96, 128))
    assert same_aspect.shape == (96, 128, 3)
    assert same_aspect[:, :15, 0].min() > 200 and same_aspect[:, -15:, 2].min() > 200   # kept, only scaled


def test_appearance_shift_changes_the_look_not_the_task(reach_env):
    """Same seed: same layout, state and instruction as nominal, a different image (drawn from the
    seed, so twice the same); the privileged oracle still succeeds; closing restores the model."""
    import gymnasium as gym

    from surgbot.policies.evaluation.appearance import AppearanceShift
    from surgbot.policies.evaluation.cli import APPEARANCE_CHOICES
    from surgbot.policies.video.appearance import SHIFTS

    assert APPEARANCE_CHOICES == SHIFTS
    nominal = reach_env.unwrapped
    rgba = nominal.model.geom_rgba.copy()
    obs0, info0 = reach_env.reset(seed=SEEDS[0])
    env = gym.make("surgbot/Reach-v0", render_mode="rgb_array", image_size=(48, 64))
    shifted = AppearanceShift(env, "strong")
    obs1, info1 = shifted.reset(seed=SEEDS[0])
    img1 = obs1["image"].copy()
    np.testing.assert_array_equal(obs1["state"], obs0["state"])
    assert info1["instruction"] == info0["instruction"] and info1["appearance"]["shift"] == "strong"
    diff = np.abs(img1.astype(np.int16) - obs0["image"].astype(np.int16)).mean()
    assert diff > 10, diff                                   # grey levels, of 255
    obs2, info2 = shifted.reset(seed=SEEDS[0])
    assert info2["appearance"] == info1["appearance"]
    assert np.abs(obs2["image"].astype(np.int16) - img1.astype(np.int16)).mean() < 3   # same look (noise aside)
    assert shifted.reset(seed=SEEDS[1])[1]["appearance"] != info1["appearance"]
    r = run_episode(shifted, OracleReach(shifted), SEEDS[0])
    assert r.success, r
    shifted.close()
    np.testing.assert_array_equal(env.unwrapped.model.geom_rgba, rgba)


def test_tool_follow_view_keeps_the_tool_in_view_through_the_port():
    """The oracle's reach under the holder's TOOL_FOLLOW rule: it still succeeds, the optical axis
    still passes through the port (pivot, checked against the stand geometry), the view stays in
    the holder's reach, and the tool ends inside the 8 deg re-centring band (or the view at its reach)."""
    import math

    import gymnasium as gym

    from surgbot.policies.evaluation.cli import VIEW_CHOICES
    from surgbot.policies.evaluation.views import MAX_FOLLOW_DEG, VIEWS, ToolFollowView
    from surgbot.sim.scene import stand_scope_line

    assert VIEW_CHOICES == VIEWS
    line = stand_scope_line()
    env = ToolFollowView(gym.make("surgbot/Reach-v0", render_mode="rgb_array", image_size=(48, 64)))
    try:
        results = [run_episode(env, OracleReach(env), s) for s in SEEDS]
        base = env.unwrapped
        mid = base.geo.view_mocap
        pos = base.data.mocap_pos[mid].copy()
        w, x, y, z = base.data.mocap_quat[mid]
        from surgbot.geometry import quat_to_matrix
        axis = -quat_to_matrix((x, y, z, w))[:, 2]
        tip = (base.psm_base @ np.append(base.measured_tip(), 1.0))[:3]
    finally:
        env.close()
    assert all(r.success for r in results), [r.failure for r in results]
    to_port = line.port - pos
    assert np.linalg.norm(to_port - to_port.dot(axis) * axis) < 1e-6          # still through the port
    shaft_deg = math.degrees(math.acos(np.clip(np.dot(axis, line.direction), -1, 1)))
    assert shaft_deg <= MAX_FOLLOW_DEG + 1e-6
    off_deg = math.degrees(math.acos(np.clip(np.dot(axis, (tip - pos) / np.linalg.norm(tip - pos)), -1, 1)))
    assert off_deg < 8.0 + 1.0 or shaft_deg > MAX_FOLLOW_DEG - 2.0, (off_deg, shaft_deg)
    assert env.turned_deg > 0.0 or off_deg < 8.0
