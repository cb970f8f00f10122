"""LeRobotDataset v3 writing for surgbot (contract section 9), with LeRobot's own API.

Features: `observation.images.endoscope` (video HxWx3), `observation.state`
[10], `action` [10] (tool-tip position in PSM1_base, 6D rotation, jaw:
contract section 7), per-frame `task` text; fps 15.  What LeRobot's
episode table has no column for goes to `meta/surgbot.json`: the source
(`expert`, `teleop`, ...), the task, and per episode its seed, instruction
and length, plus the failed episodes that were not kept.

Nothing half-written is ever left at the output path: a `DatasetSession`
writes into a sibling folder `.NAME.partial-PID` (a copy of the dataset
when appending), calls `finalize()` and only then swaps it into place; on
an error or Ctrl-C the partial folder is deleted and the output is as it
was.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
from pathlib import Path

import numpy as np

from surgbot.errors import CliError
from surgbot.processes import forbid_realtime_scheduling
from surgbot.staging import partial_path, remove_dead_partials

FPS = 15
IMAGE_KEY = "observation.images.endoscope"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
POSE10_NAMES = ["x", "y", "z", "r11", "r21", "r31", "r12", "r22", "r32", "jaw"]
SIDECAR = "meta/surgbot.json"
REPO_PREFIX = "local/"


def features(height: int, width: int) -> dict:
    return {
        IMAGE_KEY: {"dtype": "video", "shape": (height, width, 3), "names": ["height", "width", "channels"]},
        STATE_KEY: {"dtype": "float32", "shape": (10,), "names": list(POSE10_NAMES)},
        ACTION_KEY: {"dtype": "float32", "shape": (10,), "names": list(POSE10_NAMES)},
    }


def _same_features(existing: dict, wanted: dict) -> list[str]:
    """Differences between a dataset's features and ours (ignoring LeRobot's own columns and video info)."""
    diffs = []
    for key, spec in wanted.items():
        have = existing.get(key)
        if have is None:
            diffs.append(f"{key} missing")
            continue
        if have.get("dtype") != spec["dtype"] or tuple(have.get("shape", ())) != tuple(spec["shape"]):
            diffs.append(f"{key} is {have.get('dtype')} {tuple(have.get('shape', ()))}, "
                         f"recording {spec['dtype']} {tuple(spec['shape'])}")
    for key in existing:
        if key not in wanted and key not in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            diffs.append(f"extra feature {key}")
    return diffs


def check_output(out: Path, append: bool, height: int, width: int) -> None:
    """CliError (nothing touched) when `out` cannot take this recording."""
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a folder")
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and not append:
        raise CliError(f"--out {out}: folder exists and is not empty (use --append to add episodes)")
    if append and non_empty:
        info = out / "meta" / "info.json"
        if not info.is_file():
            raise CliError(f"--out {out}: not a LeRobot dataset (no meta/info.json) to append to")
        try:
            existing = json.loads(info.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--out {out}: unreadable meta/info.json ({exc})") from None
        if existing.get("fps") != FPS:
            raise CliError(f"--out {out}: dataset fps {existing.get('fps')} differs from {FPS}")
        diffs = _same_features(existing.get("features", {}), features(height, width))
        if diffs:
            raise CliError(f"--out {out}: features differ: {'; '.join(diffs)}")


class DatasetSession:
    """One recording run into `out` (new or appended); use as a context manager."""

    def __init__(self, out: Path, *, append: bool, height: int, width: int, task: str, source: str):
        self.out = Path(out).resolve()
        self.append = append and self.out.is_dir() and any(self.out.iterdir())
        self.height, self.width = height, width
        self.task, self.source = task, source
        self.work = partial_path(self.out)
        self.dataset = None
        self.meta: dict = {}
        self.kept = 0
        self.failed = 0

    def __enter__(self) -> DatasetSession:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        # LeRobot's AV1 encoder would put this thread in SCHED_FIFO 99 (surgbot/processes.py);
        # the CLI and nodes already did this at start, a script using the session directly has not
        forbid_realtime_scheduling()
        remove_dead_partials(self.out)
        if self.work.exists():
            shutil.rmtree(self.work)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        repo_id = REPO_PREFIX + self.out.name
        if self.append:
            shutil.copytree(self.out, self.work)
            self.dataset = LeRobotDataset(repo_id, root=self.work)
            sidecar = self.work / SIDECAR
            self.meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        else:
            self.dataset = LeRobotDataset.create(repo_id, fps=FPS, features=features(self.height, self.width),
                                                 root=self.work, robot_type="dvrk_psm", use_videos=True)
        self.meta.setdefault("format", "surgbot LeRobotDataset v3 (contract section 9)")
        self.meta.setdefault("episodes", [])
        self.meta.setdefault("failed_episodes", [])
        sources = set(self.meta.get("sources", [])) | {self.source}
        tasks = set(self.meta.get("tasks", [])) | {self.task}
        self.meta.update({"sources": sorted(sources), "source": self.source if len(sources) == 1 else "mixed",
                          "tasks": sorted(tasks), "fps": FPS})
        return self

    def add_episode(self, frames: list[dict], info: dict) -> None:
        """Write one kept episode: frames of {image, state, action, task}; info goes to the sidecar."""
        ds = self.dataset
        for f in frames:
            ds.add_frame({IMAGE_KEY: f["image"], STATE_KEY: np.asarray(f["state"], np.float32),
                          ACTION_KEY: np.asarray(f["action"], np.float32), "task": f["task"]})
        index = int(ds.meta.total_episodes)
        ds.save_episode()
        self.meta["episodes"].append({"episode_index": index, "length": len(frames), "task": self.task,
                                      "source": self.source, **info})
        self.kept += 1

    def add_failure(self, info: dict) -> None:
        self.meta["failed_episodes"].append({"task": self.task, **info})
        self.failed += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None and self.kept > 0:
                self.dataset.finalize()
                self.dataset = None
                gc.collect()
                (self.work / SIDECAR).write_text(json.dumps(self.meta, indent=1))
                self._remove_empty_image_dir()
                self._swap_in()
        finally:
            self._discard_work()
        return False

    def _discard_work(self) -> None:
        """Close LeRobot's writers first: their finalisers would write into the folder again."""
        if self.dataset is not None:
            with contextlib.suppress(Exception):
                self.dataset.finalize()
            self.dataset = None
            gc.collect()
        if self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)

    def _remove_empty_image_dir(self) -> None:
        """LeRobot's per-frame PNG staging folder, empty once the videos are encoded."""
        images = self.work / "images"
        if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
            shutil.rmtree(images)

    def _swap_in(self) -> None:
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.work, self.out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
