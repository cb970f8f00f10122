"""`WeightMemory`: the last `rt/arm_sdk` weight a bridge sent, remembered across bridge restarts.

The G1 keeps the last arm_sdk command (targets and blend weight) when the
stream stops, so a bridge that is restarted while the arm holds the scope at
weight 1 must not engage from weight 0: the first sample of a 0 -> 1 ramp
hands the arm back to the standing controller, which pulls it toward its
stand pose (the scope out of the port).  The bridge therefore writes the
weight it last sent (with the robot's `tick`) to a small file, and a new
bridge process engages from it, as an engage after a FAULT continues from
the weight last sent.

The robot's tick tells whether it is the same robot run: a tick smaller than
the saved one means the robot (or the twin) restarted and holds weight 0, so
the memory is ignored.  A wrong memory the other way (the robot at weight 0,
the file says 1) engages at weight 1 on the measured posture: the arm's
targets do not move, only its gains change.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SAVE_STEP = 0.02            # weight change that is written (and every change to exactly 0 or 1)
SAVE_MIN_PERIOD_S = 0.05    # at most this often while the weight ramps


def default_path(domain: int, interface: str) -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"surgbot_g1_bridge_domain{int(domain)}_{interface}.json"


class WeightMemory:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._saved: float | None = None
        self._saved_at = -1e18

    def offer(self, weight: float, tick: int, now: float) -> bool:
        """Write `weight` if it changed enough since the last write; True when written."""
        w = float(weight)
        s = self._saved
        exact = w in (0.0, 1.0) and s != w
        if s is not None and not exact and (abs(w - s) < SAVE_STEP or now - self._saved_at < SAVE_MIN_PERIOD_S):
            return False
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"weight": w, "tick": int(tick)}))
            os.replace(tmp, self.path)
        except OSError:
            return False          # a read-only disk must not stop the stream
        self._saved, self._saved_at = w, now
        return True

    def load(self, tick_now: int) -> float | None:
        """The remembered weight if it belongs to this robot run (its tick did not go back), else None."""
        try:
            d = json.loads(self.path.read_text())
            w, tick = float(d["weight"]), int(d["tick"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not 0.0 <= w <= 1.0 or int(tick_now) < tick:
            return None
        return w
