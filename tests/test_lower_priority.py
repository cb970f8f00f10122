"""`processes.lower_priority`: a background node yields the CPU to the other nodes' sessions too.

With autogroup scheduling (this machine, most cloud and desktop kernels) a nice value only orders
a process within its own session; every node is a session of its own, so the session's group is
niced as well.  A process that shares a session (the user's terminal) keeps that group untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from surgbot import processes

pytestmark = pytest.mark.unit

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
INCREMENT = 4


def test_a_node_in_a_session_of_its_own_is_niced_with_its_group():
    proc = processes.start(SLEEP)
    try:
        assert processes.lower_priority(proc.pid, INCREMENT) == ""
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + INCREMENT)
        assert processes.autogroup_nice(proc.pid) in (None, INCREMENT)   # None: a kernel without autogroup
    finally:
        processes.stop(proc)


def test_a_process_in_a_shared_session_leaves_the_group_alone():
    before = processes.autogroup_nice(os.getpid())   # None in a root group (CI's container)
    proc = subprocess.Popen(SLEEP)                                   # this test's own session
    try:
        assert os.getsid(proc.pid) == os.getsid(0)
        assert processes.lower_priority(proc.pid, INCREMENT) == ""
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + INCREMENT)
        assert processes.autogroup_nice(os.getpid()) == before
    finally:
        proc.kill()
        proc.wait(10)


def test_a_process_that_is_gone_is_reported_not_raised():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    assert "nice" in processes.lower_priority(proc.pid, INCREMENT)


def test_a_group_file_the_kernel_shows_empty_reads_as_no_group(tmp_path, monkeypatch):
    """A process in the root group (CI's container runs the tests there) has an empty autogroup
    file; CI once failed on indexing its words."""
    (tmp_path / "7").write_text("")
    (tmp_path / "8").write_text("/autogroup-12 nice 4\n")
    monkeypatch.setattr(processes, "AUTOGROUP", str(tmp_path / "{pid}"))
    assert processes.autogroup_nice(7) is None and processes.autogroup_nice(8) == 4
    assert processes.autogroup_nice(9) is None                      # no file: no autogroup
