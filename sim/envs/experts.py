"""Scripted experts, one per task, acting only through the environment's actions.

An expert plans from privileged knowledge (the episode layout and the object
poses in the physics state, as SurRoL's scripted oracles do) but moves the
arm only with the 10-d absolute actions a policy would send.  Motion: the
jaw tip goes through a few waypoints along minimum-jerk segments at a
dVRK-plausible speed (14-24 mm/s, jaw 1.5 rad/s, 60 deg/s about the
vertical), with a per-seed style from the layout (speed, a sideways via
offset on the transit, approach clearance, where on the needle to grasp).
The jaws point straight down; the jaw-axis yaw is chosen among the grasp's
equivalent yaws as the one the PSM reaches without clamping, closest to the
current yaw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from surgbot.geometry import pose10_from_matrix
from surgbot.kinematics import psm as kin
from surgbot.sim.envs.perturbation import Perturbation
from surgbot.sim.envs.surg_env import CONTROL_HZ, SurgEnv
from surgbot.sim.scene_layouts import NEEDLE_RADIUS_M, TRANSFER_BLOCK, TRANSFER_BLOCK_HALF
from surgbot.sim.tasks.base import down_rotation

JAW_RATE = 1.5                   # rad/s
YAW_RATE = math.radians(60)      # rad/s
DESCENT_FACTOR = 0.6             # vertical moves near objects are slower
MIN_SEGMENT_S = 0.3
JAW_OPEN_NEEDLE = 0.9
JAW_OPEN_BLOCK = 1.3
JAW_SQUEEZE = 0.05               # setpoint just past the contact angle: a gentle squeeze
GRASP_ARC_RAD = math.radians(35)
# Where the jaw tip is sent to close on the needle: 2 mm into the pad, the
# fingers pressing on it.  The 0.8 mm wire is caught only when the fingers
# reach below its top.  Measured from a grasp at the pad + 0.4 mm (just
# below the top): 1 mm higher caught it in 2 of 12 seeds, 1.5 mm higher in
# 0 of 12, while 1-5 mm into the pad caught it in 12 of 12.  A learned
# policy copies the command to within a millimetre or two, so the expert aims
# at the middle of the window that works, not at its upper edge.
NEEDLE_GRASP_PRESS_M = 0.002
# Jaw tip above the pad when closing on the block (its centre: 2.5 mm up).  Any height up to 2.5 mm
# lifts it with the jaws square to its faces; turned 20-40 deg off them only 0.0-0.4 mm does every time
# (docs/results/scene_input/grasp_window/): the bundled checkpoint was trained on this height.
BLOCK_GRASP_HEIGHT_M = 0.0008
BLOCK_GRASP_DWELL_S = 0.2        # still, jaws open, at that height before closing
NEEDLE_LIFT_M = 0.0354            # jaw tip above the pad when lifted: a needle held by its end hangs ~14 mm below it


@dataclass
class Waypoint:
    pos: np.ndarray | Callable        # jaw-tip position (world), or a function of the expert
    yaw: float | Callable
    jaw: float
    speed: float
    dwell_s: float = 0.0
    perturb: bool = False             # a recording may push the executed command off this segment (DART)


class _Segment(NamedTuple):
    """One waypoint's motion in progress: from (p0, y0, j0) to (p1, y1, j1) in `dur` s, then `dwell` s still."""
    p0: np.ndarray
    y0: float
    j0: float
    p1: np.ndarray
    y1: float
    j1: float
    dur: float
    dwell: float
    t: float
    perturb: bool


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10 - 15 * s + 6 * s * s)


def wrap_to(angle: float, ref: float, period: float) -> float:
    """The angle equivalent to `angle` modulo `period` nearest to `ref`."""
    return ref + (angle - ref + period / 2) % period - period / 2


