"""`surgbot up`: the sim stack as supervised processes; a dead node is reported and stops the stack."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import psutil
import pytest
from std_msgs.msg import String

from surgbot import contract
from surgbot.rosutil import latched_qos
from surgbot.stack import StackOptions, nodes_for
from surgbot.up import node_argv
from tests.conftest import PYTHON, REPO
from tests.test_sim import _wait_for, listener_node

pytestmark = pytest.mark.sim

UP = [PYTHON, "-m", "surgbot.cli", "up"]


def test_node_command_lines_are_what_launch_would_run():
    opts = StackOptions(sim_scene="endonasal", console=True, policy_checkpoint="default", g1_domain=7)
    names = [n.name for n in nodes_for(opts)]
    assert names == ["sim_node", "g1_bridge", "endoscope_holder", "safety_supervisor", "teleop_console",
                     "teleop_mapper", "policy_server", "policy_node"]
    bridge = node_argv(nodes_for(opts)[1], opts.launch_arguments())
    assert bridge[1:3] == ["-m", "surgbot.nodes.g1_bridge"]
    assert "__node:=g1_bridge" in bridge and "g1_domain:=7" in bridge
    assert any(a.endswith("config/g1_bridge.yaml") for a in bridge)
    server = node_argv(nodes_for(opts)[6], opts.launch_arguments())
    assert server[3:] == ["policy", "serve", "--checkpoint", "default", "--port", "5555"]
    assert [n.name for n in nodes_for(StackOptions(sim_scene=None))] == ["g1_bridge", "endoscope_holder",
                                                                        "safety_supervisor"]


def test_a_console_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(UP + ["--console", "--console-port", str(port), "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in out.stderr
    assert not (tmp_path / "logs").exists()


def test_up_brings_the_sim_stack_up_and_a_killed_node_stops_it(processes, tmp_path, g1_domain):
    up = processes.start(UP + ["--sim", "box_trainer", "--g1-domain", str(g1_domain), "--log-dir",
                               str(tmp_path / "logs")], name="up")
    seen: dict[str, float] = {}
    with listener_node("test_up_listener") as (node, ex):
        from sensor_msgs.msg import JointState
        for topic, kind, qos in ((contract.SAFETY_STATE, String, latched_qos()),
                                 (contract.ENDOSCOPE_MODE, String, latched_qos()),     # published on change
                                 (contract.G1_JOINT_STATES, JointState, 10),
                                 (contract.psm_topic("measured_js"), JointState, 10)):
            node.create_subscription(kind, topic, lambda _m, t=topic: seen.__setitem__(t, time.monotonic()), qos)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or len(seen) == 4, 90), (seen, processes.log(up))
    children = {c.pid: " ".join(c.cmdline()) for c in psutil.Process(up.pid).children(recursive=True)}
    holder = next(pid for pid, cmd in children.items() if "surgbot.nodes.endoscope_holder" in cmd)
    t_kill = time.monotonic()
    psutil.Process(holder).send_signal(signal.SIGKILL)
    report = "node endoscope_holder exited with code -9"
    assert _wait_for(lambda: report in processes.log(up), 30), processes.log(up)
    detected_s = time.monotonic() - t_kill
    print(f"killed node reported after {detected_s:.2f} s (poll period 0.2 s)")
    assert detected_s < 5.0            # 1 s by design (0.2 s poll); margin for a loaded 2-core CI box
    assert up.wait(30) == 1, processes.log(up)
    assert "surgbot up: stopped" in processes.log(up)
    for pid, cmd in children.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, cmd
