"""The demo's videos: endoscope view with an overlay, and the outside overview.

A `VideoRecorder` thread samples the observer's newest frames at a fixed
wall-clock rate (a frame repeats when the camera was late, so the video's
clock is the run's clock) and writes them with `surgbot.media.Mp4Writer`.
The overlay says what an observer would ask: the instruction, the task
state and result, the fulcrum error, the policy's inference time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from surgbot.media import Mp4Writer

ENDOSCOPE_FPS = 15.0
OVERVIEW_FPS = 5.0         # the outside view (also the sim's overview camera rate): enough to follow the robots
OVERVIEW_EVERY = round(ENDOSCOPE_FPS / OVERVIEW_FPS)     # endoscope ticks per overview frame
ENDOSCOPE_SCALE = 2                    # 320x240 -> 640x480: overlay text stays legible
BANNER_ALPHA = 0.55
FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE_PX = 22
TEXT_SCALE = 0.55


def overlay(frame: np.ndarray, lines: list[str], scale: int = ENDOSCOPE_SCALE) -> np.ndarray:
    """The frame enlarged `scale` times with `lines` on a dark translucent banner at the top."""
    big = cv2.resize(frame, (frame.shape[1] * scale, frame.shape[0] * scale), interpolation=cv2.INTER_LINEAR)
    if not lines:
        return big
    height = LINE_PX * len(lines) + 8
    banner = big[:height].astype(np.float32) * (1.0 - BANNER_ALPHA)
    big[:height] = banner.astype(np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(big, text, (8, LINE_PX * (i + 1)), FONT, TEXT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return big


def blank(height: int, width: int, text: str) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    cv2.putText(img, text, (10, height // 2), FONT, TEXT_SCALE, (200, 200, 200), 1, cv2.LINE_AA)
    return img


class VideoRecorder:
    """Writes `endoscope.mp4` and `overview.mp4` from `frames()` until `stop()`."""

    def __init__(self, out_dir: Path, frames: Callable[[], tuple], overlay_lines: Callable[[], list[str]]):
        self.frames, self.overlay_lines = frames, overlay_lines
        self.endoscope = Mp4Writer(out_dir / "endoscope.mp4", ENDOSCOPE_FPS)
        self.overview = Mp4Writer(out_dir / "overview.mp4", OVERVIEW_FPS)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-video")
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / ENDOSCOPE_FPS
        tick = 0
        try:
            while not self._stop.wait(period):
                endo, over = self.frames()
                if endo is not None:
                    self.endoscope.write(overlay(endo, self.overlay_lines()))
                if over is not None and tick % OVERVIEW_EVERY == 0:
                    self.overview.write(over)
                tick += 1
        except Exception as exc:    # noqa: BLE001 - reported in the summary; the demo goes on
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> dict:
        """Finish both files; their paths and frame counts."""
        self._stop.set()
        self._thread.join()
        out = {}
        for key, writer in (("endoscope", self.endoscope), ("overview", self.overview)):
            path = writer.close()
            out[key] = {"path": str(path) if path else None, "frames": writer.frames}
        return out
