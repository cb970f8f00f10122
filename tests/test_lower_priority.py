"""`processes.lower_priority`: a background node yields the CPU to the other nodes' sessions too.

With autogroup scheduling (this machine, most cloud and desktop kernels) a nice value only orders
a process within its own session; every node is a session of its own, so the session's group is
niced as well.  A process that shares a session (the user's terminal) keeps that group untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from surgbot import processes

pytestmark = pytest.mark.unit

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
INCREMENT = 4


def _group_nice(pid: int) -> str | None:
    group = Path(processes.AUTOGROUP.format(pid=pid))
    return group.read_text().split()[-1] if group.exists() else None


def test_a_node_in_a_session_of_its_own_is_niced_with_its_group():
    proc = processes.start(SLEEP)
    try:
        assert processes.lower_priority(proc.pid, INCREMENT) == ""
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + INCREMENT)
        assert _group_nice(proc.pid) in (None, str(INCREMENT))       # None: a kernel without autogroup
    finally:
        processes.stop(proc)


def test_a_process_in_a_shared_session_leaves_the_group_alone():
    before = _group_nice(os.getpid())
    proc = subprocess.Popen(SLEEP)                                   # this test's own session
    try:
        assert os.getsid(proc.pid) == os.getsid(0)
        assert processes.lower_priority(proc.pid, INCREMENT) == ""
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + INCREMENT)
        assert _group_nice(os.getpid()) == before
    finally:
        proc.kill()
        proc.wait(10)


def test_a_process_that_is_gone_is_reported_not_raised():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    assert "nice" in processes.lower_priority(proc.pid, INCREMENT)
