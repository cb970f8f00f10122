"""Endoscope video for the console: the newest-frame slot, its statistics, the raw -> JPEG encoder.

Frames are never queued: the slot holds one packed frame (header + JPEG);
a socket that is still sending, or waiting for acks, simply gets the newest
frame when it is ready and the ones in between are counted as dropped.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from surgbot.teleop.protocol import pack_frame

STATS_KEEP = 20000
CLOCK_SKEW_LIMIT_S = 10.0     # a capture stamp further than this from the wall clock is sim time: use receipt


@dataclass(frozen=True)
class Frame:
    seq: int
    capture_ms: float
    payload: bytes            # header + JPEG, ready to send


class FrameSlot:
    """The newest frame only; `put` numbers frames from 0."""

    def __init__(self):
        self.latest: Frame | None = None
        self._seq = -1

    def put(self, jpeg: bytes, capture_ms: float) -> Frame:
        self._seq += 1
        self.latest = Frame(self._seq, float(capture_ms), pack_frame(self._seq, capture_ms, jpeg))
        return self.latest


class VideoStats:
    def __init__(self):
        self.age_at_send_ms: deque = deque(maxlen=STATS_KEEP)
        self.glass_to_glass_ms: deque = deque(maxlen=STATS_KEEP)
        self.sent = 0
        self.dropped = 0


def capture_ms(stamp_s: float, now_s: float | None = None) -> tuple[float, bool]:
    """(capture stamp in ms since the epoch, True if the image's own stamp was usable).

    A sim run with `--fast` stamps images in sim time; ages against the wall
    clock would be meaningless, so the receipt time stands in (and status says so).
    """
    now = time.time() if now_s is None else now_s
    if stamp_s > 0 and abs(now - stamp_s) < CLOCK_SKEW_LIMIT_S:
        return stamp_s * 1e3, True
    return now * 1e3, False


class JpegEncoder:
    """rgb8 image -> JPEG at a quality and (optionally) a width, aspect kept."""

    def __init__(self, quality: int, width: int = 0):
        if not 10 <= quality <= 100:
            raise ValueError(f"JPEG quality {quality} outside 10..100")
        self.params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        self.width = int(width)

    def encode(self, rgb: np.ndarray) -> bytes:
        img = rgb
        if self.width and img.shape[1] != self.width:
            h = max(1, round(img.shape[0] * self.width / img.shape[1]))
            img = cv2.resize(img, (self.width, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), self.params)
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes()
