"""Gymnasium environments: API conformance, determinism, the shared PSM plant,
bad actions, and the scripted experts' success rate (>= 19/20 seeds)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import surgbot.sim.envs  # noqa: F401 - registers the environments
from surgbot.geometry import matrix_from_pose10, pose10_from_matrix
from surgbot.kinematics import psm as kin
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import NeedlePickExpert, make_expert, run_episode
from surgbot.sim.envs.surg_env import CONTROL_HZ
from surgbot.sim.psm_plant import PSMPlant

pytestmark = pytest.mark.unit
SMALL = (48, 64)


@pytest.mark.parametrize("task", list(ENV_IDS))
def test_check_env_passes(task):
    env = gym.make(ENV_IDS[task], render_mode="rgb_array", image_size=SMALL)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (*SMALL, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (10,) and obs["state"].dtype == np.float32
    assert isinstance(info["instruction"], str) and info["instruction"] and info["success"] is False
    assert env.render().shape == (*SMALL, 3)
    env.close()


def test_default_image_size_and_control_rate():
    env = gym.make(ENV_IDS["reach"])
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (128, 128, 3)
    for _ in range(15):
        *_, info = env.step(obs["state"])
    assert info["elapsed_s"] == pytest.approx(1.0, abs=1e-9)          # 15 actions = 1 s of physics
    env.close()


@pytest.mark.parametrize("task", list(ENV_IDS))
def test_same_seed_same_layout_and_first_image(task):
    a = gym.make(ENV_IDS[task], image_size=SMALL)
    b = gym.make(ENV_IDS[task], image_size=SMALL)
    oa, ia = a.reset(seed=11)
    ob, ib = b.reset(seed=11)
    assert np.array_equal(oa["image"], ob["image"]) and np.array_equal(oa["state"], ob["state"])
    assert ia["instruction"] == ib["instruction"]
    assert np.array_equal(a.unwrapped.data.xpos, b.unwrapped.data.xpos)
    oc, _ = b.reset(seed=12)
    assert not np.array_equal(oa["image"], oc["image"])
    # and the same actions give the same trajectory
    act = oa["state"].copy()
    act[2] -= 0.004
    b.reset(seed=11)
    for _ in range(5):
        sa, sb = a.step(act)[0]["state"], b.step(act)[0]["state"]
        assert np.array_equal(sa, sb)
    a.close()
    b.close()


def test_environment_drives_the_psm_with_the_twin_plant():
    env = gym.make(ENV_IDS["reach"], images=False).unwrapped
    assert isinstance(env.plant, PSMPlant)
    obs, _ = env.reset(seed=4)
    T, jaw = matrix_from_pose10(obs["state"])
    T[:3, 3] += [0.003, -0.002, 0.004]
    for _ in range(15):
        obs, *_ = env.step(pose10_from_matrix(T, 0.3))
    # measured tip (MuJoCo site) agrees with the DH forward kinematics of the measured joints
    q = env.data.qpos[env.plant.qadr]
    assert np.allclose(kin.fk(q)[:3, 3], matrix_from_pose10(obs["state"])[0][:3, 3], atol=1e-6)
    assert np.linalg.norm(kin.fk(q)[:3, 3] - T[:3, 3]) < 5e-4
    assert abs(obs["state"][9] - 0.3) < 0.02


def test_bad_actions():
    env = gym.make(ENV_IDS["reach"], images=False)
    obs, _ = env.reset(seed=0)
    for bad, msg in [(np.zeros(9), "shape"), (np.full(10, np.nan), "NaN"), (np.zeros(10), "6D")]:
        with pytest.raises(ValueError, match=msg):
            env.step(bad.astype(np.float32))
    # a pose the PSM cannot reach is refused by the PSM core; the arm holds
    far = obs["state"].copy()
    far[:3] = [0.0, 0.0, 0.5]
    obs2, _, term, _, info = env.step(far)
    assert info["rejected"] >= 1 and not term
    assert np.linalg.norm(obs2["state"][:3] - obs["state"][:3]) < 2e-4
    # the action space's own jaw bounds (the limits rounded to float32, just outside them) are accepted
    # as the limits; a jaw further out is still refused
    for bound in (env.action_space.low[9], env.action_space.high[9]):
        obs, _ = env.reset(seed=0)
        act = obs["state"].copy()
        act[9] = bound
        assert env.step(act)[4]["rejected"] == 0
    obs, _ = env.reset(seed=0)
    act = obs["state"].copy()
    act[9] = np.float32(kin.JAW_UPPER + 0.01)
    assert env.step(act)[4]["rejected"] == 1
    with pytest.raises(ValueError, match="unknown task"):
        surgbot.sim.envs.surg_env.SurgEnv("suture")
    env.close()


@pytest.mark.parametrize("task", list(ENV_IDS))
def test_expert_success_over_20_seeds(task):
    env = gym.make(ENV_IDS[task], images=False)
    expert = make_expert(env)
    results = [run_episode(env, 1000 + s, expert) for s in range(20)]
    ok = sum(r["success"] for r in results)
    assert ok >= 19, [(r["seed"], r["failure"]) for r in results if not r["success"]]
    # the experts stay within the task horizon and at dVRK-plausible tip speeds
    assert max(r["elapsed_s"] for r in results) < env.unwrapped.task.horizon_s
    env.close()


@pytest.mark.parametrize("dz_mm", [1.0, -2.0])
def test_needle_grasp_works_a_millimetre_or_two_either_side_of_the_expert(dz_mm):
    """The needle_pick expert aims inside the window of grasp heights that catch the wire, not at its
    edge, so a policy that copies its grasp height to within a millimetre still lifts the needle
    (aimed at the pad + 0.4 mm, as first written, 1 mm higher caught it in 2 of 12 seeds)."""
    env = gym.make(ENV_IDS["needle_pick"], images=False)

    class Shifted(NeedlePickExpert):
        def plan(self):
            waypoints = super().plan()
            grasp, close = waypoints[2], waypoints[3]          # down onto the needle, then close there
            assert close.jaw < grasp.jaw and np.allclose(grasp.pos, close.pos)
            for w in (grasp, close):
                w.pos = w.pos + np.array([0.0, 0.0, dz_mm * 1e-3])
            return waypoints

    results = [run_episode(env, 1100 + s, Shifted(env)) for s in range(3)]
    assert all(r["success"] for r in results), results
    env.close()


def test_expert_speeds_are_plausible():
    env = gym.make(ENV_IDS["peg_transfer"], images=False)
    states = []
    run_episode(env, 5, on_step=lambda obs, a, info: states.append(obs["state"][:3].copy()))
    v = np.linalg.norm(np.diff(np.array(states), axis=0), axis=1) * 15.0
    assert v.max() < 0.05                       # m/s: well under the PSM's teleop speeds
    env.close()


def test_the_expert_stays_where_it_arrived_after_a_success():
    """A demonstration's tail: the success is latched and the expert holds still at the disc, 1 s on."""
    env = gym.make(ENV_IDS["reach"], image_size=(48, 64))
    rows: list = []
    seed = 7
    cut = run_episode(env, seed)
    tail = run_episode(env, seed, on_step=lambda obs, a, info: rows.append((a.copy(), info["success"])),
                       success_tail_s=1.0)
    assert cut["success"] and tail["success"] and tail["elapsed_s"] == cut["elapsed_s"]   # the task's end
    tail_steps = round(CONTROL_HZ)
    assert tail["steps"] == cut["steps"] + tail_steps and len(rows) == tail["steps"]
    actions = np.array([a for a, _ in rows])
    # the first frames of the tail already count as a success: they were recorded after it
    assert all(ok for _, ok in rows[cut["steps"]:]) and not any(ok for _, ok in rows[:cut["steps"]])
    # the expert ends still: the last half second of commands moves < 0.1 mm (it was descending at the cut)
    last = actions[-tail_steps // 2:, :3]
    assert np.ptp(last, axis=0).max() < 1e-4
    assert np.linalg.norm(actions[cut["steps"] - 1, :3] - actions[-1, :3]) > 2e-4   # still moving at the cut
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="success_tail_s"):
            run_episode(env, seed, success_tail_s=bad)
    env.close()


