"""Synchronised trapezoidal joint trajectories (the dVRK's joint-space move profile)."""

from __future__ import annotations

import math

import numpy as np


class TrapezoidTrajectory:
    """Synchronised trapezoidal joint trajectory: every joint starts and stops together.

    One normalised profile s(t) in [0, 1] scales all joint displacements, with
    the cruise and ramp times chosen so that no joint exceeds its velocity or
    acceleration limit (the slowest joint sets the duration).
    """

    def __init__(self, start, goal, vmax, amax, t0: float):
        self.start = np.asarray(start, float).copy()
        self.goal = np.asarray(goal, float).copy()
        self.t0 = t0
        D = np.abs(self.goal - self.start)
        dv = float(np.max(D / vmax)) if D.size else 0.0
        da = float(np.max(D / amax)) if D.size else 0.0
        if da <= 0.0:
            self.ramp, self.cruise_end, self.duration = 0.0, 0.0, 0.0
            return
        u = math.sqrt(da) if math.sqrt(da) >= dv else dv    # u = duration - ramp
        self.ramp = da / u
        self.duration = u + self.ramp
        self.cruise_end = u
        self._vpeak = 1.0 / u                                # of s(t)
        self._acc = 1.0 / (self.ramp * u)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """(position, velocity, done) at time t."""
        tau = t - self.t0
        if self.duration <= 0.0 or tau >= self.duration:
            return self.goal.copy(), np.zeros_like(self.goal), True
        tau = max(tau, 0.0)
        a, ta, T = self._acc, self.ramp, self.duration
        if tau < ta:
            s, ds = 0.5 * a * tau * tau, a * tau
        elif tau < T - ta:
            s, ds = 0.5 * a * ta * ta + self._vpeak * (tau - ta), self._vpeak
        else:
            r = T - tau
            s, ds = 1.0 - 0.5 * a * r * r, a * r
        d = self.goal - self.start
        return self.start + s * d, ds * d, False
