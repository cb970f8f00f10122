"""`SafeStop`: how a safety stop brings a moving arm to rest (a controlled stop, power kept on).

A safety stop (e-stop, FAULT, a silent supervisor) must leave the scope where
it is.  Freezing the arm's targets at once where it is (`RestOffset.freeze`)
is right for a still arm, but a moving arm that holds a scope through a port
moves along a path where its joints' motions cancel at the tip: heavy joints
(waist, shoulder) and light ones (wrist) swing together.  A step to zero
commanded velocity stops the light joints within a few milliseconds and the
heavy ones only after their momentum is spent, so for a moment the joints no
longer cancel and the tip is flung off the path (measured in the in-process
loop, TOOL_FOLLOW at ~13 mm/s: 0.9-1.3 mm, then the waist rings at ~6 Hz).

`SafeStop` instead decelerates every joint linearly from the velocity of the
path it was commanded along to rest over the same `stop_time_s` (all joints
on one time scale, so the arm stays on that path) and gives the acceleration
of that profile, which the bridge turns into a torque feed-forward (M(q) qdd: the
heavy joints get the braking torque up front instead of building it from a
tracking error).  The arm travels v * stop_time / 2 more (13 mm/s, 15 ms:
~0.1 mm at the tip); measured in the same loop: 0.31 mm in all
(bench/bridge_loop.py, tests/test_safe_stop.py).  This is IEC 60204-1's stop
category 2, kept shorter than the contract's 50 ms e-stop budget.

The path's velocity is the bridge's own targets over the last PATH_WINDOW_S,
not the measured joint velocity: on a loaded machine the targets come in
bursts and the arm shakes about its path, and continuing a shake for the
stop time throws the tip further (the fault suite's e-stop in TOOL_FOLLOW on
a 2-core box: median 0.69 mm with the measured velocity, 0.62 mm with the
path's, 1.58 mm frozen at once).

ROS-free; the clock is the caller's.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# the commanded path's velocity is averaged over this much of it: a few holder periods, so bursts of
# targets (a starved stream) average out, short next to a motion (the view turns over >= 0.2 s)
PATH_WINDOW_S = 0.05
# a shorter history than this says nothing about the path (just engaged: the arm is taken as still)
PATH_MIN_SPAN_S = 0.01


class SafeStop:
    """A per-joint linear deceleration to rest, one time scale for all joints."""

    def __init__(self, stop_time_s: float):
        if not stop_time_s >= 0.0:
            raise ValueError(f"stop_time_s must be >= 0, got {stop_time_s}")
        self.stop_time_s = float(stop_time_s)
        self._t0 = 0.0
        self._q0: np.ndarray | None = None
        self._v0: np.ndarray | None = None
        self._path: deque[tuple[float, np.ndarray]] = deque()

    @property
    def active(self) -> bool:
        """A stop is under way (its profile has not reached rest yet)."""
        return self._q0 is not None

    def observe(self, now: float, target: np.ndarray) -> None:
        """The target just sent (the commanded path), once per stream period."""
        path = self._path
        path.append((float(now), np.array(target, dtype=float)))
        while len(path) > 2 and path[1][0] <= now - PATH_WINDOW_S:
            path.popleft()

    def path_velocity(self) -> np.ndarray | None:
        """Mean velocity of the commanded path over the last PATH_WINDOW_S (None: too little of it)."""
        if len(self._path) < 2:
            return None
        (ta, qa), (tb, qb) = self._path[0], self._path[-1]
        return None if tb - ta < PATH_MIN_SPAN_S else (qb - qa) / (tb - ta)

    def forget_path(self) -> None:
        """A new engage: the path starts again (and no stop is under way)."""
        self._path.clear()
        self.cancel()

    def start(self, now: float, posture: np.ndarray, max_speed: float) -> np.ndarray:
        """Begin a stop at `posture` moving at the commanded path's velocity (each joint clipped to
        +-max_speed); returns where the arm will come to rest."""
        q0 = np.asarray(posture, dtype=float).copy()
        velocity = self.path_velocity()
        v0 = np.zeros_like(q0) if velocity is None else np.clip(velocity, -max_speed, max_speed)
        if self.stop_time_s == 0.0 or not np.all(np.isfinite(v0)):
            self.cancel()
            return q0
        self._t0, self._q0, self._v0 = float(now), q0, v0
        return q0 + v0 * (self.stop_time_s / 2.0)

    def cancel(self) -> None:
        self._q0 = self._v0 = None

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(q, dq, ddq) of the profile at `now`, None when no stop is under way.  The sample at or
        after the end is at rest (dq = ddq = 0) and ends the stop."""
        if self._q0 is None:
            return None
        T = self.stop_time_s
        s = min(max(0.0, now - self._t0), T)
        q = self._q0 + self._v0 * (s - s * s / (2.0 * T))
        if s >= T:
            self.cancel()
            zero = np.zeros_like(q)
            return q, zero, zero
        return q, self._v0 * (1.0 - s / T), -self._v0 / T
