"""The holder's follow behaviours: the view follows the surgeon's head or the PSM's tool.

* `HeadFollow`: while the deadman is held, the head's rotation and forward
  motion since the press pan, tilt and zoom the view from where it was
  (the anchor), with the configured gains.
* `ToolFollow`: when the camera sees the tool off-centre by more than the
  outer dead-band, the goal becomes the view whose shaft passes through the
  tool; it stays until the tool is inside the inner dead-band (hysteresis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pinocchio as pin

from surgbot.control.holder_config import HolderConfig
from surgbot.control.pivot import PivotIK, View
from surgbot.geometry import quat_to_matrix, rotation_aligning

MIN_DISTANCE_M = 1e-6        # a tool this close to the fulcrum or the tip gives no direction


class HeadFollow:
    """Head pose (world) and the pose at the deadman press -> a goal view from the anchor."""

    def __init__(self, cfg: HolderConfig):
        self.cfg = cfg
        self.head: tuple[np.ndarray, np.ndarray] | None = None       # (position, rotation)
        self._ref: tuple[np.ndarray, np.ndarray] | None = None
        self.deadman = False

    def set_head(self, position: Sequence[float], quat_xyzw: Sequence[float]) -> None:
        self.head = (np.asarray(position, float).copy(), quat_to_matrix(quat_xyzw))

    def pressed(self, buttons: Sequence[int]) -> bool:
        b = list(buttons)
        return len(b) > self.cfg.deadman_button and bool(b[self.cfg.deadman_button])

    def engage(self) -> None:
        """The deadman was pressed: head motion is measured from here."""
        self._ref = (self.head[0].copy(), self.head[1].copy())

    def goal(self, ik: PivotIK, anchor: View) -> View | None:
        """The view the head asks for, or None (no head yet)."""
        if self.head is None or self._ref is None:
            return None
        p0, R0 = self._ref
        p, R = self.head
        r = pin.log3(R0.T @ R)            # head-frame rotation since the deadman press (x fwd, y left, z up)
        yaw, pitch = r[2], r[1]
        fwd = float(np.dot(p - p0, R0[:, 0]))
        c = self.cfg
        view, _ = ik.move_view(anchor, -c.head_tilt_gain * pitch, -c.head_pan_gain * yaw, c.head_zoom_gain * fwd, 0.0)
        return view


class ToolFollow:
    """The PSM tool tip in world and the re-aiming rule with its dead-band."""

    def __init__(self, cfg: HolderConfig):
        self.cfg = cfg
        self.speed = math.radians(cfg.tool_speed_deg)          # rad/s, view turn speed in this mode
        self.psm_base: pin.SE3 | None = None
        if cfg.psm_base_pose is not None:
            p = cfg.psm_base_pose
            self.psm_base = pin.SE3(quat_to_matrix(p[3:7]), np.asarray(p[:3], float))
        self.tool_world: np.ndarray | None = None
        self.t = -math.inf
        self.tracking = False

    def set_tip(self, position_in_psm_base: Sequence[float], t: float) -> None:
        self.tool_world = self.psm_base.act(np.asarray(position_in_psm_base, float))
        self.t = float(t)

    def goal(self, ik: PivotIK, setpoint: View, t: float) -> View | None:
        """A new goal (the view through the tool) or None (keep the current goal).

        The dead-band is judged from the camera (the tip), where an offset
        looks larger than from the fulcrum.  Keeping the goal inside the
        dead-band lets the setpoint settle on it (a goal tied to the moving
        setpoint would coast past the tool).
        """
        if self.tool_world is None or t - self.t > self.cfg.psm_timeout_s:
            return None
        f = ik.fulcrum
        z = setpoint.rotation[:, 2]
        u = self.tool_world - f
        nu = float(np.linalg.norm(u))
        to_tool = self.tool_world - setpoint.tip_position(f)
        nt = float(np.linalg.norm(to_tool))
        if nu < MIN_DISTANCE_M or nt < MIN_DISTANCE_M:
            return None
        u /= nu
        ang_cam = float(np.degrees(np.arccos(np.clip(np.dot(z, to_tool / nt), -1.0, 1.0))))
        if ang_cam > self.cfg.tool_deadband_out_deg:
            self.tracking = True
        elif ang_cam < self.cfg.tool_deadband_in_deg:
            self.tracking = False
        if not self.tracking:
            return None
        # the goal is the view whose shaft passes through the tool; the speed limit (tool_speed_deg
        # in this mode) makes the turn
        R = rotation_aligning(z, u) @ setpoint.rotation
        view, _ = ik.project(f + setpoint.depth * R[:, 2], R)
        return view
