"""`forbid_realtime_scheduling`: an AV1 encoder opened by our processes stays SCHED_OTHER.

SVT-AV1 switches the thread that opens an encoder to SCHED_FIFO 99 when it may (root here, and
in CI); before the guard `surgbot data record` ran at FIFO 99 and starved the ROS stack.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from surgbot.processes import forbid_realtime_scheduling

pytestmark = pytest.mark.unit

OPEN_AV1_ENCODER = """
import fractions, os, sys
import av, numpy as np
if sys.argv[1] == "guard":
    from surgbot.processes import forbid_realtime_scheduling
    assert forbid_realtime_scheduling()
c = av.CodecContext.create("libsvtav1", "w")
c.width, c.height, c.pix_fmt, c.time_base = 64, 64, "yuv420p", fractions.Fraction(1, 15)
c.open()
frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
frame.pts = 0
c.encode(frame)
c.encode(None)
print(os.sched_getscheduler(0))
"""


def _policy_after_encoder(mode: str) -> int:
    env = dict(os.environ, SVT_LOG="1")
    out = subprocess.run([sys.executable, "-c", OPEN_AV1_ENCODER, mode], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_the_guard_holds_in_this_process_and_its_children():
    assert forbid_realtime_scheduling()           # tests/conftest.py already called it: idempotent
    with pytest.raises(PermissionError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    child = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
                            "os.sched_param(1))"], capture_output=True, text=True, timeout=30)
    assert child.returncode != 0 and "PermissionError" in child.stderr


@pytest.mark.parametrize("mode", ["guard", "inherited"])
def test_an_av1_encoder_leaves_the_thread_in_sched_other(mode):
    # "inherited": the child did not call the guard itself; it inherits this process's
    assert _policy_after_encoder(mode) == os.SCHED_OTHER
