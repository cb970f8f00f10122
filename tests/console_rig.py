"""Start-up shared by the tests that run the console as a process (node, browser, teleop-in-sim)."""

from __future__ import annotations

from surgbot.teleop.url import wait_for_served_port

CONSOLE_UP_TIMEOUT_S = 90.0     # import + certificate + DDS discovery on a loaded 2-core machine


def wait_for_console_port(procs, console, timeout_s: float = CONSOLE_UP_TIMEOUT_S) -> int:
    """The port `console` (started by `procs`) printed in its URL line; fails with its log if it
    exits or prints none within `timeout_s` (RuntimeError: a start-up failure, not a failed check)."""
    return wait_for_served_port(lambda: procs.log(console), lambda: console.poll() is None, timeout_s)
