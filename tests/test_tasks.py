"""Tasks: layouts by seed within their documented ranges, the view through the
port, and each success check on positive and negative cases made by physics
(the arm driven through the environment's action interface, objects placed
and left to the simulator)."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import surgbot.sim.envs  # noqa: F401 - registers the environments
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import make_expert
from surgbot.sim.scene import stand_scope_line
from surgbot.sim.scene_layouts import TRANSFER_BLOCK, TRANSFER_BLOCK_HALF
from surgbot.sim.tasks import TASKS, get_task
from surgbot.sim.tasks.base import COLOURS, DISTRACTOR_SLOTS, view_pose

pytestmark = pytest.mark.unit


def make(task: str):
    return gym.make(ENV_IDS[task], images=False).unwrapped


def run_expert(env, seed: int, max_steps: int | None = None):
    env.reset(seed=seed)
    expert = make_expert(env)
    expert.reset()
    info = {}
    for _ in range(max_steps or 10 ** 6):
        _, _, term, trunc, info = env.step(expert.act())
        if term or trunc:
            break
    return expert, info


def step_hold(env, n: int):
    """n control steps holding the arm where it is (commanding the measured pose)."""
    info = {}
    for _ in range(n):
        _, _, term, trunc, info = env.step(env._state())
        if term or trunc:
            break
    return info


# ------------------------------------------------------------------ layouts
def test_unknown_task_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="reach, needle_pick, peg_transfer"):
        get_task("suture")


@pytest.mark.parametrize("name", list(TASKS))
def test_layout_is_a_function_of_the_seed(name):
    task, centre = TASKS[name], np.array([0.55, -0.12])
    assert task.layout(7, centre) == task.layout(7, centre)
    assert task.layout(7, centre).objects != task.layout(8, centre).objects
    assert len(task.instructions) >= 3


@pytest.mark.parametrize("name", list(TASKS))
def test_layouts_stay_in_the_documented_ranges(name):
    task, centre = TASKS[name], np.array([0.55, -0.12])
    named = set()
    for seed in range(200):
        lay = task.layout(seed, centre)
        pts = {n: np.array(v[:2]) - centre for n, v in lay.objects.items()}
        targets = [pts[f"target_{c}"] for c in COLOURS]
        assert all(np.max(np.abs(p)) <= 0.030 + 1e-12 for p in targets)
        assert min(np.linalg.norm(a - b) for i, a in enumerate(targets) for b in targets[i + 1:]) >= 0.022
        for n, (dx, dy) in DISTRACTOR_SLOTS.items():
            if n not in task.uses:
                assert np.max(np.abs(pts[n] - (dx, dy))) <= 0.003 + 1e-12, n
        assert all(abs(a) <= 3.0 for a in lay.view[:3]) and abs(lay.view[3]) <= 0.003
        assert 0.035 <= lay.start[2] <= 0.045 and abs(lay.start[3]) <= math.radians(15) + 1e-12
        if name == "needle_pick":
            assert np.max(np.abs(pts["needle"])) <= 0.022
            assert min(np.linalg.norm(t - pts["needle"]) for t in targets) >= 0.030
        if name == "peg_transfer":
            assert np.max(np.abs(pts[TRANSFER_BLOCK])) <= 0.025
            assert np.linalg.norm(pts[f"target_{lay.target}"] - pts[TRANSFER_BLOCK]) >= 0.025
        if lay.target:
            assert lay.target in lay.instruction
            named.add(lay.target)
    if name != "needle_pick":
        assert named == set(COLOURS)


def test_randomised_views_still_look_through_the_port():
    """Every perturbed camera's optical axis passes through the port (fulcrum), and the
    perturbation is within the documented few degrees / millimetres."""
    line = stand_scope_line()
    pos0, R0 = view_pose((0.0, 0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    for _ in range(50):
        view = (*rng.uniform(-3, 3, 3), rng.uniform(-0.003, 0.003))
        pos, R = view_pose(view)
        axis = -R[:, 2]                             # MuJoCo cameras look along -z
        r = line.port - pos
        assert np.linalg.norm(r - axis * (r @ axis)) < 1e-9
        angle = math.degrees(math.acos(np.clip(axis @ -R0[:, 2], -1, 1)))
        assert angle <= math.hypot(3, 3) + 1e-6
        assert np.linalg.norm(pos - pos0) < 0.06 * math.radians(4.3) + 0.0031


# ------------------------------------------------------------------- reach
def test_reach_named_target_touched_is_success():
    env = make("reach")
    _, info = run_expert(env, 3)
    assert info["success"] and not info["failure"]
    tip = env.geo.jaw_tip(env.data)
    assert np.linalg.norm(tip - env.data.body(f"target_{env.layout.target}").xpos) < 0.003 + 0.0012


def test_reach_wrong_colour_touched_is_failure():
    env = make("reach")
    env.reset(seed=3)
    named = env.layout.target
    wrong = next(c for c in COLOURS if c != named)
    expert = make_expert(env)
    # the expert's own motion, aimed at another colour (the monitor still expects `named`)
    object.__setattr__(env.layout, "target", wrong)
    expert.reset()
    object.__setattr__(env.layout, "target", named)
    info = {}
    for _ in range(200):
        _, _, term, trunc, info = env.step(expert.act())
        if term or trunc:
            break
    assert not info["success"] and f"touched the {wrong} target" in info["failure"]


def test_reach_hovering_above_the_target_is_not_success():
    env = make("reach")
    env.reset(seed=5)
    expert = make_expert(env)
    expert.reset()
    expert.queue = expert.queue[:2]                 # stop at the point above the target
    info = {}
    for _ in range(140):
        _, _, term, trunc, info = env.step(expert.act())
    assert not info["success"] and not info["failure"]
    assert np.linalg.norm(env.geo.jaw_tip(env.data) - env.geo.target_point(env.data, env.layout.target)) > 0.006


# ---------------------------------------------------------------- needle
def needle_low(env) -> float:
    from surgbot.sim.tasks.needle_pick import needle_lowest_z
    return needle_lowest_z(env.model, env.data, env.geo.body_geoms["needle"])


def test_needle_lifted_by_the_jaws_is_success():
    env = make("needle_pick")
    _, info = run_expert(env, 2)
    assert info["success"]
    # independent look at the physics: the needle is off the pad, and only the fingers touch it
    assert needle_low(env) > env.geo.pad_top + 0.02
    touching = set()
    needle = set(env.geo.body_geoms["needle"])
    for c in env.data.contact[:env.data.ncon]:
        if c.geom1 in needle:
            touching.add(c.geom2)
        if c.geom2 in needle:
            touching.add(c.geom1)
    assert touching == set(env.geo.fingers)


def test_needle_pushed_off_the_pad_is_failure():
    env = make("needle_pick")
    env.reset(seed=2)
    d, m = env.data, env.model
    adr = m.jnt_qposadr[m.body("needle").jntadr[0]]
    # just past the pad's edge, resting on the pad's rim: physics tips it onto the floor
    x_edge = env.geo.pad_centre[0] + env.geo.pad_half[0] + 0.011
    d.qpos[adr:adr + 3] = [x_edge, env.geo.pad_centre[1], env.geo.pad_top + 0.001]
    mujoco.mj_forward(m, d)
    info = step_hold(env, 30)
    assert needle_low(env) < env.geo.pad_top - 0.002
    assert not info["success"] and info["failure"] == "the needle left the pad"


def test_needle_in_the_air_without_the_jaws_is_not_success():
    env = make("needle_pick")
    env.reset(seed=2)
    d, m = env.data, env.model
    adr = m.jnt_qposadr[m.body("needle").jntadr[0]]
    d.qpos[adr + 2] += 0.03                          # dropped from 3 cm: it falls back
    mujoco.mj_forward(m, d)
    info = step_hold(env, 30)
    assert not info["success"] and not info["failure"]
    assert needle_low(env) < env.geo.pad_top + 0.002


# ----------------------------------------------------------- peg transfer
def test_block_placed_on_the_named_target_is_success():
    env = make("peg_transfer")
    _, info = run_expert(env, 1)
    assert info["success"]
    b = env.data.body(TRANSFER_BLOCK).xpos
    t = env.data.body(f"target_{env.layout.target}").xpos
    assert np.linalg.norm(b[:2] - t[:2]) < 0.005
    assert abs(b[2] - (env.geo.pad_top + TRANSFER_BLOCK_HALF)) < 0.001


def test_block_on_another_target_is_not_success():
    env = make("peg_transfer")
    env.reset(seed=1)
    d, m = env.data, env.model
    wrong = next(c for c in COLOURS if c != env.layout.target)
    t = d.body(f"target_{wrong}").xpos
    adr = m.jnt_qposadr[m.body(TRANSFER_BLOCK).jntadr[0]]
    d.qpos[adr:adr + 3] = [t[0], t[1], env.geo.pad_top + TRANSFER_BLOCK_HALF + 0.002]
    mujoco.mj_forward(m, d)
    info = step_hold(env, 20)
    assert not info["success"] and not info["failure"]
    assert np.linalg.norm(d.body(TRANSFER_BLOCK).xpos[:2] - t[:2]) < 0.002     # it did settle there


def test_block_still_held_over_the_target_is_not_success():
    env = make("peg_transfer")
    env.reset(seed=1)
    expert = make_expert(env)
    expert.reset()
    expert.queue = expert.queue[:6]                 # carry over the target, never lower or release
    info = {}
    for _ in range(250):
        _, _, term, trunc, info = env.step(expert.act())
        if term or trunc:
            break
    assert not info["success"]
    b = env.data.body(TRANSFER_BLOCK).xpos
    assert b[2] > env.geo.pad_top + 0.01            # held in the air by the jaws


def test_sim_task_option_is_checked():
    from surgbot.sim.runner import SimConfig
    with pytest.raises(ValueError, match="unknown task 'suture'"):
        SimConfig(task="suture").validate()
    with pytest.raises(ValueError, match="box_trainer"):
        SimConfig(task="reach", scene="endonasal").validate()
    SimConfig(task="peg_transfer").validate()


def test_task_twin_lays_out_and_judges_in_the_twin_world():
    """The twin's world (G1 + PSM, no ROS) gets the same layout as the environment for a seed."""
    from surgbot.sim.runner import SimConfig, make_world
    world, _ = make_world(SimConfig(task="needle_pick", seed=6, camera=False, ros=False))
    try:
        twin = next(t for t in world.twins if t.name == "task")
        env = make("needle_pick")
        env.reset(seed=6)
        assert twin.layout.objects == env.layout.objects and twin.layout.instruction == env.layout.instruction
        for _ in range(50):
            world.step()
        payload = twin.payload(world)
        assert payload["task"] == "needle_pick" and payload["success"] is False and payload["failure"] == ""
        nx, ny, _ = env.layout.objects["needle"]
        assert np.allclose(payload["objects"]["needle"]["pos"][:2], [nx, ny], atol=2e-4)   # resting where laid
        assert world.model.opt.noslip_iterations == env.model.opt.noslip_iterations > 0
    finally:
        world.close()


