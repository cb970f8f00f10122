"""The console's Record control (teleop/record.py): one call at a time, outcomes, episode counts, timeouts."""

from __future__ import annotations

import pytest

from surgbot.teleop.record import NOT_RUNNING, RecordControl

pytestmark = pytest.mark.unit


def test_a_kept_and_a_discarded_episode_are_counted():
    r = RecordControl(call_timeout_s=5.0)
    assert r.status(0.0) == {"recording": False, "elapsed_s": None, "pending": None, "episodes": 0,
                             "discarded": 0, "last": None}
    assert r.request("start", 1.0)
    assert r.status(1.1)["pending"] == "start" and not r.status(1.1)["recording"]
    r.answered("start", True, "recording", 1.2)
    s = r.status(3.7)
    assert s["recording"] and s["elapsed_s"] == 2.5 and s["pending"] is None
    assert s["last"] == {"action": "start", "ok": True, "message": "recording", "n": 1}
    assert r.request("stop", 4.0)
    r.answered("stop", True, "kept 42 frames", 4.1)
    assert r.request("start", 5.0)
    r.answered("start", True, "recording", 5.1)
    assert r.request("discard", 6.0)
    r.answered("discard", True, "discarded 13 frames", 6.1)
    s = r.status(7.0)
    assert (s["recording"], s["episodes"], s["discarded"], s["elapsed_s"]) == (False, 1, 1, None)
    assert s["last"]["n"] == 4 and s["last"]["message"] == "discarded 13 frames"


def test_one_call_at_a_time_and_refusals_change_no_count():
    r = RecordControl(call_timeout_s=5.0)
    assert r.request("start", 0.0)
    assert not r.request("stop", 0.1)                        # refused here, never queued
    s = r.status(0.2)
    assert s["pending"] == "start" and s["last"]["action"] == "stop" and not s["last"]["ok"]
    assert "busy" in s["last"]["message"]
    r.answered("start", False, "no image or /PSM1/measured_cp yet", 0.3)     # the recorder's refusal
    s = r.status(0.4)
    assert not s["recording"] and s["last"]["message"] == "no image or /PSM1/measured_cp yet"
    r.request("start", 1.0)
    r.answered("start", True, "recording", 1.1)
    r.request("stop", 2.0)
    r.answered("stop", False, "episode has no frames; discarded", 2.1)        # the recorder stopped anyway
    s = r.status(2.2)
    assert not s["recording"] and s["episodes"] == 0 and s["discarded"] == 0 and s["last"]["n"] == 4


def test_recorder_not_running_and_timeouts():
    r = RecordControl(call_timeout_s=2.0)
    r.request("start", 0.0)
    r.answered("start", True, "recording", 0.1)
    r.request("stop", 1.0)
    r.answered("stop", False, NOT_RUNNING, 1.0)              # the recorder went away: nothing is recorded
    assert not r.status(1.0)["recording"] and r.status(1.0)["last"]["message"] == NOT_RUNNING
    r.request("start", 2.0)
    r.answered("start", True, "recording", 2.1)
    r.request("discard", 3.0)
    assert not r.expire(4.9)                                 # not yet
    assert r.expire(5.0)
    s = r.status(5.0)
    assert s["pending"] is None and s["recording"] and "no answer" in s["last"]["message"]   # mirror unchanged
    r.answered("discard", True, "discarded 9 frames", 6.0)   # too late: not counted, not an outcome
    s = r.status(6.0)
    assert s["discarded"] == 0 and s["recording"] and "no answer" in s["last"]["message"]
    assert r.request("discard", 7.0)                         # the next call may go
    with pytest.raises(ValueError):
        r.request("erase", 8.0)
    with pytest.raises(ValueError):
        RecordControl(call_timeout_s=0.0)
