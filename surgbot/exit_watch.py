"""`ExitWatch`: the moment a child process exits, without reaping it (Linux pidfds).

A launcher learns of its child's death from the kernel at once; DDS liveliness
learns it only when the dead process's lease runs out (150 ms for the
real-time chain's nodes, 500 ms for the niced policy node and recorder:
`contract.alive_lease_of`).  `surgbot up` (and the fault suite's stack, the
same `surgbot.up.Stack`) uses this to tell the safety supervisor on
`contract.SAFETY_PROCESS_EXIT` within milliseconds; liveliness stays the
general rule (a node on another machine, a stalled one, a stack from
`ros2 launch`).

The child is not reaped (`waitid(..., WNOWAIT)`): its `Popen` still collects
its exit status, so the launcher's own supervision (`Stack.watch`) sees it too.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
from collections.abc import Callable

ExitCallback = Callable[[str, int, int | None], None]     # (name, pid, returncode: -N = killed by signal N)


def available() -> bool:
    """Whether this kernel and Python give pidfds (Linux >= 5.3)."""
    if not hasattr(os, "pidfd_open") or not hasattr(os, "P_PIDFD"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def returncode_of(pidfd: int, proc: subprocess.Popen) -> int | None:
    """The exit status of an exited child, as `Popen.returncode` gives it, leaving the child unreaped."""
    try:
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:            # `Popen.poll()` reaped it first: it has the status
        return proc.returncode
    if info is None:
        return None
    return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status


class ExitWatch:
    """Calls `on_exit(name, pid, returncode)` on its own thread as each added process exits."""

    def __init__(self, on_exit: ExitCallback):
        self.on_exit = on_exit
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[str, subprocess.Popen]] = {}    # pidfd -> (name, process)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self.failed_reports = 0
        self._thread = threading.Thread(target=self._run, name="exit-watch", daemon=True)
        self._thread.start()

    def add(self, name: str, proc: subprocess.Popen) -> None:
        """Watch `proc` (already exited: reported at once; already reaped: reported here, now)."""
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            self._report(name, proc.pid, proc.poll())
            return
        with self._lock:
            self._watched[fd] = (name, proc)
        os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            with self._lock:
                fds = list(self._watched)
            for fd in fds:
                poller.register(fd, select.POLLIN)
            ready = [fd for fd, _ in poller.poll()]
            if self._stop:
                return
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            for fd in ready:
                if fd == self._wake_r:
                    continue
                with self._lock:
                    name, proc = self._watched.pop(fd)
                code = returncode_of(fd, proc)
                os.close(fd)
                self._report(name, proc.pid, code)

    def _report(self, name: str, pid: int, code: int | None) -> None:
        try:
            self.on_exit(name, pid, code)
        except Exception:  # noqa: BLE001 - one failed report must not end the watch of the others
            self.failed_reports += 1

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        with self._lock:
            for fd in self._watched:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._watched.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)
