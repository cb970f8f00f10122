"""World-model clips on disk (contract section 9): `NAME.mp4` + `NAME.json`.

`NAME.json` = `{"prompt": str, "fps": 15, "task": str}`, optionally
`"first_state": [10]` (the robot state of the conditioning frame when the
clip was generated from a frame of a recorded episode) and `"seed"`.  A clip
carries no kinematics.  What a simulated source knows about the truth goes
to `truth/NAME.npz` beside the clips: only the measurements (bench, tests)
read it, never `idm label`.

Reading validates everything a labeller relies on (fps, size, length, a
non-empty prompt, a known task, a finite 10-d first state, frames that
decode) and raises `ClipError` with one line naming the clip otherwise.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from surgbot.media import Mp4Writer
from surgbot.media import read_mp4 as media_read_mp4
from surgbot.staging import adopt_dead_partial, mark_resumable, partial_path, remove_dead_partials, unmark_resumable

FPS = 15
POSE_DIM = 10
TRUTH_DIR = "truth"
CRF = "12"                                   # near-lossless h264 (the IDM reads millimetres off pixels)


class ClipError(ValueError):
    """A clip (or a folder of clips) that cannot be used; the message is one line."""


@dataclass
class ClipMeta:
    prompt: str
    task: str
    fps: int = FPS
    first_state: list[float] | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"prompt": self.prompt, "fps": self.fps, "task": self.task}
        if self.first_state is not None:
            out["first_state"] = [float(v) for v in self.first_state]
        out.update(self.extra)
        return out


@dataclass
class Clip:
    name: str
    frames: np.ndarray          # uint8 [T, H, W, 3]
    meta: ClipMeta

    @property
    def first_state(self) -> np.ndarray | None:
        return None if self.meta.first_state is None else np.asarray(self.meta.first_state, np.float32)


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """uint8 [T, H, W, 3] -> mp4 at `fps` with the project's writer (surgbot.media), near-lossless."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    with Mp4Writer(path, fps, crf=CRF) as writer:
        for img in frames:
            writer.write(img)


def read_mp4(path: Path) -> tuple[np.ndarray, float]:
    """All frames (uint8 [T, H, W, 3]) and the stream's frame rate; ClipError if it does not decode."""
    try:
        return media_read_mp4(path)
    except Exception as exc:  # noqa: BLE001 - any decoder error is a bad clip: one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "no video frames" in text:
            raise ClipError(f"{path.name}: no decodable frames (truncated or empty)") from None
        raise ClipError(f"{path.name}: not a readable video ({text.split(': ', 1)[-1][:160]})") from None


def read_meta(path: Path, tasks: tuple[str, ...]) -> ClipMeta:
    """NAME.json of a clip, validated (see module doc)."""
    name = path.with_suffix("").name
    if not path.is_file():
        raise ClipError(f"{name}: {path.name} missing (every clip needs NAME.json with its prompt)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClipError(f"{name}: unreadable {path.name} ({exc})") from None
    if not isinstance(raw, dict):
        raise ClipError(f"{name}: {path.name} must hold a JSON object")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ClipError(f"{name}: missing or empty 'prompt' in {path.name}")
    task = raw.get("task")
    if task not in tasks:
        raise ClipError(f"{name}: 'task' {task!r} is not one of {', '.join(tasks)}")
    fps = raw.get("fps")
    if not isinstance(fps, (int, float)) or abs(float(fps) - FPS) > 1e-6:
        raise ClipError(f"{name}: 'fps' {fps!r} in {path.name}, the contract uses {FPS}")
    first = raw.get("first_state")
    if first is not None:
        ok = isinstance(first, list) and len(first) == POSE_DIM and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in first)
        if not ok:
            raise ClipError(f"{name}: 'first_state' must be {POSE_DIM} finite numbers")
    extra = {k: v for k, v in raw.items() if k not in ("prompt", "task", "fps", "first_state")}
    return ClipMeta(prompt=prompt.strip(), task=task, fps=FPS, first_state=first, extra=extra)


