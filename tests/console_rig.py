"""Start-up shared by the tests that run the console as a process (node, browser, teleop-in-sim)."""

from __future__ import annotations

import time

from surgbot.teleop.url import served_port

CONSOLE_UP_TIMEOUT_S = 90.0     # import + certificate + DDS discovery on a loaded 2-core machine


def wait_for_console_port(procs, console, timeout_s: float = CONSOLE_UP_TIMEOUT_S) -> int:
    """The port `console` (started by `procs`) printed in its URL line; fails with its log if it
    exits or prints none within `timeout_s`."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        port = served_port(procs.log(console))
        if port:
            return port
        assert console.poll() is None, "the console exited:\n" + procs.log(console)
        time.sleep(0.2)
    raise AssertionError(f"the console printed no URL in {timeout_s:.0f} s:\n" + procs.log(console))
