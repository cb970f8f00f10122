"""`surgbot demo` pieces without a stack: geometry of its figures, videos, overlay, bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from surgbot.demo.cli import DEFAULT_SEED, DEFAULT_TASKS
from surgbot.demo.media import ENDOSCOPE_FPS, ENDOSCOPE_SCALE, OVERVIEW_FPS, VideoRecorder, overlay
from surgbot.demo.observer import fulcrum_error_m, project
from surgbot.geometry import pose_to_matrix
from surgbot.media import Mp4Writer, read_mp4
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_fulcrum_error_is_the_distance_from_the_port_to_the_shaft_line():
    R = cv2.Rodrigues(np.array([0.3, -0.2, 0.5]))[0]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, [0.1, 0.2, 0.3]
    on_axis = T[:3, 3] - 0.12 * R[:, 2]                          # 12 cm back along the shaft
    assert fulcrum_error_m(T, on_axis) < 1e-12
    off = on_axis + 0.004 * R[:, 0] + 0.003 * R[:, 1]            # 5 mm sideways
    assert fulcrum_error_m(T, off) == pytest.approx(0.005, abs=1e-12)


def test_projection_agrees_with_opencv():
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    T = pose_to_matrix([0.05, -0.02, 0.4], [0.1, 0.2, -0.3, 0.93])
    p_world = T[:3, :3] @ np.array([0.01, -0.02, 0.08]) + T[:3, 3]
    u, v, depth = project(K, T, p_world)
    rvec = cv2.Rodrigues(T[:3, :3].T)[0]
    tvec = -T[:3, :3].T @ T[:3, 3]
    uv = cv2.projectPoints(p_world.reshape(1, 3), rvec, tvec, K, None)[0].ravel()
    assert (u, v) == pytest.approx(tuple(uv), abs=1e-9) and depth == pytest.approx(0.08)
    behind = T[:3, :3] @ np.array([0, 0, -0.05]) + T[:3, 3]
    assert np.isnan(project(K, T, behind)[0])


def test_overlay_enlarges_and_writes_the_lines():
    frame = np.full((240, 320, 3), 120, np.uint8)
    plain = overlay(frame, [])
    text = overlay(frame, ["needle_pick: policy running", "fulcrum error 0.12 mm"])
    assert plain.shape == text.shape == (240 * ENDOSCOPE_SCALE, 320 * ENDOSCOPE_SCALE, 3)
    banner = text[:50]
    assert banner.max() == 255 and banner.mean() < plain[:50].mean()   # white text on a darkened band
    assert np.array_equal(text[100:], plain[100:])                     # the image below is untouched


def test_video_recorder_keeps_the_run_clock_and_writes_the_overlay_at_stop(tmp_path):
    """Frames are sampled at 15 fps while the run goes (a late camera repeats its frame), kept, and
    written with the overlay text of their moment when the recorder stops."""
    yy, xx = np.mgrid[0:240, 0:320]
    # smooth, different images (noise would measure the codecs, not the recorder)
    endo = [np.stack([(xx * (k + 1)) % 256, (yy * 2 + 60 * k) % 256, np.full_like(xx, 80 * k)], -1).astype(np.uint8)
            for k in range(3)]
    over = np.full((120, 160, 3), 128, np.uint8)
    shown = {"i": 0}
    rec = VideoRecorder(tmp_path, lambda: (endo[shown["i"]], over), lambda: [f"frame {shown['i']}"])
    assert not (tmp_path / "endoscope.mp4").exists()
    t0 = time.monotonic()
    for i in range(3):              # the camera delivers a new frame every 0.4 s: the video repeats it
        shown["i"] = i
        time.sleep(0.4)
    run_s = time.monotonic() - t0
    out = rec.stop()
    assert rec.error is None
    frames, fps = read_mp4(tmp_path / "endoscope.mp4")
    assert fps == pytest.approx(ENDOSCOPE_FPS)
    # the sampler never runs ahead of the clock; a starved process samples less (it does not catch up),
    # so only the upper bound is tight
    assert out["endoscope"]["frames"] == len(frames)
    assert 0.5 * run_s * ENDOSCOPE_FPS <= len(frames) <= run_s * ENDOSCOPE_FPS + 2
    assert frames.shape[1:3] == (240 * ENDOSCOPE_SCALE, 320 * ENDOSCOPE_SCALE)
    # the last frame is the last camera image, enlarged, below the overlay banner
    expect = cv2.resize(endo[2], (640, 480), interpolation=cv2.INTER_LINEAR)
    assert np.abs(frames[-1, 120:].astype(int) - expect[120:]).mean() < 12
    assert frames[-1, :40].mean() < expect[:40].mean() - 20           # the banner darkens the top
    overview, ofps = read_mp4(tmp_path / "overview.mp4")
    assert ofps == pytest.approx(OVERVIEW_FPS)
    assert 0.5 * run_s * OVERVIEW_FPS <= len(overview) <= run_s * OVERVIEW_FPS + 2


def test_mp4_round_trip_keeps_the_frames(tmp_path):
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (160, 120),
                      interpolation=cv2.INTER_NEAREST)
    frames = [np.roll(base, 4 * i, axis=1) for i in range(12)]
    with Mp4Writer(tmp_path / "v.mp4", 15) as w:
        for f in frames:
            w.write(f)
    back, fps = read_mp4(tmp_path / "v.mp4")
    assert back.shape == (12, 120, 160, 3) and fps == pytest.approx(15)
    err = np.abs(back.astype(int) - np.stack(frames).astype(int)).mean()
    assert err < 6, err                                                  # lossy, but the same pictures
    assert not list(tmp_path.glob("*.partial.mp4"))


def test_mp4_writer_refuses_bad_frames_and_an_aborted_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="RGB uint8"):
        Mp4Writer(tmp_path / "a.mp4", 15).write(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        Mp4Writer(tmp_path / "a.mp4", float("nan"))
    with pytest.raises(RuntimeError):
        with Mp4Writer(tmp_path / "b.mp4", 15) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    w = Mp4Writer(tmp_path / "c.mp4", 15)
    w.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="differs"):
        w.write(np.zeros((32, 48, 3), np.uint8))
    w.abort()


def test_read_mp4_rejects_corrupt_and_truncated_files(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 100)
    with pytest.raises(ValueError, match="not a readable video"):
        read_mp4(tmp_path / "junk.mp4")
    with Mp4Writer(tmp_path / "ok.mp4", 15) as w:
        for i in range(30):
            w.write(np.full((64, 64, 3), 8 * i, np.uint8))
    data = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="not a readable video|no video frames"):
        read_mp4(tmp_path / "cut.mp4")


def _demo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "surgbot.cli", "demo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args, why", [
    (["--tasks", "suture"], "unknown task"),
    (["--seed", "-3"], "--seed"),
    (["--duration", "nan"], "--duration"),
    (["--checkpoint", "/nonexistent/ckpt"], "not found"),
])
def test_demo_bad_input_is_one_line_and_starts_nothing(tmp_path, args, why):
    r = _demo("--out", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_demo_refuses_a_non_empty_output_folder_and_a_busy_port(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = _demo("--out", str(out), cwd=tmp_path)
    assert r.returncode == 2 and "not an empty folder" in r.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = _demo("--out", str(tmp_path / "o2"), "--policy-port", str(s.getsockname()[1]), cwd=tmp_path)
    assert r.returncode == 2 and "in use" in r.stderr and not (tmp_path / "o2").exists()


def test_the_default_layouts_are_ones_the_bundled_checkpoint_solves_in_every_evaluation():
    """The demo's defaults (DEFAULT_SEED, then +1 per task) against the bundled cells of docs/results:
    bundling another checkpoint and rerunning those cells must not leave the demo on a failing layout."""
    for k, task in enumerate(DEFAULT_TASKS):
        seed = DEFAULT_SEED + k
        for cell in ("bundled", "bundled-appearance", "bundled-tool-follow"):
            result = json.loads((REPO / "docs" / "results" / f"{cell}@{task}.json").read_text())
            outcome = {e["seed"]: e["success"] for e in result["per_episode"]}
            assert outcome.get(seed) is True, (cell, task, seed)


# ------------------------------------------------------------ the operator steps around a task
FAULT = {"state": "FAULT", "reasons": ["g1_lowstate: silent for 56 ms (> 50 ms)"]}


def _script(to_start_faults: int):
    """A DemoScript's task preparation with its robot steps replaced: `_to_start` is interrupted by
    a FAULT its first `to_start_faults` times; `steps.recover` (reset, engage, hold) clears the FAULT."""
    from types import SimpleNamespace

    from surgbot.demo.safety_steps import SafetySteps
    from surgbot.demo.script import DemoScript
    s = object.__new__(DemoScript)
    s.notes, s.current, s.say = [], {}, lambda _m: None
    s.obs = SimpleNamespace(safety={"state": "OK", "reasons": []})
    s.steps = SafetySteps(s.obs, None, s.say, s.notes)
    s.calls = []

    def to_start(_state):
        s.calls.append("to_start")
        if s.calls.count("to_start") <= to_start_faults:
            s.obs.safety = dict(FAULT)
            raise RuntimeError("PSM: move_cp to the task's start pose was refused or interrupted")

    def recover(why):
        s.calls.append("recover")
        s.obs.safety = {"state": "OK", "reasons": []}

    s._lay_out = lambda task, seed, again=False: {"task": task, "instruction": "transfer the block"}
    s._to_start, s.steps.recover = to_start, recover
    return s


def test_a_fault_before_the_policy_starts_is_reset_once_and_the_task_goes_on():
    s = _script(to_start_faults=1)
    assert s._prepare("peg_transfer", 7)["task"] == "peg_transfer"
    assert s.calls == ["to_start", "recover", "to_start"]
    assert len(s.notes) == 1 and "g1_lowstate" in s.notes[0] and "before the policy started" in s.notes[0]


def test_a_task_run_again_first_moves_clear_with_the_jaw_open_then_lays_out_anew():
    s = _script(to_start_faults=0)
    s.obs.task_state = lambda: {"task": "peg_transfer", "start_cp": [0.0] * 7}
    s._to_start = lambda state, close_jaw=True: s.calls.append(("to_start", close_jaw))
    s._lay_out = lambda task, seed, again=False: s.calls.append(("lay_out", again)) or {"task": task}
    s._prepare("peg_transfer", 7, again=True)
    assert s.calls == [("to_start", False), ("lay_out", True), ("to_start", True)]
    s.calls.clear()
    s._prepare("peg_transfer", 7)
    assert s.calls == [("lay_out", False), ("to_start", True)]


def test_a_second_fault_before_the_policy_starts_ends_the_demo():
    s = _script(to_start_faults=2)
    with pytest.raises(RuntimeError, match="interrupted"):
        s._prepare("peg_transfer", 7)
    assert s.calls == ["to_start", "recover", "to_start"]


def test_a_failed_step_without_a_safety_stop_is_not_taken_for_one():
    s = _script(to_start_faults=0)
    s._to_start = lambda _state: (_ for _ in ()).throw(RuntimeError("PSM: move_cp refused"))
    with pytest.raises(RuntimeError, match="move_cp refused"):
        s._prepare("needle_pick", 7)
    assert s.notes == []


def test_a_policy_refused_by_a_safety_stop_fails_the_task_not_the_demo():
    s = _script(to_start_faults=0)

    def refuse(_enable):
        raise RuntimeError("/policy/enable refused: safety: safety state FAULT")

    s._set_policy = refuse
    s.obs.safety = dict(FAULT)
    assert s._enable_policy() == "safety FAULT: g1_lowstate: silent for 56 ms (> 50 ms)"
    s.obs.safety = {"state": "OK", "reasons": []}
    with pytest.raises(RuntimeError, match="refused"):           # refused for another reason: the demo stops
        s._enable_policy()


def test_a_reset_refused_for_a_nodes_own_fault_is_acknowledged_then_asked_again(monkeypatch):
    """The holder's own FAULT refuses /safety/reset until its user's `hold` acknowledges it."""
    from surgbot.demo import safety_steps
    s = _script(to_start_faults=0)
    calls, holder_fault = [], [True]

    def call(_obs, action, _timeout):
        name = next(k for k, a in safety_steps.ACTIONS.items() if a is action)
        calls.append(name)
        if name == "hold":
            holder_fault[0] = False
        if name == "reset" and holder_fault[0]:
            return False, "reset refused, still: node:endoscope_holder: FAULT; held by safety"
        return True, "OK"

    monkeypatch.setattr(safety_steps, "call_service", call)
    assert s.steps.reset() == (True, "OK") and calls == ["reset", "hold", "reset"]
    calls.clear()
    assert s.steps.reset() == (True, "OK") and calls == ["reset"]          # nothing to acknowledge
    holder_fault[0] = True

    def refuse_other(_obs, action, _timeout):
        calls.append(next(k for k, a in safety_steps.ACTIONS.items() if a is action))
        return False, "reset refused, still: console_link: silent for 900 ms"

    calls.clear()
    monkeypatch.setattr(safety_steps, "call_service", refuse_other)
    assert s.steps.reset()[0] is False and calls == ["reset"]              # a cause no node acknowledges


LIVELINESS = "alive:endoscope_holder: stopped (DDS liveliness lost: the process was killed, exited or stalled)"


def _tasks_script(outcomes: list[tuple[bool, dict]]):
    """A DemoScript whose `_do_task` returns `outcomes` in turn: (success, /safety/state after it)."""
    s = _script(to_start_faults=0)
    s.runs = []

    def do_task(task, seed, again=False):
        success, safety = outcomes[len(s.runs)]
        s.runs.append((task, seed, again))
        s.obs.safety = safety
        failure = "" if success else (f"safety {safety['state']}: {', '.join(safety['reasons'])}"
                                      if safety["state"] != "OK" else "horizon reached")
        return {"task": task, "seed": seed, "success": success, "time_s": 3.0, "failure": failure}

    s._do_task = do_task
    return s


@pytest.mark.parametrize("reasons", [[FAULT["reasons"][0]], [LIVELINESS],
                                     ["node:endoscope_holder: FAULT (joint state 101 ms old)",
                                      "policy_chunk: chunk 1138 ms old"]])
def test_a_task_a_lateness_fault_interrupted_runs_once_more_and_says_so(reasons):
    s = _tasks_script([(False, {"state": "FAULT", "reasons": reasons}), (True, {"state": "OK", "reasons": []})])
    result = s._run_task("peg_transfer", 100015)
    assert result["success"] and result["attempts"] == 2
    assert s.runs == [("peg_transfer", 100015, False), ("peg_transfer", 100015, True)]   # the same seed, laid out anew
    assert result["earlier_attempts"] == [{"time_s": 3.0, "failure": "safety FAULT: " + ", ".join(reasons)}]
    assert len(s.notes) == 1 and "attempt 1 interrupted" in s.notes[0] and reasons[0] in s.notes[0]


@pytest.mark.parametrize("safety", [
    {"state": "FAULT", "reasons": ["psm_state: PSM in FAULT (send disable to clear)"]},       # a command's doing
    {"state": "FAULT", "reasons": [FAULT["reasons"][0], "node:g1_bridge: joint limit"]},      # not lateness alone
    {"state": "ESTOP", "reasons": ["e-stop requested"]},
    {"state": "OK", "reasons": []}])                                                          # the policy failed
def test_a_task_that_failed_otherwise_is_not_run_again(safety):
    s = _tasks_script([(False, safety), (True, {"state": "OK", "reasons": []})])
    result = s._run_task("needle_pick", 100014)
    assert not result["success"] and result["attempts"] == 1 and result["earlier_attempts"] == []
    assert len(s.runs) == 1 and s.notes == []


def test_a_task_that_ran_out_of_its_horizon_is_not_run_again_for_a_fault_that_came_after():
    s = _tasks_script([(False, {"state": "OK", "reasons": []}), (True, {"state": "OK", "reasons": []})])
    do_task = s._do_task

    def horizon_then_fault(task, seed, again=False):
        result = do_task(task, seed, again)
        s.obs.safety = dict(FAULT)                 # a lateness FAULT latched after the horizon ended it
        return result

    s._do_task = horizon_then_fault
    result = s._run_task("peg_transfer", 100015)
    assert result["failure"] == "horizon reached" and result["attempts"] == 1 and len(s.runs) == 1


def test_a_task_interrupted_by_lateness_twice_fails_with_both_attempts_reported():
    s = _tasks_script([(False, dict(FAULT)), (False, dict(FAULT)), (True, {"state": "OK", "reasons": []})])
    result = s._run_task("needle_pick", 100014)
    assert not result["success"] and result["attempts"] == 2 and len(s.runs) == 2
    assert result["failure"].startswith("safety FAULT: g1_lowstate") and len(result["earlier_attempts"]) == 1


def test_a_reset_after_an_acknowledgement_is_asked_again_until_the_supervisor_has_heard_it(monkeypatch):
    """The supervisor hears the `hold` through the holder's /diagnostics, not at once: the reset is
    asked again while only the acknowledged node is named (a single retry 35 ms later ended a demo)."""
    from surgbot.demo import safety_steps
    s = _script(to_start_faults=0)
    calls = []

    def call(_obs, action, _timeout):
        name = next(k for k, a in safety_steps.ACTIONS.items() if a is action)
        calls.append(name)
        heard = "hold" in calls and calls.count("reset") >= 4          # the third reset after the hold
        if name == "reset" and not heard:
            return False, "reset refused, still: node:endoscope_holder: FAULT (joint state 116 ms old)"
        return True, "OK"

    monkeypatch.setattr(safety_steps, "call_service", call)
    monkeypatch.setattr(safety_steps, "ACK_RETRY_S", 0.0)
    assert s.steps.reset() == (True, "OK") and calls == ["reset", "hold", "reset", "reset", "reset"]
