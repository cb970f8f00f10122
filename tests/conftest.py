"""Shared test fixtures: a private ROS domain and G1 DDS domain per test run,
and a process launcher that always cleans up what it started (children also
get SIGTERM if the test process itself dies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surgbot import processes as child_processes

# No real-time guard for the pytest process itself: the stacks tests start (surgbot.up.Stack)
# ask for SCHED_FIFO for their watchdog chain, as `surgbot up` does; the dataset writer drops the
# right in the process that opens the AV1 encoder (policies/data/dataset.py, processes.py).

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def _pick_domains() -> tuple[int, int]:
    """Two DDS domains unlikely to be used by another run on this machine.

    ROS_DOMAIN_ID must be <= 101 for Fast DDS port arithmetic to stay safe on
    Linux; the G1 domain sits in 102..232.  Derived from the pid and clock so
    parallel runs differ.
    """
    seed = (os.getpid() * 7919 + int(time.time() * 1000)) & 0xFFFFFFFF
    ros = 10 + seed % 90
    g1 = 110 + (seed // 90) % 110
    return ros, g1


ROS_DOMAIN, G1_DOMAIN = _pick_domains()
os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN)
os.environ["SURGBOT_G1_DOMAIN"] = str(G1_DOMAIN)
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture(scope="session")
def ros_domain() -> int:
    return ROS_DOMAIN


@pytest.fixture(scope="session")
def g1_domain() -> int:
    return G1_DOMAIN


# Every Processes alive now, so a failing test's report can show what its
# subprocesses printed (a CI run keeps nothing else: the tmp folders are gone).
_LIVE_PROCESSES: list[Processes] = []
_LOG_TAIL_LINES = 25


class Processes:
    """Starts subprocesses in their own process group; kills them all on exit."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        _LIVE_PROCESSES.append(self)

    def start(self, args: list[str], name: str = "proc", env: dict | None = None) -> subprocess.Popen:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = child_processes.start(args, cwd=REPO, env=full_env, stdout=open(log, "wb"),
                                     stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        for p, log in self.procs:
            if p is proc:
                return log.read_text(errors="replace")
        return ""

    def stop(self, proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 10.0) -> int | None:
        return child_processes.stop(proc, sig, timeout)

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                self.stop(proc, signal.SIGTERM, timeout=5)
        if self in _LIVE_PROCESSES:
            _LIVE_PROCESSES.remove(self)

    def report(self) -> str:
        """Each process: its command, whether it still runs, and the tail of its log."""
        out = []
        for proc, log in self.procs:
            status = "running" if proc.poll() is None else f"exited {proc.returncode}"
            try:
                tail = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            except OSError as e:
                tail = [f"(log unreadable: {e})"]
            cmd = " ".join(str(a) for a in proc.args[1:4]) if isinstance(proc.args, list) else str(proc.args)
            out.append(f"--- {log.name} ({status}): {cmd}\n" + "\n".join(tail))
        return "\n".join(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _LIVE_PROCESSES:
        text = "\n".join(r for r in (p.report() for p in _LIVE_PROCESSES) if r)
        if text:
            report.sections.append(("processes started by the tests (log tails)", text))


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.close()


@pytest.fixture(scope="module")
def module_processes(tmp_path_factory):
    procs = Processes(tmp_path_factory.mktemp("procs"))
    yield procs
    procs.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (`pytest.mark.usefixtures("one_torch_thread")`): on a
    shared 2-core machine OpenMP's spinning threads make tiny steps 10-100x slower."""
    import torch  # only the modules that ask for it pay torch's import

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- skip policy
# No silent skips: a test that cannot run fails the run.  Required dependencies
# are imported plainly (an ImportError is a collection error); a skip is
# allowed only when its reason starts with one of these prefixes, each with why.
# `make test` prints the count (see pytest_terminal_summary) and exits non-zero
# on any other skip.
ALLOWED_SKIP_PREFIXES: dict[str, str] = {
    "needs a GPU": "CUDA-only checks run where a GPU exists; the CPU CI machine has none",
}
_SKIPS: list[tuple[str, str]] = []       # (test id, reason)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPS.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report):
    if report.skipped:                   # a whole module skipped at import (e.g. importorskip)
        _SKIPS.append((report.nodeid, _skip_reason(report)))


def disallowed_skips() -> list[tuple[str, str]]:
    return [(n, r) for n, r in _SKIPS if not r.startswith(tuple(ALLOWED_SKIP_PREFIXES))]


# Node-level tests append one line per judged motion (tests/endoscope_rig.py judge_windows):
# which windows of wall time the sim kept real time in, the fulcrum error there and elsewhere.
NODE_WINDOW_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter):
    for line in NODE_WINDOW_REPORT:
        terminalreporter.write_line("node-level windows: " + line)
    bad = disallowed_skips()
    terminalreporter.write_line(f"skip policy: {len(_SKIPS)} skipped, {len(_SKIPS) - len(bad)} allowed "
                                f"({', '.join(ALLOWED_SKIP_PREFIXES)}), {len(bad)} not allowed")
    for nodeid, reason in bad:
        terminalreporter.write_line(f"  NOT ALLOWED: {nodeid}: {reason}", red=True)


# ---------------------------------------------------------------------- process exit
# Once pytest has reported and every fixture has stopped its subprocesses,
# leave with pytest's own status: this process holds DDS listener threads and
# rclpy/torch state that crash the interpreter's finalisation (see
# surgbot.processes.exit_skipping_finalisation).
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    if disallowed_skips() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED     # a skip nobody allowed fails the run
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _EXIT_STATUS:
        child_processes.exit_skipping_finalisation(_EXIT_STATUS[-1])


def dead_pid() -> int:
    """The pid of a process that has exited (a killed run's leftovers name such a pid)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
