"""`surgbot up`: the sim stack as supervised processes; a dead node is reported and stops the stack."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import time

import psutil
import pytest
from std_msgs.msg import String

from surgbot import contract
from surgbot.rosutil import latched_qos
from surgbot.safety.supervisor import only_lateness
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


def test_only_the_watchdog_chain_asks_for_realtime_or_a_share_and_only_at_its_level(tmp_path):
    from surgbot import processes
    from surgbot.stack import REALTIME_LEVELS
    from surgbot.up import Stack

    nodes = nodes_for(StackOptions(console=True, policy_checkpoint="default", record_dir=str(tmp_path)))
    asking = {level: {n.name for n in nodes if n.asks_realtime(level)} for level in REALTIME_LEVELS}
    assert asking == {"off": set(), "sim": {"sim_node", "safety_supervisor"},
                      "chain": {"sim_node", "g1_bridge", "endoscope_holder", "safety_supervisor"}}
    # the chain's SCHED_OTHER nodes at "sim" ask for a larger CPU share instead (never with FIFO)
    sharing = {level: {n.name for n in nodes if n.asks_share(level)} for level in REALTIME_LEVELS}
    assert sharing == {"off": set(), "sim": {"g1_bridge", "endoscope_holder"}, "chain": set()}
    sim = next(n for n in nodes if n.name == "sim_node")
    assert sim.environment("sim") == {processes.REALTIME_ENV: str(processes.REALTIME_PRIORITY)}
    bridge = next(n for n in nodes if n.name == "g1_bridge")
    assert bridge.environment("sim") == {processes.SHARE_ENV: str(processes.CHAIN_NICE)}
    assert bridge.environment("chain") == {processes.REALTIME_ENV: str(processes.REALTIME_PRIORITY)}
    assert processes.CHAIN_NICE < 0
    with pytest.raises(ValueError, match="not in"):
        sim.asks_realtime("on")
    with pytest.raises(ValueError, match="not in"):
        Stack([sim], {}, tmp_path, restart=False, realtime=True)
    # plain processes standing in for a sim and a chain node print what they were started with
    probes = [dataclasses.replace(next(n for n in nodes if n.name == name), ros=False, module="tests.print_env",
                                  args=()) for name in ("sim_node", "g1_bridge")]
    fifo, share = f"{processes.REALTIME_PRIORITY},unset", f"unset,{processes.CHAIN_NICE}"
    for level, expected in (("off", ["unset,unset", "unset,unset"]), ("sim", [fifo, share]),
                            ("chain", [fifo, fifo])):
        stack = Stack(probes, {}, tmp_path / f"logs-{level}", restart=False, say=lambda *_: None, realtime=level)
        stack.start()
        try:
            assert [r.proc.wait(60) for r in stack.running] == [0, 0]
        finally:
            stack.stop()
        assert [(tmp_path / f"logs-{level}" / f"{name}.log").read_text().split()[-1]
                for name in ("sim_node", "g1_bridge")] == expected


def test_realtime_argument_levels():
    import argparse

    from surgbot.demo.cli import DEMO_REALTIME
    from surgbot.demo.cli import add_arguments as demo_arguments
    from surgbot.up import add_arguments as up_arguments

    for add, default in ((up_arguments, "off"), (demo_arguments, DEMO_REALTIME)):
        p = argparse.ArgumentParser()
        add(p)
        assert p.parse_args([]).realtime == default
        assert p.parse_args(["--realtime"]).realtime == "chain"          # the flag alone: as before levels
        assert p.parse_args(["--realtime", "sim"]).realtime == "sim"
    assert DEMO_REALTIME == "sim"


def test_a_console_port_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(UP + ["--console", "--console-port", str(port), "--log-dir", str(tmp_path / "logs")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in out.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("args, why", [(["--camera-hz", "0"], "--camera-hz must be in (0, 240], got 0.0"),
                                       (["--camera-hz", "inf"], "--camera-hz must be in (0, 240], got inf"),
                                       (["--hardware", "--camera-hz", "15"],
                                        "with --hardware the camera is the robot's")])
def test_a_bad_camera_rate_is_refused_before_anything_starts(tmp_path, args, why):
    out = subprocess.run(UP + args + ["--log-dir", str(tmp_path / "logs")], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 2 and why in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
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
        # the G1's command sources say in /diagnostics whether they have heard the supervisor (the demo
        # waits for it before engaging: the nodes discover each other on their own)
        from diagnostic_msgs.msg import DiagnosticArray
        heard: dict[str, str] = {}

        def on_diagnostics(msg):
            for st in msg.status:
                for kv in st.values:
                    if kv.key == "safety_state_heard":
                        heard[st.name] = kv.value
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or len(seen) == 4, 90), (seen, processes.log(up))
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or (
            heard.get("g1_bridge") == heard.get("endoscope_holder") == "True"), 30), heard
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


CTL = [PYTHON, "-m", "surgbot.cli", "ctl"]
RATE_WINDOW_S = 5.0
# The rates each stream must reach in the window: measured_js 70 % of the twin's 100 Hz (section 3),
# /safety/state 70 % of the supervisor's 50 Hz, /g1/joint_states (no contract rate; the bridge
# publishes up to 250 Hz, 127 Hz measured at load 14) at least the 20 Hz that beat the supervisor's
# 50 ms lowstate watchdog (section 8), and the endoscope its contract floor, >= 15 Hz (section 5).
# The sim is asked for CAMERA_HZ: at its default 30 Hz the renderer (the one load of the stack that
# may wait, niced) got 7-20 Hz on 2 cores with every node running.
CAMERA_HZ = 20.0
MIN_RATE_SHARE = 0.7
MIN_RATES_HZ = {contract.psm_topic("measured_js"): MIN_RATE_SHARE * 100.0, contract.G1_JOINT_STATES: 20.0,
                contract.ENDOSCOPE_IMAGE: 15.0, contract.SAFETY_STATE: MIN_RATE_SHARE * 50.0}
SETTLE_S = 5.0          # after the last node is ready, before the rates are measured


def _ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CTL + list(args) + ["--timeout", "20"], cwd=REPO, capture_output=True, text=True,
                          timeout=90)


@pytest.mark.full_stack
def test_up_runs_the_whole_stack_with_console_policy_and_recording(processes, tmp_path, g1_domain):
    """`surgbot up --console --policy default --record`: every node up, contract rates, ctl drives it,
    a killed node is reported, the bag holds the run.  At the demo's `--realtime sim` (the twin and the
    supervisor at FIFO): at `off` the twin itself starved (`/PSM1/measured_js` and rt/lowstate 70-75 ms
    silent after engage, one run)."""
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import Image, JointState

    port = _free_port()
    up = processes.start(UP + ["--sim", "box_trainer", "--task", "reach", "--console", "--console-port", str(port),
                               "--policy", "default", "--g1-domain", str(g1_domain), "--realtime", "sim",
                               "--camera-hz", str(CAMERA_HZ), "--record", str(tmp_path / "bags"),
                               "--log-dir", str(tmp_path / "logs")], name="up",
                         env={"SURGBOT_CONSOLE_TOKEN": "t" * 32})
    counts: dict[str, list[float]] = {t: [] for t in MIN_RATES_HZ}
    states: dict[str, str] = {}
    with listener_node("test_up_full") as (node, ex):
        kinds = {contract.psm_topic("measured_js"): JointState, contract.G1_JOINT_STATES: JointState,
                 contract.ENDOSCOPE_IMAGE: Image, contract.SAFETY_STATE: String}
        for topic, kind in kinds.items():
            qos = latched_qos() if topic == contract.SAFETY_STATE else 50
            node.create_subscription(kind, topic, lambda _m, t=topic: counts[t].append(time.monotonic()), qos,
                                     raw=True)
        node.create_subscription(String, contract.ENDOSCOPE_MODE, lambda m: states.__setitem__("mode", m.data),
                                 latched_qos())
        node.create_subscription(String, "/policy/state", lambda m: states.__setitem__("policy", m.data), 10)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or (all(counts.values()) and len(states) == 2),
                         120), (states, {t: len(v) for t, v in counts.items()}, processes.log(up))
        # the rates are the running stack's: measured once the last node to get ready (the policy
        # server, loading torch and the checkpoint) serves, and SETTLE_S after it.  Measured from the
        # first message instead, the window fell in the start-up's CPU peak on 2 cores (endoscope
        # 16 Hz there; 30.0 Hz from 30 s on, with and without --record)
        server_log = tmp_path / "logs" / "policy_server.log"
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or (
            server_log.exists() and "policy server on tcp://" in server_log.read_text()), 120), processes.log(up)
        t_settle = time.monotonic()
        while time.monotonic() - t_settle < SETTLE_S:
            ex.spin_once(timeout_sec=0.05)
        for v in counts.values():
            v.clear()
        t0 = time.monotonic()
        while time.monotonic() - t0 < RATE_WINDOW_S:
            ex.spin_once(timeout_sec=0.01)
        rates = {t: len(v) / RATE_WINDOW_S for t, v in counts.items()}
        print("rates", rates)
        for topic, hz in MIN_RATES_HZ.items():
            assert rates[topic] >= hz, (topic, rates)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass                                                      # the console listens
        # a FAULT the start-up latched (on 2 cores a node's liveliness can lapse while the policy
        # server loads torch: seen, the console's) is what a person resets once, as the README says;
        # nothing was engaged, and the reset is refused if its cause persists
        state = json.loads(_ctl("state").stdout)
        if state["safety"]["state"] != "OK":
            print("start-up safety state", state["safety"])
            r = _ctl("reset")
            assert r.returncode == 0, ("reset after start-up", state["safety"], r.stdout, r.stderr)
        for action in ("engage", "hold"):
            r = _ctl(action)
            assert r.returncode == 0, (action, r.stdout, r.stderr)
        assert _wait_for(lambda: ex.spin_once(timeout_sec=0.05) or states.get("mode") == "HOLD", 20), states
        r = _ctl("estop")
        assert r.returncode == 0, r.stderr
        state = json.loads(_ctl("state").stdout)
        assert state["safety"]["state"] == "ESTOP", state
        assert _ctl("reset").returncode == 0                          # accepted: the e-stop is cleared
        # what the state says a moment later: OK, or a new FAULT of lateness only (on 2 cores the
        # full stack's watchdogs see one every few tens of seconds: `g1_lowstate: silent for 53 ms`
        # right after a reset, seen), never the e-stop again
        safety = json.loads(_ctl("state").stdout)["safety"]
        assert safety["state"] == "OK" or (safety["state"] == "FAULT" and only_lateness(safety["reasons"])), safety
    children = {c.pid: " ".join(c.cmdline()) for c in psutil.Process(up.pid).children(recursive=True)}
    policy = next(pid for pid, cmd in children.items() if "surgbot.nodes.policy_node" in cmd)
    t_kill = time.monotonic()
    psutil.Process(policy).send_signal(signal.SIGKILL)
    assert _wait_for(lambda: "node policy_node exited with code -9" in processes.log(up), 30), processes.log(up)
    print(f"killed policy_node reported after {time.monotonic() - t_kill:.2f} s")
    assert up.wait(60) == 1, processes.log(up)
    # the recording: one rosbag2 folder, opened by both readers, with the run's topics
    (bag,) = [p for p in (tmp_path / "bags").iterdir() if p.is_dir()]
    with AnyReader([bag]) as reader:
        by_topic = {c.topic: c.msgcount for c in reader.connections}
    assert by_topic.get(contract.psm_topic("measured_js"), 0) > 100 * RATE_WINDOW_S * MIN_RATE_SHARE, by_topic
    assert by_topic.get(contract.SAFETY_STATE, 0) > 0 and by_topic.get(contract.SIM_TASK, 0) > 0, by_topic
    with open(next(bag.glob("*.mcap")), "rb") as f:
        summary = make_reader(f).get_summary()
    channels = {c.topic for c in summary.channels.values()}
    assert contract.ENDOSCOPE_IMAGE_COMPRESSED in channels and contract.G1_JOINT_STATES in channels


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
