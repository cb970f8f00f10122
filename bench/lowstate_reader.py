"""`rt/lowstate` arrival times read by a process of its own, as the G1 bridge reads them.

    python -m bench.lowstate_reader DOMAIN SECONDS

Waits for the stream (100 samples, then 1 s), records the receive time
(`time.perf_counter()`, CLOCK_MONOTONIC on Linux: comparable with the parent's
clock) of every sample for SECONDS, and prints one line
`ARRIVALS {"t": [...], "scheduling": "...", "fifo": bool}`.  With `processes.REALTIME_ENV`
set it takes SCHED_FIFO first, as a node of `surgbot up --realtime chain`
does, so its DDS threads inherit it.

Why a process of its own: the bench's PSM client spins rclpy on 1-2 kHz PSM
topics; a listener in that process waits for the same GIL, and its late
receive times were the bench's, not the link's (p99 3.0-3.1 ms there against
2.6 ms here with the same sim, both SCHED_FIFO).
"""

from __future__ import annotations

import json
import os
import sys
import time

from surgbot import processes
from surgbot.bench import Arrivals

STREAM_TIMEOUT_S = 60.0
STREAM_SAMPLES = 100
SETTLE_S = 1.0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    domain, seconds = int(argv[0]), float(argv[1])
    scheduling = processes.take_realtime_priority() or "SCHED_OTHER"   # before any DDS thread starts
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowState_

    from surgbot import contract
    from surgbot.hw import unitree

    unitree.init_channel(domain, "lo")
    arrivals = Arrivals()
    reader = unitree.RawReader(unitree.participant(), contract.G1_TOPIC_LOWSTATE, LowState_,
                               lambda _data, _take_time: arrivals(None))
    try:
        t_end = time.monotonic() + STREAM_TIMEOUT_S
        while time.monotonic() < t_end and len(arrivals.t) < STREAM_SAMPLES:
            time.sleep(0.1)
        time.sleep(SETTLE_S)
        window = arrivals.window(seconds).tolist()
    finally:
        reader.close()
    fifo = sys.platform.startswith("linux") and os.sched_getscheduler(0) == os.SCHED_FIFO
    print("ARRIVALS " + json.dumps({"t": window, "scheduling": scheduling, "fifo": fifo}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