class ScriptedExpert:
    """Waypoint follower; subclasses plan the waypoints in `plan()`."""

    def __init__(self, env):
        self.env: SurgEnv = env.unwrapped
        self.dt = 1.0 / CONTROL_HZ

    # ----------------------------------------------------------- interface
    def reset(self) -> None:
        env = self.env
        lay = env.layout
        self.style = lay.style
        self.speed = lay.style["speed_mps"]
        self.geo = env.geo
        x, y, h, yaw = lay.start
        self.pos = np.array([x, y, self.geo.pad_top + h])
        self.yaw = yaw
        self.jaw = 0.0
        self.queue = list(self.plan())
        self._segment = None

    def act(self) -> np.ndarray:
        if self._segment is None and self.queue:
            self._start(self.queue.pop(0))
        if self._segment is not None:
            seg = self._segment = self._segment._replace(t=self._segment.t + self.dt)
            s = min_jerk(seg.t / seg.dur)
            self.pos = seg.p0 + s * (seg.p1 - seg.p0)
            self.yaw = seg.y0 + s * (seg.y1 - seg.y0)
            self.jaw = seg.j0 + min(seg.t / seg.dur, 1.0) * (seg.j1 - seg.j0)
            if seg.t >= seg.dur + seg.dwell - 1e-9:
                self._segment = None
        return self.action()

    @property
    def perturbable(self) -> bool:
        """Moving along a segment marked `perturb` (not in its dwell)."""
        seg = self._segment
        return seg is not None and seg.perturb and seg.t < seg.dur

    def action(self, offset=None) -> np.ndarray:
        """The current command; `offset` (world, m) shifts the jaw tip (a perturbed execution)."""
        T = np.eye(4)
        T[:3, :3] = down_rotation(self.yaw)
        T[:3, 3] = self.pos + np.array([0.0, 0.0, self.geo.jaw_length])
        if offset is not None:
            T[:3, 3] += offset
        return pose10_from_matrix(self.env.to_base(T), self.jaw)

    # ------------------------------------------------------------- helpers
    def _start(self, wp: Waypoint) -> None:
        p1 = np.asarray(wp.pos(self) if callable(wp.pos) else wp.pos, float)
        y1 = float(wp.yaw(self) if callable(wp.yaw) else wp.yaw)
        dist = float(np.linalg.norm(p1 - self.pos))
        dur = max(dist / wp.speed, abs(y1 - self.yaw) / YAW_RATE, abs(wp.jaw - self.jaw) / JAW_RATE,
                  MIN_SEGMENT_S)
        # min-jerk peaks at 1.875x the mean speed: stretch so the peak stays at `speed`
        dur = max(dur, 1.875 * dist / wp.speed)
        self._segment = _Segment(self.pos.copy(), self.yaw, self.jaw, p1, y1, wp.jaw, dur, wp.dwell_s, 0.0, wp.perturb)

    def reachable(self, pos, yaw: float) -> bool:
        T = np.eye(4)
        T[:3, :3] = down_rotation(yaw)
        T[:3, 3] = np.asarray(pos) + np.array([0.0, 0.0, self.geo.jaw_length])
        try:
            return not kin.ik(self.env.to_base(T), seed=kin.HOME).insertion_clamped
        except kin.KinematicsError:
            return False

    def pick_yaw(self, candidates, positions) -> float:
        """Of the candidate yaws, the one nearest the current yaw reachable at every position."""
        ranked = sorted(candidates, key=lambda a: abs(a - self.yaw))
        for a in ranked:
            if all(self.reachable(p, a) for p in positions):
                return a
        return ranked[0]

    def plan(self):
        raise NotImplementedError


class ReachExpert(ScriptedExpert):
    """Above the named target, down onto it with closed jaws, stay."""

    def plan(self):
        d = self.env.data
        tgt = self.geo.target_point(d, self.env.layout.target)
        above = tgt + np.array([0.0, 0.0, self.style["clearance_m"]])
        via = 0.5 * (self.pos + above) + self._sideways(above)
        v = self.speed
        return [Waypoint(via, self.yaw, 0.0, v, perturb=True), Waypoint(above, self.yaw, 0.0, v, perturb=True),
                Waypoint(tgt + np.array([0.0, 0.0, 0.0005]), self.yaw, 0.0, v * DESCENT_FACTOR, dwell_s=1.0,
                         perturb=True)]

    def _sideways(self, goal) -> np.ndarray:
        d = goal - self.pos
        n = np.array([-d[1], d[0], 0.0])
        norm = np.linalg.norm(n)
        return self.style["via_offset_m"] * n / norm if norm > 1e-9 else np.zeros(3)


