"""Rate-limited joint targets: the bridge's arm never jumps, whatever it is commanded.

Each target moves toward its goal at most `max_velocity` per second of the
time that passed (a late step does not catch up: `elapsed` is bounded by the
caller), inside the joint limits.  A command may carry joint velocities: they
are sent as the velocity feed-forward of the joints that have reached their
goals for `command_timeout` after that command (a stream of position +
velocity setpoints, as the holder sends), then dropped (a silent commander
leaves a still arm, not a drifting one).
"""

from __future__ import annotations

import math

import numpy as np


class TargetShaper:
    """`target` (what is sent) chasing `goal` (what was commanded), both in rad, one per joint."""

    def __init__(self, limits: np.ndarray, max_velocity: float, command_timeout: float):
        self.limits = limits
        self.max_velocity = max_velocity
        self.command_timeout = command_timeout
        n = len(limits)
        self.target = np.zeros(n)
        self.goal = np.zeros(n)
        self._ff_velocity = np.zeros(n)
        self._ff_until = -math.inf

    def set_goals(self, idx: np.ndarray, positions: np.ndarray, velocities: np.ndarray | None, now: float) -> None:
        """New goals for joints `idx` (checked by the caller); velocities: the feed-forward from `now`."""
        self.goal[idx] = positions
        if velocities is not None:
            self._ff_velocity[:] = 0.0
            self._ff_velocity[idx] = np.clip(velocities, -self.max_velocity, self.max_velocity)
            self._ff_until = now + self.command_timeout

    def hold(self, at: np.ndarray | None = None) -> None:
        """Stop where the target is (or jump it to `at`): goal = target, no feed-forward."""
        if at is not None:
            self.target = np.array(at, dtype=float)
        self.goal = self.target.copy()
        self._ff_until = -math.inf

    def advance(self, now: float, elapsed: float) -> np.ndarray:
        """Move the targets `elapsed` seconds toward their goals; returns the velocity to send."""
        max_step = self.max_velocity * elapsed
        delta = np.clip(self.goal - self.target, -max_step, max_step)
        self.target = np.clip(self.target + delta, self.limits[:, 0], self.limits[:, 1])
        moving = np.abs(self.goal - self.target) > 1e-12
        dq = np.where(moving, delta / elapsed, 0.0) if elapsed > 0 else np.zeros(len(self.target))
        if now <= self._ff_until:
            dq = np.where(moving, dq, self._ff_velocity)
        return dq
