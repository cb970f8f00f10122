"""Evaluation with the endoscope in TOOL_FOLLOW instead of a fixed view.

On the robot the holder's TOOL_FOLLOW mode re-aims the scope about the port
so the PSM tool stays in view (surgbot/control/follow.py: hysteresis 8 deg
out / 2 deg in, judged from the camera; turn at `tool_speed_deg` = 15 deg/s).
`ToolFollowView` applies the same rule, with the holder's own defaults
(`HolderConfig`), to the environments' endoscope (a mocap body pivoting about
the port, as `sim/tasks/base.py view_pose` does), once per control tick before
the step renders.  What it leaves out: the G1 arm's own dynamics (the view
turns exactly at the commanded rate) and the arm's joint limits beyond a
cone of `MAX_FOLLOW_DEG` about the standing view (the reach the holder was
measured to have, README "Holding the endoscope").
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pinocchio as pin

from surgbot.control.holder_config import HolderConfig
from surgbot.geometry import matrix_to_quat, quat_to_matrix
from surgbot.sim.envs.surg_env import CONTROL_HZ
from surgbot.sim.scene import stand_scope_line

VIEWS = ("fixed", "tool_follow")
MAX_FOLLOW_DEG = 25.0          # the holder's measured reach about the port (+-25 deg)
MIN_DISTANCE_M = 1e-3          # closer than this the direction to the tool means nothing


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.acos(max(-1.0, min(1.0, c)))


class ToolFollowView(gym.Wrapper):
    def __init__(self, env: gym.Env, cfg: HolderConfig | None = None):
        super().__init__(env)
        cfg = cfg or HolderConfig()
        self.out_rad = math.radians(cfg.tool_deadband_out_deg)
        self.in_rad = math.radians(cfg.tool_deadband_in_deg)
        self.step_rad = math.radians(cfg.tool_speed_deg) / CONTROL_HZ
        line = stand_scope_line()
        self.port, self.stand_dir = line.port, line.direction
        self.tracking = False
        self.turned_deg = 0.0                      # total view turn this episode (reported in info)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.tracking = False
        self.turned_deg = 0.0
        obs, info = self.env.reset(seed=seed, options=options)
        if self.env.unwrapped.geo.view_mocap < 0:
            raise ValueError("this environment has no movable endoscope view")
        return obs, dict(info, view="tool_follow")

    def step(self, action):
        self._follow()
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, dict(info, view="tool_follow", view_turned_deg=self.turned_deg)

    def _follow(self) -> None:
        base = self.env.unwrapped
        d, mid = base.data, base.geo.view_mocap
        pos = d.mocap_pos[mid].copy()
        w, x, y, z = d.mocap_quat[mid]
        R = quat_to_matrix((x, y, z, w))
        tip = (base.psm_base @ np.append(base.measured_tip(), 1.0))[:3]
        to_tool = tip - pos
        shaft = pos - self.port
        if np.linalg.norm(to_tool) < MIN_DISTANCE_M or np.linalg.norm(tip - self.port) < MIN_DISTANCE_M:
            return
        off_axis = _angle(-R[:, 2], to_tool)            # MuJoCo cameras look along -z
        if off_axis > self.out_rad:
            self.tracking = True
        elif off_axis < self.in_rad:
            self.tracking = False
        if not self.tracking:
            return
        u = shaft / np.linalg.norm(shaft)
        goal = (tip - self.port) / np.linalg.norm(tip - self.port)
        axis = np.cross(u, goal)
        sin_full = float(np.linalg.norm(axis))
        if sin_full < 1e-12:
            return
        turn = min(self.step_rad, _angle(u, goal))
        step = pin.exp3(axis / sin_full * turn)        # towards the tool, at most step_rad this tick
        if math.degrees(_angle(step @ u, self.stand_dir)) > MAX_FOLLOW_DEG:
            return                                     # at the edge of the holder's reach: stay
        d.mocap_pos[mid] = self.port + step @ shaft
        qx, qy, qz, qw = matrix_to_quat(step @ R)
        d.mocap_quat[mid] = (qw, qx, qy, qz)           # MuJoCo's order
        self.turned_deg += math.degrees(turn)
