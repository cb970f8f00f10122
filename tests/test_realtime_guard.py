"""`forbid_realtime_scheduling`: an AV1 encoder opened by our processes stays SCHED_OTHER.

SVT-AV1 switches the thread that opens an encoder to SCHED_FIFO 99 when it may (root here, and
in CI); before the guard `surgbot data record` ran at FIFO 99 and starved the ROS stack.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
    if mode == "inherited":      # the parent took the guard, the encoder's process did not
        code = ("import subprocess, sys\nfrom surgbot.processes import forbid_realtime_scheduling\n"
                "assert forbid_realtime_scheduling()\n"
                f"sys.exit(subprocess.run([sys.executable, '-c', {OPEN_AV1_ENCODER!r}, 'none']).returncode)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    else:
        out = subprocess.run([sys.executable, "-c", OPEN_AV1_ENCODER, mode], capture_output=True, text=True,
                             timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


GUARDED_THEN_TRY_FIFO = """
import os, subprocess, sys
from surgbot.processes import forbid_realtime_scheduling
assert forbid_realtime_scheduling() and forbid_realtime_scheduling()      # idempotent
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    sys.exit("this process took SCHED_FIFO after the guard")
except PermissionError:
    pass
child = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
                        "os.sched_param(1))"], capture_output=True, text=True, timeout=30)
assert child.returncode != 0 and "PermissionError" in child.stderr, child.stderr
print("held")
"""


def test_the_guard_holds_in_a_process_and_its_children():
    out = subprocess.run([sys.executable, "-c", GUARDED_THEN_TRY_FIFO], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split()[-1] == "held", out.stderr


@pytest.mark.parametrize("mode", ["guard", "inherited"])
def test_an_av1_encoder_leaves_the_thread_in_sched_other(mode):
    assert _policy_after_encoder(mode) == os.SCHED_OTHER


ASK_FOR_REALTIME = """
import os, sys, threading
from surgbot.processes import settle_scheduling, leave_realtime_scheduling
said = settle_scheduling()
seen = {}
t = threading.Thread(target=lambda: seen.update(thread=os.sched_getscheduler(0)))
t.start(); t.join()
main, priority = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))      # the guard: no higher
    higher = True
except PermissionError:
    higher = False
leave_realtime_scheduling()
print(main, seen["thread"], priority, higher,
      os.sched_getscheduler(0), "|", said)
"""


def test_a_chain_node_takes_its_fifo_priority_keeps_it_for_its_threads_and_can_leave_it():
    from surgbot.processes import REALTIME_ENV, REALTIME_PRIORITY
    env = dict(os.environ, **{REALTIME_ENV: str(REALTIME_PRIORITY)})
    out = subprocess.run([sys.executable, "-c", ASK_FOR_REALTIME], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    fields, said = out.stdout.rsplit("|", 1)
    main, thread, priority, higher, after = fields.split()
    if "not permitted" in said:             # a machine without CAP_SYS_NICE or rtprio: said so, no FIFO
        assert int(main) == os.SCHED_OTHER
        return
    assert said.strip() == f"running SCHED_FIFO {REALTIME_PRIORITY}"
    assert int(main) == int(thread) == os.SCHED_FIFO and int(priority) == REALTIME_PRIORITY
    assert higher == "False"                # after taking it, nothing (an AV1 encoder) goes higher
    assert int(after) == os.SCHED_OTHER     # a helper process leaves it (the twin's renderer)


def test_a_bad_priority_request_is_refused_with_a_reason():
    from surgbot.processes import REALTIME_ENV
    out = subprocess.run([sys.executable, "-c", "from surgbot.processes import take_realtime_priority as t; "
                          "import os; print(t(), os.sched_getscheduler(0))"], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, **{REALTIME_ENV: "150"}))
    assert out.returncode == 0 and "not a priority in 1..99" in out.stdout
    assert out.stdout.split()[-1] == str(os.SCHED_OTHER)


ASK_FOR_A_SHARE = """
import os, threading
from surgbot.processes import AUTOGROUP, settle_scheduling
said = settle_scheduling()
seen = {}
t = threading.Thread(target=lambda: seen.update(thread=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
t.start(); t.join()
try:
    os.setpriority(os.PRIO_PROCESS, 0, -10)          # the guard: no higher afterwards
    higher = True
except PermissionError:
    higher = False
group = open(AUTOGROUP.format(pid="self")).read().split()
print(os.getpriority(os.PRIO_PROCESS, 0), seen["thread"], higher, group[-1] if group else "none", "|", said)
"""


def test_a_chain_node_takes_its_cpu_share_for_its_threads_and_its_session_group():
    """`surgbot up/demo --realtime sim`: the bridge and the holder (SCHED_OTHER) ask for a larger CPU
    share: their nice and, leading a session of their own (as the stack starts them), their group's."""
    from surgbot.processes import CHAIN_NICE, SHARE_ENV
    out = subprocess.run([sys.executable, "-c", ASK_FOR_A_SHARE], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, **{SHARE_ENV: str(CHAIN_NICE)}), start_new_session=True)
    assert out.returncode == 0, out.stderr
    fields, said = out.stdout.rsplit("|", 1)
    nice, thread, higher, group = fields.split()
    if "not permitted" in said:             # a machine without CAP_SYS_NICE: said so, nice unchanged
        assert int(nice) >= 0
        return
    assert int(nice) == int(thread) == CHAIN_NICE, out.stdout
    assert higher == "False"                # the capability is gone once the node has its share
    if group != "none":                     # a kernel with autogroup scheduling (this machine)
        assert said.strip() == f"nice {CHAIN_NICE}, its session group too" and int(group) == CHAIN_NICE


def test_a_bad_share_request_is_refused_with_a_reason():
    from surgbot.processes import SHARE_ENV
    out = subprocess.run([sys.executable, "-c", "from surgbot.processes import take_cpu_share as t; "
                          "import os; print(t(), os.getpriority(os.PRIO_PROCESS, 0))"], capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, **{SHARE_ENV: "-40"}))
    assert out.returncode == 0 and "is not a nice value in -20..19" in out.stdout, out.stdout
    assert out.stdout.split()[-1] == str(os.getpriority(os.PRIO_PROCESS, 0))
