"""One MP4 per evaluated episode: what the policy saw, scaled up, with a caption line.

H.264 through PyAV (LeRobot's own video dependency), 15 fps, yuv420p so any
player opens it.  Frames are scaled by a whole factor (nearest neighbour: the
pixels the policy saw stay visible) to at least MIN_HEIGHT_PX rows.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

FPS = 15
MIN_HEIGHT_PX = 288
CAPTION_PX = 22
FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN, WHITE = (90, 230, 90), (235, 235, 235)


class EpisodeVideo:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = None
        self._stream = None

    def _open(self, h: int, w: int) -> None:
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("h264", rate=FPS)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"

    def add(self, image: np.ndarray, instruction: str, t_s: float, state: str, success: bool = False) -> None:
        img = np.asarray(image, np.uint8)
        k = max(1, -(-MIN_HEIGHT_PX // img.shape[0]))
        big = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
        h, w = big.shape[:2]
        frame = np.zeros((h + CAPTION_PX + (h + CAPTION_PX) % 2, w + w % 2, 3), np.uint8)
        frame[:h, :w] = big
        text = f"{t_s:5.1f}s {state}{'  SUCCESS' if success else ''}  {instruction}"
        cv2.putText(frame, text, (4, h + CAPTION_PX - 7), FONT, 0.42, GREEN if success else WHITE, 1, cv2.LINE_AA)
        if self._container is None:
            self._open(frame.shape[0], frame.shape[1])
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
