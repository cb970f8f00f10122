"""`surgbot ctl` against running nodes (PSM twin + safety supervisor) and against nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.sim

CTL = [PYTHON, "-m", "surgbot.cli", "ctl"]


def ctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CTL + list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_ctl_without_a_stack_exits_2_with_the_reason():
    out = ctl("estop", "--timeout", "1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("surgbot ctl: error: /safety/estop is not available")


@pytest.mark.parametrize("args,needle", [(("policy-instruction",), "needs the instruction text"),
                                         (("hold", "extra"), "takes no argument"),
                                         (("state", "--timeout", "0"), "--timeout must be > 0")])
def test_ctl_bad_arguments_exit_2(args, needle):
    out = ctl(*args)
    assert out.returncode == 2 and needle in out.stderr


def test_ctl_drives_the_psm_and_the_supervisor(processes):
    processes.start([PYTHON, "-m", "surgbot.sim.psm_twin", "--duration", "300"], name="psm_twin")
    processes.start([PYTHON, "-m", "surgbot.nodes.safety_supervisor"], name="supervisor")
    out = ctl("psm-enable", "--timeout", "30")
    assert out.returncode == 0, out.stdout + out.stderr
    out = ctl("psm-home", "--timeout", "30")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.split("ok: ", 1)[1])["is_homed"] is True
    assert ctl("estop").returncode == 0
    state = json.loads(ctl("state").stdout)
    assert state["safety"]["state"] == "ESTOP" and state["psm"]["state"] == "ENABLED"
    out = ctl("reset")
    assert out.returncode == 0, out.stderr
    state = json.loads(ctl("state").stdout)
    assert state["safety"]["state"] == "OK", state
    # a refused call exits 1 with the reason (no endoscope holder is running: a timeout is exit 2)
    out = ctl("hold", "--timeout", "1")
    assert out.returncode == 2 and "/endoscope/hold is not available" in out.stderr
