"""`SafetyStateWatch`: what a command source knows of `/safety/state`, and whether it may move.

Fail-safe, not fail-open: a source that requires the supervisor may command
motion only while the last state is OK *and* fresh (the supervisor publishes
at `publish_hz`; silence longer than `stale_after_s` means it is gone, and a
missing supervisor holds the robots just like a FAULT).  Malformed state
messages count as not OK.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from surgbot.config import check_ranges, param
from surgbot.results import Result

SUPERVISOR_STALE_S = 0.15      # 7 periods of the supervisor's 50 Hz state; + a 10 ms check: < 200 ms link budget


@dataclass(frozen=True)
class SafetyWatchConfig:
    """The parameters every command source (holder, bridge, mapper, policy node) adds for `/safety/state`."""

    require_safety_supervisor: bool = param(
        False, "true (the stack sets it): command only while /safety/state is OK and fresh, a missing "
               "supervisor holds; false: a node run alone commands until it has seen a supervisor, then "
               "holds like true")
    safety_stale_s: float = param(SUPERVISOR_STALE_S, "/safety/state silent this long: the supervisor is gone, "
                                                      "hold, s", lo=0.01)

    def __post_init__(self):
        check_ranges(self)
        if not self.safety_stale_s > 0:
            raise ValueError("safety_stale_s must be > 0")


@dataclass
class SafetyStateWatch:
    stale_after_s: float = SUPERVISOR_STALE_S
    required: bool = True              # False: no supervisor in this stack (bench rigs, unit tests)
    state: str | None = None
    reasons: tuple[str, ...] = ()
    last_s: float | None = None

    def update(self, payload: str, now: float) -> None:
        try:
            msg = json.loads(payload)
            state, reasons = str(msg["state"]), tuple(str(r) for r in msg.get("reasons", ()))
        except (ValueError, KeyError, TypeError):
            state, reasons = "MALFORMED", ("malformed /safety/state message",)
        self.state, self.reasons, self.last_s = state, reasons, now

    @classmethod
    def from_config(cls, cfg: SafetyWatchConfig) -> SafetyStateWatch:
        return cls(stale_after_s=cfg.safety_stale_s, required=cfg.require_safety_supervisor)

    def allows_motion(self, now: float) -> Result:
        if not self.required and self.last_s is None:
            return Result.success()
        if self.last_s is None:
            return Result.failure("no /safety/state from the safety supervisor yet")
        if now - self.last_s > self.stale_after_s:
            return Result.failure(f"safety supervisor silent for {(now - self.last_s) * 1e3:.0f} ms")
        if self.state != "OK":
            return Result.failure(f"safety state {self.state}: {'; '.join(self.reasons) or 'no reason given'}")
        return Result.success()
