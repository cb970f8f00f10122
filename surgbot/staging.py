"""Staging folders: a long writer (a dataset, a set of clips) fills `.NAME.partial-PID` beside its
output and moves it into place only when complete, so nothing half-written sits at the output path.

A run killed hard (SIGKILL, a machine reset) cannot delete its staging folder; the next writer of the
same output removes those whose process is gone, so they do not pile up beside the results.  A writer
whose items are deterministic (the `sim` clips: one per seed) may instead adopt a dead folder written
with the same arguments (`RESUME_FILE` in it says which) and go on from where it stopped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

from surgbot.processes import pid_alive

PARTIAL_TAG = ".partial-"
RESUME_FILE = ".resume.json"      # in a staging folder: the arguments it was written with


def partial_path(out: Path) -> Path:
    """This process's staging folder for `out`."""
    return out.parent / f".{out.name}{PARTIAL_TAG}{os.getpid()}"


def remove_dead_partials(out: Path) -> list[Path]:
    """Delete the staging folders of `out` whose writer process no longer exists; the ones deleted."""
    removed = _dead_partials(out)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def _dead_partials(out: Path) -> list[Path]:
    found = []
    for p in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_TAG}*"):
        pid = p.name.rsplit(PARTIAL_TAG, 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)) and p.is_dir():
            found.append(p)
    return found


def adopt_dead_partial(out: Path, key: dict) -> Path | None:
    """Move the newest dead staging folder of `out` written with arguments `key` into this process's
    staging folder (the others stay for `remove_dead_partials`); its path, or None if there is none."""
    candidates = []
    for p in _dead_partials(out):
        try:
            if json.loads((p / RESUME_FILE).read_text()) == key:
                candidates.append(p)
        except (OSError, ValueError):
            continue
    if not candidates:
        return None
    mine = partial_path(out)
    if mine.exists():
        shutil.rmtree(mine)
    os.replace(max(candidates, key=lambda p: p.stat().st_mtime), mine)
    return mine


def mark_resumable(work: Path, key: dict) -> None:
    (work / RESUME_FILE).write_text(json.dumps(key))


def unmark_resumable(work: Path) -> None:
    (work / RESUME_FILE).unlink(missing_ok=True)
