"""`SupervisorCore`: e-stop and watchdogs behind `/safety/state` (contract section 8), ROS-free.

* Each watched source (`/PSM1/measured_js`, the bridge's `rt/lowstate` age,
  the console link, the policy chunk, a node's `/diagnostics`) is a named
  `Watchdog` with its own timeout.  A watchdog arms on its first message (a
  part of the stack that has not started yet is not a fault) and can be
  disarmed when its source stops on purpose (operator logged out, policy
  disabled).
* A source can also report itself bad (`feed(name, now, ok=False, detail)`:
  the bridge's FAULT, a node's diagnostics at ERROR).
* ESTOP (asked for) and FAULT (a watchdog or a bad report) latch: the state
  stays until `reset`, and `reset` is refused, naming the causes, while any
  cause persists.  So nothing moves again until a person resets.
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass, field
from enum import StrEnum

from surgbot.config import check_ranges, param
from surgbot.results import Result


class State(StrEnum):
    OK = "OK"
    ESTOP = "ESTOP"
    FAULT = "FAULT"


# The reasons that report lateness, not a wrong command: a source silent past its watchdog
# (`Watchdog.cause`), a node's liveliness lease lapsed (the node's `_alive_lost`), a sample too many
# ms old (a node's own FAULT: the holder's joint state, the policy chunk; `checks.fresh`).  On a
# loaded machine the load alone makes them; a person resets and goes on (`surgbot demo` does).
LATENESS = re.compile(r"silent for \d+ ms|DDS liveliness lost|\d+ ms old")


def only_lateness(reasons: list[str]) -> bool:
    """Whether a FAULT's `reasons` (at least one) all report lateness (LATENESS)."""
    return bool(reasons) and all(LATENESS.search(r) for r in reasons)


@dataclass(frozen=True)
class SupervisorConfig:
    """Watchdog timeouts (s), from the contract (section 8) and FACTS (dVRK watchdog 30 ms, MoveIt Servo 0.1 s)."""

    psm_state_timeout_s: float = param(0.1, "/PSM1/measured_js older than this -> FAULT, s", lo=0.0)
    lowstate_timeout_s: float = param(0.05, "G1 rt/lowstate older than this (bridge report) -> FAULT, s", lo=0.0)
    console_link_timeout_s: float = param(0.2, "console link silent this long while armed -> FAULT, s", lo=0.0)
    # A healthy policy loop plays a chunk up to (request_fraction x H / rate) = 0.5 x 16 / 15 Hz =
    # 0.53 s old before it asks for the next one, plus the inference time (the node itself holds
    # after server_timeout_s, 0.5 s); 0.5 s here faulted healthy runs (measured: "chunk 528-534 ms
    # old" in `surgbot demo`, whenever a /policy/state sample fell just before a new chunk).
    # tests/test_safety_core.py checks it against the shipped policy configs.
    policy_chunk_timeout_s: float = param(1.1, "policy chunk older than this while enabled -> FAULT, s", lo=0.0)
    node_timeout_s: float = param(3.0, "a node's /diagnostics silent this long -> FAULT (1 Hz: 3 missed), s",
                                  lo=0.0)
    publish_hz: float = param(50.0, "/safety/state publish rate, Hz (command sources hold after 150 ms of "
                                           "silence)", lo=1.0)

    def __post_init__(self):
        check_ranges(self)
        for name in ("psm_state_timeout_s", "lowstate_timeout_s", "console_link_timeout_s",
                     "policy_chunk_timeout_s", "node_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0: a zero timeout faults on every message")
        for name in ("psm_state_timeout_s", "console_link_timeout_s"):   # judged as deadlines (the node)
            if getattr(self, name) <= 2.0 / self.publish_hz:
                raise ValueError(f"{name} must be longer than two judgement periods (1 / publish_hz = "
                                 f"{1e3 / self.publish_hz:.0f} ms): it is a deadline the tick must meet")


def judge_policy_state(data: str, chunk_timeout_s: float) -> tuple[bool, bool, str]:
    """One `/policy/state` message (JSON) judged for the policy watchdog: (armed, ok, detail).

    Disarmed while the policy is disabled.  Bad: a malformed message, a lost server connection (a
    killed server, known in ms), a request the server left unanswered past the node's server timeout
    (a slow or stalled server: known at that deadline, not only once the chunk in hand has aged past
    `chunk_timeout_s`), or a chunk older than `chunk_timeout_s`.
    """
    try:
        st = json.loads(data)
        enabled, age = bool(st.get("enabled", False)), st.get("chunk_age_s")
        unanswered = st.get("unanswered_request_age_s")
        age = None if age is None else float(age)
        unanswered = None if unanswered is None else float(unanswered)
    except (ValueError, AttributeError, TypeError):
        return True, False, "malformed /policy/state"
    if not enabled:
        return False, True, ""
    if st.get("server_lost"):
        return True, False, "connection to the policy server lost"
    if unanswered is not None:
        return True, False, f"no answer from the policy server: request {unanswered * 1e3:.0f} ms old"
    if age is not None and not age <= chunk_timeout_s:
        return True, False, f"chunk {age * 1e3:.0f} ms old"
    return True, True, ""