def read_clip(mp4: Path, tasks: tuple[str, ...], size: tuple[int, int] | None, min_frames: int) -> Clip:
    """One validated clip: meta first (cheap), then the frames (fps, size, length)."""
    meta = read_meta(mp4.with_suffix(".json"), tasks)
    frames, rate = read_mp4(mp4)
    name = mp4.with_suffix("").name
    if not math.isfinite(rate) or abs(rate - FPS) > 0.01:
        raise ClipError(f"{name}: video is {rate:g} fps, the contract uses {FPS}")
    h, w = frames.shape[1:3]
    if size is not None and (h, w) != tuple(size):
        raise ClipError(f"{name}: frames are {h}x{w}, expected {size[0]}x{size[1]} (the datasets' image size)")
    if len(frames) < min_frames:
        raise ClipError(f"{name}: {len(frames)} frames, shorter than the {min_frames} needed")
    return Clip(name=name, frames=frames, meta=meta)


def list_clips(folder: Path) -> list[Path]:
    """The folder's NAME.mp4 files, sorted; ClipError if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipError(f"{folder}: not a folder")
    mp4s = sorted(p for p in folder.iterdir() if p.suffix == ".mp4" and p.is_file())
    if not mp4s:
        raise ClipError(f"{folder}: no NAME.mp4 clips")
    return mp4s


def clip_size(folder: Path) -> tuple[int, int]:
    """Frame size (H, W) of the first clip, read from its stream header."""
    first = list_clips(folder)[0]
    try:
        with av.open(str(first)) as c:
            s = c.streams.video[0]
            return int(s.height), int(s.width)
    except Exception as exc:  # noqa: BLE001
        raise ClipError(f"{first.name}: not a readable video ({type(exc).__name__})") from None


def write_clip(folder: Path, name: str, frames: np.ndarray, meta: ClipMeta, truth: dict | None = None) -> None:
    """NAME.mp4 + NAME.json (+ truth/NAME.npz for measurements only)."""
    folder = Path(folder)
    write_mp4(folder / f"{name}.mp4", frames, meta.fps)
    (folder / f"{name}.json").write_text(json.dumps(meta.to_json(), indent=1))
    if truth is not None:
        (folder / TRUTH_DIR).mkdir(exist_ok=True)
        np.savez_compressed(folder / TRUTH_DIR / f"{name}.npz", **truth)


def finished_clip(folder: Path, name: str) -> int | None:
    """Frame count of clip `name` in `folder` if all of it was written (the truth file, written last,
    loads), else None: what a resumed `sim` run may keep."""
    folder = Path(folder)
    if not ((folder / f"{name}.mp4").is_file() and (folder / f"{name}.json").is_file()):
        return None
    try:
        with np.load(folder / TRUTH_DIR / f"{name}.npz") as z:
            return int(len(z["actions"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def read_truth(folder: Path, name: str) -> dict:
    """Measurement side only (bench, tests): the withheld states/actions of a simulated clip."""
    with np.load(Path(folder) / TRUTH_DIR / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


class StagedFolder:
    """Write into `.NAME.partial-PID` beside `out` (surgbot/staging.py), move into place on success, delete on
    error.  With `resume_key` (the arguments that decide the content), the folder of a killed run with the
    same key is adopted (`resumed` is True) and the caller skips what is already in it."""

    def __init__(self, out: Path, resume_key: dict | None = None):
        self.out = Path(out).resolve()
        self.work = partial_path(self.out)
        self.resume_key = resume_key
        self.resumed = False

    def __enter__(self) -> Path:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ClipError(f"{self.out}: exists and is not an empty folder")
        if self.resume_key is not None:
            self.resumed = adopt_dead_partial(self.out, self.resume_key) is not None
        remove_dead_partials(self.out)
        if not self.resumed:
            if self.work.exists():
                shutil.rmtree(self.work)
            self.work.mkdir(parents=True)
        if self.resume_key is not None:
            mark_resumable(self.work, self.resume_key)
        return self.work

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            unmark_resumable(self.work)
            if self.out.exists():
                self.out.rmdir()
            os.replace(self.work, self.out)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return False
