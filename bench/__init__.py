"""Performance suite: one module per area, collected by `surgbot bench`.

Each module exposes `run(quick: bool) -> list[dict]`, returning figures made
with `figure()` / `timing()`.  A figure has a name, a unit and either timing
statistics (median, p99, max over repeated runs after warm-up) or a rate; an
anchor (a published or baseline figure) travels beside it, and where the
baseline was measured in the same process the ratio is filled in.
"""

from __future__ import annotations

import os
import platform
import random
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

# Modules run by `surgbot bench`, in order.  A capability adds its module here.
MODULES = (
    "surgbot.bench.sim",
    "surgbot.bench.g1",
    "surgbot.bench.psm",
    "surgbot.bench.endoscope",
    "surgbot.bench.console",
    "surgbot.bench.data",
    "surgbot.bench.policy",
    "surgbot.bench.idm",
    "surgbot.bench.executors",
)


RAW_KEEP = 4000   # samples kept per figure for plots (stripped from --json output)


class Arrivals:
    """Receive times (`time.perf_counter()`) of one topic, appended by its callback thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t: list[float] = []

    def __call__(self, _msg) -> None:
        t = time.perf_counter()
        with self.lock:
            self.t.append(t)

    def window(self, seconds: float) -> np.ndarray:
        with self.lock:
            self.t.clear()
        time.sleep(seconds)
        with self.lock:
            return np.array(self.t)



def stats(samples: Iterable[float]) -> dict:
    a = np.asarray(list(samples), dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def figure(name: str, unit: str, *, samples: Iterable[float] | None = None,
           value: float | None = None, anchor: float | None = None,
           anchor_source: str = "", baseline: float | None = None,
           baseline_name: str = "", note: str = "", raw: Iterable[float] | None = None,
           higher_is_better: bool = False) -> dict:
    """One named figure.  `samples` -> median/p99/max; `value` -> a single rate or count.

    `baseline` is a figure measured in the same process (same unit); the ratio
    is baseline/ours for times (how many times faster) and ours/baseline for
    rates (`higher_is_better`).  Samples (or `raw`) are kept, thinned, for the
    report's histograms.
    """
    fig: dict = {"name": name, "unit": unit}
    if samples is not None:
        samples = np.asarray(list(samples), dtype=float)
        fig.update(stats(samples))
        if raw is None and samples.size > 1:
            raw = samples[:: max(1, samples.size // RAW_KEEP)]   # for the report's histograms
    if value is not None:
        fig["value"] = float(value)
    ours = fig.get("median", fig.get("value"))
    if anchor is not None:
        fig["anchor"] = float(anchor)
        fig["anchor_source"] = anchor_source
    if baseline is not None:
        fig["baseline"] = float(baseline)
        fig["baseline_name"] = baseline_name
        if ours:
            fig["ratio"] = float(ours / baseline if higher_is_better else baseline / ours)
    if note:
        fig["note"] = note
    if raw is not None:
        fig["raw"] = [float(x) for x in raw]
    return fig


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 10) -> list[float]:
    """Wall time of `fn()` in milliseconds, `repeats` times after `warmup` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def dds_domains() -> tuple[int, int]:
    """(ROS_DOMAIN_ID, G1 DDS domain) for this bench process, chosen once.

    Taken from the environment when set (tests set both), else picked at
    random in the same ranges as the tests, and written back to the
    environment so every child process and every module shares them: the
    unitree SDK's channel factory is one per process and cannot switch domain.
    """
    ros = os.environ.get("ROS_DOMAIN_ID") or str(10 + random.randrange(90))
    g1 = os.environ.get("SURGBOT_G1_DOMAIN") or str(110 + random.randrange(110))
    os.environ["ROS_DOMAIN_ID"], os.environ["SURGBOT_G1_DOMAIN"] = ros, g1
    return int(ros), int(g1)


def machine() -> dict:
    """CPU, cores and versions of what the figures depend on."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "mujoco", "pinocchio", "casadi", "rclpy", "cyclonedds"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # a missing module is reported, not fatal
            info[mod] = None
    return info