class NeedlePickExpert(ReachExpert):
    """Straddle the needle's wire with open jaws pressed into the pad, close, lift 35 mm above it, hold."""

    def plan(self):
        d = self.env.data
        body = self.env.model.body("needle").id
        c, R = d.xpos[body].copy(), d.xmat[body].reshape(3, 3).copy()
        a = self.style["grasp_shift"] * GRASP_ARC_RAD
        g = c + R @ np.array([NEEDLE_RADIUS_M * math.cos(a), NEEDLE_RADIUS_M * math.sin(a), 0.0])
        tangent = R @ np.array([-math.sin(a), math.cos(a), 0.0])
        grasp = np.array([g[0], g[1], self.geo.pad_top - NEEDLE_GRASP_PRESS_M])
        above = grasp + np.array([0.0, 0.0, self.style["clearance_m"]])
        lift = np.array([g[0], g[1], self.geo.pad_top + NEEDLE_LIFT_M])
        base = math.atan2(tangent[1], tangent[0])
        yaw = self.pick_yaw([wrap_to(base, self.yaw, math.pi) + k * math.pi for k in (-1, 0, 1)],
                            [grasp, lift])
        v = self.speed
        via = 0.5 * (self.pos + above) + self._sideways(above)
        return [Waypoint(via, 0.5 * (self.yaw + yaw), JAW_OPEN_NEEDLE, v, perturb=True),
                Waypoint(above, yaw, JAW_OPEN_NEEDLE, v, perturb=True),
                Waypoint(grasp, yaw, JAW_OPEN_NEEDLE, v * DESCENT_FACTOR, dwell_s=0.2),
                Waypoint(grasp, yaw, JAW_SQUEEZE, v, dwell_s=0.4),
                Waypoint(lift, yaw, JAW_SQUEEZE, v * DESCENT_FACTOR, dwell_s=2.0)]


class PegTransferExpert(ReachExpert):
    """Open over the block, close on it, lift, carry over the target, lower, open, back off."""

    def plan(self):
        env, d = self.env, self.env.data
        body = env.model.body(TRANSFER_BLOCK).id
        b = d.xpos[body].copy()
        R = d.xmat[body].reshape(3, 3)
        block_yaw = math.atan2(R[1, 0], R[0, 0])
        pad = self.geo.pad_top
        grasp = np.array([b[0], b[1], pad + BLOCK_GRASP_HEIGHT_M])
        carry_h = pad + 0.022
        tgt = d.body(f"target_{env.layout.target}").xpos.copy()
        drop = np.array([tgt[0], tgt[1], pad + 0.0012])
        yaw = self.pick_yaw([wrap_to(block_yaw, self.yaw, math.pi / 2) + k * math.pi / 2 for k in (-1, 0, 1, 2)],
                            [grasp, drop, grasp + [0, 0, 0.02]])
        above = grasp + np.array([0.0, 0.0, 2 * TRANSFER_BLOCK_HALF + self.style["clearance_m"]])
        v = self.speed
        via = 0.5 * (self.pos + above) + self._sideways(above)

        def over_target(expert):
            # carry the block, not the jaws, over the target: correct for where it sits in the grip
            held = d.xpos[body][:2] - expert.geo.jaw_tip(d)[:2]
            return np.array([tgt[0] - held[0], tgt[1] - held[1], carry_h])

        def lower(expert):
            p = over_target(expert)
            return np.array([p[0], p[1], drop[2]])

        return [Waypoint(via, 0.5 * (self.yaw + yaw), JAW_OPEN_BLOCK, v, perturb=True),
                Waypoint(above, yaw, JAW_OPEN_BLOCK, v, perturb=True),
                Waypoint(grasp, yaw, JAW_OPEN_BLOCK, v * DESCENT_FACTOR, dwell_s=BLOCK_GRASP_DWELL_S),
                Waypoint(grasp, yaw, JAW_SQUEEZE, v, dwell_s=0.4),
                Waypoint(np.array([b[0], b[1], carry_h]), yaw, JAW_SQUEEZE, v * DESCENT_FACTOR),
                Waypoint(over_target, yaw, JAW_SQUEEZE, v, dwell_s=0.3, perturb=True),
                Waypoint(lower, yaw, JAW_SQUEEZE, v * DESCENT_FACTOR, dwell_s=0.3),
                Waypoint(lower, yaw, JAW_OPEN_BLOCK, v, dwell_s=0.3),
                Waypoint(lambda e: lower(e) + [0, 0, 0.02], yaw, JAW_OPEN_BLOCK, v * DESCENT_FACTOR, dwell_s=2.0)]


