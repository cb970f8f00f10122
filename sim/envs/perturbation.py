"""Perturbed expert execution for demonstrations that show corrections (DART).

A scripted expert follows its plan perfectly, so a policy cloned from it only
ever sees the tool where the plan put it.  Closed loop, the policy is a few
millimetres off; it has never seen that state, and nothing in the data says
"the tip is 5 mm left of the disc: move 5 mm right" (measured: the bundled
checkpoint's failed reach episodes end 3-10 mm from the named disc, aiming
as if it had arrived).  DART (Laskey et al., 2017) injects noise into what the
expert *executes* while recording what it *intends*: the images and states
show the tool pushed off its path, the labels the way back.

Here the noise is a sequence of smooth bumps: a horizontal offset that rises
and falls as a raised cosine (no step in the command), of a random direction,
amplitude and length, started at random times while the expert is on a
segment marked `perturb` (transit and approach, never while grasping, lifting
or dwelling).  Seeded per episode, so a recorded dataset is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

# Bumps: amplitude U(MIN_AMPLITUDE_FRACTION, 1) x the maximum; length U(MIN_BUMP_S, MAX_BUMP_S): a
# 6 mm bump over 0.8 s peaks at ~24 mm/s, the experts' own speed range (14-24 mm/s).
MIN_AMPLITUDE_FRACTION = 0.3
MIN_BUMP_S = 0.8
MAX_BUMP_S = 1.6
BUMPS_PER_S = 0.7                # start rate while perturbable and no bump is running
MAX_PERTURB_MM = 10.0            # larger offsets would take the tool to another target
SEED_TAG = 0xDA27                # the perturbation's random stream, apart from the layout's


def check_perturb_mm(perturb_mm: float) -> float:
    if not (math.isfinite(perturb_mm) and 0.0 <= perturb_mm <= MAX_PERTURB_MM):
        raise ValueError(f"perturb_mm must be in [0, {MAX_PERTURB_MM:g}] mm, got {perturb_mm}")
    return float(perturb_mm)


class Perturbation:
    """Offsets (world, metres) to add to an expert's executed jaw-tip position, one per control tick."""

    def __init__(self, max_mm: float, dt: float):
        self.max_m = check_perturb_mm(max_mm) * 1e-3
        self.dt = float(dt)
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([int(seed), SEED_TAG])
        self._bump: tuple[np.ndarray, float, float] | None = None     # (peak offset, length s, elapsed s)
        self.bumps = 0
        self.peak_m = 0.0

    def step(self, perturbable: bool) -> np.ndarray:
        """The offset for this tick; a new bump may start only when `perturbable`."""
        if self.max_m <= 0.0:
            return np.zeros(3)
        if self._bump is None and perturbable and self.rng.random() < BUMPS_PER_S * self.dt:
            a = self.max_m * self.rng.uniform(MIN_AMPLITUDE_FRACTION, 1.0)
            phi = self.rng.uniform(0.0, 2.0 * math.pi)
            self._bump = (np.array([a * math.cos(phi), a * math.sin(phi), 0.0]),
                          float(self.rng.uniform(MIN_BUMP_S, MAX_BUMP_S)), 0.0)
            self.bumps += 1
        if self._bump is None:
            return np.zeros(3)
        peak, length, t = self._bump
        t += self.dt
        if t >= length:
            self._bump = None
            return np.zeros(3)
        self._bump = (peak, length, t)
        offset = peak * 0.5 * (1.0 - math.cos(2.0 * math.pi * t / length))
        self.peak_m = max(self.peak_m, float(np.linalg.norm(offset)))
        return offset
