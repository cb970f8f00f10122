"""The PSM twin rig shared by the sim-in-the-loop PSM modules (test_psm_twin, test_crtk_twin).

`psm_twin_client` starts the twin as a subprocess and yields a `PSMClient` on a
node of this process that a `BackgroundSpinner` spins; on exit it stops the
spinner (which returns once its thread has left rclpy) before destroying the
node: destroying a node while another thread spins it crashed test processes
on a loaded machine.  `make_ready` brings the arm to ENABLED and homed whatever
the previous test left it in, so each test can also run alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import rclpy

from surgbot.hw.crtk import DEFAULT_STREAMS, PSMClient, spin_in_background
from tests.conftest import PYTHON


@contextmanager
def psm_twin_client(module_processes, node_name: str, twin_args: tuple[str, ...], *, up_timeout_s: float,
                    streams: tuple[str, ...] = DEFAULT_STREAMS,
                    before_spin: Callable[[object], None] | None = None) -> Iterator[PSMClient]:
    """The twin (`python -m surgbot.sim.psm_twin *twin_args`) and a client of it.

    `before_spin(node)` adds the test's own subscriptions and publishers before
    spinning starts.  The client carries `proc` (the twin) and `procs` (the
    module's process manager) so tests can read the twin's log.
    """
    proc = module_processes.start([PYTHON, "-m", "surgbot.sim.psm_twin", *twin_args], name="psm_twin")
    rclpy.init()
    node = rclpy.create_node(node_name)
    if before_spin is not None:
        before_spin(node)
    spinner = spin_in_background(node)
    client = PSMClient(node, streams=streams)
    try:
        try:
            client.wait_for_state(up_timeout_s)
        except TimeoutError:
            pytest.fail("twin did not come up:\n" + module_processes.log(proc))
        client.proc, client.procs = proc, module_processes
        yield client
    finally:
        client.close()
        spinner.stop()
        node.destroy_node()
        rclpy.shutdown()
        module_processes.stop(proc)


def make_ready(arm: PSMClient, home_timeout_s: float) -> None:
    """ENABLED and homed, whatever ran before."""
    st = arm.operating_state()
    if not (st["state"] == "ENABLED" and st["is_homed"]):
        if st["state"] != "DISABLED":
            arm.disable()
        arm.home(home_timeout_s)
