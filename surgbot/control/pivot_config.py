"""Gains and limits of the pivot IK (`surgbot.control.pivot.PivotIK`): the ROS parameters
`pivot.*` of the endoscope holder, documented and checked in one place."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from surgbot.config import check_ranges, param


@dataclass(frozen=True)
class PivotConfig:
    """Gains and limits of the pivot IK (ROS parameters `pivot.*` of the endoscope holder)."""

    k_fulcrum: float = param(60.0, "1/s, lateral fulcrum error convergence", lo=0.0)
    k_view: float = param(30.0, "1/s, view error convergence", lo=0.0)
    k_posture: float = param(0.5, "1/s, pull to the posture in the remaining null space", lo=0.0)
    max_view_rate: float = param(1.0, "cap on the view task's commanded rate, rad/s (insertion: / depth_scale)",
                                 lo=0.0)
    max_fulcrum_rate: float = param(0.05, "m/s, cap on the lateral fulcrum correction", lo=0.0)
    depth_scale: float = param(0.1, "m, the insertion row is divided by this (rad-comparable units)", lo=1e-6)
    sigma_singular: float = param(0.08, "below this smallest singular value of the view task, damping rises",
                                  lo=1e-9)
    lambda_max: float = param(0.1, "damped least-squares damping at a full singularity", lo=0.0)
    limit_margin: float = param(0.03, "rad kept from each joint limit", lo=0.0)
    max_joint_speed: float = param(1.0, "rad/s, cap on every joint (also below the hardware cap)", lo=1e-6)
    depth_range: tuple[float, ...] = param((0.02, 0.15), "m, allowed insertion depth (fulcrum to tip): [min, max]")
    max_angle_from_axis_deg: float = param(60.0, "deg, pan/tilt cone around the port axis", lo=0.0, hi=180.0)
    active_joints: tuple[str, ...] | None = param(None, "joint names the solver may move (unset: the right arm)")
    joint_weights: tuple[float, ...] | None = param(
        None, "weight per active joint, in active_joints order (< 1: moved less, e.g. the waist); unset: all 1")

    def __post_init__(self):
        check_ranges(self)
        for name in ("depth_range", "active_joints", "joint_weights"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.joint_weights, Mapping):
            # by name, for callers that build a config in code: stored in active_joints order
            if self.active_joints is None:
                raise ValueError("pivot.joint_weights by name needs pivot.active_joints")
            unknown = sorted(set(self.joint_weights) - set(self.active_joints))
            if unknown:
                raise ValueError(f"pivot.joint_weights: {unknown} are not active joints")
            object.__setattr__(self, "joint_weights",
                               tuple(float(self.joint_weights.get(n, 1.0)) for n in self.active_joints))
        lo, hi = (self.depth_range + (math.nan, math.nan))[:2]
        if len(self.depth_range) != 2 or not 0.0 <= lo < hi:
            raise ValueError(f"pivot.depth_range must be [min, max] with 0 <= min < max m, got {self.depth_range}")
        if self.joint_weights is not None:
            if self.active_joints is None or len(self.joint_weights) != len(self.active_joints):
                raise ValueError("pivot.joint_weights needs one weight per pivot.active_joints entry")
            if not all(w > 0 and math.isfinite(w) for w in self.joint_weights):
                raise ValueError("pivot.joint_weights must be finite and > 0")
        for name in ("k_fulcrum", "k_view", "k_posture", "max_view_rate", "max_fulcrum_rate", "lambda_max",
                     "limit_margin"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"pivot.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("depth_scale", "sigma_singular", "max_joint_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"pivot.{name} must be > 0, got {getattr(self, name)}")

    def weight(self, joint: str) -> float:
        """The solver weight of `joint` (1 unless set)."""
        if self.joint_weights is None or self.active_joints is None or joint not in self.active_joints:
            return 1.0
        return self.joint_weights[self.active_joints.index(joint)]
