"""The bundled checkpoint (`--checkpoint default`): shipped, small, multi-task, follows the instruction,
round-trips through LeRobot's save/load, and `surgbot policy eval` reports it as one JSON line.

Ground truth for "language matters" is physics: where the closed jaw tip ends
up (MuJoCo site + jaw length) against where the discs are, on evaluation
seeds (>= 100000) the policy never saw, each layout run twice, naming red and
then blue.
"""

from __future__ import annotations

import json
import subprocess

import av
import numpy as np
import pytest

from surgbot.policies.evaluation.harness import load_chunk_policy, make_env, run_episode
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy
from surgbot.policies.vla.runtime import PolicyRuntime, bundled_checkpoint_dir
from surgbot.sim.tasks import TASKS
from tests.conftest import PYTHON, REPO
from tests.vla_fixtures import CHECKPOINT_LIMIT_BYTES

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

LANGUAGE_SEEDS = (100000, 100001, 100002, 100003)


@pytest.fixture(scope="module")
def policy():
    return load_chunk_policy("default")


def test_bundled_checkpoint_is_small_and_knows_every_task():
    path = bundled_checkpoint_dir()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < CHECKPOINT_LIMIT_BYTES, f"{size / 1e6:.1f} MB"
    known = set(PolicyRuntime("default").metadata()["instructions"])
    for task in TASKS.values():
        templates = {t.format(colour=c) for t in task.instructions for c in ("red", "green", "blue")}
        assert known & templates, f"no {task.name} instruction among {sorted(known)[:5]}..."


@pytest.mark.learning_acceptance
def test_language_matters_on_the_same_layout(policy):
    env = make_env("reach", policy)
    try:
        for seed in LANGUAGE_SEEDS:
            ends = {}
            for colour in ("red", "blue"):
                run_episode(env, policy, seed, target=colour)
                e = env.unwrapped
                tip = e.geo.jaw_tip(e.data)
                dist = {c: float(np.linalg.norm(tip - e.geo.target_point(e.data, c))) for c in ("red", "blue")}
                other = "blue" if colour == "red" else "red"
                assert dist[colour] < dist[other], f"seed {seed}, told {colour}: ended {dist} (m) from the discs"
                ends[colour] = tip
            # the discs are >= 22 mm apart: the two runs end at different places
            assert np.linalg.norm(ends["red"] - ends["blue"]) > 0.011, (seed, ends)
    finally:
        env.close()


def test_from_pretrained_round_trip_gives_identical_actions(policy, tmp_path):
    env = make_env("needle_pick", policy)
    obs, info = env.reset(seed=100000)
    env.close()
    policy.reset()   # a new episode: the policy remembers its first image's scene estimate until reset
    a = policy.infer(obs["image"], obs["state"], info["instruction"])
    loaded = SurgVLAPolicy.from_pretrained(bundled_checkpoint_dir())
    loaded.save_pretrained(tmp_path / "copy")
    for name in ("config.json",):
        assert (tmp_path / "copy" / name).is_file()
    for f in bundled_checkpoint_dir().glob("policy_*"):
        (tmp_path / "copy" / f.name).write_bytes(f.read_bytes())
    b, _ = PolicyRuntime(tmp_path / "copy").infer(obs["image"], obs["state"], info["instruction"])
    assert a.shape == (16, 10) and np.array_equal(a, b)


def test_policy_eval_prints_one_json_line_and_writes_videos(tmp_path):
    res = subprocess.run([PYTHON, "-m", "surgbot.cli", "policy", "eval", "--checkpoint", "default", "--task",
                          "reach", "--episodes", "2", "--seed", "100000", "--json", "--video", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["task"] == "reach" and out["episodes"] == 2 and out["seed"] == 100000
    assert out["seeds"] == [100000, 100001] and out["mode"] == "inprocess"
    k = sum(r["success"] for r in out["results"])
    assert out["successes"] == k and out["success_rate"] == k / 2
    lo, hi = out["wilson95"]
    assert 0.0 <= lo <= k / 2 <= hi <= 1.0
    for r in out["results"]:
        with av.open(r["video"]) as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert frames == r["steps"] + 1, (frames, r["steps"])   # the first observation + one per step


def test_bench_times_the_bundled_action_heads_training_step():
    """`surgbot bench`'s training-step figure builds its batch for the bundled config: with the scene input
    (the summary in the batch) and without the joined locator (it trains in its own stage)."""
    from surgbot.bench.policy import _train_step_s

    rt = PolicyRuntime("default")
    times = _train_step_s(rt, batch_size=2, n=1)
    assert len(times) == 1 and np.isfinite(times[0]) and times[0] > 0
    assert rt.config.scene_locator   # the runtime's own config is left as it was


def test_bench_reports_how_the_bundled_locators_were_trained():
    """`surgbot bench`'s locator figure reads the bundled locator_summary.json in each format it takes:
    join-locator's (one entry per locator: the bundled checkpoint averages two), train-locator's own."""
    from surgbot.bench.policy import _bundled_training_figures, _locator_stages

    locator = next(f for f in _bundled_training_figures() if f["name"] == "policy_default_locator_wall")
    assert locator["value"] > 0 and locator["note"].startswith("2 scene locator(s)")
    stage = {"config": {"steps": 4}, "training_frames": 6, "wall_s": 1.0, "final": {}}
    assert _locator_stages(stage) == [stage]
    assert _locator_stages({"locator_training": stage}) == [stage]
    assert _locator_stages({"locators_from": [{"locator_training": stage}, {"locator_training": None}]}) == [stage]
    assert _locator_stages({}) == []
