"""The one safety filter and the supervisor core (ROS-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgbot.kinematics import psm
from surgbot.safety import checks
from surgbot.safety.filter import PoseFilterConfig, PoseSafetyFilter
from surgbot.safety.supervisor import State, SupervisorConfig, SupervisorCore, judge_policy_state, only_lateness

pytestmark = pytest.mark.unit

P0 = np.array([0.0, 0.0, -0.12])
R0 = np.eye(3)


def _rz(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


@pytest.fixture
def filt():
    reports = []
    f = PoseSafetyFilter(PoseFilterConfig(jaw_min_rad=psm.JAW_LOWER, jaw_max_rad=psm.JAW_UPPER),
                         report=lambda cause, text: reports.append((cause, text)))
    f.reports = reports
    return f


def test_a_valid_stream_passes_and_is_remembered(filt):
    for k in range(10):
        p = P0 + [0.004 * k, 0, 0]
        assert filt.check(p, R0, 0.2, now=k * 0.01)
    assert filt.log.total == 0


@pytest.mark.parametrize("position,rotation,jaw,cause", [
    ([0, 0, float("nan")], np.eye(3), 0.0, checks.CAUSE_NON_FINITE),
    ([0, 0], np.eye(3), 0.0, checks.CAUSE_SHAPE),
    (P0, np.zeros((3, 3)), 0.0, checks.CAUSE_SINGULAR),
    (P0, np.diag([1.0, 1.0, -1.0]), 0.0, checks.CAUSE_SINGULAR),      # a reflection is not a rotation
    (P0, np.eye(3), float("inf"), checks.CAUSE_NON_FINITE),
    (P0, np.eye(3), 2.0, checks.CAUSE_LIMIT),                          # above the dVRK jaw limit 1.396
    ([0.0, 0.0, -0.30], np.eye(3), 0.0, checks.CAUSE_WORKSPACE),       # beyond the insertion range
])
def test_bad_commands_are_refused_by_cause_and_change_nothing(filt, position, rotation, jaw, cause):
    assert filt.check(P0, R0, 0.0, now=0.0)
    r = filt.check(position, rotation, jaw, now=0.01)
    assert not r and checks.cause_of(r.reason) == cause
    assert filt.log.counts[cause] == 1
    # the last accepted pose is still the reference: a 4 mm step from P0 passes
    assert filt.check(P0 + [0.004, 0, 0], R0, 0.0, now=0.02)


def test_a_jump_is_refused_not_clamped(filt):
    assert filt.check(P0, R0, 0.0, now=0.0)
    r = filt.check(P0 + [0.006, 0, 0], R0, 0.0, now=0.01)          # 6 mm > 5 mm per tick
    assert not r and "jumps 0.006" in r.reason
    assert not filt.check(P0, _rz(15), 0.0, now=0.02)               # 15 deg > 0.2 rad (11.5 deg)
    assert filt.check(P0, _rz(10), 0.0, now=0.03)


def test_rejections_are_reported_at_most_once_per_period_per_cause(filt):
    for k in range(100):                                             # 1 kHz of NaN for 0.1 s
        filt.check([math.nan, 0, 0], R0, 0.0, now=k * 0.001)
    filt.check([0, 0, -0.5], R0, 0.0, now=0.1)
    assert filt.log.counts == {checks.CAUSE_NON_FINITE: 100, checks.CAUSE_WORKSPACE: 1}
    assert [c for c, _ in filt.reports] == [checks.CAUSE_NON_FINITE, checks.CAUSE_WORKSPACE]
    filt.check([math.nan, 0, 0], R0, 0.0, now=1.5)
    assert filt.reports[-1][0] == checks.CAUSE_NON_FINITE and "(101 so far)" in filt.reports[-1][1]


def test_filter_config_rejects_an_empty_box_and_half_set_jaw_limits():
    with pytest.raises(ValueError, match="empty"):
        PoseFilterConfig(workspace_min_m=(0, 0, 0), workspace_max_m=(0.1, 0.1, 0.0))
    with pytest.raises(ValueError, match="both"):
        PoseFilterConfig(jaw_min_rad=0.0)


def test_fresh_and_limits_checks():
    assert not checks.fresh("measured_js", None, 0.1)
    assert "150 ms old" in checks.fresh("measured_js", 0.15, 0.1).reason
    assert checks.fresh("measured_js", 0.05, 0.1)
    r = checks.within_limits("q", np.array([0.0, 0.3]), [-1, -0.2], [1, 0.2])
    assert not r and "q[1]" in r.reason


@pytest.fixture
def sup():
    s = SupervisorCore(SupervisorConfig())
    s.watch("psm_measured_js", 0.1)
    s.watch("console_link", 0.2)
    return s


def test_watchdogs_arm_on_first_message_and_fault_on_silence(sup):
    assert not sup.step(now=10.0) and sup.state is State.OK          # nothing started yet: no fault
    sup.feed("psm_measured_js", now=10.0)
    assert not sup.step(now=10.09)
    assert sup.step(now=10.11) and sup.state is State.FAULT
    assert sup.reasons[0].startswith("psm_measured_js: silent for 110 ms")


def test_fault_latches_and_reset_needs_every_cause_gone(sup):
    sup.feed("psm_measured_js", now=0.0)
    sup.step(now=0.5)
    assert sup.state is State.FAULT
    r = sup.reset(now=0.6)
    assert not r and "psm_measured_js" in r.reason and sup.state is State.FAULT
    sup.feed("psm_measured_js", now=0.7)                               # the stream is back
    assert sup.state is State.FAULT                                    # ... but only a person clears it
    assert sup.reset(now=0.71) and sup.state is State.OK


def test_estop_latches_until_reset_and_a_bad_report_is_a_cause(sup):
    sup.feed("psm_measured_js", now=0.0)
    assert sup.estop(now=0.01) and sup.state is State.ESTOP
    sup.feed("psm_measured_js", now=0.02, ok=False, detail="tracking error FAULT")
    assert sup.to_json(0.02)["active"] == ["e-stop pressed", "psm_measured_js: tracking error FAULT"]
    r = sup.reset(now=0.03)
    assert not r and "tracking error" in r.reason
    sup.feed("psm_measured_js", now=0.04)
    assert sup.reset(now=0.05) and sup.to_json(0.05) == {"state": "OK", "reasons": [], "active": []}


def test_a_disarmed_source_is_not_watched(sup):
    sup.feed("console_link", now=0.0)
    sup.disarm("console_link")                                         # operator logged out on purpose
    assert not sup.step(now=5.0) and sup.state is State.OK
    with pytest.raises(KeyError):
        sup.feed("unknown", now=0.0)


def test_a_source_is_fresh_only_when_armed_recent_and_not_reporting_a_fault(sup):
    """`fresh`: what the node asks before it calls a liveliness lapse a stop (ALIVE_WITNESS)."""
    assert not sup.fresh("psm_measured_js", now=0.0)                  # never heard
    sup.feed("psm_measured_js", now=1.0)
    assert sup.fresh("psm_measured_js", now=1.09) and not sup.fresh("psm_measured_js", now=1.11)
    sup.feed("psm_measured_js", now=2.0, ok=False, detail="tracking error FAULT")
    assert not sup.fresh("psm_measured_js", now=2.0)
    with pytest.raises(KeyError):
        sup.fresh("unknown", now=0.0)


def test_supervisor_config_refuses_zero_timeouts():
    with pytest.raises(ValueError, match="zero timeout"):
        SupervisorConfig(psm_state_timeout_s=0.0)


def test_a_deadline_watchdog_faults_by_its_timeout_when_judged_every_period():
    """lead = the judgement period: a judge ticking every 20 ms has the FAULT out by 200 ms of silence
    whatever the tick's phase (without the lead: up to 219 ms); the plain watchdog beside it waits."""
    period = 1.0 / SupervisorConfig().publish_hz
    for phase in np.linspace(0.0, period, 7, endpoint=False):
        s = SupervisorCore(SupervisorConfig())
        s.watch("console_link", 0.2, lead_s=period)
        s.watch("plain", 0.2)
        s.feed("console_link", now=0.0)
        s.feed("plain", now=0.0)
        ticks = phase + period * np.arange(20)
        first = next(t for t in ticks if s.step(now=float(t)))
        assert 0.2 - period < first <= 0.2 + 1e-9
        assert s.reasons == [f"console_link: silent for {first * 1e3:.0f} ms (> 180 ms, due by 200 ms)"]
    with pytest.raises(ValueError, match="lead"):
        s.watch("x", 0.02, lead_s=0.02)
    with pytest.raises(ValueError, match="judgement period"):
        SupervisorConfig(console_link_timeout_s=0.01)


