"""`surgbot.exit_watch`: a child's exit reported at once, with its status, and the child left for its Popen."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from surgbot import exit_watch
from surgbot.safety.supervisor import only_lateness, process_exit_report

pytestmark = pytest.mark.skipif(not exit_watch.available(), reason="needs pidfds (Linux >= 5.3)")

WAIT_S = 30.0          # generous: the box is shared; nothing here is a timing assertion


class Reports:
    def __init__(self):
        self.items: list[tuple[str, int, int | None]] = []
        self.arrived = threading.Event()

    def __call__(self, name, pid, code):
        self.items.append((name, pid, code))
        self.arrived.set()


def test_kill_and_exit_are_reported_with_their_status_and_popen_still_reaps():
    reports = Reports()
    watch = exit_watch.ExitWatch(reports)
    try:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        watch.add("sleeper", sleeper)
        assert not reports.arrived.wait(0.3)                 # running: nothing reported
        sleeper.send_signal(signal.SIGKILL)
        assert reports.arrived.wait(WAIT_S)
        assert reports.items == [("sleeper", sleeper.pid, -signal.SIGKILL)]
        assert sleeper.wait(WAIT_S) == -signal.SIGKILL     # not reaped by the watch: Popen has its status

        reports.arrived.clear()
        quitter = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        watch.add("quitter", quitter)
        assert reports.arrived.wait(WAIT_S)
        assert reports.items[-1] == ("quitter", quitter.pid, 3)
        assert quitter.wait(WAIT_S) == 3
    finally:
        watch.close()


def test_a_child_already_reaped_is_still_reported_and_a_failing_callback_does_not_end_the_watch():
    calls = Reports()

    def flaky(name, pid, code):
        calls(name, pid, code)
        if name == "first":
            raise RuntimeError("publisher gone")

    watch = exit_watch.ExitWatch(flaky)
    try:
        first = subprocess.Popen([sys.executable, "-c", "pass"])
        first.wait(WAIT_S)                                    # reaped before the watch looks
        watch.add("first", first)
        assert calls.arrived.wait(WAIT_S) and calls.items[0][0] == "first"
        assert calls.items[0][2] in (0, None)                 # from Popen (0), or unknown if it raced
        calls.arrived.clear()
        second = subprocess.Popen([sys.executable, "-c", "pass"])
        watch.add("second", second)
        assert calls.arrived.wait(WAIT_S) and calls.items[-1][0] == "second"
        assert watch.failed_reports == 1
        second.wait(WAIT_S)
    finally:
        watch.close()


def test_the_supervisor_reads_a_report_as_a_stop_that_is_not_lateness():
    r = process_exit_report('{"node": "policy_node", "pid": 7, "returncode": -9, "reporter": "surgbot up"}')
    assert r.ok and r.value == ("policy_node", "stopped (process exited: killed by SIGKILL; told by surgbot up)")
    assert not only_lateness([f"alive:policy_node: {r.value[1]}"])      # a dead node is not a late one
    assert process_exit_report('{"node": "holder", "returncode": 0}').value[1] == \
        "stopped (process exited: exit code 0; told by its launcher)"
    assert "exit status unknown" in process_exit_report('{"node": "x", "returncode": null}').value[1]
    assert "killed by signal 99" in process_exit_report('{"node": "x", "returncode": -99}').value[1]
    for bad in ("nope", "[]", '{"returncode": 1}', '{"node": "", "returncode": 1}', '{"node": 3}',
                '{"node": "x", "returncode": "9"}', '{"node": "x", "returncode": true}'):
        res = process_exit_report(bad)
        assert not res.ok and "malformed process exit report" in res.reason, bad
