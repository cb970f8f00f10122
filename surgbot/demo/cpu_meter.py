"""CPU each node of a demo used, % of one core, between the start of its tasks and their end."""

from __future__ import annotations

import time

import psutil


class CpuMeter:
    """CPU each node used (with its children: the sim's renderers), % of one core, between start and stop."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    @staticmethod
    def _cpu_s(pid: int) -> float:
        try:
            p = psutil.Process(pid)
            procs = [p] + p.children(recursive=True)
        except psutil.Error:
            return float("nan")
        total = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: self._cpu_s(pid) for name, pid in self.pids.items()}
        self._start["demo (this process)"] = self._own()

    @staticmethod
    def _own() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system

    def stop(self) -> dict[str, float]:
        if not self._start:
            return {}
        wall = max(time.monotonic() - self._t0, 1e-9)
        now = {name: self._cpu_s(pid) for name, pid in self.pids.items()}
        now["demo (this process)"] = self._own()
        return {name: round(100.0 * (now[name] - self._start[name]) / wall, 1) for name in now}
