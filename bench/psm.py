"""PSM figures: CRTK state rate and jitter, servo -> setpoint latency, IK/FK time, and the
G1 `rt/lowstate` period with the PSM served at 1 kHz in the same sim.

Measured from this process against the twin in its own process (private DDS
domain), at the dVRK's default 100 Hz and at 1 kHz:

* `psm_measured_js_rate_<R>hz`, `psm_measured_js_interarrival_<R>hz`: receive
  rate and gaps of `/PSM1/measured_js`;
* `psm_servo_cp_to_setpoint_cp_<R>hz`: client publishes `servo_cp` -> the
  first `setpoint_cp` carrying that pose arrives (the twin applies a command
  on its next physics step, 2 ms, and publishes it on its next tick, 1/R);
  the client subscribes to `setpoint_cp` only and wakes on its callback;
* `psm_servo_jp_to_setpoint_js_<R>hz`: the same for `servo_jp`;
* `sim_g1_lowstate_period_psm_<R>hz`: `rt/lowstate` receive gaps from
  `sim_node` (box_trainer: G1 + PSM + camera) with `psm_rate_hz` R while this
  process reads `measured_js` and `setpoint_cp` (the twin skips topics nobody
  reads, as the dVRK's bridge does); `rt/lowstate` is read by
  `bench/lowstate_reader.py`, a process of its own as the G1 bridge is (a
  listener in this process waited for the GIL behind rclpy's 1-2 kHz PSM
  callbacks and added its own lateness);
* `..._no_camera` (full runs): the same at 1 kHz with the endoscope renderer
  off (`camera:=false`), which separates the PSM's share of the lowstate
  jitter from the renderer's.  On the 2-core box the renderer's process
  (~16 ms of CPU a frame at 30 Hz) makes the physics thread wake late from
  its pacing sleep (measured: late publishes every ~33 ms, the frame
  period; a SCHED_IDLE renderer or a SCHED_IDLE busy loop in its place did
  the same), not the PSM;
* `..._realtime`: the same at 1 kHz with the sim and the reader
  at SCHED_FIFO `processes.REALTIME_PRIORITY`, as `surgbot up --realtime
  chain` runs the sim and the G1 bridge (the renderer stays SCHED_OTHER);
  not measured where real-time scheduling is not permitted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from surgbot import processes
from surgbot.bench import Arrivals, figure, time_calls

REPO = Path(__file__).resolve().parents[1]
WARMUP_TIMEOUT_S = 30.0
READER_TIMEOUT_S = 90.0            # the reader's own wait for the stream (60 s) and its start
# the combined-sim rows start SCHED_FIFO nodes (`surgbot.bench.runner` keeps the right for this area)
STARTS_REALTIME_NODES = True


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


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ if env is None else env)
    env.setdefault("MUJOCO_GL", "osmesa")
    return processes.start(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _rate_figures(tag: str, rate: float, a: np.ndarray) -> list[dict]:
    if len(a) < 3:
        return [figure(f"{tag}_rate_{int(rate)}hz", "Hz", note="no samples")]
    return [figure(f"{tag}_rate_{int(rate)}hz", "Hz", value=(len(a) - 1) / (a[-1] - a[0]), anchor=rate,
                   anchor_source="requested psm_rate_hz", higher_is_better=True),
            figure(f"{tag}_interarrival_{int(rate)}hz", "ms", samples=np.diff(a) * 1e3, anchor=1e3 / rate,
                   anchor_source="nominal period")]


def _latency(client, send, key: str, value, n: int, tol: float = 1e-9) -> list[float]:
    """ms from `send(k)` to the first `key` sample whose `value(msg)` is what was sent (within tol:
    setpoint_cp is FK of the twin's IK of the pose)."""
    out = []
    for k in range(n):
        target = send(k)
        serial = client.serial()
        t0 = time.perf_counter()
        deadline = t0 + 0.5
        while time.perf_counter() < deadline:
            try:
                msg, serial = client.wait_for_sample(key, serial, timeout=deadline - time.perf_counter())
            except TimeoutError:
                break
            if abs(value(msg) - target) < tol:
                out.append((time.perf_counter() - t0) * 1e3)
                break
        time.sleep(0.02)
    return out


def _twin_figures(rate: float, seconds: float, n_latency: int) -> list[dict]:
    import rclpy
    from sensor_msgs.msg import JointState

    from surgbot.hw.crtk import PSMClient, spin_in_background
    from surgbot.kinematics import psm

    proc = _start([sys.executable, "-m", "surgbot.sim.psm_twin", "--duration", "900", "--rate", str(rate),
                   "--start-home"])
    rclpy.init()
    node = rclpy.create_node(f"bench_psm_{int(rate)}")
    arrivals = Arrivals()
    node.create_subscription(JointState, "/PSM1/measured_js", arrivals, 100)
    spinner = spin_in_background(node)
    client = PSMClient(node, streams=("setpoint_cp", "setpoint_js"))
    figs: list[dict] = []
    try:
        client.wait_for_state(WARMUP_TIMEOUT_S)
        time.sleep(1.0)
        figs += _rate_figures("psm_measured_js", rate, arrivals.window(seconds))
        client.home(20.0)
        time.sleep(0.5)
        base = psm.fk(psm.HOME)

        lat_cp = _latency(client, lambda k: _send_x(client, base, k), "setpoint_cp",
                          lambda m: m.pose.position.x, n_latency, tol=1e-6)
        figs.append(figure(f"psm_servo_cp_to_setpoint_cp_{int(rate)}hz", "ms", samples=lat_cp,
                           note="servo_cp published -> first setpoint_cp with that pose received"))

        def send_jp(k):
            q = psm.HOME.copy()
            q[0] = 0.01 * (1 + k % 5) * ((k % 2) * 2 - 1)
            client.servo_jp(q)
            return q[0]

        figs.append(figure(f"psm_servo_jp_to_setpoint_js_{int(rate)}hz", "ms",
                           samples=_latency(client, send_jp, "setpoint_js", lambda m: m.position[0], n_latency),
                           note="servo_jp published -> first setpoint_js with it received"))
    finally:
        spinner.stop()                           # returns once the thread has left rclpy
        node.destroy_node()
        rclpy.shutdown()
        processes.stop(proc)
    return figs


def _send_x(client, base: np.ndarray, k: int) -> float:
    T = base.copy()
    T[0, 3] += 0.0015 * ((k % 2) * 2 - 1) * (1 + k % 4) / 4
    client.servo_cp(T)
    return float(T[0, 3])


def _g1_with_psm_figures(runs: tuple[tuple[float, bool, bool], ...], seconds: float) -> list[dict]:
    """rt/lowstate periods in the sims of `runs` ((psm_rate_hz, camera, realtime) each)."""
    from surgbot.bench import dds_domains

    _, domain = dds_domains()
    figs: list[dict] = []
    for rate, camera, realtime in runs:
        figs += _sim_with_psm(rate, seconds, domain, camera, realtime)
    return figs


def _scheduling_env(realtime: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(processes.REALTIME_ENV, None)
    if realtime:
        env[processes.REALTIME_ENV] = str(processes.REALTIME_PRIORITY)
    return env


def _read_lowstate(domain: int, seconds: float, realtime: bool) -> tuple[np.ndarray, str, bool]:
    """Arrival times of rt/lowstate read by bench/lowstate_reader.py (a process of its own, as the
    bridge is), the scheduling it ran under, and whether that was SCHED_FIFO."""
    proc = subprocess.run([sys.executable, "-m", "surgbot.bench.lowstate_reader", str(domain), str(seconds)],
                          cwd=REPO, env=_scheduling_env(realtime), capture_output=True, text=True,
                          timeout=READER_TIMEOUT_S + seconds)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("ARRIVALS ")), None)
    if line is None:
        raise RuntimeError(f"lowstate reader exited {proc.returncode} without arrivals: {proc.stderr[-500:]}")
    data = json.loads(line[len("ARRIVALS "):])
    return np.array(data["t"]), data["scheduling"], data["fifo"]


