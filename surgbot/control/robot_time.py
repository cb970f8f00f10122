"""The holder's reference moves in the robot's time, not the wall clock's.

Each joint state from `g1_bridge` stands for one state period of robot tick
(`HolderConfig.joint_state_period_s`, 4 ms at the bridge's 250 Hz).  The
pacer credits that much reference motion per state received and the control
loop spends one period `dt` per step; a step without credit holds the last
command.  A robot or twin running slower than the wall clock (a loaded host)
sends fewer states per second, so the view slows with it instead of asking the
arm for a faster motion than configured, which takes the shaft off the
fulcrum.  On a robot that keeps real time the credit never runs out.
"""

from __future__ import annotations

# The credit is capped at this many states: enough to ride out the jitter of a real-time link (two
# states in one period, then none) without letting the reference bank time and run ahead after a stall
CREDIT_STATES = 2


class RobotTimePacer:
    """Robot time the reference may still advance; `state_period_s` 0 paces by the wall clock alone."""

    def __init__(self, state_period_s: float, dt: float):
        if not state_period_s >= 0 or not dt > 0:
            raise ValueError(f"state period must be >= 0 and dt > 0, got {state_period_s}, {dt}")
        self.state_period_s = state_period_s
        self.dt = dt
        self.cap_s = CREDIT_STATES * max(state_period_s, dt)
        self.credit_s = 0.0

    def on_state(self) -> None:
        """A joint state arrived: one state period more to spend."""
        self.credit_s = min(self.credit_s + self.state_period_s, self.cap_s)

    def take_step(self) -> bool:
        """Spend one control period if the robot's time allows it (else the step must hold)."""
        if self.state_period_s == 0:
            return True
        if self.credit_s < 0.5 * self.dt:       # (half a period: float sums of 4 ms and 2 ms)
            return False
        self.credit_s -= self.dt
        return True
