"""The console's Record control, ROS-free: what the page asked, what the recorder answered.

The page sends `{"type": "record", "action": "start"|"stop"|"discard"}`; the
console node turns each into a call of the recorder's episode services
(`/recorder/episode/start`, `/stop` keeps the episode, `/discard`; contract
section 10, served by `surgbot data record --source ros`).  This class keeps
the state the page shows: one call in flight at a time (a request while
one is pending is refused here, never queued), the outcome of the last one
(ok, the recorder's refusal, "recorder not running", or no answer within
the timeout) and how many episodes this console kept and discarded.

Whether the recorder is recording is a mirror of the answers it gave: a
start it accepted -> recording; any answer to a stop or discard -> not
recording (the recorder stops either way, or was not recording); a
recorder that is not running is not recording; a call that got no answer
leaves the mirror as it was.  Clock passed in (seconds, any monotonic).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from surgbot.results import Result
from surgbot.teleop.protocol import RECORD_ACTIONS

NOT_RUNNING = "recorder not running"


@dataclass(frozen=True)
class Outcome:
    action: str
    ok: bool
    message: str
    n: int                      # outcomes so far, this one included: the page tells a new one from an old one


class RecordControl:
    def __init__(self, call_timeout_s: float):
        if not call_timeout_s > 0:
            raise ValueError("call_timeout_s must be > 0")
        self.call_timeout_s = call_timeout_s
        self._lock = threading.Lock()            # requests come from the socket loop, answers from ROS
        self.recording = False
        self.started_at: float | None = None
        self.pending: tuple[str, float] | None = None     # (action, sent at)
        self.episodes = 0
        self.discarded = 0
        self.last: Outcome | None = None

    def request(self, action: str, now: float) -> Result:
        """May `action` be sent to the recorder now?  ok: it is pending until `answered`/`expire`."""
        if action not in RECORD_ACTIONS:
            raise ValueError(f"record action {action!r} not in {RECORD_ACTIONS}")
        with self._lock:
            if self.pending is not None:
                self._finish(action, False, f"busy: {self.pending[0]} still waiting for the recorder")
                return Result.failure("busy")
            self.pending = (action, now)
        return Result.success()

    def answered(self, action: str, ok: bool, message: str, now: float) -> None:
        """The recorder's answer to the pending `action` (or `NOT_RUNNING` when it was not there)."""
        with self._lock:
            if self.pending is None or self.pending[0] != action:
                return                            # an answer after its timeout: the outcome was already given
            self.pending = None
            if message == NOT_RUNNING:
                self.recording = False
            elif action == "start" and ok:
                self.recording, self.started_at = True, now
            elif action in ("stop", "discard"):
                self.recording = False
            if ok and action == "stop":
                self.episodes += 1
            elif ok and action == "discard":
                self.discarded += 1
            self._finish(action, ok, message)

    def expire(self, now: float) -> bool:
        """Give up on a call unanswered for `call_timeout_s` (True if one was given up)."""
        with self._lock:
            if self.pending is None or now - self.pending[1] < self.call_timeout_s:
                return False
            action = self.pending[0]
            self.pending = None
            self._finish(action, False, f"no answer from the recorder in {self.call_timeout_s:g} s")
            return True

    def _finish(self, action: str, ok: bool, message: str) -> None:
        self.last = Outcome(action, ok, message, (self.last.n if self.last else 0) + 1)

    def status(self, now: float) -> dict:
        """What the page shows (the `record` entry of the console's status message)."""
        with self._lock:
            last = self.last
            since = self.started_at if self.recording else None
            return {
                "recording": self.recording,
                "elapsed_s": round(now - since, 1) if since is not None else None,
                "pending": self.pending[0] if self.pending else None,
                "episodes": self.episodes,
                "discarded": self.discarded,
                "last": None if last is None else {"action": last.action, "ok": last.ok, "message": last.message,
                                                   "n": last.n},
            }
