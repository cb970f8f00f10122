"""The operator's pose stream from the socket to the robot side, ROS-free and socket-free.

`XrLink` takes each valid `xr` sample of the operator socket and hands it to
the sink newest-only at a bounded rate, and declares the link lost when no
valid sample came for `link_timeout_s` (the robot side then stops following:
contract section 6).  It runs on the console's asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from surgbot.teleop import protocol as P

STALL_REPORT_MS = 50.0              # a watchdog check this late is named in the link-loss reason
PUBLISH_MIN_INTERVAL_S = 1.0 / 500.0    # poses reach ROS at most this often (headsets run 72-120 Hz)
RATE_WINDOW_S = 1.0                 # xr_rate_hz counts the samples of this last span
RATE_HISTORY = 256                  # samples kept for it (above any headset's rate over the window)


class XrSink(Protocol):
    def on_xr(self, sample: P.XrSample, t_recv: float) -> None: ...
    def on_link_lost(self, reason: str) -> None: ...


class XrLink:
    """Newest-only publishing and the link watchdog of the operator's `xr` stream (see module doc)."""

    def __init__(self, sink: XrSink, link_timeout_s: float, clock: Callable[[], float]):
        self.sink = sink
        self.link_timeout_s = link_timeout_s
        self.clock = clock
        self.accepted = 0
        self.coalesced = 0                  # valid samples superseded before they were published
        self.dropped_stale = 0              # valid samples still pending when the link was declared lost
        self.last_xr: P.XrSample | None = None
        self.last_xr_t: float | None = None
        self.up = False
        self._came = asyncio.Event()        # a valid sample came (wakes the watchdog of a lost link)
        self._pending: tuple[P.XrSample, float] | None = None
        self._last_publish = -1e9
        self._flush: asyncio.TimerHandle | None = None
        self._times: deque = deque(maxlen=RATE_HISTORY)

    def on_sample(self, sample: P.XrSample, now: float) -> None:
        """A valid sample of the operator, received at `now` (the console's clock)."""
        self.accepted += 1
        self.last_xr, self.last_xr_t = sample, now
        self._times.append(now)
        if not self.up:
            self.up = True
            self._came.set()
        # Poses are "newest only" too: at most one publish per PUBLISH_MIN_INTERVAL_S; a sample
        # arriving sooner waits as the pending one (a newer replaces it, counted as coalesced) and
        # is flushed when the interval is over, so a client faster than the robot side needs (an
        # uncapped browser, a burst after a stall) costs parsing only, and the delay stays bounded.
        if self._pending is not None:
            self.coalesced += 1
        self._pending = (sample, now)
        wait = self._last_publish + PUBLISH_MIN_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._publish()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(wait, self._publish)

    def _publish(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not self.up:
            self.dropped_stale += 1
            return
        self._last_publish = time.monotonic()
        self.sink.on_xr(*pending)

    def lose(self, reason: str) -> None:
        """Declare the link lost (once until the next valid sample); the sink hears why."""
        if self.up:
            self.up = False
            if self._pending is not None:             # never published after the link was declared lost
                self.dropped_stale += 1
                self._pending = None
            self.sink.on_link_lost(reason)

    async def watchdog(self) -> None:
        """Declare the link lost `link_timeout_s` after the newest valid sample.

        It sleeps until that deadline, not a fixed period (a 50 Hz check woke the idle console 50
        times a second: ~1 % of a core on the 2-core machine, each wake-up of a sleeping process
        costing ~0.2 ms there), and while the link is down it waits for the next sample.  A sleep
        is never longer than the timeout, so a wall clock stepped back cannot stall the check.
        """
        while True:
            if not self.up:
                self._came.clear()
                await self._came.wait()
                continue
            left = (self.last_xr_t or 0.0) + self.link_timeout_s - self.clock()
            if left > 0:
                await asyncio.sleep(min(left, self.link_timeout_s))
                continue
            # how late this check ran past the deadline tells a stalled console (samples may be
            # waiting in the socket) from an operator who stopped sending: the reason says which
            late_ms = -1e3 * left
            stalled = f"; the console itself ran {late_ms:.0f} ms late" if late_ms > STALL_REPORT_MS else ""
            self.lose(f"no valid xr for {1e3 * self.link_timeout_s:.0f} ms{stalled}")

    def rate_hz(self) -> float:
        """Valid xr messages per second over the last RATE_WINDOW_S."""
        now = self.clock()
        # the console's diagnostics (the ROS thread) read this while the server thread appends: the
        # copy is one C call, atomic under the GIL; iterating the deque itself raised "deque mutated
        # during iteration" and killed the console's ROS thread (fault suite, 2-core machine)
        t = [x for x in tuple(self._times) if now - x <= RATE_WINDOW_S]
        if len(t) < 2:
            return 0.0
        return (len(t) - 1) / max(t[-1] - t[0], 1e-6)
