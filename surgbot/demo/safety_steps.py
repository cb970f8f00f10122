"""What an operator does with the stack's safety and the G1 in `surgbot demo`: read a FAULT, reset
it (acknowledging a node's own FAULT as its user would), engage the arm and hold the endoscope,
and recover after a task a FAULT stopped.  Every refusal and retry goes into the run's notes."""

from __future__ import annotations

import time

from surgbot.ctl import ACTIONS, call_service
from surgbot.pacing import poll_until
from surgbot.safety.supervisor import only_lateness

SERVICE_TIMEOUT_S = 10.0
ENGAGE_RAMP_S = 2.5                   # the bridge ramps the arm_sdk weight 0 -> 1 over 2 s
ENGAGE_ATTEMPTS = 3
MODE_TIMEOUT_S = 5.0
WATCH_PERIOD_S = 0.05                 # how often the script looks at what the observer heard
HOLD_CONFIRM_S = 2.0                  # the view must stay held this long before the tasks start
HEARD_TIMEOUT_S = 30.0                # command sources hearing the supervisor (not fatal: engage retries)
SAFETY_LISTENERS = ("g1_bridge", "endoscope_holder")    # the nodes that must hear /safety/state to engage
# a node whose FAULT of its own refuses /safety/reset -> the surgbot ctl action that acknowledges it
ACKNOWLEDGE = {"endoscope_holder": "hold", "g1_bridge": "engage"}
ACK_HEARD_TIMEOUT_S = 2.0             # > the nodes' diagnostics period (1 s), which carries the acknowledgement
ACK_RETRY_S = 0.1
STEP_TIMEOUT_S = 30.0
AFTER_RESET_S = 1.0                   # the nodes hear the reset before the next step


class SafetySteps:
    def __init__(self, obs, psm, say, notes: list[str], follow: bool = False):
        self.obs, self.psm, self.say, self.notes = obs, psm, say, notes
        self.follow = follow              # TOOL_FOLLOW instead of HOLD once engaged

    def settle(self) -> None:
        """What an operator checks before engaging: the G1's command sources hear the supervisor
        (engaging before would be refused), and a FAULT of the start-up is read and reset."""
        obs = self.obs
        def missing() -> list[str]:
            return [n for n in SAFETY_LISTENERS if not obs.heard_supervisor(n)]

        if not poll_until(lambda: not missing(), HEARD_TIMEOUT_S, WATCH_PERIOD_S):
            self.notes.append(f"{', '.join(missing())}: no /safety/state heard after {HEARD_TIMEOUT_S:.0f} s")
        state = obs.safety or {}
        if state.get("state") != "OK":
            self.notes.append(f"safety {state.get('state')} before engaging "
                              f"({', '.join(state.get('reasons', [])) or 'no reason given'}): reset")
            self.say(f"safety {state.get('state')} at start-up: resetting")
            self._reset_noted("reset refused")

    def reset(self) -> tuple[bool, str]:
        """/safety/reset.  Refused because the holder or the bridge reports a FAULT of its own, it is
        first acknowledged as its user would (`hold`, `engage`: the node stays frozen, reported as
        held by safety) and asked again: without it a holder FAULT of its own ("joint state 101 ms
        old" between two tasks) refused every reset, and a fresh clone's demo ended there."""
        ok, message = call_service(self.obs, ACTIONS["reset"], SERVICE_TIMEOUT_S)
        acked = [node for node in ACKNOWLEDGE if not ok and node in message]
        for node in acked:
            call_service(self.obs, ACTIONS[ACKNOWLEDGE[node]], SERVICE_TIMEOUT_S)
        # the supervisor hears the acknowledgement through the node's /diagnostics: ask again until
        # it has (while only those nodes are named), not once right after
        deadline = time.monotonic() + ACK_HEARD_TIMEOUT_S
        while acked:
            ok, message = call_service(self.obs, ACTIONS["reset"], SERVICE_TIMEOUT_S)
            if ok or time.monotonic() >= deadline or not any(node in message for node in acked):
                break
            time.sleep(ACK_RETRY_S)
        return ok, message

    def _reset_noted(self, refused: str) -> None:
        """`reset`, a refusal noted as `refused: <why>`, then a moment for the nodes to hear it."""
        ok, message = self.reset()
        if not ok:
            self.notes.append(f"{refused}: {message}")
        time.sleep(AFTER_RESET_S)

    def engage_with_retries(self) -> None:
        for attempt in range(1, ENGAGE_ATTEMPTS + 1):
            self.say("G1: engage the arm and HOLD the endoscope through the port"
                     + (f" (attempt {attempt})" if attempt > 1 else ""))
            problem = self.engage_and_hold()
            if problem is None:
                return
            # What an operator does after a fault: read it, reset, engage again.  It stays in the summary.
            self.notes.append(f"engage attempt {attempt}: {problem}")
            self.say(f"G1: {problem}; resetting")
            self._reset_noted("reset refused")
        raise RuntimeError(f"the G1 did not engage and hold in {ENGAGE_ATTEMPTS} attempts: {self.notes[-1]}")

    def engage_and_hold(self) -> str | None:
        """None when the holder holds (or follows) and the safety state is OK; else what went wrong."""
        obs = self.obs
        want = "TOOL_FOLLOW" if self.follow else "HOLD"
        ok, message = call_service(obs, ACTIONS["engage"], SERVICE_TIMEOUT_S)
        if not ok:
            return f"engage refused: {message}"
        time.sleep(ENGAGE_RAMP_S)
        ok, message = call_service(obs, ACTIONS["follow-tool" if self.follow else "hold"], SERVICE_TIMEOUT_S)
        if not ok:
            return f"{want} refused: {message}"
        poll_until(lambda: obs.endoscope_mode == want, MODE_TIMEOUT_S, WATCH_PERIOD_S)
        # it must stay so for a moment, with safety OK
        if not poll_until(lambda: obs.endoscope_mode not in (want, None) or (obs.safety or {}).get("state") != "OK",
                          HOLD_CONFIRM_S, WATCH_PERIOD_S):
            return None
        return f"endoscope mode {obs.endoscope_mode}, safety {(obs.safety or {}).get('state')} " \
               f"({', '.join((obs.safety or {}).get('reasons', [])) or 'no reason given'})"

    def stop_reason(self) -> str:
        """'' while /safety/state is OK, else why the stack stopped."""
        st = self.obs.safety or {}
        if st.get("state") == "OK":
            return ""
        return f"safety {st.get('state')}: {', '.join(st.get('reasons', [])) or 'no reason given'}"

    def recover(self, why: str = "the last task ended in a FAULT") -> None:
        """After a FAULT: what an operator does (reset, re-engage, HOLD); noted."""
        self.say(f"safety: {why}; reset, engage and hold again")
        self._reset_noted("reset after a task refused")
        if (self.psm.operating_state() or {}).get("state") != "ENABLED":
            # the supervisor's FAULT only sends `hold` (the arm stays ENABLED); an arm FAULT of its
            # own is cleared only by disable (dVRK), then it is powered and homed again
            self.psm.disable(timeout=STEP_TIMEOUT_S)
            self.psm.enable(timeout=STEP_TIMEOUT_S)
            self.psm.home(timeout=STEP_TIMEOUT_S)
        self.engage_with_retries()

    def interrupted_by_lateness(self) -> bool:
        """Whether the latched FAULT (still there: no reset yet) has only lateness causes."""
        st = self.obs.safety or {}
        reasons = st.get("reasons") or []
        return st.get("state") == "FAULT" and only_lateness(reasons)
