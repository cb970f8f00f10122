"""`SafeStop`: how a safety stop brings a moving arm to rest (a controlled stop, power kept on).

A safety stop (e-stop, FAULT, a silent supervisor) must leave the scope where
it is.  Freezing the arm's targets at once where it is (`RestOffset.freeze`)
is right for a still arm, but a moving arm that holds a scope through a port
moves along a path where its joints' motions cancel at the tip: heavy joints
(waist, shoulder) and light ones (wrist) swing together.  A step to zero
commanded velocity stops the light joints within a few milliseconds and the
heavy ones (waist at kd 5: M/kd ~ 0.15 s) only when their momentum is spent,
so for a moment the joints no longer cancel and the tip is flung off the
path (measured in the in-process loop, TOOL_FOLLOW at ~13 mm/s: 0.9-1.3 mm,
then the waist rings at ~6 Hz).

`SafeStop` makes the stop ONE arm_sdk sample: the rest point a little ahead
on the path (the posture plus `STOP_TRAVEL` x the time constant x the
path's velocity) with zero velocity, gravity feed-forward only, and each
joint's damping raised to kd = M_jj / time constant (its own inertia, rotor
armature included, so the joints stop on one time scale and the arm stays
on its path; never below the joint's own kd, and not above `max_kd`
unless its own kd is).  The cap binds on the waist (M ~0.7-0.8 kg m^2:
kd 20, ~40 ms, where 12 ms would ask ~67): in the loop a cap of 20, 40 or
none gave the same figures, 10 was worse.  Why one sample and no profile:
the robot keeps the last arm_sdk sample when the stream stalls (the motor
drivers hold it; so does the twin), and on a loaded machine the bridge's
stream stalls for 10-30 ms.  A profile (a deceleration ramp with a braking
torque feed-forward, this module's first design) held through such a stall
brakes past zero and throws the arm back (in the in-process loop with the
bridge starved as the loaded fault rig measured it: 7 of 32 stops over 1
mm, up to 2.05 mm); damping held for any time only ever brakes (2 of 32,
max 1.21 mm; without stalls both 0.31 mm median).  This is IEC 60204-1's
stop category 2: the commands stop at once (the targets are fixed with
the first sample, inside the contract's 50 ms e-stop budget) and the arm
decays to rest, an arm joint's speed to 5 % in 3 time constants.

The path's velocity is the bridge's own targets over the last
PATH_WINDOW_S, not the measured joint velocity: on a loaded machine the
arm shakes about its path, and continuing a shake throws the tip further.

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
# the rest point is this many time constants of the path's velocity ahead: a damped joint pulled by its
# PD toward the rest point coasts about that far (in-process loop, TOOL_FOLLOW: 1.0 -> 0.49 mm,
# 1.5 -> 0.31 mm, 2.0 -> 0.46 mm median at a 12 ms time constant)
STOP_TRAVEL = 1.5


class SafeStop:
    """Where a safety stop puts the arm and with what damping (see module doc)."""

    def __init__(self, time_constant_s: float, max_kd: float):
        if not time_constant_s >= 0.0:
            raise ValueError(f"time_constant_s must be >= 0, got {time_constant_s}")
        if not max_kd >= 0.0:
            raise ValueError(f"max_kd must be >= 0, got {max_kd}")
        self.time_constant_s = float(time_constant_s)
        self.max_kd = float(max_kd)
        self._path: deque[tuple[float, np.ndarray]] = deque()

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
        """A new engage: the path starts again."""
        self._path.clear()

    def start(self, posture: np.ndarray, max_speed: float, kd: np.ndarray,
              inertia_diagonal: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rest targets, kd) of the stop of an arm at `posture` (the freeze point) moving along the
        commanded path (each joint's speed clipped to +-max_speed).  `inertia_diagonal`: M_jj of the
        joints at this posture, armature included (None: unknown).  Without a time constant, a path,
        or the inertias (or with non-finite ones) the arm freezes at `posture` with its own gains."""
        q0 = np.asarray(posture, dtype=float).copy()
        kd = np.asarray(kd, dtype=float)
        velocity = self.path_velocity()
        tau = self.time_constant_s
        if tau == 0.0 or velocity is None or inertia_diagonal is None:
            return q0, kd.copy()
        inertia = np.asarray(inertia_diagonal, dtype=float)
        v0 = np.clip(velocity, -max_speed, max_speed)
        if inertia.shape != kd.shape or not (np.all(np.isfinite(v0)) and np.all(np.isfinite(inertia))):
            return q0, kd.copy()
        stop_kd = np.clip(inertia / tau, kd, np.maximum(kd, self.max_kd))
        return q0 + v0 * (STOP_TRAVEL * tau), stop_kd
