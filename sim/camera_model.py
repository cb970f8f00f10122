"""The pinhole model of a MuJoCo camera: its intrinsics and where it images world points.

MuJoCo cameras look along their -z axis with y up and give a vertical field
of view; the ROS optical frame of the published images (z forward, x right,
y down) has the same K.  Used by the camera twin, its render process, the
Gymnasium environments and the simulated video source.
"""

from __future__ import annotations

import math

import numpy as np


def intrinsics(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """3x3 pinhole matrix of a MuJoCo camera (fovy is vertical, square pixels)."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def mujoco_pixels(points_world: np.ndarray, cam_pos: np.ndarray, cam_R: np.ndarray, fovy_deg: float,
                  width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Where a MuJoCo camera (looks along its -z, y up) images world points: ([N, 2] (column, row) pixels,
    (0, 0) the image's top-left corner; [N] depth along the view, m).  A point at or behind the camera
    (depth <= 0) gets a meaningless pixel: the caller decides what that means."""
    p = (np.asarray(points_world, float).reshape(-1, 3) - np.asarray(cam_pos, float)) @ np.asarray(cam_R, float)
    depth = -p[:, 2]
    uvw = np.stack([p[:, 0], -p[:, 1], depth], axis=1) @ intrinsics(fovy_deg, width, height).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[:, :2] / uvw[:, 2:], depth
