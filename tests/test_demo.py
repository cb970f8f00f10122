"""`surgbot demo` end to end (short): the stack runs, the videos show the scene, the summary is measured."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import psutil
import pytest

from surgbot.media import read_mp4
from tests.conftest import PYTHON, REPO

pytestmark = [pytest.mark.sim, pytest.mark.full_stack]

TASK_S = 12          # seconds per task: enough for the policy to move the tool, not to finish


def _stack_processes(since: float) -> list[str]:
    """Processes of a stack (nodes, policy server, renderers) started by this test and still alive."""
    alive = []
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["create_time"] >= since and ("surgbot.nodes." in cmd or "policy serve" in cmd
                                                or "camera_process" in cmd):
            alive.append(cmd)
    return alive


def test_short_demo_runs_the_stack_and_writes_what_it_promises(tmp_path):
    out = tmp_path / "demo"
    t0 = time.time()
    r = subprocess.run([PYTHON, "-m", "surgbot.cli", "demo", "--out", str(out), "--duration", str(TASK_S)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert (out / "summary.json").is_file(), log
    summary = json.loads((out / "summary.json").read_text())
    # both tasks were run, each on its own layout, through the stack
    assert [t["task"] for t in summary["tasks"]] == ["needle_pick", "peg_transfer"], log
    assert all(t["instruction"] for t in summary["tasks"])
    assert r.returncode == (0 if summary["all_succeeded"] else 1)
    # the held scope: ground-truth fulcrum error well inside the contract's 1 mm, and it was measured a lot
    fe = summary["fulcrum_error_mm"]
    assert fe["samples"] > 1000 and fe["p99"] < 1.0, fe
    rates = summary["rates_hz"]
    assert rates["psm_measured_js_hz"] > 50, rates
    assert rates["endoscope_image_hz"] > 5 and rates["psm_servo_cp_hz"] > 5, rates     # the policy commanded
    assert summary["policy_inference_ms"]["samples"] > 3
    assert summary["tool_in_view_fraction"] > 0.5
    # the videos: about as long as the run, showing a scene (not blank), and the scene changes (the tool moves)
    frames, fps = read_mp4(out / "endoscope.mp4")
    assert fps == pytest.approx(15) and len(frames) > 2 * TASK_S * 15 * 0.8, len(frames)
    assert frames[len(frames) // 2].std() > 15
    below_banner = frames[:, 120:].astype(np.int16)
    assert np.abs(below_banner[-1] - below_banner[len(frames) // 4]).mean() > 1.0
    over, _ = read_mp4(out / "overview.mp4")
    assert len(over) > TASK_S * 4 and over[-1].std() > 15
    assert (out / "summary.png").stat().st_size > 10_000
    # nothing left running
    deadline = time.monotonic() + 10
    while _stack_processes(t0) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _stack_processes(t0) == []
