"""The static offset an arm needs at rest: where a safety stop freezes a moving arm.

A position-controlled arm holding a scope sits a little short of its
targets: the PD error that balances what the feed-forward does not
(port forces, model error).  When the arm moves, (target - measured) also
holds the motion the arm has not made yet.  A safety stop must keep the
first and drop the second:

* freezing the raw targets lets the arm finish the lagging motion (measured:
  the scope tip moved 3-6 mm after an e-stop in TOOL_FOLLOW);
* freezing the measured posture drops the static offset and the scope sags
  (measured: 3-5 mm).

`RestOffset` learns (target - measured) only while the arm and its command
are still (an exponential average, so sensor noise does not set it), and
`freeze(measured, target)` returns measured + that offset, or the targets
when no still moment has been seen yet.  ROS-free; the clock is the caller's.
"""
from __future__ import annotations

import numpy as np

# still = every joint slower than this, measured and commanded (rad/s): the holder's HOLD streams
# ~0 rad/s, the slowest tool-follow motion is > 0.01 rad/s at the shoulder
REST_SPEED_RAD_S = 0.005
# weight of each still sample in the average: ~50 samples (0.1 s at the bridge's 500 Hz)
REST_AVERAGE_WEIGHT = 0.02


class RestOffset:
    """(target - measured) averaged over the moments the arm is still."""

    def __init__(self, n_joints: int):
        self.n_joints = n_joints
        self.offset: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the offset (a new engage starts from the measured posture)."""
        self.offset = None

    def update(self, target: np.ndarray, measured: np.ndarray, measured_velocity: np.ndarray,
               commanded_velocity: np.ndarray) -> bool:
        """Take one sample if the arm and its command are still; returns whether it was taken."""
        if max(np.max(np.abs(measured_velocity)), np.max(np.abs(commanded_velocity))) >= REST_SPEED_RAD_S:
            return False
        sample = np.asarray(target, dtype=float) - np.asarray(measured, dtype=float)
        if not np.all(np.isfinite(sample)):
            return False
        if self.offset is None:
            self.offset = sample
        else:
            self.offset = self.offset + REST_AVERAGE_WEIGHT * (sample - self.offset)
        return True

    def freeze(self, measured: np.ndarray | None, target: np.ndarray) -> np.ndarray:
        """Targets that hold the arm where it is now (the old targets when nothing is known)."""
        if measured is None or self.offset is None:
            return np.asarray(target, dtype=float).copy()
        return np.asarray(measured, dtype=float) + self.offset
