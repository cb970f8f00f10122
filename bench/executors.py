"""CPU a node process spends in rclpy's executor: SingleThreadedExecutor (baseline) vs EventsExecutor.

The stack's nodes spin in `surgbot.rosutil.make_executor()`.  This measures
what that choice costs: a subscriber process taking a 29-joint JointState at
500 Hz with a 500 Hz timer (the holder's and the bridge's load), fed by a
publisher process spinning the same executor, for each executor kind; the
figure is the subscriber's CPU (% of one core, user + system) over the
window, with the single-threaded executor as the same-process baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from surgbot.bench import dds_domains, figure

RATE_HZ = 500.0
JOINTS = 29
KINDS = ("single", "events")


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


def _pair(kind: str, seconds: float) -> dict:
    env = dict(os.environ, SURGBOT_ROS_EXECUTOR=kind)
    cmd = [sys.executable, "-m", "surgbot.bench.executors", "--child"]
    pub = subprocess.Popen(cmd + ["pub", "--seconds", str(seconds + 2.0)], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)             # the subscriber starts against a publisher that is already up
    sub = subprocess.run(cmd + ["sub", "--seconds", str(seconds)], env=env, capture_output=True, text=True,
                         timeout=seconds + 60)
    pub.communicate(timeout=seconds + 60)
    if sub.returncode != 0:
        raise RuntimeError(f"executor bench ({kind}) subscriber failed:\n{sub.stderr[-2000:]}")
    return json.loads(sub.stdout.strip().splitlines()[-1])


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
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=("pub", "sub"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.seconds)
        return
    for f in run(args.quick):
        print(f"{f['name']:>55}  {f['value']:6.1f} %  ratio {f.get('ratio', float('nan')):.2f}  ({f['note']})")


if __name__ == "__main__":
    main()