def test_state_watch_is_fail_safe():
    from surgbot.safety.state_watch import SafetyStateWatch

    w = SafetyStateWatch(stale_after_s=0.25)
    assert not w.allows_motion(0.0)                                  # no supervisor yet
    w.update('{"state": "OK", "reasons": []}', now=1.0)
    assert w.allows_motion(1.2)
    assert "silent for 300 ms" in w.allows_motion(1.3).reason        # supervisor gone: hold
    w.update('{"state": "ESTOP", "reasons": ["e-stop requested"]}', now=2.0)
    assert "ESTOP: e-stop requested" in w.allows_motion(2.0).reason
    w.update("not json", now=3.0)
    assert not w.allows_motion(3.0)
    assert SafetyStateWatch(required=False).allows_motion(0.0)       # a rig without a supervisor


def test_the_chunk_age_watchdog_leaves_room_for_a_healthy_policy_loop():
    """A chunk is played until request_fraction of it is done, then the next one may take up to the
    node's server timeout: the supervisor must not fault on that (it did at 0.5 s: "chunk 534 ms old")."""
    from surgbot.control.policy_exec import PolicyExecConfig
    from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig

    exec_cfg, model_cfg = PolicyExecConfig(), SurgVLAConfig()
    healthy_max_s = exec_cfg.request_fraction * model_cfg.chunk_size / exec_cfg.rate_hz + exec_cfg.server_timeout_s
    assert SupervisorConfig().policy_chunk_timeout_s > healthy_max_s
    # ... and it is still a watchdog: a loop that stopped for two chunk periods is caught
    assert SupervisorConfig().policy_chunk_timeout_s < 2 * model_cfg.chunk_size / exec_cfg.rate_hz



