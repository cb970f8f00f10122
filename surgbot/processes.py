"""Child processes that cannot outlive the process that started them.

Tests and benchmarks start the twin, the bridge and nodes as subprocesses.
If the parent dies hard (a segfault in a DDS listener, a kill -9), orphans
would keep publishing on the same DDS domains and load the machine; the
kernel's parent-death signal ends them instead.  Each child also gets its own
process group so `stop()` reaches its helpers too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import NoReturn

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass   # not Linux: the caller's cleanup still stops it


def start(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """`subprocess.Popen` in a new process group, SIGTERMed when this process dies."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **popen_kwargs)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0) -> int | None:
    """Signal the child's process group, wait, then SIGKILL what is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    return proc.returncode


def exit_skipping_finalisation(status: int) -> NoReturn:
    """Flush stdout/stderr and end this process with `status` without interpreter finalisation.

    For processes whose work is done but that hold native threads not safe to
    finalise: DDS listener threads of cyclonedds/unitree_sdk2py (their Close()
    only drops the Python object), rclpy contexts, torch/ffmpeg pools.  CI saw
    "Segmentation fault" after every test had passed: the interpreter tearing
    those down at exit.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
