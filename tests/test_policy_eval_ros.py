"""`surgbot policy eval --ros`: the bundled policy reaches the named target through the deployment path.

Processes (all started by the command, all stopped by it): per seed the sim
twin with the task laid out (`sim_node`, PSM over CRTK, endoscope camera,
`/sim/task` judging from physics), one policy server, one `policy_node`.
Success is the twin's own judgement on `/sim/task`; the test reads the
command's JSON.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PYTHON, REPO

pytestmark = [pytest.mark.sim, pytest.mark.learning_acceptance]

SEED = 100000
EPISODES = 2


def test_policy_eval_ros_reaches_the_named_target_end_to_end(tmp_path):
    proc = subprocess.Popen([PYTHON, "-m", "surgbot.cli", "policy", "eval", "--checkpoint", "default", "--task",
                             "reach", "--episodes", str(EPISODES), "--seed", str(SEED), "--ros", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["mode"] == "ros" and out["task"] == "reach" and out["episodes"] == EPISODES
    assert out["model"] == "surgvla" and out["seeds"] == [SEED, SEED + 1]
    for r in out["results"]:
        assert r["success"], (r, stderr[-2000:])
        assert 0 < r["elapsed_s"] < 10.0            # within the task's 10 s horizon (sim time)
    assert out["success_rate"] == 1.0