def test_policy_state_is_judged_by_chunk_age_lost_server_and_unanswered_request():
    import json

    from surgbot.control.policy_exec import PolicyExecutor

    def judge(**st):
        return judge_policy_state(json.dumps(st), 1.1)

    assert judge(enabled=False, chunk_age_s=9.0) == (False, True, "")        # disabled: not watched
    assert judge(enabled=True, chunk_age_s=None) == (True, True, "")        # before the first chunk
    assert judge(enabled=True, chunk_age_s=0.9) == (True, True, "")
    assert judge(enabled=True, chunk_age_s=1.2) == (True, False, "chunk 1200 ms old")
    assert judge(enabled=True, chunk_age_s=0.2, server_lost=True)[1:] == (False, "connection to the policy "
                                                                                 "server lost")
    armed, ok, detail = judge(enabled=True, chunk_age_s=0.6, unanswered_request_age_s=0.52)
    assert armed and not ok and detail == "no answer from the policy server: request 520 ms old"
    assert only_lateness([f"policy_chunk: {detail}"])          # `surgbot demo` may run the task again
    for bad in ("not json", "[1, 2]", json.dumps({"enabled": True, "chunk_age_s": "x"})):
        assert judge_policy_state(bad, 1.1) == (True, False, "malformed /policy/state")
    assert not judge_policy_state('{"enabled": true, "chunk_age_s": NaN}', 1.1)[1]
    # what the executor publishes is what this reads: every key it looks for is there
    status = PolicyExecutor().status(0.0)
    assert {"enabled", "chunk_age_s", "server_lost", "unanswered_request_age_s"} <= set(status)


def test_a_late_tick_does_not_judge_but_never_two_in_a_row_and_is_remembered_for_a_window():
    from surgbot.safety.own_stall import OwnStall

    s = OwnStall(period_s=0.02)
    assert s.tick(0.0) == (True, 0.0) and s.tick(0.02) == (True, 0.0)
    assert not s.recent(0.03, 0.15)
    judge, late = s.tick(0.34)                    # 300 ms without running
    assert not judge and late == pytest.approx(0.30)
    assert s.tick(0.36)[0]                        # the next, on time, judges
    for t in (0.38, 0.40, 0.42, 0.44, 0.46, 0.48, 0.50):
        assert s.tick(t) == (True, pytest.approx(0.0, abs=1e-9))
    assert s.recent(0.40, 0.15) and not s.recent(0.50, 0.15)
    assert not s.tick(0.80)[0] and s.tick(1.1)[0]     # late twice in a row: the second judges
    assert not s.recent(1.12, 0.0) and s.recent(1.2, 0.0)   # overdue now (no tick since 1.1)
    with pytest.raises(ValueError):
        OwnStall(period_s=0.0)


def test_only_lateness_tells_a_late_source_from_a_wrong_command_or_an_estop():
    from surgbot.control.holder_modes import ModeMachine
    from surgbot.control.holder_modes import State as HolderState
    from surgbot.safety.supervisor import only_lateness

    core = SupervisorCore()
    core.watch("g1_lowstate", 0.05)
    core.feed("g1_lowstate", 0.0)
    assert core.step(0.06) and only_lateness(core.reasons)                 # "g1_lowstate: silent for 60 ms"
    assert only_lateness([checks.fresh("policy chunk", 1.138, 1.1).reason])
    holder = ModeMachine(0.015, 0.5, joint_state_timeout_s=0.1, pause_if_state_older_s=0.015)
    holder.set(HolderState.HOLD)
    holder.gate(0.0, 0.116, 0.0)                                          # the holder's own FAULT, as reported
    assert only_lateness([f"node:endoscope_holder: FAULT ({holder.why})"])
    assert only_lateness(["alive:g1_bridge: stopped (DDS liveliness lost: the process was killed, exited or "
                          "stalled)"])
    core = SupervisorCore()
    core.watch("psm_operating_state", math.inf)
    core.feed("psm_operating_state", 0.0, ok=False, detail="PSM in FAULT (send disable to clear)")
    assert core.step(0.0) and not only_lateness(core.reasons)
    assert not only_lateness(core.reasons + ["g1_lowstate: silent for 60 ms (> 50 ms)"])   # not lateness alone
    core = SupervisorCore()
    core.estop(0.0)
    assert not only_lateness(core.reasons) and not only_lateness([])
