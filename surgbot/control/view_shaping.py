"""Command shaping for the holder: the setpoint view follows the goal view through the tremor
filter and a speed/acceleration limit.

Per control period the *setpoint* (a pivot-feasible view) moves one step
toward the mode's *goal*; teleop and head goals first pass the tremor filter
(on the rotation from the *anchor*, the setpoint when the motion began, and
the depth).  The setpoint's own velocity (tip-frame angular, insertion) is
kept: the pivot IK takes it as feed-forward and the arm loop integrates only
while it is still.

Scalars are Python floats: with 4 numbers per step numpy calls would cost
more than the arithmetic (the step budget is 0.3 ms at 500 Hz).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pinocchio as pin

from surgbot.control.filters import TremorFilter
from surgbot.control.pivot import View

GOAL_VELOCITY_FILTER_HZ = 2.0   # low-pass of the goal-velocity feed-forward (residual tremor stays out)
SETPOINT_GAIN = 15.0            # 1/s, linear pull toward a goal near the setpoint (no limit cycle)
STILL_DISTANCE = 1e-12          # rad or m: a goal this close is reached
TREMOR_CHANNELS = 4             # filtered: rotation from the anchor (3) and depth (1)


Vec3 = tuple[float, float, float]


def approach3(v: Vec3, err: Vec3, vmax: float, amax: float, dt: float, goal_vel: Vec3) -> tuple[float, float, float]:
    """Velocity (3 floats) one step closer to the one that reaches `err`, bounded by `vmax`, `amax`.

    Far from the goal: the speed that can still stop in time, `sqrt(2 amax d)`;
    near it: a linear pull `SETPOINT_GAIN d`; plus the goal's own velocity.
    """
    ex, ey, ez = err
    gx, gy, gz = goal_vel
    dist = math.sqrt(ex * ex + ey * ey + ez * ez)
    if dist < STILL_DISTANCE:
        wx, wy, wz = gx, gy, gz
    else:
        k = min(vmax, math.sqrt(2.0 * amax * dist), SETPOINT_GAIN * dist) / dist
        wx, wy, wz = gx + ex * k, gy + ey * k, gz + ez * k
    nw = math.sqrt(wx * wx + wy * wy + wz * wz)
    if nw > vmax:
        s = vmax / nw
        wx, wy, wz = wx * s, wy * s, wz * s
    vx, vy, vz = v
    dx, dy, dz = wx - vx, wy - vy, wz - vz
    n = math.sqrt(dx * dx + dy * dy + dz * dz)
    if n > amax * dt:
        s = amax * dt / n
        dx, dy, dz = dx * s, dy * s, dz * s
    return vx + dx, vy + dy, vz + dz


def approach1(v: float, err: float, vmax: float, amax: float, dt: float, goal_vel: float) -> float:
    """`approach3` for one number (the insertion)."""
    dist = abs(err)
    if dist < STILL_DISTANCE:
        want = goal_vel
    else:
        want = goal_vel + err * (min(vmax, math.sqrt(2.0 * amax * dist), SETPOINT_GAIN * dist) / dist)
    if abs(want) > vmax:
        want *= vmax / abs(want)
    dv = want - v
    if abs(dv) > amax * dt:
        dv *= amax * dt / abs(dv)
    return v + dv


class ViewShaper:
    """Setpoint view, its velocity, the anchor of the tremor filter."""

    def __init__(self, dt: float, angular_limits: tuple[float, float], insertion_limits: tuple[float, float],
                 tremor_notches: Sequence[tuple[float, float]], tremor_lowpass_hz: float):
        """`angular_limits` = (rad/s, rad/s^2), `insertion_limits` = (m/s, m/s^2)."""
        self.dt = dt
        self._limits_angular = (float(angular_limits[0]), float(angular_limits[1]))
        self._limits_insertion = (float(insertion_limits[0]), float(insertion_limits[1]))
        self._filter = TremorFilter(TREMOR_CHANNELS, 1.0 / dt, tremor_notches, tremor_lowpass_hz)
        self._goal_vel_alpha = float(1.0 - np.exp(-2 * np.pi * GOAL_VELOCITY_FILTER_HZ * dt))
        self.setpoint: View | None = None
        self.anchor: View | None = None
        self.velocity = [0.0, 0.0, 0.0, 0.0]     # setpoint: tip-frame angular (3, rad/s), insertion (m/s)
        self._goal_vel = [0.0, 0.0, 0.0, 0.0]
        self._prev_target: View | None = None

    def reset(self, setpoint: View) -> None:
        """Start from `setpoint` at rest; the tremor filter restarts there (anchor)."""
        self.setpoint = setpoint
        self.reanchor()

    def reanchor(self) -> None:
        """A new motion begins at the current setpoint: velocities zero, filter state reset."""
        self.anchor = self.setpoint.copy()
        self.velocity = [0.0, 0.0, 0.0, 0.0]
        self._goal_vel = [0.0, 0.0, 0.0, 0.0]
        self._prev_target = None
        self._filter.reset(np.array([0.0, 0.0, 0.0, self.setpoint.depth]))

    def filtered(self, goal: View) -> View:
        """`goal` through the tremor filter (rotation relative to the anchor, depth)."""
        a = self.anchor
        lx, ly, lz = pin.log3(a.rotation.T.dot(goal.rotation)).tolist()
        y = self._filter((lx, ly, lz, goal.depth))
        return View(a.rotation.dot(pin.exp3(y[:3])), float(y[3]))

    def advance(self, target: View, max_angular_speed: float | None = None) -> View:
        """The setpoint one period closer to `target` with bounded speed and acceleration.

        Per part (rotation, insertion): the speed that can still stop at the
        target along the remaining error, reached by at most `a_max dt` a
        step; a moving target's own velocity is fed forward (tracked, not
        chased).  `max_angular_speed` (rad/s) lowers the speed cap (tool
        follow).  Views are never changed in place, so the target is kept
        without a copy.
        """
        dt = self.dt
        cur = self.setpoint
        w_max, a_w = self._limits_angular
        if max_angular_speed is not None:
            w_max = min(w_max, max_angular_speed)
        v_max, a_v = self._limits_insertion
        Rc = cur.rotation
        RcT = Rc.T
        Rt = target.rotation
        rx, ry, rz = pin.log3(RcT.dot(Rt)).tolist()
        dd = target.depth - cur.depth
        prev = self._prev_target
        if prev is None or prev is target:     # (HOLD: the same goal every step, it does not move)
            gx = gy = gz = gd = 0.0
        else:
            # in the setpoint frame: Rc^T Rp log3(Rp^T Rt) = Rc^T log3(Rt Rp^T) (world-frame turn)
            gx, gy, gz = RcT.dot(pin.log3(Rt.dot(prev.rotation.T))).tolist()
            gx, gy, gz = gx / dt, gy / dt, gz / dt
            gd = (target.depth - prev.depth) / dt
            if math.sqrt(gx * gx + gy * gy + gz * gz) > w_max:   # a jump, not a motion: no feed-forward
                gx = gy = gz = 0.0
            if abs(gd) > v_max:
                gd = 0.0
        self._prev_target = target
        # smooth the feed-forward: residual tremor must not reach the acceleration limit
        a = self._goal_vel_alpha
        fx, fy, fz, fd = self._goal_vel
        fx += a * (gx - fx)
        fy += a * (gy - fy)
        fz += a * (gz - fz)
        fd += a * (gd - fd)
        self._goal_vel = [fx, fy, fz, fd]
        vx, vy, vz, vd = self.velocity
        vx, vy, vz = approach3((vx, vy, vz), (rx, ry, rz), w_max, a_w, dt, (fx, fy, fz))
        vd = approach1(vd, dd, v_max, a_v, dt, fd)
        self.velocity = [vx, vy, vz, vd]
        self.setpoint = View(Rc.dot(pin.exp3(np.array((vx * dt, vy * dt, vz * dt)))), cur.depth + vd * dt)
        return self.setpoint
