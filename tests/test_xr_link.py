"""`XrLink`'s rate while the server thread takes samples: the ROS diagnostics thread reads it concurrently."""

from __future__ import annotations

import threading
import time

from surgbot.teleop.xr_link import XrLink

READS = 20000


def test_rate_is_read_safely_while_samples_arrive_on_another_thread():
    """The console's diagnostics (ROS thread) call `rate_hz` while the server thread appends sample
    times: iterating the deque itself raised "deque mutated during iteration" (seen in the fault
    suite: it killed the console's ROS thread)."""
    link = XrLink(sink=None, link_timeout_s=0.2, clock=time.monotonic)
    stop = threading.Event()

    def samples():
        while not stop.is_set():
            link._times.append(time.monotonic())         # what on_sample records, as fast as it can

    writer = threading.Thread(target=samples, daemon=True)
    writer.start()
    try:
        rates = [link.rate_hz() for _ in range(READS)]
    finally:
        stop.set()
        writer.join(5.0)
    assert all(r >= 0.0 for r in rates) and max(rates) > 0.0


def test_rate_counts_the_samples_of_the_last_window():
    now = [100.0]
    link = XrLink(sink=None, link_timeout_s=0.2, clock=lambda: now[0])
    assert link.rate_hz() == 0.0
    for k in range(11):                                  # 11 samples 10 ms apart: 100 Hz
        link._times.append(99.9 + 0.01 * k)
    assert abs(link.rate_hz() - 100.0) < 1e-6
