"""`surgbot.processes.start`: a child does not outlive the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from surgbot import processes

PARENT = """
import sys, time
from surgbot import processes
child = processes.start([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""
WAIT_S = 30.0       # the box is shared; nothing here is a timing assertion


def test_a_child_gets_sigterm_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert processes.pid_alive(child_pid)
        os.kill(parent.pid, signal.SIGKILL)             # no cleanup runs in the parent
        parent.wait(WAIT_S)
        t0 = time.monotonic()
        while processes.pid_alive(child_pid) and time.monotonic() - t0 < WAIT_S:
            time.sleep(0.05)
        # the orphan was reaped by init after the kernel's parent-death SIGTERM
        assert not processes.pid_alive(child_pid), "the child outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
