"""Fault-injection suite (issue 16): every fault ends in a safe, explained state, judged from ground truth.

One stack for the whole module (tests/fault_harness.py: `surgbot up --console`
node set with the shipped parameter files, the sim twin, a policy node on a
fault-injectable pyzmq policy server, the scripted WSS operator); each
scenario first brings it to a known state (supervisor OK after a reset, G1
engaged, holder in HOLD, PSM enabled and homed), injects one fault, measures,
removes the cause, checks that nothing resumed by itself, and resets.

Per scenario (the JSON row, and `docs/safety.md` generated from it by
`python -m scripts.safety_table`): detection time (first non-OK
`/safety/state` seen from outside), time to the safe state (the later of the
detection and the last change of any actuator setpoint: the PSM twin's
`setpoint_js`/`jaw/setpoint_js`, `rt/arm_sdk` targets as the G1 twin gets
them), the largest ground-truth displacement of the PSM tip and of the scope
tip after the fault, whether a setpoint changed after the budget, and
whether recovery needed the explicit reset (state still latched, nothing
moving, once the cause was gone).

Budgets (the issue's): e-stop 50 ms, link loss 200 ms, stale state 100 ms;
scope tip < 1 mm and PSM tip < 2 mm after the fault.  Rejected input (NaN,
bad CRC, wrong token ...) is refused where it enters: nothing latches, the
figures are the displacements.  The asserts are the budgets on ground truth;
a scenario whose precondition was broken by load (a watchdog of the shipped
stack tripping before the injection) is set up again, and the count is
recorded (`attempts`).

Results go to $SURGBOT_SAFETY_RESULTS (default: the test's tmp folder), after
every scenario; SURGBOT_SAFETY_MERGE=1 keeps that file's other scenarios (a
rerun of some with -k).  SURGBOT_FAULT_TRACE=1 prints both tips' paths around
each fault (with -s: how a tip moved, not only how far).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from sensor_msgs.msg import JointState

from surgbot.control.policy_exec import PolicyExecConfig
from tests import teleop_operator as operator_script
from tests.conftest import PYTHON, REPO
from tests.fault_harness import G1_DOMAIN, OPERATOR, POLICY_SERVER, FaultStack, Observer, faults_realtime_level, margins
from tests.fault_policy_server import first_request_marker

pytestmark = [pytest.mark.sim, pytest.mark.faults]

BUDGET_MS = {"estop": 50.0, "link": 200.0, "stale": 100.0, "input": None}
SCOPE_MAX_MM = 1.0
PSM_MAX_MM = 2.0
READY_TIMEOUT_S = 90.0
QUIET_BEFORE_S = 0.5            # the state must have been OK this long before an injection
# ... and both tips still (ground truth): a preceding scenario's re-engage or settling is not
# counted as the next fault's displacement
STILL_SPAN_S, STILL_MM, STILL_TIMEOUT_S = 0.5, 0.05, 20.0
FIRST_REQUEST_S = 3.0           # a running policy node asks for a chunk every ~0.53 s
SERVER_TIMEOUT_S = PolicyExecConfig().server_timeout_s    # the policy node's, as shipped
# set-ups a load trip broke (never a measured scenario) before the scenario is a miss: 3 were all
# broken for console_link_drop once on the 2-core machine (liveliness lapses, a 57 ms lowstate gap)
ATTEMPTS = 5
RESULTS: dict[str, dict] = {}
RESULTS_DEFAULT = [Path("safety_faults.json")]
if os.environ.get("SURGBOT_SAFETY_MERGE") == "1" and Path(os.environ.get("SURGBOT_SAFETY_RESULTS", "")).is_file():
    # rerun some scenarios (-k) and keep the others' last figures
    RESULTS.update(json.loads(Path(os.environ["SURGBOT_SAFETY_RESULTS"]).read_text())["scenarios"])


@dataclass
class Rig:
    fs: FaultStack
    o: Observer
    tmp: Path
    notes: list[str] = field(default_factory=list)
    moves: int = 0


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    RESULTS_DEFAULT[0] = tmp / "safety_faults.json"
    fs = FaultStack(tmp / "logs", tmp / "policy_mode")
    o = Observer()
    t0 = time.monotonic()
    fs.start()
    r = Rig(fs, o, tmp)
    try:
        assert o.wait(lambda: o.gt_psm.latest() is not None and o.gt_scope.latest() is not None, 120), \
            fs.log("sim_node")[-3000:]
        fs.start_operator()
        assert o.wait(fs.operator_welcomed, 60), fs.log(OPERATOR) + fs.log("teleop_console")[-2000:]
        o.psm.wait_for_state(30.0)
        print(f"\nfault-injection stack up in {time.monotonic() - t0:.1f} s")
        yield r
    finally:
        print(f"fault-injection results: {save()}")
        o.close()
        fs.stop()


def save() -> Path:
    """The results so far (written after every scenario: a run cut short still leaves its figures)."""
    out = Path(os.environ.get("SURGBOT_SAFETY_RESULTS", RESULTS_DEFAULT[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"budgets_ms": BUDGET_MS, "scope_max_mm": SCOPE_MAX_MM, "psm_max_mm": PSM_MAX_MM,
                               "watchdog_overrides": margins(), "load_average_1min": round(os.getloadavg()[0], 1),
                               "realtime": faults_realtime_level(),
                               "scenarios": RESULTS}, indent=1) + "\n")
    return out


# --------------------------------------------------------------------------- bringing the stack to a known state
def ready(r: Rig) -> None:
    fs, o = r.fs, r.o
    fs.mode_file.write_text("normal")
    for name in fs.dead():
        fs.restart(name)
    if fs.operator is None or fs.operator.poll() is not None:
        fs.start_operator()
    assert o.wait(fs.operator_welcomed, 60), fs.log(OPERATOR)
    fs.op(streaming=True, clutch=0)
    o.psm.trajectory_j_set_ratio(1.0)
    if o.policy.get("enabled"):
        o.set_bool(o.policy_enable, False, timeout=30)
    st = o.psm.wait_for_state(30.0)
    if st["state"] == "FAULT":
        o.psm.disable(10.0)
    st = o.psm.operating_state()
    if not (st["state"] == "ENABLED" and st["is_homed"]):
        o.psm.enable(30.0)
        o.psm.home(60.0)
    end = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < end:
        try:
            res = o.trigger(o.reset, timeout=10)
            last = res.message
            if not res.success:
                acknowledge(o, res.message)
            if res.success and o.wait(lambda: o.state() == "OK", 2):
                eng = o.trigger(o.engage, timeout=10)
                last = eng.message
                if eng.success and o.wait(lambda: o.bridge().startswith("ENGAGED"), 30):
                    hold = o.set_bool(o.hold, True, timeout=10)
                    last = hold.message
                    if hold.success and o.wait(lambda: o.mode == "HOLD", 5) and _quiet(o, QUIET_BEFORE_S):
                        if not o.wait(lambda: o.tips_still(STILL_SPAN_S, STILL_MM), STILL_TIMEOUT_S, period=0.1):
                            # measured anyway: the row's *_drift_before_mm says how much was moving
                            r.notes.append(f"tips not still within {STILL_TIMEOUT_S} s before the injection")
                        return
        except AssertionError as exc:      # a restarted node's service not answering yet: ask again
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"stack not ready in {READY_TIMEOUT_S} s: {last}; state {o.state()} {o.reasons()}; "
                         f"bridge {o.bridge()!r}; holder {o.mode}; dead {fs.dead()}; "
                         f"state heard {time.monotonic() - o.safety_heard():.1f} s ago; supervisor log:\n"
                         + fs.log("safety_supervisor")[-1500:])


def acknowledge(o: Observer, refusal: str) -> None:
    """A reset refused because a node reports its own FAULT: what its user does (hold / engage) acknowledges
    it (the node stays frozen, reported as held by safety), so the next reset can go through."""
    if "endoscope_holder" in refusal:
        o.set_bool(o.hold, True, timeout=30)
    if "g1_bridge" in refusal:
        o.trigger(o.engage, timeout=30)


def _quiet(o: Observer, span: float) -> bool:
    """OK for `span` seconds without a break."""
    t0 = time.monotonic()
    ok = o.wait(lambda: o.state() != "OK" or time.monotonic() - t0 >= span, span + 1.0)
    return ok and o.state() == "OK"


def clutch_and_move(r: Rig, seconds: float = 3.0) -> None:
    """The operator clutches and moves the hand 5 cm up or down (alternately, so neither the hand nor the
    tool drifts over the suite) over `seconds`: 1 cm of tool at scale 0.2, ~3 mm/s."""
    fs, o = r.fs, r.o
    fs.op(clutch=1)
    assert o.wait(lambda: o.mapper.get("state") == "FOLLOWING", 5), o.mapper
    r.moves += 1
    fs.op(hand=[0.0, 0.05 if r.moves % 2 else -0.05, 0.0], seconds=seconds)


def clutch_still(r: Rig) -> None:
    """The operator clutches and holds the hand still (a fault then is the only thing that could move)."""
    fs, o = r.fs, r.o
    fs.op(clutch=1)
    assert o.wait(lambda: o.mapper.get("state") == "FOLLOWING", 5), o.mapper
    time.sleep(0.5)


def run_policy(r: Rig) -> None:
    o = r.o
    res = o.set_bool(o.policy_enable, True, timeout=30)
    assert res.success, res.message
    assert o.wait(lambda: o.policy.get("state") == "RUNNING", 30), o.policy


# --------------------------------------------------------------------------- one scenario
@dataclass
class Scenario:
    name: str
    hazard: str
    detection: str                 # what detects it
    reaction: str                  # what the stack does
    budget: str                    # key of BUDGET_MS
    inject: object                 # (rig) -> t_fault
    prepare: object = None         # (rig) -> None, after ready()
    restore: object = None         # (rig) -> None, removes the cause
    latching: bool = True          # the safety state must leave OK (False: input refused where it enters)
    cause: str = ""                # substrings ("a|b") one of the first reasons must hold (else a load trip: again)
    window_s: float = 1.5          # measured this long after the detection (or the injection)
    detect_within_s: float = 2.0   # a latching fault must be detected within this
    motion_after_s: float = 0.0    # displacements measured from this long after the fault (see figures)
    # the fault starts this long after the injection's time: a slow server's request is a fault only
    # once its answer is overdue (before that it is a healthy request, whatever the server will do);
    # the figures from the injection are kept in the row ("from_injection")
    fault_delay_s: float = 0.0


def measure(r: Rig, sc: Scenario) -> dict:
    o = r.o
    budget = BUDGET_MS[sc.budget]
    for attempt in range(1, ATTEMPTS + 1):
        ready(r)
        if sc.prepare is not None:
            try:
                sc.prepare(r)
            except AssertionError as exc:
                if o.state() == "OK":
                    raise
                # a watchdog tripped by load while preparing (e.g. /policy/enable refused): again
                r.notes.append(f"{sc.name}: attempt {attempt}: preparing failed ({exc}) with {o.reasons()}")
                continue
        if o.state() != "OK":
            r.notes.append(f"{sc.name}: attempt {attempt}: tripped while preparing: {o.reasons()}")
            continue
        t_injected = sc.inject(r)
        t_fault = t_injected + sc.fault_delay_s
        if sc.latching:
            o.wait(lambda t=t_fault: _first_bad(o, t) is not None, sc.detect_within_s)
            bad = _first_bad(o, t_fault)
            if bad is not None and sc.cause and not any(c in x for c in sc.cause.split("|") for x in bad[1]):
                r.notes.append(f"{sc.name}: attempt {attempt}: tripped by {bad[1]} first (load), again")
                if sc.restore is not None:
                    sc.restore(r)
                continue
            t_end = (bad[0] if bad else t_fault + sc.detect_within_s) + sc.window_s
        else:
            t_end = t_fault + sc.window_s
        time.sleep(max(0.0, t_end - time.monotonic()))
        figs = o.figures(t_fault, t_end, budget if budget is not None else float("inf"), sc.latching,
                         measure_safe=sc.latching or sc.name == "supervisor_sigkill",
                         motion_from=t_fault + sc.motion_after_s if sc.motion_after_s else None)
        if not sc.latching:
            figs["tripped"] = _first_bad(o, t_fault) is not None    # a load trip here is reported, not hidden
        if os.environ.get("SURGBOT_FAULT_TRACE"):       # both tips' paths around the fault, printed (-s)
            print(o.trace(sc.name, t_fault, t_end))
        if sc.fault_delay_s:
            first = _first_bad(o, t_injected)
            figs["fault_after_injection_ms"] = round(sc.fault_delay_s * 1e3, 1)
            figs["from_injection"] = {
                "detection_ms": None if first is None else round((first[0] - t_injected) * 1e3, 1),
                **{f"{tip}_max_mm": None if (d := o.displacement_mm(series, t_injected, t_end)) is None
                   else round(d, 4) for tip, series in (("psm_tip", o.gt_psm), ("scope_tip", o.gt_scope))}}
        if sc.restore is not None:
            sc.restore(r)
        row = {"hazard": sc.hazard, "detection": sc.detection, "reaction": sc.reaction, "budget": sc.budget,
               "budget_ms": budget, "attempts": attempt, "test": scenario_test_id(sc), **figs}
        if sc.latching:
            t_check = time.monotonic()
            time.sleep(1.0)
            row["latched_after_cause_removed"] = o.state() != "OK"
            row["resumed_by_itself"] = not o.still_since(t_check)
            res = o.trigger(o.reset, timeout=30)
            row["reset_required"] = row["latched_after_cause_removed"] and not row["resumed_by_itself"]
            row["reset_answer"] = res.message
        RESULTS[sc.name] = row
        print(f"\n{sc.name}: {json.dumps(row)}")
        save()
        return row
    RESULTS[sc.name] = {"hazard": sc.hazard, "detection": sc.detection, "reaction": sc.reaction,
                        "budget": sc.budget, "error": "precondition broken by load in every attempt",
                        "notes": r.notes[-ATTEMPTS:]}
    save()
    raise AssertionError(f"{sc.name}: no clean attempt in {ATTEMPTS}: {r.notes[-ATTEMPTS:]}")


def scenario_test_id(sc: Scenario) -> str:
    return f"tests/test_fault_injection.py::test_fault[{sc.name}]"


def _first_bad(o: Observer, t0: float):
    ts, states = o.safety.between(t0)
    for t, s in zip(ts, states, strict=True):
        if s[0] != "OK":
            return t, s[1]
    return None


def judge(row: dict, sc: Scenario) -> None:
    """The issue's acceptance on one scenario's ground-truth figures."""
    problems = []
    budget = BUDGET_MS[sc.budget]
    if row.get("scope_tip_max_mm") is None or row["scope_tip_max_mm"] >= SCOPE_MAX_MM:
        problems.append(f"scope tip moved {row.get('scope_tip_max_mm')} mm (< {SCOPE_MAX_MM})")
    if row.get("psm_tip_max_mm") is None or row["psm_tip_max_mm"] >= PSM_MAX_MM:
        problems.append(f"PSM tip moved {row.get('psm_tip_max_mm')} mm (< {PSM_MAX_MM})")
    if sc.latching:
        if row["detection_ms"] is None:
            problems.append("never detected")
        if budget is not None and (row["time_to_safe_ms"] is None or row["time_to_safe_ms"] > budget):
            problems.append(f"safe after {row['time_to_safe_ms']} ms (budget {budget})")
        if row["command_after_budget"]:
            problems.append(f"setpoints changed after the budget: {row['last_setpoint_change_ms']}")
        if not row["reset_required"]:
            problems.append("recovered without the explicit reset")
    assert not problems, f"{sc.name}: " + "; ".join(problems) + f"\n{json.dumps(row)}"


# --------------------------------------------------------------------------- injections
def now() -> float:
    return time.monotonic()


def estop(r: Rig) -> float:
    t = now()
    assert r.o.trigger(r.o.estop).success
    return t


def kill(name: str, sig: int = signal.SIGKILL):
    def inject(r: Rig) -> float:
        t = now()
        r.fs.kill(name, sig)
        return t
    return inject


def restart(name: str):
    def restore(r: Rig) -> None:
        r.fs.restart(name)
    return restore


def stop_for(name: str, seconds: float):
    def inject(r: Rig) -> float:
        t = now()
        r.fs.send_signal(name, signal.SIGSTOP)
        time.sleep(seconds)
        r.fs.send_signal(name, signal.SIGCONT)
        return t
    return inject


def policy_mode(mode: str):
    """The server turns faulty; the fault starts as its first faulty answer leaves it (the node plays the
    valid chunk it holds until it has that answer: that motion is not the fault's; slow: the request's
    arrival, and the scenario adds the node's deadline)."""
    def inject(r: Rig) -> float:
        marker = first_request_marker(r.fs.mode_file)
        marker.unlink(missing_ok=True)
        t = now()
        r.fs.mode_file.write_text(mode)
        if not r.o.wait(lambda: marker.is_file() and marker.read_text().split()[:1] == [mode], FIRST_REQUEST_S):
            r.notes.append(f"policy server: no request in mode {mode} within {FIRST_REQUEST_S} s")
            return t
        return float(marker.read_text().split()[1])
    return inject


def policy_normal(r: Rig) -> None:
    r.fs.mode_file.write_text("normal")
    r.o.set_bool(r.o.policy_enable, False, timeout=30)


def after(prepare, seconds: float):
    def run(r: Rig) -> None:
        prepare(r)
        time.sleep(seconds)
    return run


def streaming_off(r: Rig) -> float:
    """The link drops: the fault time is when the operator sent its last sample (it reports it), not
    when it was told to stop (it sent samples meanwhile: the console link then FAULTed 215 ms after
    the request while silent 187 ms at the supervisor)."""
    def stopped_lines() -> list[str]:
        return [ln for ln in r.fs.log(OPERATOR).splitlines() if ln.startswith(operator_script.STOPPED)]

    t = now()
    before = len(stopped_lines())
    r.fs.op(streaming=False)
    end = now() + 2.0
    while len(lines := stopped_lines()) <= before and now() < end:
        time.sleep(0.005)
    return float(lines[-1].split()[-1]) if len(lines) > before else t


def streaming_on(r: Rig) -> None:
    r.fs.op(streaming=True, clutch=0)


def operator_fault(**fault):
    def inject(r: Rig) -> float:
        t = now()
        r.fs.op(**fault)
        return t
    return inject


def release_clutch(r: Rig) -> None:
    r.fs.op(clutch=0)


def move_jp_slowly(r: Rig) -> None:
    """A 0.15 rad yaw move at 10 % of the dVRK's trajectory limits (~20 mm/s at the tip)."""
    o = r.o
    o.psm.trajectory_j_set_ratio(0.1)
    q = np.asarray(o.psm_sp.latest(), float).copy()
    q[0] += 0.15 if q[0] < 0.5 else -0.15
    o.psm.move_jp(q)
    time.sleep(0.5)


def tool_follow_with_policy(r: Rig) -> None:
    o = r.o
    res = o.set_bool(o.follow_tool, True)
    assert res.success, res.message
    assert o.wait(lambda: o.mode == "TOOL_FOLLOW", 5), o.mode
    run_policy(r)
    time.sleep(1.5)


def arm_sdk_injection(bad_crc: bool, topic: str, mode_machine: int = 5):
    """50 samples at 500 Hz moving the scope arm's right elbow 0.3 rad at full weight (all should be dropped),
    from their own process (tests/fault_g1_sender.py)."""
    def inject(r: Rig) -> float:
        last = r.o.arm_sdk.latest()
        elbow = 22 + 3                                  # right elbow, contract order
        target = float(last[elbow - 12]) + 0.3 if last is not None else 0.3
        sender = subprocess.Popen([PYTHON, "-m", "tests.fault_g1_sender", str(G1_DOMAIN), topic, str(elbow),
                                   str(target), str(mode_machine), "1" if bad_crc else "0", "50"], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = sender.communicate(timeout=60)[0]
        assert sender.returncode == 0 and "sent 50" in out, out
        return now() - 0.15                         # the 50 samples went out over the last ~0.1 s
    return inject


def psm_tracking_fault(r: Rig) -> float:
    """A generalized force of 2x the yaw actuator's limit until the twin declares FAULT; t_fault = then."""
    o = r.o
    o.disturbance.publish(JointState(name=["yaw"], effort=[60.0]))
    ok = o.wait(lambda: (o.psm.operating_state() or {}).get("state") == "FAULT", 5, period=0.001)
    t = now()
    o.disturbance.publish(JointState(name=["yaw"], effort=[0.0]))
    assert ok, "the PSM twin did not FAULT"
    return t


# The push is removed right after the FAULT is seen; by this long after it the arm has stopped under its
# own damping.  Until then it moves with the push: a force above the actuators' is not held by any
# controller, so what the stack answers for is that the arm stays put once it ends (no spring-back).
PUSH_END_S = 0.3


def psm_recover(r: Rig) -> None:
    r.o.disturbance.publish(JointState(name=["yaw"], effort=[0.0]))


def wrong_token(r: Rig) -> float:
    """A second client with a wrong token: closed with 4401, nothing published."""
    t = now()
    code = asyncio.run(_hello(r.fs.console_url_port(), "not-the-token"))
    r.notes.append(f"wrong token: close code {code}")
    RESULTS.setdefault("_console", {})["wrong_token_close_code"] = code
    assert code == 4401, code
    return t


async def _hello(port: int, token: str) -> int | None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"wss://127.0.0.1:{port}/ws", ssl=ctx, headers={"Origin": f"https://127.0.0.1:{port}"})
        await ws.send_str(json.dumps({"type": "hello", "token": token}))
        await ws.send_str(json.dumps({"type": "xr", "t": 0, "right": {"pose": [0.0] * 16}}))
        await ws.receive(timeout=10)
        return ws.close_code


def ctl(r: Rig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "surgbot.cli", "ctl", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


def estop_by_ctl(r: Rig) -> float:
    t = now()
    out = ctl(r, "estop")
    assert out.returncode == 0, out.stderr
    return t


# --------------------------------------------------------------------------- the scenarios
HOLDING = "G1 holds the scope in HOLD, PSM enabled and still"
EXIT_REPORT = "the launcher's exit report (/safety/process_exit)"
SCENARIOS = [
    Scenario("estop_while_holding", f"e-stop pressed ({HOLDING})", "/safety/estop",
             "ESTOP: PSM hold, bridge freezes its targets at full weight, holder FAULT-frozen", "estop", estop,
             cause="e-stop"),
    Scenario("estop_by_surgbot_ctl", "e-stop from the command line (`surgbot ctl estop`)",
             "/safety/estop (surgbot ctl, through the stack's ctl relay: no DDS participant of its own)",
             "as e-stop; the time includes the CLI's start (a Python process: not a reaction)",
             "input", estop_by_ctl, cause="e-stop"),
    Scenario("estop_during_move_jp", "e-stop during a PSM move_jp (~20 mm/s at the tip)", "/safety/estop",
             "ESTOP: /PSM1/hold stops the trajectory", "estop", estop, prepare=move_jp_slowly, cause="e-stop"),
    Scenario("estop_during_teleop", "e-stop while the operator moves the PSM (clutched)", "/safety/estop",
             "ESTOP: the mapper stops at once and needs a fresh clutch", "estop", estop,
             prepare=after(clutch_and_move, 1.0), restore=release_clutch, cause="e-stop"),
    Scenario("estop_during_policy", "e-stop while the policy drives the PSM", "/safety/estop",
             "ESTOP: the policy node publishes nothing and needs /policy/enable", "estop", estop,
             prepare=run_policy, restore=policy_normal, cause="e-stop"),
    Scenario("estop_during_tool_follow", "e-stop while the scope follows the moving tool (TOOL_FOLLOW)",
             "/safety/estop", "ESTOP: PSM and scope stop; holder FAULT-frozen", "estop", estop,
             prepare=tool_follow_with_policy, restore=policy_normal, cause="e-stop"),
    Scenario("console_link_drop", "the operator's link drops while clutched and moving",
             "supervisor console link watchdog (200 ms); mapper link timeout", "FAULT; mapper NEED_CLUTCH",
             "link", streaming_off, prepare=after(clutch_and_move, 1.0), restore=streaming_on,
             cause="console_link"),
    Scenario("console_sends_nan", "the page sends a NaN pose while clutched", "console protocol check",
             "message refused and counted; nothing commanded from it", "input", operator_fault(nan=True),
             prepare=clutch_still, restore=release_clutch, latching=False),
    Scenario("console_glitch_20m", "a 20 m one-sample jump of the tracked hand while clutched",
             "console protocol check (a pose > 10 m away is not a person)", "message refused and counted",
             "input", operator_fault(glitch=[0.0, 0.0, 20.0]), prepare=clutch_still,
             restore=release_clutch, latching=False),
    Scenario("console_glitch_1m", "a 1 m one-sample jump of the tracked hand while clutched",
             "mapper hand-jump check (shipped max_hand_jump_m 0.1 m, surgbot.safety.checks.step_within)",
             "sample refused and counted; the next sample is followed", "input", operator_fault(glitch=[0.0, 0.0, 1.0]),
             prepare=clutch_still, restore=release_clutch, latching=False),
    Scenario("console_wrong_token", "a client with a wrong token", "console hello check",
             "socket closed with 4401, nothing published", "input", wrong_token, latching=False),
    Scenario("console_sigkill", "console process killed (SIGKILL) while clutched and moving",
             f"{EXIT_REPORT}; console link watchdog (200 ms, /teleop/head); teleop_console liveliness (/safety/alive, "
             "150 ms lease) when the operator is not streaming",
             "FAULT; the mapper stops (link timeout)", "link",
             kill("teleop_console"), prepare=after(clutch_and_move, 1.0), restore=restart("teleop_console"),
             cause="console"),
    Scenario("policy_server_sigkill", "policy server killed while the policy drives the PSM",
             "policy node server timeout (0.5 s); supervisor chunk-age watchdog", "HOLD, then FAULT", "link",
             kill(POLICY_SERVER), prepare=after(run_policy, 0.5), restore=lambda r: (r.fs.restart(POLICY_SERVER),
                                                                                     policy_normal(r)),
             cause="policy", detect_within_s=4.0),
    Scenario("policy_server_slow", "policy server answers after 2.5 s (> 2 chunk periods)",
             f"policy node server timeout ({SERVER_TIMEOUT_S} s; the fault starts there: a request is "
             "healthy until its answer is overdue): /policy/state reports the unanswered request",
             "HOLD, then FAULT", "link",
             policy_mode("slow"), prepare=after(run_policy, 0.5), restore=policy_normal, cause="policy",
             detect_within_s=4.0, fault_delay_s=SERVER_TIMEOUT_S),
    Scenario("policy_nan_chunk", "policy server returns NaN chunks", "policy gate (finite check)",
             "chunk refused, HOLD (nothing new commanded)", "input", policy_mode("nan"),
             prepare=after(run_policy, 0.5), restore=policy_normal, latching=False, window_s=2.0),
    Scenario("policy_out_of_workspace", "policy server returns chunks 10 cm outside the workspace",
             "policy gate (shipped exec.workspace_refuse_margin_m 1 cm, surgbot.safety.checks.in_box)",
             "chunk refused, HOLD (the last command repeated)", "input", policy_mode("outside"),
             prepare=after(run_policy, 0.5), restore=policy_normal, latching=False, window_s=2.0),
    Scenario("policy_node_sigkill", "policy node killed while driving the PSM",
             f"supervisor: {EXIT_REPORT}; policy_node liveliness (/safety/alive, 500 ms lease); /policy/state watchdog",
             "PSM keeps its last setpoint; FAULT", "link",
             kill("policy_node"), prepare=after(run_policy, 0.5), restore=restart("policy_node"), cause="policy",
             detect_within_s=3.0),
    Scenario("sim_frozen_300ms", "rt/lowstate and /PSM1/measured_js stop for 300 ms (twin process stopped)",
             "supervisor lowstate (50 ms) and measured_js (100 ms) watchdogs; bridge stale lowstate",
             "FAULT; the bridge stops streaming (the robot keeps the last command)", "stale",
             stop_for("sim_node", 0.3), cause="g1_lowstate|psm_measured_js|alive:sim_node"),
    Scenario("sim_time_jump", "the twin stalls 1 s and its clock jumps ahead on resume",
             "supervisor watchdogs; bridge stale lowstate; holder joint-state timeout", "FAULT, all frozen",
             "stale", stop_for("sim_node", 1.0), cause="", window_s=2.0),
    Scenario("arm_sdk_bad_crc", "rt/arm_sdk commands with a bad CRC (right elbow +0.3 rad, weight 1)",
             "G1 CRC check", "dropped and counted by the robot", "input", arm_sdk_injection(True, "arm_sdk"),
             latching=False),
    Scenario("lowcmd_wrong_mode_machine", "rt/lowcmd with mode_machine 3 (right elbow +0.3 rad)",
             "G1 mode_machine check", "dropped and counted by the robot", "input",
             arm_sdk_injection(False, "lowcmd", mode_machine=3), latching=False),
    Scenario("psm_tracking_error_fault", "PSM tracking error (2x the yaw actuator's force) -> PSM FAULT",
             "PSM twin tracking check; supervisor watches /PSM1/operating_state",
             "PSM FAULT (unpowered, held where the push left it: PSM tip from 0.3 s after the FAULT, when "
             "the push has ended); stack FAULT",
             "stale", psm_tracking_fault, restore=psm_recover, cause="psm_operating_state",
             motion_after_s=PUSH_END_S),
    Scenario("holder_sigkill", f"endoscope holder killed (SIGKILL) ({HOLDING})",
             f"supervisor: {EXIT_REPORT}; endoscope_holder liveliness (/safety/alive, 150 ms lease)",
             "the bridge keeps the last targets; FAULT", "link", kill("endoscope_holder"),
             restore=restart("endoscope_holder"), cause="endoscope_holder",
             detect_within_s=5.0),
    Scenario("holder_sigterm", "endoscope holder stopped (SIGTERM)",
             f"supervisor: endoscope_holder liveliness (/safety/alive: the publisher leaves); {EXIT_REPORT}",
             "the bridge keeps the last targets; FAULT", "link", kill("endoscope_holder", signal.SIGTERM),
             restore=restart("endoscope_holder"),
             cause="endoscope_holder", detect_within_s=5.0),
    Scenario("holder_sigstop_300ms", "holder starved of CPU for 300 ms (SIGSTOP)",
             "supervisor: endoscope_holder liveliness (150 ms lease); the holder skips its late tick "
             "(own stall) and judges the joint states that queued",
             "frozen; FAULT", "link",
             stop_for("endoscope_holder", 0.3), cause="endoscope_holder", detect_within_s=3.0),
    Scenario("bridge_sigkill", "G1 bridge killed (SIGKILL)",
             f"supervisor lowstate watchdog (/g1/joint_states); {EXIT_REPORT}; g1_bridge liveliness (150 ms lease)",
             "the robot keeps the last arm_sdk command; FAULT", "stale", kill("g1_bridge"),
             restore=restart("g1_bridge"), cause="g1_"),
    Scenario("bridge_sigterm", "G1 bridge stopped (SIGTERM) while engaged",
             f"supervisor lowstate watchdog (/g1/joint_states); {EXIT_REPORT}; g1_bridge liveliness",
             "shutdown holds (release_on_shutdown false)",
             "stale", kill("g1_bridge", signal.SIGTERM), restore=restart("g1_bridge"), cause="g1_"),
    Scenario("bridge_restarted_while_engaged", "G1 bridge stopped and started again while the arm holds the scope",
             "supervisor lowstate watchdog; then a person resets and engages",
             "the robot keeps the last command; the new bridge engages from the weight the robot still holds "
             "(bridge weight memory) on the measured posture", "stale", kill("g1_bridge", signal.SIGTERM),
             latching=False),
    Scenario("mapper_sigkill", "teleop mapper killed while the operator moves the PSM",
             f"supervisor: {EXIT_REPORT}; teleop_mapper liveliness (/safety/alive, 150 ms lease)",
             "no servo_cp: the PSM holds its last setpoint; FAULT", "link",
             kill("teleop_mapper"), prepare=after(clutch_and_move, 1.0),
             restore=lambda r: (release_clutch(r), r.fs.restart("teleop_mapper")), cause="teleop_mapper",
             detect_within_s=5.0),
    Scenario("supervisor_sigkill", "safety supervisor killed while the policy drives the PSM",
             "every command source: /safety/state silent 250 ms (fail-safe)",
             "policy node, mapper, holder, bridge hold and report it; nothing moves until reset + re-enable",
             "link", kill("safety_supervisor"), prepare=after(run_policy, 0.5),
             restore=lambda r: (policy_normal(r), r.fs.restart("safety_supervisor")), latching=False,
             window_s=1.5),
    Scenario("reset_while_cause_persists", "reset asked while the console link is still down",
             "supervisor console link watchdog", "reset refused, naming the cause", "link", streaming_off,
             restore=streaming_on, cause="console_link"),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault(rig, sc: Scenario):
    if sc.name == "reset_while_cause_persists":
        _reset_while_cause_persists(rig, sc)
        return
    if sc.name == "supervisor_sigkill":
        _supervisor_killed(rig, sc)
        return
    if sc.name == "bridge_restarted_while_engaged":
        _bridge_restarted(rig, sc)
        return
    row = measure(rig, sc)
    if sc.name == "estop_by_surgbot_ctl":
        out = ctl(rig, "state")
        assert out.returncode == 0, out.stderr
    judge(row, sc)


def _reset_while_cause_persists(r: Rig, sc: Scenario) -> None:
    o = r.o
    ready(r)
    t = streaming_off(r)
    assert o.wait(lambda: _first_bad(o, t) is not None, 2.0)
    res = o.trigger(o.reset)
    refused = not res.success and "console_link" in res.message
    streaming_on(r)
    time.sleep(0.5)
    still = o.state() != "OK"
    # the figures end before the reset that goes through: what the re-enabled stack sends after it
    # is not a command after the fault
    figs = o.figures(t, time.monotonic(), BUDGET_MS["link"], True)
    ok = o.trigger(o.reset)
    RESULTS[sc.name] = {"hazard": sc.hazard, "detection": sc.detection, "reaction": sc.reaction,
                        "budget": sc.budget, "test": scenario_test_id(sc),
                        "reset_refused_while_cause": refused, "refusal": res.message,
                        "latched_after_cause_removed": still, "reset_after_cause": ok.success,
                        "reset_required": still, **figs}
    print(f"\n{sc.name}: {json.dumps(RESULTS[sc.name])}")
    save()
    assert refused, res.message
    assert still and ok.success, ok.message


def _supervisor_killed(r: Rig, sc: Scenario) -> None:
    """Fail-safe: no supervisor, nothing moves; the nodes say why; a new supervisor does not restart motion."""
    o = r.o
    row = measure(r, sc)      # restore restarts the supervisor (its state: OK) and disables the policy
    t_check = time.monotonic()
    reports = {}
    assert o.wait(lambda: o.state() == "OK", 60), "the restarted supervisor did not come up"
    time.sleep(1.5)
    for name in ("g1_bridge", "endoscope_holder", "teleop_mapper", "policy_node"):
        d = o.diag.get(name)
        reports[name] = d[2].get("safety", "") if d else ""
    row["resumed_by_itself"] = not o.still_since(t_check)
    row["node_reports"] = reports
    row["reset_required"] = not row["resumed_by_itself"]
    RESULTS[sc.name] = row
    print(f"\n{sc.name}: {json.dumps(row)}")
    save()
    judge(row, sc)
    assert row["time_to_safe_ms"] is not None and row["time_to_safe_ms"] <= BUDGET_MS[sc.budget], row
    assert all("silent" in v for v in reports.values()) or not row["resumed_by_itself"], reports
    assert not row["resumed_by_itself"], row


def _bridge_restarted(r: Rig, sc: Scenario) -> None:
    """Kill the bridge, start a new one, reset, engage: the scope must not move through all of it."""
    o, fs = r.o, r.fs
    ready(r)
    t0 = sc.inject(r)
    o.diag.pop("g1_bridge", None)
    fs.restart("g1_bridge")
    assert o.wait(lambda: o.bridge() != "", 90), fs.log("g1_bridge")[-2000:]

    def reset_ok() -> bool:
        res = o.trigger(o.reset, timeout=30)
        if not res.success:
            acknowledge(o, res.message)
        return res.success
    assert o.wait(reset_ok, 90, period=0.5), o.reasons()
    t_engage = now()
    res = o.trigger(o.engage)
    assert res.success, res.message
    assert o.wait(lambda: o.bridge().startswith("ENGAGED"), 30), o.bridge()
    time.sleep(1.5)
    row = {"hazard": sc.hazard, "detection": sc.detection, "reaction": sc.reaction, "budget": sc.budget,
           "budget_ms": None, "test": scenario_test_id(sc), "engaged_s_after_kill": round(t_engage - t0, 2),
           "bridge_after_engage": o.bridge(),
           **o.figures(t0, now(), float("inf"), True, measure_safe=False)}
    RESULTS[sc.name] = row
    print(f"\n{sc.name}: {json.dumps(row)}")
    save()
    judge(row, dataclasses.replace(sc, latching=False))
