"""CPU a node process spends in rclpy's executor: SingleThreadedExecutor (baseline) vs EventsExecutor;
and what waking from a sleep costs on this machine.

The stack's nodes spin in `surgbot.rosutil.make_executor()`.  This measures
what that choice costs: a subscriber process taking a 29-joint JointState at
500 Hz with a 500 Hz timer (the holder's and the bridge's load), fed by a
publisher process spinning the same executor, for each executor kind; the
figure is the subscriber's CPU (% of one core, user + system) over the
window, with the single-threaded executor as the same-process baseline.

`executor.watch_<cb|polled>.js_500hz_timer_50hz_cpu`: the safety supervisor's
pattern, a process that judges at 50 Hz whether a 500 Hz stream still comes:
each message by a raw callback (baseline; how the supervisor read it until
December 2026) or taken at the 50 Hz tick from a reader no executor spins
(`surgbot.nodes.polled_arrivals`, how it reads it now).

`machine.wake_penalty.publish_after_<G>ms_sleep`: building and publishing
one PoseStamped (no subscriber) right after sleeping G ms, the way a 90 Hz
console or a 1 kHz twin calls it, against the same call in a tight loop
(baseline).  On the 2-vCPU VM this suite was written on, the call costs
~10 us back to back and ~100-200 us after an 11 ms sleep, with or without
other load (cold caches and TLB after the vCPU idled): every hop of a
latency chain that wakes from idle pays it, which is why the chains'
figures are several times their summed CPU costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from surgbot.bench import dds_domains, figure

RATE_HZ = 500.0
JOINTS = 29
KINDS = ("single", "events")
WATCH_HZ = 50.0                    # the supervisor's judgement rate (SupervisorConfig.publish_hz)
WATCH_MODES = ("cb", "polled")


def _child(role: str, seconds: float) -> None:
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    from surgbot.rosutil import SPIN_SLICE_S, make_executor

    rclpy.init()
    node = Node(f"bench_executor_{role}")
    count = [0]
    if role == "pub":
        pub = node.create_publisher(JointState, "/bench/executor_js", 10)
        msg = JointState(name=[f"joint_{i}" for i in range(JOINTS)], position=[0.0] * JOINTS,
                         velocity=[0.0] * JOINTS, effort=[0.0] * JOINTS)

        def tick() -> None:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            count[0] += 1
        node.create_timer(1.0 / RATE_HZ, tick)
    elif role == "watch_cb":
        node.create_subscription(JointState, "/bench/executor_js", lambda _m: count.__setitem__(0, count[0] + 1), 10,
                                 raw=True)
        node.create_timer(1.0 / WATCH_HZ, lambda: None)
    elif role == "watch_polled":
        from surgbot.nodes.polled_arrivals import PolledArrivals
        arrivals = PolledArrivals(node)
        arrivals.add("js", JointState, "/bench/executor_js", 10)

        def judge() -> None:
            arrivals.poll()
            count[0] = arrivals.taken["js"]
        node.create_timer(1.0 / WATCH_HZ, judge)
    else:
        node.create_subscription(JointState, "/bench/executor_js", lambda _m: count.__setitem__(0, count[0] + 1), 10)
        node.create_timer(1.0 / RATE_HZ, lambda: None)
    executor = make_executor()
    executor.add_node(node)
    t0, c0 = time.monotonic(), time.process_time()
    while time.monotonic() - t0 < seconds:
        executor.spin_once(timeout_sec=SPIN_SLICE_S)
    wall = time.monotonic() - t0
    print(json.dumps({"cpu_percent": 100.0 * (time.process_time() - c0) / wall, "messages": count[0],
                      "seconds": wall}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _pair(kind: str, seconds: float, role: str = "sub") -> dict:
    env = dict(os.environ, SURGBOT_ROS_EXECUTOR=kind)
    cmd = [sys.executable, "-m", "surgbot.bench.executors", "--child"]
    pub = subprocess.Popen(cmd + ["pub", "--seconds", str(seconds + 2.0)], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)             # the subscriber starts against a publisher that is already up
    sub = subprocess.run(cmd + [role, "--seconds", str(seconds)], env=env, capture_output=True, text=True,
                         timeout=seconds + 60)
    pub.communicate(timeout=seconds + 60)
    if sub.returncode != 0:
        raise RuntimeError(f"executor bench ({kind}) subscriber failed:\n{sub.stderr[-2000:]}")
    return json.loads(sub.stdout.strip().splitlines()[-1])


WAKE_GAPS_MS = (1.0, 11.0)         # a 1 kHz loop; a 90 Hz one


def _wake_penalty(quick: bool) -> list[dict]:
    """Child process: see the module doc."""
    cmd = [sys.executable, "-m", "surgbot.bench.executors", "--child", "wake"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"wake-penalty child failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    base = float(np.median(res["tight"]))
    return [figure(f"machine.wake_penalty.publish_after_{g:g}ms_sleep", "us", samples=res[str(g)], baseline=base,
                   baseline_name="the same call back to back",
                   note="PoseStamped() + publish (no subscriber) right after a sleep; see bench/executors.py")
            for g in WAKE_GAPS_MS]


def _wake_child(quick: bool) -> None:
    import rclpy
    from geometry_msgs.msg import PoseStamped

    rclpy.init()
    node = rclpy.create_node("bench_wake_penalty")
    pub = node.create_publisher(PoseStamped, "/bench/wake_penalty", 10)
    n = 100 if quick else 400

    def call() -> float:
        t0 = time.perf_counter()
        pub.publish(PoseStamped())
        return (time.perf_counter() - t0) * 1e6

    out = {"tight": [call() for _ in range(n)][10:]}
    for g in WAKE_GAPS_MS:
        samples = []
        for _ in range(n):
            time.sleep(g / 1e3)
            samples.append(call())
        out[str(g)] = samples[10:]
    print(json.dumps(out), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def run(quick: bool = False) -> list[dict]:
    dds_domains()
    seconds = 5.0 if quick else 15.0
    res = {kind: _pair(kind, seconds) for kind in KINDS}
    base = res["single"]["cpu_percent"]
    figs = []
    for kind in KINDS:
        r = res[kind]
        figs.append(figure(f"executor.{kind}.sub_500hz_js_plus_500hz_timer_cpu", "% of a core",
                           value=r["cpu_percent"], baseline=base, baseline_name="executor.single",
                           note=f"{r['messages']} JointStates received in {r['seconds']:.1f} s"))
    return figs + _watch(seconds) + _wake_penalty(quick)


def _watch(seconds: float) -> list[dict]:
    res = {mode: _pair("events", seconds, role=f"watch_{mode}") for mode in WATCH_MODES}
    base = res["cb"]["cpu_percent"]
    return [figure(f"executor.watch_{mode}.js_500hz_timer_50hz_cpu", "% of a core", value=res[mode]["cpu_percent"],
                   baseline=base, baseline_name="executor.watch_cb (a raw callback per message)",
                   note=f"{res[mode]['messages']} JointStates taken in {res[mode]['seconds']:.1f} s; the safety "
                        "supervisor's watchdog input (polled: surgbot.nodes.polled_arrivals)")
            for mode in WATCH_MODES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("pub", "sub", "watch_cb", "watch_polled", "wake"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.child == "wake":
        _wake_child(args.quick)
        return
    if args.child:
        _child(args.child, args.seconds)
        return
    for f in run(args.quick):
        print(f"{f['name']:>55}  {f.get('value', f.get('median')):8.1f} {f['unit']}  "
              f"ratio {f.get('ratio', float('nan')):.2f}  ({f['note']})")


if __name__ == "__main__":
    main()
