"""PSM figures: /PSM1/measured_js rate and jitter as seen by another process at
100 Hz and 1 kHz, servo_cp -> setpoint_cp latency, and IK solve time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from surgbot.bench import figure, time_calls
from surgbot import processes

REPO = Path(__file__).resolve().parents[1]


def _ik_figures(quick: bool) -> list[dict]:
    from surgbot.kinematics import psm

    rng = np.random.default_rng(0)
    poses = []
    for _ in range(200):
        q = rng.uniform(psm.LOWER, psm.UPPER)
        q[2] = rng.uniform(psm.MIN_IK_INSERTION, psm.UPPER[2])
        poses.append((psm.fk(q), np.clip(q + rng.normal(0, 0.05, 6), psm.LOWER, psm.UPPER)))
    it = iter(range(10 ** 9))
    fn = lambda: psm.ik(*poses[next(it) % len(poses)])  # noqa: E731
    n = 300 if quick else 3000
    return [
        figure("psm_ik_solve", "ms", samples=time_calls(fn, n), note="closed form + LM polish, seeded near"),
        figure("psm_fk", "ms", samples=time_calls(lambda: psm.fk(psm.HOME), n)),
    ]


def _twin(rate: float, env: dict) -> subprocess.Popen:
    return processes.start([sys.executable, "-m", "surgbot.sim.psm_twin", "--duration", "600", "--rate", str(rate),
                            "--start-home"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


_stop = processes.stop


def _rate_and_latency(rate: float, seconds: float, latency: bool) -> list[dict]:
    import rclpy
    from sensor_msgs.msg import JointState

    from surgbot.hw.crtk import PSMClient, spin_in_background
    from surgbot.kinematics import psm

    from surgbot.bench import dds_domains
    dds_domains()
    env = dict(os.environ)
    proc = _twin(rate, env)
    rclpy.init()
    node = rclpy.create_node(f"bench_psm_{int(rate)}")
    arrivals: list[float] = []
    lock = threading.Lock()

    def on_js(_msg):
        t = time.perf_counter()
        with lock:
            arrivals.append(t)

    node.create_subscription(JointState, "/PSM1/measured_js", on_js, 100)
    executor, thread = spin_in_background(node)
    client = PSMClient(node)
    figs: list[dict] = []
    try:
        client.wait_for_state(20.0)
        t_end = time.monotonic() + 10.0
        while time.monotonic() < t_end and len(arrivals) < 10:
            time.sleep(0.05)
        with lock:
            arrivals.clear()
        time.sleep(seconds)
        with lock:
            a = np.array(arrivals)
        gaps = np.diff(a) * 1e3
        figs.append(figure(f"psm_measured_js_rate_{int(rate)}hz", "Hz", value=(len(a) - 1) / (a[-1] - a[0]),
                           anchor=rate, anchor_source="requested psm_rate_hz", higher_is_better=True))
        figs.append(figure(f"psm_measured_js_interarrival_{int(rate)}hz", "ms", samples=gaps,
                           anchor=1e3 / rate, anchor_source="nominal period"))
        if latency:
            client.home(15.0)
            base = psm.fk(psm.HOME)
            lat = []
            for k in range(40 if seconds < 5 else 150):
                T = base.copy()
                T[0, 3] += 0.002 * ((k % 2) * 2 - 1) * (1 + k % 5) / 5
                t0 = time.perf_counter()
                client.servo_cp(T)
                while time.perf_counter() - t0 < 0.5:
                    try:
                        sp, _ = client.setpoint_cp()
                    except TimeoutError:
                        sp = None
                    if sp is not None and abs(sp[0, 3] - T[0, 3]) < 1e-6:
                        lat.append((time.perf_counter() - t0) * 1e3)
                        break
                    time.sleep(0.0002)
                time.sleep(0.02)
            figs.append(figure(f"psm_servo_cp_to_setpoint_cp_{int(rate)}hz", "ms", samples=lat,
                               note="client publish -> twin IK on next physics step -> next setpoint_cp"))
    finally:
        client.close()
        executor.shutdown(timeout_sec=2.0)
        thread.join(timeout=2.0)
        node.destroy_node()
        rclpy.shutdown()
        _stop(proc)
    return figs


def run(quick: bool) -> list[dict]:
    seconds = 3.0 if quick else 15.0
    figs = _ik_figures(quick)
    figs += _rate_and_latency(100.0, seconds, latency=False)
    figs += _rate_and_latency(1000.0, seconds, latency=True)
    return figs


if __name__ == "__main__":
    import json
    t0 = time.time()
    out = run(quick="--full" not in sys.argv)
    for f in out:
        print(json.dumps({k: v for k, v in f.items() if k != "raw"}))
    print(f"{time.time() - t0:.1f} s")
