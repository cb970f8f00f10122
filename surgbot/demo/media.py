"""The demo's videos: endoscope view with an overlay, and the outside overview.

A `VideoRecorder` thread samples the observer's newest frames at a fixed
wall-clock rate (a frame repeats when the camera was late, so the video's
clock is the run's clock) and keeps them as JPEG with their overlay text;
`stop()` writes the MP4s with `surgbot.media.Mp4Writer`.  Encoding H.264
live costs ~5.4 ms of CPU per 640x480 frame (~8 % of a core at 15 fps),
taken from the stack's 50 ms watchdog chain while the robots are engaged;
a JPEG costs ~0.45 ms, and a 5-minute demo keeps ~100 MB of them.
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
JPEG_QUALITY = 92                      # kept frames: close to the camera's (the video is re-encoded once)
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


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {rgb.shape} frame")
    return buf.tobytes()


def _rgb(jpeg: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class VideoRecorder:
    """Keeps the endoscope (with its overlay text) and overview frames; `stop()` writes the MP4s."""

    def __init__(self, out_dir: Path, frames: Callable[[], tuple], overlay_lines: Callable[[], list[str]]):
        self.frames, self.overlay_lines = frames, overlay_lines
        self.endoscope = Mp4Writer(out_dir / "endoscope.mp4", ENDOSCOPE_FPS)
        self.overview = Mp4Writer(out_dir / "overview.mp4", OVERVIEW_FPS)
        self.error: str | None = None
        self._endoscope_kept: list[tuple[bytes, list[str]]] = []
        self._overview_kept: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-video")
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / ENDOSCOPE_FPS
        tick = 0
        last_endo = last_over = None
        try:
            while not self._stop.wait(period):
                endo, over = self.frames()
                if endo is not None:
                    # the same frame again (camera late): its JPEG is reused, not encoded twice
                    jpeg = self._endoscope_kept[-1][0] if endo is last_endo else _jpeg(endo)
                    self._endoscope_kept.append((jpeg, self.overlay_lines()))
                    last_endo = endo
                if over is not None and tick % OVERVIEW_EVERY == 0:
                    self._overview_kept.append(self._overview_kept[-1] if over is last_over else _jpeg(over))
                    last_over = over
                tick += 1
        except Exception as exc:    # noqa: BLE001 - reported in the summary; the demo goes on
            self.error = f"{type(exc).__name__}: {exc}"

    def stop_sampling(self) -> None:
        """Keep no more frames (the run is over); `stop()` then writes what was kept."""
        self._stop.set()
        self._thread.join()

    def stop(self) -> dict:
        """Stop sampling, write both files; their paths and frame counts."""
        self.stop_sampling()
        try:
            for jpeg, lines in self._endoscope_kept:
                self.endoscope.write(overlay(_rgb(jpeg), lines))
            for jpeg in self._overview_kept:
                self.overview.write(_rgb(jpeg))
        except Exception as exc:    # noqa: BLE001 - reported in the summary; the files written so far stay
            self.error = self.error or f"{type(exc).__name__}: {exc}"
        self._endoscope_kept.clear()
        self._overview_kept.clear()
        out = {}
        for key, writer in (("endoscope", self.endoscope), ("overview", self.overview)):
            path = writer.close()
            out[key] = {"path": str(path) if path else None, "frames": writer.frames}
        return out
