"""Staging folders: a long writer (a dataset, a set of clips) fills `.NAME.partial-PID` beside its
output and moves it into place only when complete, so nothing half-written sits at the output path.

A run killed hard (SIGKILL, a machine reset) cannot delete its staging folder; the next writer of the
same output removes those whose process is gone, so they do not pile up beside the results.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

PARTIAL_TAG = ".partial-"


def partial_path(out: Path) -> Path:
    """This process's staging folder for `out`."""
    return out.parent / f".{out.name}{PARTIAL_TAG}{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # another user's process: alive, and not ours to judge
        return True
    return True


def remove_dead_partials(out: Path) -> list[Path]:
    """Delete the staging folders of `out` whose writer process no longer exists; the ones deleted."""
    removed = []
    for p in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_TAG}*"):
        pid = p.name.rsplit(PARTIAL_TAG, 1)[-1]
        if not pid.isdigit() or _alive(int(pid)) or not p.is_dir():
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
