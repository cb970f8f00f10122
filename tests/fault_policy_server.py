"""A real policy server (contract section 7, `PolicyServer` over pyzmq) whose answers can be made faulty.

For the fault-injection suite (tests/test_fault_injection.py): its runtime
plays a known slow motion (the tool tip sweeps +-SWEEP_M along x of
PSM1_base at SPEED_M_TICK per 15 Hz tick, from the first observed state), and
the test switches it, through a one-line mode file, to:

* `normal`  - the sweep;
* `nan`     - every chunk full of NaN;
* `outside` - every chunk 10 cm outside the workspace box (x = 0.2 m of PSM1_base);
* `slow`    - each answer takes SLOW_S (> 2 chunk periods) before the sweep;
* `error`   - the runtime raises (the server answers {"error": ...}).

The first faulty answer writes "MODE T" (T: CLOCK_MONOTONIC, the same clock in every process
here) to MODE_FILE.first as it leaves the runtime: the fault starts there, not when the test
switched the mode (the policy node plays the valid chunk it holds until it has the answer; a
request slowed by the load is not the fault's).  `slow` marks the request's arrival instead: its
answer never comes in time, and the suite starts that fault at the node's deadline.

    python -m tests.fault_policy_server PORT MODE_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from surgbot.policies.serving.server import run_server

H = 16
IMAGE_HW = (48, 64)
SWEEP_M = 0.006
SPEED_M_TICK = 0.0004          # 6 mm/s: well below every step limit
SLOW_S = 2.5                   # > 2 chunk periods (16 ticks at 15 Hz = 1.07 s each)
OUTSIDE_X_M = 0.2              # PSM1_base x: 10 cm beyond the workspace box (x <= 0.1 m)


def first_request_marker(mode_file: Path) -> Path:
    return mode_file.with_name(mode_file.name + ".first")


class FaultRuntime:
    def __init__(self, mode_file: Path):
        self.mode_file = mode_file
        self.x0: float | None = None
        self.direction = 1.0
        self.calls = 0
        self._marked = "normal"

    def _mark(self, mode: str) -> None:
        """The first faulty answer (slow: request): its time to MODE_FILE.first (see the module doc)."""
        if mode != self._marked:
            self._marked = mode
            if mode != "normal":
                first_request_marker(self.mode_file).write_text(f"{mode} {time.monotonic()!r}")

    def mode(self) -> str:
        try:
            return self.mode_file.read_text().strip() or "normal"
        except OSError:
            return "normal"

    def metadata(self) -> dict:
        return {"model": "fault-injection sweep", "checkpoint_id": "test", "action_horizon": H, "state_dim": 10,
                "action_dim": 10, "image_size": list(IMAGE_HW), "fps": 15, "instructions": ["sweep"]}

    def reset(self) -> None:
        self.x0 = None

    def infer(self, image, state, instruction):
        self.calls += 1
        mode = self.mode()
        s = np.asarray(state, np.float32)
        if mode == "error":
            self._mark(mode)
            raise RuntimeError("injected runtime failure")
        if mode == "slow":
            self._mark(mode)
            time.sleep(SLOW_S)
        x = float(s[0])
        if self.x0 is None or abs(x - self.x0) > 2 * SWEEP_M:
            # about where the tool is: a re-homed arm (the suite's set-up after a PSM FAULT) must not be
            # driven back to the old centre at the gate's step limit (24 mm/s, measured)
            self.x0 = x
        if x > self.x0 + SWEEP_M:
            self.direction = -1.0
        elif x < self.x0 - SWEEP_M:
            self.direction = 1.0
        chunk = np.repeat(s[None], H, axis=0)
        chunk[:, 0] += self.direction * SPEED_M_TICK * np.arange(H, dtype=np.float32)
        if mode == "nan":
            chunk[:] = np.nan
        elif mode == "outside":
            chunk[:, 0] = OUTSIDE_X_M
        if mode in ("nan", "outside", "normal"):
            self._mark(mode)             # as the answer leaves (normal: ends the last faulty mode)
        return chunk, 1.0


if __name__ == "__main__":
    sys.exit(run_server(FaultRuntime(Path(sys.argv[2])), "127.0.0.1", int(sys.argv[1])))
