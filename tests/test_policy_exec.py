"""Policy execution core: chunk scheduling, latency skip, blending, and the safety gate.

Expected commands are computed here from the chunks and limits (not read back from the core).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgbot.control.policy_exec import PolicyExecConfig, PolicyExecutor, State, blend_pose10
from surgbot.geometry import matrix_to_rot6d, rot6d_to_matrix, rotation_angle

pytestmark = pytest.mark.unit

DT = 1.0 / 15.0
H = 16
HOME = np.array([0.0, 0.0, -0.113, 1, 0, 0, 0, 1, 0, 0.0])


def rotz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def pose(xyz, yaw: float = 0.0, jaw: float = 0.0) -> np.ndarray:
    return np.concatenate([np.asarray(xyz, float), matrix_to_rot6d(rotz(yaw)), [jaw]])


def chunk(start_xyz, step_xyz=(0.0, 0.0, 0.0), n: int = H, yaw: float = 0.0, jaw: float = 0.0) -> np.ndarray:
    return np.stack([pose(np.asarray(start_xyz) + k * np.asarray(step_xyz), yaw, jaw) for k in range(n)])


# The largest per-tick steps the config allows: these tests move a few mm a tick and check blending, not limiting.
UNLIMITED = dict(max_step_m=0.05, max_step_rad=1.0)
# A box 20 mm about HOME, so that clipping to its far corner stays within one unlimited step.
NEAR_BOX = dict(workspace_min_m=tuple(HOME[:3] - 0.02), workspace_max_m=tuple(HOME[:3] + 0.02))


def enabled(**cfg) -> PolicyExecutor:
    ex = PolicyExecutor(PolicyExecConfig(**cfg))
    assert not ex.enable(True)   # no instruction yet: refused
    assert ex.set_instruction("touch the red target") and ex.enable(True)
    return ex


def test_new_chunk_requested_when_half_is_played():
    ex = enabled()
    requests = []
    for t in range(1, 49):
        now = t * DT
        ex.on_measured(HOME, now)
        out = ex.tick(now)
        if out.request_chunk:
            requests.append(ex.tick_index)
            ex.observation_taken(now)
            ex.on_chunk(chunk(HOME[:3]), ex.tick_index, now)   # an instant server
    assert requests == [1, 9, 17, 25, 33, 41]


def test_ticks_passed_during_inference_are_skipped():
    ex = enabled(**UNLIMITED)
    ex.on_measured(HOME, 0.0)
    out = ex.tick(0.0)
    assert out.request_chunk and out.command is None and out.state is State.HOLD   # nothing commanded yet
    obs_tick = ex.tick_index
    ex.observation_taken(0.0)
    for t in (1, 2):   # the server takes 3 ticks
        ex.on_measured(HOME, t * DT)
        assert ex.tick(t * DT).reason == "waiting for a chunk"
    step = np.array([0.001, 0.0, 0.0])
    ex.on_chunk(chunk(HOME[:3], step), obs_tick, 0.0)
    ex.on_measured(HOME, 3 * DT)
    out = ex.tick(3 * DT)
    assert out.state is State.RUNNING
    np.testing.assert_allclose(out.command[:3], HOME[:3] + 3 * step, atol=1e-12)   # action for tick obs+3


def test_overlapping_chunks_are_blended_03_old_07_new():
    ex = enabled(**UNLIMITED)
    a, b = np.array([0.0, 0.0, -0.1]), np.array([0.01, -0.02, -0.12])
    ex.on_measured(pose(a), 0.0)
    ex.tick(0.0)
    ex.observation_taken(0.0)
    ex.on_chunk(chunk(a, yaw=0.0), ex.tick_index, 0.0)
    for t in range(1, 8):
        ex.on_measured(pose(a), t * DT)
        ex.tick(t * DT)
    obs_tick = ex.tick_index                 # 8: the old plan covers ticks 1..16
    ex.on_chunk(chunk(b, yaw=0.2), obs_tick, 7 * DT)
    cmds = {}
    for t in range(8, 26):
        ex.on_measured(pose(a), t * DT)
        out = ex.tick(t * DT)
        cmds[ex.tick_index] = out.command
        if out.request_chunk:
            ex.observation_taken(t * DT)     # keep the request in flight: no third chunk
    want_pos = 0.3 * a + 0.7 * b
    want_yaw = math.atan2(0.7 * math.sin(0.2), 0.3 + 0.7 * math.cos(0.2))   # Gram-Schmidt of the blended columns
    for k in range(9, 17):                   # overlap: old ticks 1..16, new 8..23
        np.testing.assert_allclose(cmds[k][:3], want_pos, atol=1e-12)
        assert rotation_angle(rot6d_to_matrix(cmds[k][3:9]), rotz(want_yaw)) < 1e-9
    for k in range(17, 24):
        np.testing.assert_allclose(cmds[k][:3], b, atol=1e-12)
        assert rotation_angle(rot6d_to_matrix(cmds[k][3:9]), rotz(0.2)) < 1e-9
    assert ex.tick(26 * DT).state is State.HOLD   # tick 24 + stale state or exhausted: not played


def test_blend_pose10_keeps_a_rotation():
    out = blend_pose10(pose([0, 0, 0], 0.0), pose([0, 0, 0], 2.5), 0.5)
    R = rot6d_to_matrix(out[3:9])
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)


def _running(ex: PolicyExecutor, ref: np.ndarray) -> None:
    ex.on_measured(ref, 0.0)
    ex.tick(0.0)
    ex.observation_taken(0.0)


def test_nan_chunks_hold_and_the_gate_clips_to_the_workspace():
    ex = enabled(**UNLIMITED, **NEAR_BOX)
    _running(ex, HOME)
    bad = chunk(HOME[:3])
    bad[1, 0] = np.nan
    assert not ex.on_chunk(bad, ex.tick_index, 0.0)          # a chunk with NaN is refused whole
    ex.on_measured(HOME, DT)
    out = ex.tick(DT)
    assert out.state is State.HOLD and out.reason == "server: bad chunk"
    assert out.command is None                              # nothing commanded yet: the arm keeps its setpoint
    assert not ex.gate(np.full(10, np.inf)) and "NaN/Inf" in ex.gate(np.full(10, np.inf)).reason
    assert "degenerate rotation" in ex.gate(np.zeros(10)).reason
    outside = chunk(HOME[:3])
    outside[:, :3] = [0.5, -0.5, 0.1]                       # outside the box on every axis
    ex.observation_taken(DT)
    ex.on_chunk(outside, ex.tick_index, DT)
    ex.on_measured(HOME, 2 * DT)
    out = ex.tick(2 * DT)
    lo, hi = ex.config.workspace_min_m, ex.config.workspace_max_m
    np.testing.assert_allclose(out.command[:3], [hi[0], lo[1], hi[2]])
    assert out.state is State.RUNNING and "clipped to workspace" in out.reason
    st = ex.status(2 * DT)
    assert st["gate_rejections"]["bad chunk"] == 1 and st["gate_rejections"]["workspace"] == 1


def test_gate_limits_translation_rotation_and_jaw_steps():
    ex = enabled(max_step_m=0.004, max_step_rad=0.05, max_jaw_step_rad=0.1)
    _running(ex, HOME)
    far = np.array([0.03, 0.04, -0.113])            # 50 mm away along (0.6, 0.8, 0)
    ex.on_chunk(chunk(far, yaw=0.5, jaw=1.0), ex.tick_index, 0.0)
    ex.on_measured(HOME, DT)
    out = ex.tick(DT)
    np.testing.assert_allclose(out.command[:3], HOME[:3] + 0.004 * np.array([0.6, 0.8, 0.0]), atol=1e-12)
    assert abs(rotation_angle(rot6d_to_matrix(out.command[3:9]), rotz(0.05))) < 1e-9
    assert out.command[9] == pytest.approx(0.1)
    ex.on_measured(HOME, 2 * DT)
    out2 = ex.tick(2 * DT)                          # the next step starts from the last command
    np.testing.assert_allclose(np.linalg.norm(out2.command[:3] - out.command[:3]), 0.004, atol=1e-12)


def test_old_chunk_server_timeout_error_and_stale_state_hold():
    ex = enabled(max_chunk_age_s=0.5, server_timeout_s=0.3, max_state_age_s=0.2)
    _running(ex, HOME)
    ex.on_chunk(chunk(HOME[:3]), ex.tick_index, -1.0)      # observation 1 s old
    ex.on_measured(HOME, DT)
    out = ex.tick(DT)
    assert out.state is State.HOLD and out.reason == "chunk too old" and out.request_chunk
    ex.observation_taken(DT)
    for k in range(1, 5):                                   # in flight 4 ticks = 0.27 s: within the timeout
        t = DT + k * DT
        ex.on_measured(HOME, t)
        assert ex.tick(t).reason == "waiting for a chunk"
    t = DT + 5 * DT                                         # 0.33 s > 0.3 s
    ex.on_measured(HOME, t)
    out = ex.tick(t)
    assert out.state is State.HOLD and out.reason.startswith("server: server timeout")
    # /policy/state says how old the unanswered request is (the supervisor faults on it at once)
    assert ex.status(t)["unanswered_request_age_s"] == pytest.approx(5 * DT)
    ex.on_measured(HOME, t + DT)
    assert ex.tick(t + DT).request_chunk                   # asks again
    ex.observation_taken(t + DT)
    assert ex.status(t + DT)["unanswered_request_age_s"] == pytest.approx(6 * DT)   # until answered
    ex.on_server_error("ValueError: state must be float [10]")
    ex.on_measured(HOME, t + 2 * DT)
    out = ex.tick(t + 2 * DT)
    assert out.reason == "server: ValueError: state must be float [10]" and out.command is None
    assert ex.status(t)["last_server_error"] == "ValueError: state must be float [10]"
    out = ex.tick(t + 2 * DT + 0.3)                        # no PSM pose for 0.3 s
    assert out.reason == "stale PSM state"
    st = ex.status(t)
    assert st["gate_rejections"]["server error"] == 2 and st["enabled"] and st["state"] == "HOLD"
    assert st["unanswered_request_age_s"] is None           # the error was an answer
    ex.enable(False)
    assert ex.status(t)["unanswered_request_age_s"] is None


def test_an_unanswered_request_is_reported_until_a_chunk_comes_and_not_before_the_timeout():
    ex = enabled(max_chunk_age_s=5.0, server_timeout_s=0.3)
    _running(ex, HOME)
    ex.on_chunk(chunk(HOME[:3]), ex.tick_index, 0.0)
    ex.observation_taken(0.0)
    t = 0.0
    while t + DT <= 0.3:                                 # in flight, within the timeout: a healthy wait
        t += DT
        ex.on_measured(HOME, t)
        ex.tick(t)
        assert ex.status(t)["unanswered_request_age_s"] is None
    t += DT
    ex.on_measured(HOME, t)
    ex.tick(t)
    assert ex.status(t)["unanswered_request_age_s"] == pytest.approx(t)
    ex.on_chunk(chunk(HOME[:3]), ex.tick_index, t)     # the (late) answer
    assert ex.status(t)["unanswered_request_age_s"] is None
    # the client's own timeout (PolicyTimeout, reported by the node) counts from the request too
    ex.observation_taken(t)
    ex.on_measured(HOME, t + DT)
    ex.tick(t + DT)
    ex.on_server_error("PolicyTimeout: no reply within 0.300 s", unanswered=True)
    assert ex.status(t + 0.35)["unanswered_request_age_s"] == pytest.approx(0.35)


def test_chunk_age_keeps_growing_when_the_server_stops_answering():
    """/policy/state's chunk_age_s is what the supervisor's chunk watchdog reads: a server that dies mid-run
    must show as an ageing chunk, not as "no chunk" (which the watchdog cannot tell from a fresh enable)."""
    ex = enabled(max_chunk_age_s=5.0, server_timeout_s=0.3)
    assert ex.status(0.0)["chunk_age_s"] is None                   # before any chunk: nothing commanded
    _running(ex, HOME)
    ex.on_chunk(chunk(HOME[:3]), ex.tick_index, 0.0)
    ex.observation_taken(0.1)
    t = 0.1
    while t < 1.0:                                                 # no answer: timeout, plan dropped, asks again
        t += DT
        ex.on_measured(HOME, t)
        ex.tick(t)
    assert ex.status(t)["state"] == "HOLD" and ex.status(t)["chunk_age_s"] == pytest.approx(t)
    ex.enable(False)
    assert ex.status(t)["chunk_age_s"] is None
    ex.enable(True)
    assert ex.status(t)["chunk_age_s"] is None                     # a new run starts without a chunk


def test_a_lost_server_connection_holds_every_tick_until_it_is_back():
    ex = enabled(**UNLIMITED)
    _running(ex, HOME)
    ex.on_chunk(chunk(HOME[:3], (0.001, 0, 0)), ex.tick_index, 0.0)
    ex.on_measured(HOME, DT)
    last = ex.tick(DT).command
    ex.on_server_lost(True)
    for k in range(2, 6):                               # the plan in hand is not played on
        ex.on_measured(HOME, k * DT)
        out = ex.tick(k * DT)
        assert out.state is State.HOLD and out.reason == "server: connection lost"
        np.testing.assert_array_equal(out.command, last)
    assert ex.status(5 * DT)["server_lost"] is True
    ex.on_server_lost(False)
    ex.on_measured(HOME, 6 * DT)
    assert ex.tick(6 * DT).reason != "server: connection lost" and not ex.status(6 * DT)["server_lost"]


def test_a_server_error_drops_the_plan_until_a_fresh_chunk():
    ex = enabled(**UNLIMITED)
    _running(ex, HOME)
    ex.on_chunk(chunk(HOME[:3], (0.001, 0, 0)), ex.tick_index, 0.0)
    ex.on_measured(HOME, DT)
    assert ex.tick(DT).state is State.RUNNING
    ex.on_server_error("PolicyTimeout: no reply")
    held = []
    for k in range(2, 6):
        ex.on_measured(HOME, k * DT)
        out = ex.tick(k * DT)
        held.append(out.command)
        assert out.state is State.HOLD
    for c in held:                                       # the last command, repeated: the arm stops
        np.testing.assert_allclose(c[:3], HOME[:3] + [0.001, 0, 0])


def test_disabled_publishes_nothing_and_bad_inputs_are_refused():
    ex = PolicyExecutor()
    ex.on_measured(HOME, 0.0)
    out = ex.tick(0.0)
    assert out.command is None and out.state is State.DISABLED and not out.request_chunk
    assert not ex.set_instruction("")
    assert not ex.on_measured(np.full(10, np.nan), 0.0)
    assert not ex.on_chunk(np.zeros((16, 9)), 0, 0.0)
    with pytest.raises(ValueError):
        PolicyExecConfig(workspace_min_m=(0.0, 0.0, 0.0), workspace_max_m=(0.1, 0.1, -0.1))