def process_exit_report(data: str) -> Result:
    """One `contract.SAFETY_PROCESS_EXIT` message (JSON, from the launcher): Result(value=(node, detail)).

    The detail names how the process ended ("killed by SIGKILL", "exit code 0"); it is not lateness
    (`only_lateness`): a dead node is not a late one.  Malformed reports are refused.
    """
    try:
        report = json.loads(data)
        node, code = report["node"], report.get("returncode")
    except (ValueError, TypeError, KeyError) as exc:
        return Result.failure(f"malformed process exit report: {type(exc).__name__}: {exc}")
    if not isinstance(node, str) or not node or (code is not None and (isinstance(code, bool)
                                                                      or not isinstance(code, int))):
        return Result.failure(f"malformed process exit report: node {node!r}, returncode {code!r}")
    if code is None:
        how = "exit status unknown"
    elif code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    reporter = report.get("reporter") if isinstance(report.get("reporter"), str) else "its launcher"
    return Result.success((node, f"stopped (process exited: {how}; told by {reporter})"))


@dataclass
class Watchdog:
    """One watched source.  `lead_s` > 0 makes the timeout a deadline: a judge that runs every
    `lead_s` counts the source silent once it would pass the timeout before the next judgement, so
    the FAULT is out by the timeout instead of up to one period after it (the contract's console
    link 200 ms is also the issue's link-loss budget: judged at 50 Hz, 200 ms of silence was
    reported at 207-212 ms in the fault suite)."""

    name: str
    timeout_s: float
    last_s: float | None = None       # None: not armed
    bad: str = ""                     # the source's own report of a fault, "" when fine
    lead_s: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.lead_s < self.timeout_s:
            raise ValueError(f"{self.name}: lead {self.lead_s} s must be >= 0 and below the timeout "
                             f"{self.timeout_s} s")

    def cause(self, now: float) -> str:
        if self.bad:
            return f"{self.name}: {self.bad}"
        if self.last_s is not None and now - self.last_s > self.timeout_s - self.lead_s:
            due = f", due by {self.timeout_s * 1e3:.0f} ms" if self.lead_s else ""
            return (f"{self.name}: silent for {(now - self.last_s) * 1e3:.0f} ms "
                    f"(> {(self.timeout_s - self.lead_s) * 1e3:.0f} ms{due})")
        return ""

    def fresh(self, now: float) -> bool:
        """Armed and no cause now: fed within its timeout, not reporting a fault."""
        return self.last_s is not None and not self.cause(now)


@dataclass
class SupervisorCore:
    config: SupervisorConfig = field(default_factory=SupervisorConfig)
    state: State = State.OK
    reasons: list[str] = field(default_factory=list)     # latched: why the state left OK
    watchdogs: dict[str, Watchdog] = field(default_factory=dict)
    estop_requested: bool = False
    changed_at_s: float | None = None

    def watch(self, name: str, timeout_s: float, lead_s: float = 0.0) -> None:
        """Declare a watched source (not armed until its first `feed`); `lead_s`: see `Watchdog`."""
        if timeout_s <= 0:
            raise ValueError(f"{name}: timeout must be > 0")
        self.watchdogs[name] = Watchdog(name, timeout_s, lead_s=lead_s)

    def _dog(self, name: str) -> Watchdog:
        dog = self.watchdogs.get(name)
        if dog is None:
            raise KeyError(f"unknown watchdog {name!r}")
        return dog

    def feed(self, name: str, now: float, ok: bool = True, detail: str = "") -> None:
        dog = self._dog(name)
        dog.last_s = now
        dog.bad = "" if ok else (detail or "reported a fault")

    def fresh(self, name: str, now: float) -> bool:
        """Whether watchdog `name` has heard its source within its timeout (and no fault from it)."""
        return self._dog(name).fresh(now)

    def disarm(self, name: str) -> None:
        dog = self.watchdogs[name]
        dog.last_s, dog.bad = None, ""

    def active_causes(self, now: float) -> list[str]:
        causes = [c for c in (d.cause(now) for d in self.watchdogs.values()) if c]
        if self.estop_requested:
            causes.insert(0, "e-stop pressed")
        return causes

    def estop(self, now: float, reason: str = "e-stop requested") -> Result[State]:
        self.estop_requested = True
        if self.state is not State.ESTOP:
            self._enter(State.ESTOP, [reason], now)
        return Result.success(self.state)

    def step(self, now: float) -> bool:
        """Evaluate the watchdogs; True when the state changed."""
        if self.state is State.OK:
            causes = [c for c in (d.cause(now) for d in self.watchdogs.values()) if c]
            if causes:
                self._enter(State.FAULT, causes, now)
                return True
        return False

    def reset(self, now: float) -> Result[State]:
        """Back to OK only when nothing persists; refused with the causes otherwise."""
        self.estop_requested = False
        causes = self.active_causes(now)
        if causes:
            return Result.failure("reset refused, still: " + "; ".join(causes))
        self.state, self.reasons, self.changed_at_s = State.OK, [], now
        return Result.success(self.state)

    def _enter(self, state: State, reasons: list[str], now: float) -> None:
        self.state, self.reasons, self.changed_at_s = state, list(reasons), now

    def to_json(self, now: float) -> dict:
        """The `/safety/state` payload (contract: state, reasons) plus the causes active now."""
        return {"state": self.state.value, "reasons": list(self.reasons), "active": self.active_causes(now)}