def test_perturbed_expert_records_the_way_back_dart():
    """DART: the executed commands are pushed off the plan by smooth bumps, the recorded actions are the
    expert's intended ones (the same as without the bumps), so the frames show the tool off its path and
    the label brings it back."""
    env = gym.make(ENV_IDS["reach"], images=False)
    seed = 11

    def run(perturb_mm):
        rows: list = []
        res = run_episode(env, seed, on_step=lambda o, a, i: rows.append((o["state"][:3].copy(), a.copy())),
                          perturb_mm=perturb_mm, success_tail_s=1.0)
        return res, np.array([s for s, _ in rows]), np.array([a for _, a in rows])

    clean, s0, a0 = run(0.0)
    pert, s1, a1 = run(6.0)
    again, s2, a2 = run(6.0)
    assert clean["success"] and pert["success"]
    assert clean["perturb_bumps"] == 0 and pert["perturb_bumps"] >= 1 and 1.8 <= pert["perturb_peak_mm"] <= 6.0
    n = min(len(a0), len(a1))
    # the labels are the plan's; the states (the executed commands, tracked) left it by millimetres
    assert np.array_equal(a0[:n], a1[:n])
    off = np.linalg.norm(s1[:n] - s0[:n], axis=1)
    assert 1.5e-3 < off.max() < 7e-3
    # where the tool was pushed off, the label points back: the action-state gap is largest there
    gap = np.linalg.norm(a1[:n, :3] - s1[:n], axis=1)
    assert gap[off > 1.5e-3].mean() > 2.0 * gap[off < 0.2e-3].mean()
    # smooth: no jump in the executed path beyond the experts' own speeds (50 mm/s)
    assert np.linalg.norm(np.diff(s1, axis=0), axis=1).max() * CONTROL_HZ < 0.05
    # seeded per episode
    assert again == pert and np.array_equal(s2, s1)
    for bad in (-1.0, float("nan"), 10.5):
        with pytest.raises(ValueError, match="perturb_mm"):
            run_episode(env, seed, perturb_mm=bad)
    env.close()


def test_perturbation_bumps_are_smooth_bounded_and_start_only_when_allowed():
    from surgbot.sim.envs.perturbation import Perturbation
    p = Perturbation(5.0, 1.0 / CONTROL_HZ)
    p.reset(3)
    assert all(not p.step(False).any() for _ in range(300)) and p.bumps == 0     # never on a grasp or dwell
    offs = np.array([p.step(True) for _ in range(3000)])
    assert p.bumps >= 20
    norms = np.linalg.norm(offs, axis=1)
    assert norms.max() <= 5e-3 + 1e-12 and norms.max() > 4e-3 and not offs[:, 2].any()
    assert np.linalg.norm(np.diff(offs, axis=0), axis=1).max() < 5e-3 * np.pi / (0.8 * CONTROL_HZ) + 1e-9
    off = Perturbation(0.0, 1.0 / CONTROL_HZ)
    assert all(not off.step(True).any() for _ in range(100))
