"""The endoscope holder's mode machine: states, transitions, the event log and the fulcrum fault.

Modes (contract `ENDOSCOPE_MODES`, published on `/endoscope/mode`):
IDLE (no command), HOLD, TELEOP, HEAD_FOLLOW, TOOL_FOLLOW and FAULT (the arm
freezes on its last command, never goes limp).  This class only keeps the
mode, says which commands a mode takes and records why it changed; the
holder facade decides when.
"""

from __future__ import annotations

import math
from enum import Enum, StrEnum

from surgbot.results import Result

EVENT_LOG_MAX = 200          # events kept for the node to drain; past this the older half is dropped
EVENT_LOG_KEEP = EVENT_LOG_MAX // 2


class State(StrEnum):
    IDLE = "IDLE"
    HOLD = "HOLD"
    TELEOP = "TELEOP"
    HEAD_FOLLOW = "HEAD_FOLLOW"
    TOOL_FOLLOW = "TOOL_FOLLOW"
    FAULT = "FAULT"


TELEOP_FROM = (State.IDLE, State.HOLD, State.TELEOP)     # modes a servo command may take over
FOLLOW_FROM = (State.HOLD, State.TELEOP, State.HEAD_FOLLOW, State.TOOL_FOLLOW)


class Gate(Enum):
    """What a control period does (`ModeMachine.gate`)."""

    OFF = "off"          # IDLE: no command
    FROZEN = "frozen"    # FAULT: the last command again, never limp
    PAUSED = "paused"    # the measurement is late: the last command again, the view does not run ahead
    RUN = "run"


class HolderResult(Result):
    """A `Result` that also unpacks as `(ok, reason)`.

    Callers of the holder (tests, bench, tools) unpack `ok, reason = ...`;
    a typed payload, where a command has one, is in `value` as for every
    `Result`.
    """

    def __iter__(self):
        return iter((self.ok, self.reason))


class ModeMachine:
    """Current mode, the event log (level, text) and the sustained-fulcrum-error fault."""

    def __init__(self, fault_fulcrum_error_m: float, fault_persist_s: float,
                 joint_state_timeout_s: float = math.inf, pause_if_state_older_s: float = math.inf):
        self.mode = State.IDLE
        self._state_timeout_s = joint_state_timeout_s
        self._pause_after_s = pause_if_state_older_s
        self.events: list[tuple[str, str]] = []
        self._fault_error_m = fault_fulcrum_error_m
        self._fault_persist_s = fault_persist_s
        self._fault_since: float | None = None
        self.why = ""                   # why the machine entered its current mode ("" if not said)
        self.safety_block = ""          # why /safety/state forbids motion ("" = allowed)
        self.fault_by_safety = False    # FAULT entered (or acknowledged) because of the safety state

    def event(self, level: str, text: str) -> None:
        """Queue a line for the node's log ("info", "warn" or "error")."""
        self.events.append((level, text))
        if len(self.events) > EVENT_LOG_MAX:
            del self.events[:EVENT_LOG_KEEP]

    def reject(self, text: str) -> HolderResult:
        """Refuse a command: log it, return the failure."""
        self.event("error", text)
        return HolderResult.failure(text)

    def set(self, mode: State, why: str = "") -> None:
        if mode != self.mode:
            self.event("info", f"mode {self.mode} -> {mode}" + (f" ({why})" if why else ""))
            self.mode, self.why = mode, why
            self.fault_by_safety = False

    def set_safety(self, block: str) -> None:
        """`/safety/state` forbids motion (`block` says why) or allows it again ("").

        A moving or holding arm freezes on its last command (FAULT, never limp); IDLE stays IDLE (no
        command: the bridge holds its targets).  Allowed again changes nothing: `hold` re-enables.
        """
        if block and not self.safety_block and self.mode not in (State.IDLE, State.FAULT):
            self.event("error", f"safety: {block}: frozen until /safety/reset, then /endoscope/hold")
            self.set(State.FAULT, f"safety: {block}")
            self.fault_by_safety = True
        self.safety_block = block

    def teleop_refusal(self) -> str:
        """Why a servo command is refused in this mode ("" if it is taken)."""
        if self.safety_block:
            return f"servo command ignored: safety: {self.safety_block}"
        return "" if self.mode in TELEOP_FROM else f"servo command ignored in {self.mode}"

    def gate(self, t: float, state_age_s: float, fulcrum_error_m: float) -> Gate:
        """This period's gate; a joint state older than the timeout or a lasting fulcrum error -> FAULT."""
        if self.mode == State.IDLE:
            return Gate.OFF
        if state_age_s > self._state_timeout_s:
            self.set(State.FAULT, f"joint state {1e3 * state_age_s:.0f} ms old")
            return Gate.FROZEN
        if self.mode == State.FAULT:
            return Gate.FROZEN
        if state_age_s > self._pause_after_s:
            # the robot (or a stalled sim) has not reported for a while: advancing the view on
            # the wall clock would run ahead of the arm
            return Gate.PAUSED
        self.check_fulcrum(fulcrum_error_m, t)
        return Gate.FROZEN if self.mode == State.FAULT else Gate.RUN

    def check_fulcrum(self, error_m: float, t: float) -> None:
        """FAULT once the measured fulcrum error stays above the limit for `fault_persist_s`."""
        if error_m > self._fault_error_m:
            if self._fault_since is None:
                self._fault_since = t
            elif t - self._fault_since >= self._fault_persist_s:
                self.set(State.FAULT, f"measured fulcrum error {error_m * 1e3:.1f} mm")
        else:
            self._fault_since = None
