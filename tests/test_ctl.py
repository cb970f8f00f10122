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
    # Each ctl call starts a Python process that imports rclpy (~1 s of a core): on 2 shared cores that
    # starved the 100 Hz twin for 138 ms once (measured), a real FAULT by the 100 ms contract watchdog.
    # This test is about ctl; the watchdog has its own (tests/test_safety_supervisor.py).
    processes.start([PYTHON, "-m", "surgbot.nodes.safety_supervisor", "--ros-args", "-p",
                     "psm_state_timeout_s:=1.0"], name="supervisor")
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


def test_ctl_through_the_stacks_relay(processes, tmp_path):
    """A stack's relay (`surgbot up` keeps one, surgbot/ctl_relay.py) answers `surgbot ctl` without a DDS
    participant of its own; bad requests are refused and it serves on; one relay per domain; a stale
    socket file is replaced; once it is closed, ctl starts its own node again."""
    import socket as socket_module

    from surgbot.ctl_relay import CtlRelay, request, socket_path

    processes.start([PYTHON, "-m", "surgbot.sim.psm_twin", "--duration", "300"], name="psm_twin")
    processes.start([PYTHON, "-m", "surgbot.nodes.safety_supervisor", "--ros-args", "-p",
                     "psm_state_timeout_s:=1.0"], name="supervisor")
    path = socket_path()
    stale = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                                    # the file stays, nobody listens: a killed stack's
    relay = CtlRelay()
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(RuntimeError, match="another stack serves ctl"):
            CtlRelay()                                   # (its probe is a `state` request: counted)
        base = relay.requests
        out = ctl("estop", "--timeout", "20")
        assert out.returncode == 0 and out.stdout.strip() == "estop: ok: ok", out.stdout + out.stderr
        state = json.loads(ctl("state").stdout)          # no holder: the mode never comes, 5 s
        assert state["safety"]["state"] == "ESTOP" and state["psm"]["state"] == "DISABLED", state
        assert ctl("reset", "--timeout", "20").returncode == 0
        out = ctl("hold", "--timeout", "1")            # no holder: the relay's node says so, exit 2
        assert out.returncode == 2 and "/endoscope/hold is not available" in out.stderr, out.stderr
        assert relay.requests == base + 4
        for raw in (b"not json\n", b'{"action": "estop"}\n', b'{"action": "fly", "timeout": 1}\n',
                    b'{"action": "estop", "timeout": "soon"}\n', b"x" * 5000 + b"\n"):
            conn = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
            conn.connect(str(path))
            conn.settimeout(10)
            conn.sendall(raw)
            reply = json.loads(conn.makefile().readline())
            conn.close()
            assert set(reply) == {"error"}, (raw[:40], reply)
        assert relay.requests == base + 4                # none of them ran
        assert request("state", None, 2.0)[0] == 0       # and it still serves
    finally:
        relay.close()
    assert not path.exists()
    assert request("state", None, 1.0) is None
    out = ctl("state")                                   # its own node again
    assert out.returncode == 0 and json.loads(out.stdout)["safety"]["state"] == "OK", out.stdout + out.stderr
