"""MP4 files: the one writer and reader every command uses (demo videos, evaluation videos, clips).

H.264 (libx264, yuv420p) through PyAV, the FFmpeg binding LeRobot already
needs, so the files play in browsers, Foxglove and every video player.
Frames are RGB uint8 HxWx3; odd sizes are padded by one pixel (yuv420p
needs even sizes).  A writer writes to `NAME.partial.mp4` and renames on
`close()`, so an interrupted run leaves no file that looks complete.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
CRF = "23"               # x264's default quality
PRESET = "veryfast"      # 2 CPU cores shared with the sim: speed over size


class Mp4Writer:
    """`with Mp4Writer(path, fps) as w: w.write(rgb)`; the size is taken from the first frame."""

    def __init__(self, path: str | Path, fps: float, crf: str = CRF):
        if not (np.isfinite(fps) and 0 < fps <= 240):
            raise ValueError(f"fps must be in (0, 240], got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.crf = str(crf)             # lower = closer to the frames (world-model clips: the IDM reads mm off them)
        self.frames = 0
        self._partial = self.path.with_name(self.path.stem + ".partial.mp4")
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, rgb: np.ndarray) -> None:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 HxWx3 frame, got {rgb.dtype} {rgb.shape}")
        if self._container is None:
            self._open(rgb.shape[0], rgb.shape[1])
        if rgb.shape[:2] != self._size:
            raise ValueError(f"frame size {rgb.shape[1]}x{rgb.shape[0]} differs from the video's "
                             f"{self._size[1]}x{self._size[0]}")
        h, w = self._stream.height, self._stream.width
        if (h, w) != rgb.shape[:2]:
            rgb = np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def _open(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._size = (height, width)
        self._container = av.open(str(self._partial), mode="w")
        rate = Fraction(self.fps).limit_denominator(1000)
        self._stream = self._container.add_stream(CODEC, rate=rate)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = PIXEL_FORMAT
        self._stream.options = {"crf": self.crf, "preset": PRESET}

    def close(self) -> Path | None:
        """Finish the file; returns its path (None when no frame was written: no file)."""
        if self._container is None:
            return None
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
                self._partial.unlink(missing_ok=True)


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    """All frames (N x H x W x 3 uint8 RGB) and the frame rate; ValueError for a corrupt/unreadable file."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise ValueError(f"{path}: not a readable video ({exc.__class__.__name__}: {exc})") from None
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames), fps
