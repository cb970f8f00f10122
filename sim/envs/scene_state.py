"""Where the task's objects are, as the policy's actions would reach them: `observation.environment_state`.

LeRobot's name for privileged simulator state (its PushT keypoints) is used
for an 8-number summary of an episode's layout, read from the simulator right
after `reset` (the objects lie still until the tool touches them):

    [0:3]  the object's grasp point (needle_pick: the middle of the needle's arc;
           peg_transfer: the block's centre; reach: the named disc), at pad height
    [3:5]  its orientation as (cos k*yaw, sin k*yaw): k = 2 for the needle's tangent at
           the arc's middle (the jaws straddle the wire either way round), k = 4 for
           the block (a square grip); (0, 0) for reach's flat disc
    [5:8]  where it goes (peg_transfer: the named target); the grasp point otherwise

Positions are the tool-tip frame's origin (jaw_length above the jaw tip, as
in contract section 7) in the tilted PSM1_base frame, in metres: the same
frame and point as the actions, so "go to the object" is a difference of two
vectors.  A policy trained with this input (`SurgVLAConfig.scene_input`) gets
it from the simulator (training, and the oracle evaluation that bounds what a
perfect object locator would give); it is not in the recorded observations.

`surgbot.policies.data.scene_rows.episode_scene_vectors(root)` rebuilds it
for every episode of a recorded dataset from its sidecar (layout seed and
named colour): layouts are seeded, so the same reset gives the same scene.
"""

from __future__ import annotations

import math

import numpy as np

from surgbot.sim.scene_layouts import NEEDLE_RADIUS_M, TRANSFER_BLOCK

SCENE_DIM = 8
SCENE_NAMES = ["grasp_x", "grasp_y", "grasp_z", "orient_cos", "orient_sin", "place_x", "place_y", "place_z"]
# k of the orientation's (cos k*yaw, sin k*yaw): the needle's wire is straddled either way round, the
# block is a cube seen from above, reach's disc has no orientation (0: the pair is (0, 0))
ORIENTATION_SYMMETRY = {"needle_pick": 2, "peg_transfer": 4, "reach": 0}


def _policy_point(env, p_world: np.ndarray) -> np.ndarray:
    """A jaw-tip position in world -> the tool-tip frame origin in PSM1_base (the actions' point)."""
    T = np.eye(4)
    T[:3, 3] = np.asarray(p_world, float) + np.array([0.0, 0.0, env.geo.jaw_length])
    return env.to_base(T)[:3, 3]


def _yaw(R: np.ndarray) -> float:
    return math.atan2(R[1, 0], R[0, 0])


def scene_points(env) -> tuple[np.ndarray, float, np.ndarray]:
    """(grasp point, its yaw, place point) of `env` as it is now: jaw-tip positions at pad height, world
    frame (the summary's points before they become tool-tip positions in PSM1_base)."""
    u = env.unwrapped
    d, pad = u.data, u.geo.pad_top
    task = u.task.name
    if task == "needle_pick":
        body = u.model.body("needle").id
        c, R = d.xpos[body], d.xmat[body].reshape(3, 3)
        mid = c + R @ np.array([NEEDLE_RADIUS_M, 0.0, 0.0])
        grasp = np.array([mid[0], mid[1], pad])
        angle = _yaw(R) + 0.5 * math.pi            # the tangent at the arc's middle
        place = grasp
    elif task == "peg_transfer":
        body = u.model.body(TRANSFER_BLOCK).id
        b = d.xpos[body]
        grasp = np.array([b[0], b[1], pad])
        angle = _yaw(d.xmat[body].reshape(3, 3))
        t = d.body(f"target_{u.layout.target}").xpos
        place = np.array([t[0], t[1], pad])
    elif task == "reach":
        t = u.geo.target_point(d, u.layout.target)
        grasp, angle = np.array([t[0], t[1], pad]), 0.0
        place = grasp
    else:
        raise ValueError(f"no scene summary for task {task!r}")
    return grasp, angle, place


def scene_vector(env) -> np.ndarray:
    """The scene summary (module doc) of `env` (a SurgEnv, unwrapped or not) as it is now, float32 [8]."""
    u = env.unwrapped
    grasp, angle, place = scene_points(u)
    g, p = _policy_point(u, grasp), _policy_point(u, place)
    k = ORIENTATION_SYMMETRY[u.task.name]
    orient = [math.cos(k * angle), math.sin(k * angle)] if k else [0.0, 0.0]
    return np.concatenate([g, orient, p]).astype(np.float32)


def scene_pixels(env) -> np.ndarray:
    """[2, 2] where the grasp and place points appear in the endoscope image now: (column, row) in
    pixels, (0, 0) the image's top-left corner (a pixel's centre at +0.5)."""
    grasp, _, place = scene_points(env)
    return env.unwrapped.image_points(np.stack([grasp, place]))


def world_axes_in_base(env) -> np.ndarray:
    """The world's x and y axes in PSM1_base, 6 numbers: with the summary's yaw (about the world's
    vertical) they give the jaws-down rotation at that yaw in the actions' frame
    (policies/vla/anchored_surgvla.py).  A constant of the twin (the arm's mount), known after a reset."""
    R = env.unwrapped.psm_base[:3, :3].T
    return np.concatenate([R[:, 0], R[:, 1]])