def _sim_with_psm(rate: float, seconds: float, domain: int, camera: bool = True,
                  realtime: bool = False) -> list[dict]:
    import rclpy
    from sensor_msgs.msg import JointState

    from surgbot.hw.crtk import PSMClient, spin_in_background

    sim = _start([sys.executable, "-m", "surgbot.nodes.sim_node", "--ros-args", "-p", "scene:=box_trainer",
                  "-p", f"g1_domain:={domain}", "-p", f"psm_rate_hz:={float(rate)}",
                  "-p", f"camera:={'true' if camera else 'false'}"], env=_scheduling_env(realtime))
    name = f"sim_g1_lowstate_period_psm_{int(rate)}hz" + ("" if camera else "_no_camera") \
        + ("_realtime" if realtime else "")
    rclpy.init()
    node = rclpy.create_node(f"bench_sim_psm_{int(rate)}")
    psm_js = Arrivals()
    node.create_subscription(JointState, "/PSM1/measured_js", psm_js, 100)
    spinner = spin_in_background(node)
    client = PSMClient(node, streams=("setpoint_cp",))
    figs: list[dict] = []
    try:
        client.wait_for_state(60.0)
        sim_fifo = os.sched_getscheduler(sim.pid) == os.SCHED_FIFO
        with psm_js.lock:
            psm_js.t.clear()
        t_low, reader_scheduling, reader_fifo = _read_lowstate(domain, seconds, realtime)
        with psm_js.lock:                      # the reader's window (both clocks CLOCK_MONOTONIC)
            t_psm = np.array([t for t in psm_js.t if len(t_low) and t_low[0] <= t <= t_low[-1]])
        note = (f"sim_node box_trainer, PSM at {rate:g} Hz, measured_js + setpoint_cp read; rt/lowstate read "
                f"by a process of its own ({reader_scheduling})" + ("" if camera else ", endoscope renderer off"))
        if realtime and not (sim_fifo and reader_fifo):
            figs.append(figure(name, "ms", note=f"SCHED_FIFO not permitted here (sim FIFO: {sim_fifo}; "
                                                f"reader: {reader_scheduling}): not measured"))
        elif len(t_low) > 2:
            if realtime:
                note += ("; sim and reader SCHED_FIFO "
                         f"{processes.REALTIME_PRIORITY}, as `surgbot up --realtime chain` runs the sim and the bridge")
            figs.append(figure(name, "ms", samples=np.diff(t_low) * 1e3, anchor=2.0,
                               anchor_source="contract: 500 Hz", note=note))
        if camera and not realtime:
            figs += _rate_figures("sim_psm_measured_js", rate, t_psm)
    finally:
        spinner.stop()                           # returns once the thread has left rclpy
        node.destroy_node()
        rclpy.shutdown()
        processes.stop(sim)
    return figs


def run(quick: bool) -> list[dict]:
    from surgbot.bench import dds_domains
    dds_domains()
    seconds = 2.0 if quick else 15.0
    n_latency = 25 if quick else 200
    figs = _ik_figures(quick)
    for rate in (100.0, 1000.0):
        figs += _twin_figures(rate, seconds, n_latency)
    # quick (smoke check): the combined sim at 1 kHz, SCHED_OTHER and real-time; full: also its 100 Hz
    # baseline and 1 kHz without the renderer
    figs += _g1_with_psm_figures(((1000.0, True, False), (1000.0, True, True)) if quick else
                                 ((100.0, True, False), (1000.0, True, False), (1000.0, False, False),
                                  (1000.0, True, True)), seconds)
    return figs


if __name__ == "__main__":
    t0 = time.time()
    out = run(quick="--full" not in sys.argv)
    for f in out:
        print(json.dumps({k: v for k, v in f.items() if k != "raw"}))
    print(f"{time.time() - t0:.1f} s")