def test_task_twin_start_pose_is_where_the_environment_places_the_arm():
    """`start_cp` in /sim/task (PSM1_base) against the environment's arm after its reset (physics, IK)."""
    from surgbot.geometry import quat_to_matrix, rotation_angle
    from surgbot.sim.runner import SimConfig, make_world
    world, _ = make_world(SimConfig(task="reach", seed=11, camera=False, ros=False))
    try:
        twin = next(t for t in world.twins if t.name == "task")
        start = twin.payload(world)["start_cp"]
    finally:
        world.close()
    env = make("reach")
    env.reset(seed=11)
    T_env = env.plant.measured_cp(env.data)
    assert np.linalg.norm(np.array(start[:3]) - T_env[:3, 3]) < 1e-3          # settled within 1 mm
    assert math.degrees(rotation_angle(quat_to_matrix(start[3:]), T_env[:3, :3])) < 1.0


def test_task_twin_lays_out_a_new_episode_on_request_and_ignores_bad_requests():
    from surgbot.sim.runner import SimConfig, make_world
    from surgbot.sim.tasks.twin import parse_task_request
    world, _ = make_world(SimConfig(task="needle_pick", seed=6, camera=False, ros=False))
    try:
        twin = next(t for t in world.twins if t.name == "task")
        for _ in range(20):
            world.step()
        twin._pending = parse_task_request('{"task": "peg_transfer", "seed": 4}')
        world.step()
        env = make("peg_transfer")
        env.reset(seed=4)
        payload = twin.payload(world)
        assert payload["task"] == "peg_transfer" and payload["seed"] == 4 and payload["episode"] == 2
        assert payload["instruction"] == env.layout.instruction
        for _ in range(100):
            world.step()
        payload = twin.payload(world)
        for name, (x, y, _yaw) in env.layout.objects.items():       # free and static bodies both moved
            assert np.allclose(payload["objects"][name]["pos"][:2], [x, y], atol=5e-4), name
        assert payload["success"] is False and payload["elapsed_s"] < 0.5
    finally:
        world.close()
    for bad, why in [("{", "not JSON"), ("[1]", "JSON object"), ('{"task": "suture"}', "unknown task"),
                     ('{"task": "reach", "seed": -1}', "seed"), ('{"task": "reach", "seed": 1.5}', "seed"),
                     ('{"task": "reach", "seed": true}', "seed")]:
        with pytest.raises(ValueError, match=why):
            parse_task_request(bad)