EXPERTS = {"reach": ReachExpert, "needle_pick": NeedlePickExpert, "peg_transfer": PegTransferExpert}


def make_expert(env) -> ScriptedExpert:
    return EXPERTS[env.unwrapped.task.name](env)


def run_episode(env, seed: int, expert: ScriptedExpert | None = None, on_step=None,
                options: dict | None = None, success_tail_s: float = 0.0, perturb_mm: float = 0.0) -> dict:
    """One expert episode; `on_step(obs, action, info)` sees every frame before its step.

    `options` go to `env.reset` (e.g. {"target": "blue"}).  `success_tail_s`:
    after a success the expert goes on acting for this long (its plan ends
    with a dwell) and `on_step` sees those frames too.  The environment ends
    an episode the moment the task succeeds, which for `reach` is while the
    tip is still descending onto the disc; demonstrations cut there never
    show arriving and staying, and a policy trained on them keeps pushing
    down past the target (measured: the bundled checkpoint's failed reach
    episodes end with the command 5-6 mm below the disc, the tip pressed on
    it and held off its lateral aim by friction).  The success stays
    latched (`Monitor`), so the tail does not change the outcome; `elapsed_s`
    is the time of the task's end, `steps` counts the tail too.

    `perturb_mm` > 0: DART (`surgbot.sim.envs.perturbation`): the command
    sent to the environment is pushed off the plan by smooth bumps of up to
    this many millimetres, while `on_step` sees the expert's intended
    command, so recorded frames show the tool off its path and the action
    that brings it back.  The result says how many bumps there were and
    their largest offset."""
    if not (math.isfinite(success_tail_s) and success_tail_s >= 0.0):
        raise ValueError(f"success_tail_s must be finite and >= 0, got {success_tail_s}")
    noise = Perturbation(perturb_mm, 1.0 / CONTROL_HZ)     # checks perturb_mm
    expert = expert or make_expert(env)
    obs, info = env.reset(seed=seed, options=options)
    expert.reset()
    noise.reset(seed)

    def tick(obs, info):
        action = expert.act()
        if on_step is not None:
            on_step(obs, action, info)
        executed = action if perturb_mm == 0.0 else expert.action(noise.step(expert.perturbable))
        return env.step(executed)

    steps = 0
    while True:
        obs, _, terminated, truncated, info = tick(obs, info)
        steps += 1
        if terminated or truncated:
            break
    result = {"seed": seed, "success": bool(info["success"]), "steps": steps, "failure": info["failure"],
              "elapsed_s": info["elapsed_s"], "instruction": info["instruction"],
              "target": env.unwrapped.layout.target}   # at the task's end
    if info["success"]:
        for _ in range(round(success_tail_s * CONTROL_HZ)):
            obs, _, _, _, info = tick(obs, info)
            steps += 1
    result["steps"] = steps          # frames seen by on_step, the tail included
    result["perturb_bumps"], result["perturb_peak_mm"] = noise.bumps, round(noise.peak_m * 1e3, 3)
    return result
